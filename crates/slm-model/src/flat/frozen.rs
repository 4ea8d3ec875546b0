//! A frozen base whose block linears are held as quantised blocks (QLoRA-style training).
//!
//! When only adapters train, the base's block linears (q|k|v, o, gate|up, down: ~80% of a
//! small model's parameters, nearly all of a large one's) are never updated, so they can stay
//! as Q8_0 or Q4_0 blocks (8.5 or 4.5 bits per weight instead of 32). The whole-model pass
//! dequantises one block's linears at a time into a scratch buffer of one block's size
//! ([`FrozenLinears::dequantize_block`]) and runs the ordinary f32 block on them; the backward
//! does the same for the input gradients. What is computed is exactly what the f32 engine
//! computes on the dequantised weights — only what is *stored* differs.
//!
//! Embeddings, norms, biases and the output head stay f32 in the flat buffer (the layout
//! marks the quantised linears with zero length, see [`super::Layout::with_frozen_linears`]).

use super::layout::{BlockWeights, LayerRanges};
use crate::config::LlamaConfig;
use candle_core::Tensor;
use slm_core::{Error, Result};
use slm_kernels::quant::{BlockKind, QuantMatrix, QK};
use std::collections::HashMap;
use std::ops::Range;

/// The four packs of one block, in the order [`LayerRanges`] names them.
const PACKS: [&str; 4] = ["q|k|v", "o", "gate|up", "down"];

/// One block's linears as quantised blocks: q|k|v `[q+2kv, d]`, o `[d, q]`, gate|up
/// `[2·inter, d]`, down `[d, inter]` (rows quantised one after another).
#[derive(Debug, Clone)]
struct BlockLinears {
    packs: [QuantMatrix; 4],
}

/// The quantised block linears of a whole model (see the module documentation).
#[derive(Debug, Clone)]
pub struct FrozenLinears {
    kind: BlockKind,
    layers: Vec<BlockLinears>,
    /// Where each pack lies in a dequantised block (one scratch buffer: q|k|v, o, gate|up,
    /// down back to back).
    ranges: [Range<usize>; 4],
    /// Each linear's (block, pack, elements within the pack).
    by_name: HashMap<String, (usize, usize, Range<usize>)>,
}

/// The names of the tensors in each pack of block `l`, in row order.
fn pack_names(l: usize) -> [Vec<String>; 4] {
    let p = |s: &str| format!("model.layers.{l}.{s}.weight");
    [
        vec![
            p("self_attn.q_proj"),
            p("self_attn.k_proj"),
            p("self_attn.v_proj"),
        ],
        vec![p("self_attn.o_proj")],
        vec![p("mlp.gate_proj"), p("mlp.up_proj")],
        vec![p("mlp.down_proj")],
    ]
}

impl FrozenLinears {
    /// Quantises every block's linears of Hugging Face-named `tensors` (already checked
    /// against `cfg`) to `kind` blocks. Each linear's input width must be a multiple of 32.
    pub fn quantize(
        cfg: &LlamaConfig,
        tensors: &HashMap<String, Tensor>,
        kind: BlockKind,
    ) -> Result<Self> {
        for (what, width) in [
            ("hidden_size", cfg.hidden_size),
            ("heads × head_dim", cfg.q_dim()),
            ("intermediate_size", cfg.intermediate_size),
        ] {
            if width % QK != 0 {
                return Err(Error::invalid(format!(
                    "a quantised base needs every linear's input width to be a multiple of {QK}: \
                     {what} is {width}; train LoRA on the f32 base instead"
                )));
            }
        }
        let (d, q, w, inter) = (
            cfg.hidden_size,
            cfg.q_dim(),
            cfg.q_dim() + 2 * cfg.kv_dim(),
            cfg.intermediate_size,
        );
        let sizes = [w * d, d * q, 2 * inter * d, d * inter];
        let mut at = 0;
        let ranges = sizes.map(|s| {
            at += s;
            at - s..at
        });
        let mut layers = Vec::with_capacity(cfg.num_hidden_layers);
        let mut by_name = HashMap::new();
        for l in 0..cfg.num_hidden_layers {
            let mut packs = Vec::with_capacity(4);
            for (pack, (names, size)) in pack_names(l).into_iter().zip(sizes).enumerate() {
                let mut values = Vec::with_capacity(size);
                for name in names {
                    let t = tensors.get(&name).ok_or_else(|| Error::MissingTensor {
                        path: "<frozen linears>".into(),
                        tensor: name.clone(),
                    })?;
                    let start = values.len();
                    values.extend(super::layout::tensor_values(t)?);
                    by_name.insert(name, (l, pack, start..values.len()));
                }
                if values.len() != size {
                    return Err(Error::invalid(format!(
                        "block {l}: {} values for a pack of {size} (internal error)",
                        values.len()
                    )));
                }
                packs.push(QuantMatrix::quantize(kind, &values)?);
            }
            let packs: [QuantMatrix; 4] = packs
                .try_into()
                .map_err(|_| Error::msg("four packs per block (internal error)"))?;
            layers.push(BlockLinears { packs });
        }
        Ok(Self {
            kind,
            layers,
            ranges,
            by_name,
        })
    }

    /// The block format the linears are held in.
    pub fn kind(&self) -> BlockKind {
        self.kind
    }

    /// Bytes of quantised weight data.
    pub fn bytes(&self) -> usize {
        self.layers
            .iter()
            .flat_map(|b| b.packs.iter())
            .map(QuantMatrix::bytes)
            .sum()
    }

    /// Elements of one dequantised block (the scratch [`Self::dequantize_block`] fills).
    pub fn block_len(&self) -> usize {
        self.ranges[3].end
    }

    /// Dequantises block `l`'s linears into `scratch` (grown to [`Self::block_len`]) and
    /// returns the block's weights: the linears from `scratch`, the norms and biases from
    /// `params` (indexed by `ranges`, whose linear ranges are empty).
    pub fn dequantize_block<'a>(
        &self,
        l: usize,
        ranges: &LayerRanges,
        params: &'a [f32],
        scratch: &'a mut Vec<f32>,
    ) -> Result<BlockWeights<'a>> {
        let block = self
            .layers
            .get(l)
            .ok_or_else(|| Error::invalid(format!("block {l} does not exist (internal error)")))?;
        if scratch.len() < self.block_len() {
            scratch.resize(self.block_len(), 0.0);
        }
        for ((m, r), name) in block.packs.iter().zip(&self.ranges).zip(PACKS) {
            m.dequantize_into(&mut scratch[r.clone()])
                .map_err(|e| Error::msg(format!("block {l} {name}: {e} (internal error)")))?;
        }
        let s: &'a [f32] = scratch;
        Ok(BlockWeights {
            norm1: &params[ranges.norm1.clone()],
            wqkv: &s[self.ranges[0].clone()],
            bqkv: ranges.bqkv.clone().map(|b| &params[b]),
            wo: &s[self.ranges[1].clone()],
            norm2: &params[ranges.norm2.clone()],
            wgu: &s[self.ranges[2].clone()],
            wdown: &s[self.ranges[3].clone()],
        })
    }

    /// The dequantised values of the linear `name` (`model.layers.L.….weight`), or `None`
    /// when it is not one of the frozen linears.
    pub fn dequantize_tensor(&self, name: &str) -> Option<Vec<f32>> {
        let &(l, pack, ref within) = self.by_name.get(name)?;
        let all = self.layers[l].packs[pack].dequantize();
        Some(all[within.clone()].to_vec())
    }
}
