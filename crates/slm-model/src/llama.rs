//! The Llama-family decoder: embedding, N pre-norm blocks (attention + SwiGLU MLP), final
//! norm and output projection. Reads top to bottom.
//!
//! Covers Llama 1/2/3 (GQA, RoPE theta and scaling), llama2.c models and Qwen2 (q/k/v biases,
//! tied embeddings). `forward` returns logits for every position; with a `KvCache` it
//! continues a sequence. Hook points expose block and linear inputs. Everything is written
//! with differentiable candle ops so the same code trains.
//!
//! Shapes: b = batch, t = new positions, T = positions attended (cache + new), d = hidden,
//! h = query heads, g = kv heads, e = head_dim, v = vocab.

use crate::config::LlamaConfig;
use crate::hooks::{emit, HookPoint, Hooks};
use crate::kv_cache::KvCache;
use crate::linear::Linear;
use crate::norm::RmsNorm;
use crate::rope::Rope;
use crate::weights::{check_tensors, expected_shapes};
use candle_core::{DType, Device, Tensor, D};
use slm_core::{Error, LinearRole, Result};
use std::collections::HashMap;
use std::path::Path;

#[derive(Debug, Clone)]
pub struct Attention {
    pub q_proj: Linear,
    pub k_proj: Linear,
    pub v_proj: Linear,
    pub o_proj: Linear,
    num_heads: usize,
    num_kv_heads: usize,
    head_dim: usize,
}

#[derive(Debug, Clone)]
pub struct Mlp {
    pub gate_proj: Linear,
    pub up_proj: Linear,
    pub down_proj: Linear,
}

#[derive(Debug, Clone)]
pub struct DecoderLayer {
    pub input_layernorm: RmsNorm,
    pub self_attn: Attention,
    pub post_attention_layernorm: RmsNorm,
    pub mlp: Mlp,
}

#[derive(Debug, Clone)]
pub struct Llama {
    pub config: LlamaConfig,
    /// [v, d]
    pub embed_tokens: Tensor,
    pub layers: Vec<DecoderLayer>,
    pub norm: RmsNorm,
    /// `None` when the output projection is tied to `embed_tokens`.
    pub lm_head: Option<Linear>,
    rope: Rope,
}

/// Additive causal mask [t, T]: query i (at absolute position start+i) sees keys j ≤ start+i.
fn causal_mask(t: usize, start: usize, device: &Device) -> Result<Tensor> {
    let total = start + t;
    let mask: Vec<f32> = (0..t)
        .flat_map(|i| {
            (0..total).map(move |j| {
                if j > start + i {
                    f32::NEG_INFINITY
                } else {
                    0.0
                }
            })
        })
        .collect();
    Ok(Tensor::from_vec(mask, (t, total), device)?)
}

/// Repeats each of the g kv heads h/g times: [b, g, T, e] -> [b, h, T, e].
fn repeat_kv(x: Tensor, n_rep: usize) -> Result<Tensor> {
    if n_rep == 1 {
        return Ok(x);
    }
    let (b, g, tt, e) = x.dims4()?;
    // [b, g, T, e] -> [b, g, 1, T, e] -> [b, g, rep, T, e] -> [b, g*rep, T, e]
    Ok(x.unsqueeze(2)?
        .expand((b, g, n_rep, tt, e))?
        .reshape((b, g * n_rep, tt, e))?)
}

impl Attention {
    fn forward(
        &self,
        x: &Tensor,
        layer: usize,
        start: usize,
        rope: &Rope,
        cache: Option<&mut KvCache>,
        hooks: &mut Option<&mut dyn Hooks>,
    ) -> Result<Tensor> {
        let (b, t, _d) = x.dims3()?;
        let (h, g, e) = (self.num_heads, self.num_kv_heads, self.head_dim);
        for role in [LinearRole::Q, LinearRole::K, LinearRole::V] {
            emit(hooks, HookPoint::LinearInput { layer, role }, x)?;
        }
        // [b, t, h*e] -> [b, t, h, e] -> [b, h, t, e]
        let q = self
            .q_proj
            .forward(x)?
            .reshape((b, t, h, e))?
            .transpose(1, 2)?
            .contiguous()?;
        let k = self
            .k_proj
            .forward(x)?
            .reshape((b, t, g, e))?
            .transpose(1, 2)?
            .contiguous()?;
        let v = self
            .v_proj
            .forward(x)?
            .reshape((b, t, g, e))?
            .transpose(1, 2)?
            .contiguous()?;
        let q = rope.apply(&q, start)?;
        let k = rope.apply(&k, start)?;
        // With a cache, attend over everything seen so far: [b, g, T, e].
        let (k, v) = match cache {
            Some(c) => c.append(layer, &k, &v)?,
            None => (k, v),
        };
        let k = repeat_kv(k, h / g)?;
        let v = repeat_kv(v, h / g)?.contiguous()?;
        // [b, h, t, e] @ [b, h, e, T] -> [b, h, t, T]
        let scores = (q.matmul(&k.t()?)? / (e as f64).sqrt())?;
        let scores = if t > 1 {
            scores.broadcast_add(&causal_mask(t, start, x.device())?)?
        } else {
            scores // a single new query may see every cached key
        };
        let probs = candle_nn::ops::softmax(&scores, D::Minus1)?;
        // [b, h, t, T] @ [b, h, T, e] -> [b, h, t, e] -> [b, t, h, e] -> [b, t, h*e]
        let y = probs.matmul(&v)?.transpose(1, 2)?.reshape((b, t, h * e))?;
        emit(
            hooks,
            HookPoint::LinearInput {
                layer,
                role: LinearRole::O,
            },
            &y,
        )?;
        self.o_proj.forward(&y)
    }
}

impl Mlp {
    /// SwiGLU: down(silu(gate(x)) * up(x)).
    fn forward(
        &self,
        x: &Tensor,
        layer: usize,
        hooks: &mut Option<&mut dyn Hooks>,
    ) -> Result<Tensor> {
        emit(
            hooks,
            HookPoint::LinearInput {
                layer,
                role: LinearRole::Gate,
            },
            x,
        )?;
        emit(
            hooks,
            HookPoint::LinearInput {
                layer,
                role: LinearRole::Up,
            },
            x,
        )?;
        let gate = self.gate_proj.forward(x)?;
        let act = (&gate * candle_nn::ops::sigmoid(&gate)?)?; // silu
        let hidden = (act * self.up_proj.forward(x)?)?;
        emit(
            hooks,
            HookPoint::LinearInput {
                layer,
                role: LinearRole::Down,
            },
            &hidden,
        )?;
        self.down_proj.forward(&hidden)
    }
}

impl DecoderLayer {
    /// One pre-norm block: x + attn(norm(x)), then + mlp(norm(·)). x: [b, t, d].
    pub fn forward(
        &self,
        x: &Tensor,
        layer: usize,
        start: usize,
        rope: &Rope,
        cache: Option<&mut KvCache>,
        hooks: &mut Option<&mut dyn Hooks>,
    ) -> Result<Tensor> {
        emit(hooks, HookPoint::BlockInput(layer), x)?;
        let attn = self.self_attn.forward(
            &self.input_layernorm.forward(x)?,
            layer,
            start,
            rope,
            cache,
            hooks,
        )?;
        let x = (x + attn)?;
        let mlp = self
            .mlp
            .forward(&self.post_attention_layernorm.forward(&x)?, layer, hooks)?;
        Ok((x + mlp)?)
    }

    /// The linear layer with `role`.
    pub fn linear(&self, role: LinearRole) -> &Linear {
        match role {
            LinearRole::Q => &self.self_attn.q_proj,
            LinearRole::K => &self.self_attn.k_proj,
            LinearRole::V => &self.self_attn.v_proj,
            LinearRole::O => &self.self_attn.o_proj,
            LinearRole::Gate => &self.mlp.gate_proj,
            LinearRole::Up => &self.mlp.up_proj,
            LinearRole::Down => &self.mlp.down_proj,
        }
    }

    pub fn linear_mut(&mut self, role: LinearRole) -> &mut Linear {
        match role {
            LinearRole::Q => &mut self.self_attn.q_proj,
            LinearRole::K => &mut self.self_attn.k_proj,
            LinearRole::V => &mut self.self_attn.v_proj,
            LinearRole::O => &mut self.self_attn.o_proj,
            LinearRole::Gate => &mut self.mlp.gate_proj,
            LinearRole::Up => &mut self.mlp.up_proj,
            LinearRole::Down => &mut self.mlp.down_proj,
        }
    }
}

impl Llama {
    /// Builds the model from Hugging Face-named tensors after checking every name and shape.
    pub fn from_tensors(
        config: LlamaConfig,
        mut tensors: HashMap<String, Tensor>,
        source: &Path,
    ) -> Result<Self> {
        config.validate()?;
        check_tensors(&config, &tensors, source)?;
        let mut take = |name: String| -> Result<Tensor> {
            tensors.remove(&name).ok_or_else(|| Error::MissingTensor {
                path: source.to_path_buf(),
                tensor: name,
            })
        };
        let eps = config.rms_norm_eps;
        let embed_tokens = take("model.embed_tokens.weight".into())?;
        let mut layers = Vec::with_capacity(config.num_hidden_layers);
        for l in 0..config.num_hidden_layers {
            let mut lin = |role: LinearRole| -> Result<Linear> {
                let w = take(format!("{}.weight", role.hf_prefix(l)))?;
                let has_bias = config.qkv_bias
                    && matches!(role, LinearRole::Q | LinearRole::K | LinearRole::V);
                let b = if has_bias {
                    Some(take(format!("{}.bias", role.hf_prefix(l)))?)
                } else {
                    None
                };
                Ok(Linear::dense(w, b))
            };
            let self_attn = Attention {
                q_proj: lin(LinearRole::Q)?,
                k_proj: lin(LinearRole::K)?,
                v_proj: lin(LinearRole::V)?,
                o_proj: lin(LinearRole::O)?,
                num_heads: config.num_attention_heads,
                num_kv_heads: config.num_key_value_heads,
                head_dim: config.head_dim,
            };
            let mlp = Mlp {
                gate_proj: lin(LinearRole::Gate)?,
                up_proj: lin(LinearRole::Up)?,
                down_proj: lin(LinearRole::Down)?,
            };
            let p = format!("model.layers.{l}");
            layers.push(DecoderLayer {
                input_layernorm: RmsNorm::new(take(format!("{p}.input_layernorm.weight"))?, eps),
                self_attn,
                post_attention_layernorm: RmsNorm::new(
                    take(format!("{p}.post_attention_layernorm.weight"))?,
                    eps,
                ),
                mlp,
            });
        }
        let norm = RmsNorm::new(take("model.norm.weight".into())?, eps);
        let lm_head = if config.tie_word_embeddings {
            None
        } else {
            Some(Linear::dense(take("lm_head.weight".into())?, None))
        };
        let rope = Rope::new(&config, embed_tokens.device())?;
        Ok(Self {
            config,
            embed_tokens,
            layers,
            norm,
            lm_head,
            rope,
        })
    }

    /// A model with seeded random weights: N(0, 0.02) matrices, output projections of each
    /// block scaled by 1/√(2·layers) (GPT-2), norms at one, biases at zero.
    pub fn random(config: LlamaConfig, seed: u64, device: &Device) -> Result<Self> {
        let tensors = random_tensors(&config, seed, device)?;
        Self::from_tensors(config, tensors, Path::new("<random>"))
    }

    /// The parameters in Hugging Face naming, canonical order (what `save` writes).
    pub fn tensors(&self) -> Vec<(String, Tensor)> {
        let mut out = vec![(
            "model.embed_tokens.weight".to_string(),
            self.embed_tokens.clone(),
        )];
        for (l, layer) in self.layers.iter().enumerate() {
            let p = format!("model.layers.{l}");
            out.push((
                format!("{p}.input_layernorm.weight"),
                layer.input_layernorm.weight.clone(),
            ));
            for role in LinearRole::ALL {
                let lin = layer.linear(role);
                out.push((
                    format!("{}.weight", role.hf_prefix(l)),
                    lin.weight().clone(),
                ));
                if let Some(b) = &lin.bias {
                    out.push((format!("{}.bias", role.hf_prefix(l)), b.clone()));
                }
            }
            out.push((
                format!("{p}.post_attention_layernorm.weight"),
                layer.post_attention_layernorm.weight.clone(),
            ));
        }
        out.push(("model.norm.weight".to_string(), self.norm.weight.clone()));
        if let Some(head) = &self.lm_head {
            out.push(("lm_head.weight".to_string(), head.weight().clone()));
        }
        out
    }

    pub fn device(&self) -> &Device {
        self.embed_tokens.device()
    }

    /// A fresh KV cache sized to the model context for this model.
    pub fn new_cache(&self) -> KvCache {
        KvCache::new(
            self.config.num_hidden_layers,
            self.config.max_position_embeddings,
        )
    }

    /// Token ids [b, t] (u32) -> residual stream [b, t, d].
    pub fn embed(&self, ids: &Tensor) -> Result<Tensor> {
        let (b, t) = ids.dims2()?;
        let flat = ids.flatten_all()?;
        Ok(self
            .embed_tokens
            .index_select(&flat, 0)?
            .reshape((b, t, self.config.hidden_size))?)
    }

    /// Residual stream [b, t, d] -> logits [b, t, v].
    pub fn head(&self, x: &Tensor) -> Result<Tensor> {
        let x = self.norm.forward(x)?;
        match &self.lm_head {
            Some(head) => head.forward(&x),
            None => Linear::dense(self.embed_tokens.clone(), None).forward(&x),
        }
    }

    /// Runs block `layer` on x [b, t, d] whose first position is `start` (calibration runs
    /// blocks one at a time).
    pub fn block_forward(
        &self,
        layer: usize,
        x: &Tensor,
        start: usize,
        hooks: Option<&mut dyn Hooks>,
    ) -> Result<Tensor> {
        let mut hooks = hooks;
        let block = self
            .layers
            .get(layer)
            .ok_or_else(|| Error::invalid(format!("layer {layer} out of range")))?;
        block.forward(x, layer, start, &self.rope, None, &mut hooks)
    }

    /// Logits [b, t, v] for ids [b, t]. With a cache the ids continue the cached sequence.
    pub fn forward(&self, ids: &Tensor, cache: Option<&mut KvCache>) -> Result<Tensor> {
        self.forward_with_hooks(ids, cache, None)
    }

    pub fn forward_with_hooks(
        &self,
        ids: &Tensor,
        mut cache: Option<&mut KvCache>,
        mut hooks: Option<&mut dyn Hooks>,
    ) -> Result<Tensor> {
        let start = cache.as_ref().map_or(0, |c| c.len());
        let mut x = self.embed(ids)?;
        for (l, layer) in self.layers.iter().enumerate() {
            x = layer.forward(&x, l, start, &self.rope, cache.as_deref_mut(), &mut hooks)?;
        }
        emit(&mut hooks, HookPoint::FinalHidden, &x)?;
        self.head(&x)
    }

    /// Total number of parameters (tied embedding counted once).
    pub fn num_parameters(&self) -> usize {
        self.tensors().iter().map(|(_, t)| t.elem_count()).sum()
    }
}

/// Seeded random parameters for `config` (see [`Llama::random`]).
pub fn random_tensors(
    config: &LlamaConfig,
    seed: u64,
    device: &Device,
) -> Result<HashMap<String, Tensor>> {
    use rand::{rngs::StdRng, SeedableRng};
    use rand_distr::{Distribution, Normal};
    let mut rng = StdRng::seed_from_u64(seed);
    let proj_std = 0.02 / (2.0 * config.num_hidden_layers as f64).sqrt();
    let mut out = HashMap::new();
    for (name, shape) in expected_shapes(config) {
        let n: usize = shape.iter().product();
        let data: Vec<f32> = if name.ends_with("norm.weight") {
            vec![1.0; n]
        } else if name.ends_with(".bias") {
            vec![0.0; n]
        } else {
            let std = if name.ends_with("o_proj.weight") || name.ends_with("down_proj.weight") {
                proj_std
            } else {
                0.02
            };
            let normal = Normal::new(0.0f64, std).map_err(|e| Error::msg(e.to_string()))?;
            (0..n).map(|_| normal.sample(&mut rng) as f32).collect()
        };
        out.insert(
            name,
            Tensor::from_vec(data, shape, device)?.to_dtype(DType::F32)?,
        );
    }
    Ok(out)
}
