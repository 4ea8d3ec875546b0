//! Where every parameter lives in the engine's flat parameter and gradient buffers.
//!
//! Parameters are packed back to back in *storage order*, chosen so that matrices applied to
//! the same input are adjacent and run as one matrix product: per block, q|k|v weights form
//! one `[(h+2g)·e, d]` matrix (and their biases one vector), gate|up one `[2·inter, d]`
//! matrix. Storage order is not the canonical checkpoint order of
//! `slm_model::weights::expected_shapes`; names, not positions, identify parameters.
//! With tied embeddings the output projection is the embedding table (no separate entry).

use slm_core::ParamRole;
use slm_model::LlamaConfig;
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
#[derive(Debug, Clone)]
pub(crate) struct LayerRanges {
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

#[derive(Debug, Clone)]
pub(crate) struct Layout {
    pub params: Vec<ParamBuf>,
    pub by_name: HashMap<String, usize>,
    pub layers: Vec<LayerRanges>,
    /// `[vocab, d]`
    pub embed: Range<usize>,
    pub norm_f: Range<usize>,
    /// `[vocab, d]`; equal to `embed` when tied.
    pub lm_head: Range<usize>,
    pub total: usize,
}

impl Layout {
    pub fn new(cfg: &LlamaConfig) -> Self {
        let mut params: Vec<ParamBuf> = Vec::new();
        let mut push = |name: String, shape: Vec<usize>| -> Range<usize> {
            let offset = params.last().map_or(0, |p| p.offset + p.len);
            let len = shape.iter().product();
            params.push(ParamBuf {
                name,
                shape,
                offset,
                len,
            });
            offset..offset + len
        };
        let join = |a: &Range<usize>, b: &Range<usize>| a.start..b.end;
        let (d, v, inter) = (cfg.hidden_size, cfg.vocab_size, cfg.intermediate_size);
        let (q, kv) = (cfg.q_dim(), cfg.kv_dim());
        let embed = push("model.embed_tokens.weight".into(), vec![v, d]);
        let mut layers = Vec::with_capacity(cfg.num_hidden_layers);
        for l in 0..cfg.num_hidden_layers {
            let p = format!("model.layers.{l}");
            let norm1 = push(format!("{p}.input_layernorm.weight"), vec![d]);
            let wq = push(format!("{p}.self_attn.q_proj.weight"), vec![q, d]);
            push(format!("{p}.self_attn.k_proj.weight"), vec![kv, d]);
            let wv = push(format!("{p}.self_attn.v_proj.weight"), vec![kv, d]);
            let bqkv = if cfg.qkv_bias {
                let bq = push(format!("{p}.self_attn.q_proj.bias"), vec![q]);
                push(format!("{p}.self_attn.k_proj.bias"), vec![kv]);
                let bv = push(format!("{p}.self_attn.v_proj.bias"), vec![kv]);
                Some(join(&bq, &bv))
            } else {
                None
            };
            let wo = push(format!("{p}.self_attn.o_proj.weight"), vec![d, q]);
            let norm2 = push(format!("{p}.post_attention_layernorm.weight"), vec![d]);
            let wg = push(format!("{p}.mlp.gate_proj.weight"), vec![inter, d]);
            let wu = push(format!("{p}.mlp.up_proj.weight"), vec![inter, d]);
            let wdown = push(format!("{p}.mlp.down_proj.weight"), vec![d, inter]);
            layers.push(LayerRanges {
                norm1,
                wqkv: join(&wq, &wv),
                bqkv,
                wo,
                norm2,
                wgu: join(&wg, &wu),
                wdown,
            });
        }
        let norm_f = push("model.norm.weight".into(), vec![d]);
        let lm_head = if cfg.tie_word_embeddings {
            embed.clone()
        } else {
            push("lm_head.weight".into(), vec![v, d])
        };
        let total = params.last().map_or(0, |p| p.offset + p.len);
        let by_name = params
            .iter()
            .enumerate()
            .map(|(i, p)| (p.name.clone(), i))
            .collect();
        Self {
            params,
            by_name,
            layers,
            embed,
            norm_f,
            lm_head,
            total,
        }
    }

    pub fn get(&self, name: &str) -> Option<&ParamBuf> {
        self.by_name.get(name).map(|&i| &self.params[i])
    }
}
