//! Where every parameter lives in a flat `f32` parameter buffer, and the one packing of a
//! model's tensors into it.
//!
//! Parameters are packed back to back in *storage order*, chosen so that matrices applied to
//! the same input are adjacent and run as one matrix product: per block, q|k|v weights form
//! one `[(h+2g)·e, d]` matrix (and their biases one vector), gate|up one `[2·inter, d]`
//! matrix. Storage order is not the canonical checkpoint order of
//! [`crate::weights::expected_shapes`]; names, not positions, identify parameters.
//! With tied embeddings the output projection is the embedding table (no separate entry).
//!
//! The whole-model [`Layout`] and the one-block [`BlockParams`] (calibration, the decode
//! engine's packing) are built by the same [`push_block`], so the order is written once.

use crate::config::LlamaConfig;
use crate::llama::Llama;
use candle_core::{DType, Tensor};
use slm_core::{Error, ParamRole, Result};
use std::collections::HashMap;
use std::ops::Range;

/// One named parameter tensor inside the flat buffers.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ParamBuf {
    /// Hugging Face name, e.g. `model.layers.0.self_attn.q_proj.weight`.
    pub name: String,
    /// Shape as in the checkpoint (`[out, in]` for linear weights).
    pub shape: Vec<usize>,
    /// First element in the flat parameter (and gradient) buffer.
    pub offset: usize,
    /// Number of elements.
    pub len: usize,
}

impl ParamBuf {
    /// The elements of this parameter in the flat buffers.
    pub fn range(&self) -> Range<usize> {
        self.offset..self.offset + self.len
    }

    /// True for 2-D tensors (embedding, projections, lm_head): the ones that usually get
    /// weight decay.
    pub fn is_matrix(&self) -> bool {
        self.shape.len() == 2
    }

    /// What the tensor does (embedding, a linear of block l, a norm...).
    pub fn role(&self) -> Option<ParamRole> {
        ParamRole::of(&self.name)
    }
}

/// Ranges of one decoder block's parameters.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LayerRanges {
    pub norm1: Range<usize>,
    /// q|k|v weights, `[(h+2g)·e, d]`.
    pub wqkv: Range<usize>,
    /// q|k|v biases, `[(h+2g)·e]`.
    pub bqkv: Option<Range<usize>>,
    /// `[d, h·e]`
    pub wo: Range<usize>,
    pub norm2: Range<usize>,
    /// gate|up weights, `[2·inter, d]`.
    pub wgu: Range<usize>,
    /// `[d, inter]`
    pub wdown: Range<usize>,
}

impl LayerRanges {
    /// This block's weights inside `params` (the buffer the ranges index).
    pub fn weights<'a>(&self, params: &'a [f32]) -> BlockWeights<'a> {
        BlockWeights {
            norm1: &params[self.norm1.clone()],
            wqkv: &params[self.wqkv.clone()],
            bqkv: self.bqkv.clone().map(|b| &params[b]),
            wo: &params[self.wo.clone()],
            norm2: &params[self.norm2.clone()],
            wgu: &params[self.wgu.clone()],
            wdown: &params[self.wdown.clone()],
        }
    }
}

/// One block's weights as slices (q|k|v and gate|up stacked by rows), what
/// [`super::block_forward`] reads.
#[derive(Debug, Clone, Copy)]
pub struct BlockWeights<'a> {
    /// [d]
    pub norm1: &'a [f32],
    /// [q + 2·kv, d]
    pub wqkv: &'a [f32],
    /// [q + 2·kv]
    pub bqkv: Option<&'a [f32]>,
    /// [d, q]
    pub wo: &'a [f32],
    /// [d]
    pub norm2: &'a [f32],
    /// [2·inter, d]
    pub wgu: &'a [f32],
    /// [d, inter]
    pub wdown: &'a [f32],
}

/// Appends `(name, shape)` entries back to back.
struct Packer {
    params: Vec<ParamBuf>,
    end: usize,
}

impl Packer {
    fn new(start: usize) -> Self {
        Self {
            params: Vec::new(),
            end: start,
        }
    }

    fn push(&mut self, name: String, shape: Vec<usize>) -> Range<usize> {
        let len = shape.iter().product();
        self.push_len(name, shape, len)
    }

    /// An entry of `len` elements (0 for a tensor held outside the buffer).
    fn push_len(&mut self, name: String, shape: Vec<usize>, len: usize) -> Range<usize> {
        let offset = self.end;
        self.params.push(ParamBuf {
            name,
            shape,
            offset,
            len,
        });
        self.end += len;
        offset..offset + len
    }
}

/// Block `l`'s parameters in storage order: the one definition of the packing. Without
/// `linears`, the block's linear weights get zero-length entries (held outside the buffer,
/// see [`Layout::with_frozen_linears`]).
fn push_block(p: &mut Packer, cfg: &LlamaConfig, l: usize, linears: bool) -> LayerRanges {
    let join = |a: &Range<usize>, b: &Range<usize>| a.start..b.end;
    let (d, inter) = (cfg.hidden_size, cfg.intermediate_size);
    let (q, kv) = (cfg.q_dim(), cfg.kv_dim());
    let pre = format!("model.layers.{l}");
    let linear = |p: &mut Packer, name: String, shape: Vec<usize>| {
        let len = if linears { shape.iter().product() } else { 0 };
        p.push_len(name, shape, len)
    };
    let norm1 = p.push(format!("{pre}.input_layernorm.weight"), vec![d]);
    let wq = linear(p, format!("{pre}.self_attn.q_proj.weight"), vec![q, d]);
    linear(p, format!("{pre}.self_attn.k_proj.weight"), vec![kv, d]);
    let wv = linear(p, format!("{pre}.self_attn.v_proj.weight"), vec![kv, d]);
    let bqkv = cfg.qkv_bias.then(|| {
        let bq = p.push(format!("{pre}.self_attn.q_proj.bias"), vec![q]);
        p.push(format!("{pre}.self_attn.k_proj.bias"), vec![kv]);
        let bv = p.push(format!("{pre}.self_attn.v_proj.bias"), vec![kv]);
        join(&bq, &bv)
    });
    let wo = linear(p, format!("{pre}.self_attn.o_proj.weight"), vec![d, q]);
    let norm2 = p.push(format!("{pre}.post_attention_layernorm.weight"), vec![d]);
    let wg = linear(p, format!("{pre}.mlp.gate_proj.weight"), vec![inter, d]);
    let wu = linear(p, format!("{pre}.mlp.up_proj.weight"), vec![inter, d]);
    let wdown = linear(p, format!("{pre}.mlp.down_proj.weight"), vec![d, inter]);
    LayerRanges {
        norm1,
        wqkv: join(&wq, &wv),
        bqkv,
        wo,
        norm2,
        wgu: join(&wg, &wu),
        wdown,
    }
}

/// Copies a tensor's values as f32 in row-major order.
pub fn tensor_values(t: &Tensor) -> Result<Vec<f32>> {
    Ok(t.to_dtype(DType::F32)?.flatten_all()?.to_vec1::<f32>()?)
}

/// Fills `out` (the buffer `params` index) from Hugging Face-named tensors (entries held
/// outside the buffer are skipped).
fn fill(params: &[ParamBuf], tensors: &HashMap<String, Tensor>, out: &mut [f32]) -> Result<()> {
    for p in params.iter().filter(|p| p.len > 0) {
        let t = tensors.get(&p.name).ok_or_else(|| Error::MissingTensor {
            path: "<flat parameters>".into(),
            tensor: p.name.clone(),
        })?;
        let values = tensor_values(t)?;
        if values.len() != p.len {
            return Err(Error::invalid(format!(
                "`{}` has {} values; the config needs {:?}",
                p.name,
                values.len(),
                p.shape
            )));
        }
        out[p.range()].copy_from_slice(&values);
    }
    Ok(())
}

/// The storage layout of a whole model.
#[derive(Debug, Clone)]
pub struct Layout {
    pub params: Vec<ParamBuf>,
    by_name: HashMap<String, usize>,
    pub layers: Vec<LayerRanges>,
    /// `[vocab, d]`
    pub embed: Range<usize>,
    pub norm_f: Range<usize>,
    /// `[vocab, d]`; equal to `embed` when tied.
    pub lm_head: Range<usize>,
    pub total: usize,
    /// The block linears are held outside the buffer (zero-length entries and ranges).
    pub frozen_linears: bool,
}

impl Layout {
    pub fn new(cfg: &LlamaConfig) -> Self {
        Self::build(cfg, true)
    }

    /// The layout of a model whose block linear weights are held outside the flat buffer
    /// (quantised, `super::FrozenLinears`): their entries keep name and shape but have zero
    /// length, and the blocks' linear ranges are empty. Everything else is as [`Layout::new`].
    pub fn with_frozen_linears(cfg: &LlamaConfig) -> Self {
        Self::build(cfg, false)
    }

    fn build(cfg: &LlamaConfig, linears: bool) -> Self {
        let (d, v) = (cfg.hidden_size, cfg.vocab_size);
        let mut p = Packer::new(0);
        let embed = p.push("model.embed_tokens.weight".into(), vec![v, d]);
        let layers = (0..cfg.num_hidden_layers)
            .map(|l| push_block(&mut p, cfg, l, linears))
            .collect();
        let norm_f = p.push("model.norm.weight".into(), vec![d]);
        let lm_head = if cfg.tie_word_embeddings {
            embed.clone()
        } else {
            p.push("lm_head.weight".into(), vec![v, d])
        };
        let by_name = p
            .params
            .iter()
            .enumerate()
            .map(|(i, b)| (b.name.clone(), i))
            .collect();
        Self {
            params: p.params,
            by_name,
            layers,
            embed,
            norm_f,
            lm_head,
            total: p.end,
            frozen_linears: !linears,
        }
    }

    /// Parameters of the model (a tied embedding once), held in the buffer or not.
    pub fn num_parameters(&self) -> usize {
        self.params
            .iter()
            .map(|p| p.shape.iter().product::<usize>())
            .sum()
    }

    pub fn get(&self, name: &str) -> Option<&ParamBuf> {
        self.by_name.get(name).map(|&i| &self.params[i])
    }

    /// All parameters packed from Hugging Face-named tensors.
    pub fn pack(&self, tensors: &HashMap<String, Tensor>) -> Result<Vec<f32>> {
        let mut out = vec![0f32; self.total];
        fill(&self.params, tensors, &mut out)?;
        Ok(out)
    }
}

/// One block's parameters packed on their own (ranges from 0): calibration's copy of the
/// block it is changing, and the decode engine's packing.
#[derive(Debug, Clone)]
pub struct BlockParams {
    pub ranges: LayerRanges,
    /// The packed values, indexed by `ranges`.
    pub values: Vec<f32>,
}

impl BlockParams {
    /// Block `layer` of Hugging Face-named `tensors`.
    pub fn from_tensors(
        cfg: &LlamaConfig,
        tensors: &HashMap<String, Tensor>,
        layer: usize,
    ) -> Result<Self> {
        let mut p = Packer::new(0);
        let ranges = push_block(&mut p, cfg, layer, true);
        let mut values = vec![0f32; p.end];
        fill(&p.params, tensors, &mut values)?;
        Ok(Self { ranges, values })
    }

    /// Block `layer` of `model`, as it is now (call again after changing the block).
    pub fn from_llama(model: &Llama, layer: usize) -> Result<Self> {
        if layer >= model.config.num_hidden_layers {
            return Err(Error::invalid(format!(
                "block {layer} does not exist: the model has {} blocks",
                model.config.num_hidden_layers
            )));
        }
        let prefix = format!("model.layers.{layer}.");
        let tensors: HashMap<String, Tensor> = model
            .tensors()
            .into_iter()
            .filter(|(n, _)| n.starts_with(&prefix))
            .collect();
        Self::from_tensors(&model.config, &tensors, layer)
    }

    pub fn weights(&self) -> BlockWeights<'_> {
        self.ranges.weights(&self.values)
    }
}
