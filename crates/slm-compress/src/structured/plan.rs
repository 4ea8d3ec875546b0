//! Which units a structurally pruned model keeps, chosen from importance scores, and the
//! slicing that writes the smaller dense model.
//!
//! A [`Plan`] names kept units in the parent's numbering: the kept layers, the kept hidden
//! channels, and per kept layer its KV heads, query heads and MLP channels (the same count in
//! every layer, since the configuration is uniform). [`Plan::apply`] slices every tensor
//! (row-major `[out, in]` linears, `[vocab, d]` embedding, `[d]` norms):
//!
//! ```text
//! embed_tokens [v, d]        → [v, d']            columns: hidden
//! q_proj [h·e, d]            → [h'·e, d']         rows: kept query heads' e rows; columns: hidden
//! k_proj, v_proj [g·e, d]    → [g'·e, d']         rows: kept KV heads
//! o_proj [d, h·e]            → [d', h'·e]         rows: hidden; columns: kept query heads
//! gate_proj, up_proj [f, d]  → [f', d']           rows: kept MLP channels; columns: hidden
//! down_proj [d, f]           → [d', f']           rows: hidden; columns: kept MLP channels
//! norms [d]                  → [d'] · √(d/d')     (and rms_norm_eps · d/d', see Shape::config)
//! lm_head [v, d] (untied)    → [v, d']
//! ```
//!
//! With the norm rescaling, the pruned model computes exactly what the parent computes with
//! the removed units zeroed: a removed head's o columns, a removed MLP channel's down column,
//! a removed hidden channel everywhere in the residual stream, a removed layer's o and down.

use super::importance::{Importance, LayerMetric};
use super::shape::Shape;
use candle_core::{DType, Tensor};
use serde::{Deserialize, Serialize};
use slm_core::{Error, LinearRole, Result};
use slm_model::{Llama, LlamaConfig};
use std::collections::HashMap;
use std::path::Path;

/// The units a pruned model keeps, in the parent's numbering (each list ascending).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Plan {
    /// Kept layers.
    pub layers: Vec<usize>,
    /// Kept hidden (embedding) channels.
    pub hidden: Vec<usize>,
    /// Per kept layer: its kept KV heads.
    pub kv_heads: Vec<Vec<usize>>,
    /// Per kept layer: its kept query heads (each in a kept KV head's group).
    pub heads: Vec<Vec<usize>>,
    /// Per kept layer: its kept MLP channels.
    pub mlp: Vec<Vec<usize>>,
}

/// Indices of the `k` largest `scores`, ascending (ties: the lower index wins).
pub fn top_k(scores: &[f32], k: usize) -> Vec<usize> {
    let mut idx: Vec<usize> = (0..scores.len()).collect();
    idx.sort_by(|&a, &b| scores[b].total_cmp(&scores[a]).then(a.cmp(&b)));
    idx.truncate(k);
    idx.sort_unstable();
    idx
}

impl Plan {
    /// Keeps every unit of a `cfg` model.
    pub fn keep_all(cfg: &LlamaConfig) -> Self {
        let all = |n: usize| (0..n).collect::<Vec<_>>();
        let l = cfg.num_hidden_layers;
        Self {
            layers: all(l),
            hidden: all(cfg.hidden_size),
            kv_heads: vec![all(cfg.num_key_value_heads); l],
            heads: vec![all(cfg.num_attention_heads); l],
            mlp: vec![all(cfg.intermediate_size); l],
        }
    }

    /// Keeps the most important units for `shape`: the layers with the highest `metric`
    /// score, the hidden channels with the highest score, and in each kept layer the KV
    /// groups with the highest summed score, within each kept group its best query heads,
    /// and its best MLP channels.
    pub fn from_importance(
        imp: &Importance,
        parent: &LlamaConfig,
        shape: &Shape,
        metric: LayerMetric,
    ) -> Result<Self> {
        shape.check(parent)?;
        let full = Shape::of(parent);
        if imp.heads.len() != full.layers
            || imp.mlp.len() != full.layers
            || imp.hidden.len() != full.hidden
            || imp.heads.iter().any(|h| h.len() != full.heads)
            || imp.mlp.iter().any(|m| m.len() != full.mlp)
        {
            return Err(Error::invalid(
                "the importance scores were measured on a model of another shape",
            ));
        }
        let layers = top_k(imp.layer_scores(metric)?, shape.layers);
        let group = full.heads / full.kv_heads;
        let per_group = shape.heads / shape.kv_heads;
        let (mut kv_heads, mut heads, mut mlp) = (Vec::new(), Vec::new(), Vec::new());
        for &l in &layers {
            let groups = top_k(&imp.group_scores(l), shape.kv_heads);
            let mut q = Vec::new();
            for &g in &groups {
                let members = &imp.heads[l][g * group..(g + 1) * group];
                q.extend(top_k(members, per_group).into_iter().map(|h| g * group + h));
            }
            kv_heads.push(groups);
            heads.push(q);
            mlp.push(top_k(&imp.mlp[l], shape.mlp));
        }
        Ok(Self {
            layers,
            hidden: top_k(&imp.hidden, shape.hidden),
            kv_heads,
            heads,
            mlp,
        })
    }

    /// The shape this plan keeps.
    pub fn shape(&self) -> Shape {
        Shape {
            layers: self.layers.len(),
            hidden: self.hidden.len(),
            heads: self.heads.first().map_or(0, Vec::len),
            kv_heads: self.kv_heads.first().map_or(0, Vec::len),
            mlp: self.mlp.first().map_or(0, Vec::len),
        }
    }

    /// Refuses a plan that does not fit `parent`: indices out of range or repeated, lists
    /// of unequal length across layers, query heads outside their kept KV groups, or a shape
    /// [`Shape::check`] refuses.
    pub fn check(&self, parent: &LlamaConfig) -> Result<()> {
        let shape = self.shape();
        shape.check(parent)?;
        let n = self.layers.len();
        if self.kv_heads.len() != n || self.heads.len() != n || self.mlp.len() != n {
            return Err(Error::invalid(
                "the plan lists heads and channels for another number of layers",
            ));
        }
        let ascending_within = |v: &[usize], max: usize, what: &str| -> Result<()> {
            if v.windows(2).any(|p| p[0] >= p[1]) || v.last().is_some_and(|&x| x >= max) {
                return Err(Error::invalid(format!(
                    "kept {what} must be distinct, ascending and below {max}: {v:?}"
                )));
            }
            Ok(())
        };
        ascending_within(&self.layers, parent.num_hidden_layers, "layers")?;
        ascending_within(&self.hidden, parent.hidden_size, "hidden channels")?;
        let group = parent.num_attention_heads / parent.num_key_value_heads;
        for i in 0..n {
            ascending_within(&self.kv_heads[i], parent.num_key_value_heads, "KV heads")?;
            ascending_within(&self.heads[i], parent.num_attention_heads, "query heads")?;
            ascending_within(&self.mlp[i], parent.intermediate_size, "MLP channels")?;
            if self.kv_heads[i].len() != shape.kv_heads
                || self.heads[i].len() != shape.heads
                || self.mlp[i].len() != shape.mlp
            {
                return Err(Error::invalid(
                    "every kept layer must keep the same number of heads and channels",
                ));
            }
            for (j, &g) in self.kv_heads[i].iter().enumerate() {
                let per = shape.heads / shape.kv_heads;
                let members = &self.heads[i][j * per..(j + 1) * per];
                if members.iter().any(|&h| h / group != g) {
                    return Err(Error::invalid(format!(
                        "layer {}: query heads {members:?} are not all in KV group {g}",
                        self.layers[i]
                    )));
                }
            }
        }
        Ok(())
    }

    /// The smaller dense model (see the module documentation). Every kept value is the
    /// parent's, bit for bit, except the norm weights when hidden channels go.
    pub fn apply(&self, model: &Llama) -> Result<Llama> {
        let parent = &model.config;
        self.check(parent)?;
        let shape = self.shape();
        let cfg = shape.config(parent);
        let dev = model.device();
        let e = parent.head_dim;
        let idx = |v: &[usize]| -> Result<Tensor> {
            let v: Vec<u32> = v.iter().map(|&i| i as u32).collect();
            Ok(Tensor::new(v.as_slice(), dev)?)
        };
        // Rows of whole heads: head h → rows h·e..(h+1)·e.
        let head_rows = |heads: &[usize]| -> Vec<usize> {
            heads.iter().flat_map(|&h| h * e..(h + 1) * e).collect()
        };
        let all_hidden = self.hidden.len() == parent.hidden_size;
        let hidden = idx(&self.hidden)?;
        let cols = |t: &Tensor, i: &Tensor| -> Result<Tensor> { Ok(t.index_select(i, 1)?) };
        let rows = |t: &Tensor, i: &Tensor| -> Result<Tensor> { Ok(t.index_select(i, 0)?) };
        let scale = (parent.hidden_size as f64 / shape.hidden as f64).sqrt();
        let norm = |w: &Tensor| -> Result<Tensor> {
            let w = rows(w, &hidden)?;
            if all_hidden {
                return Ok(w);
            }
            Ok(w.to_dtype(DType::F64)?
                .affine(scale, 0.0)?
                .to_dtype(w.dtype())?)
        };
        let mut t: HashMap<String, Tensor> = HashMap::new();
        t.insert(
            "model.embed_tokens.weight".into(),
            cols(&model.embed_tokens, &hidden)?,
        );
        for (i, &pl) in self.layers.iter().enumerate() {
            let layer = model
                .layers
                .get(pl)
                .ok_or_else(|| Error::invalid(format!("layer {pl} is not in the model")))?;
            let q_rows = idx(&head_rows(&self.heads[i]))?;
            let kv_rows = idx(&head_rows(&self.kv_heads[i]))?;
            let mlp = idx(&self.mlp[i])?;
            let p = format!("model.layers.{i}");
            t.insert(
                format!("{p}.input_layernorm.weight"),
                norm(&layer.input_layernorm.weight)?,
            );
            t.insert(
                format!("{p}.post_attention_layernorm.weight"),
                norm(&layer.post_attention_layernorm.weight)?,
            );
            for role in LinearRole::ALL {
                let lin = layer.linear(role);
                let w = lin.weight();
                let (out_idx, in_idx) = match role {
                    LinearRole::Q => (&q_rows, &hidden),
                    LinearRole::K | LinearRole::V => (&kv_rows, &hidden),
                    LinearRole::O => (&hidden, &q_rows),
                    LinearRole::Gate | LinearRole::Up => (&mlp, &hidden),
                    LinearRole::Down => (&hidden, &mlp),
                };
                let name = role.hf_prefix(i);
                t.insert(format!("{name}.weight"), cols(&rows(w, out_idx)?, in_idx)?);
                if let Some(b) = &lin.bias {
                    t.insert(format!("{name}.bias"), rows(b, out_idx)?);
                }
            }
        }
        t.insert("model.norm.weight".into(), norm(&model.norm.weight)?);
        if let Some(head) = &model.lm_head {
            t.insert("lm_head.weight".into(), cols(head.weight(), &hidden)?);
        }
        Llama::from_tensors(cfg, t, Path::new("<structured pruning>"))
    }
}
