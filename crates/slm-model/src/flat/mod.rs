//! The one forward for whole-sequence work: a Llama-family decoder over flat `f32` buffers.
//!
//! Training (which adds the saved-activation backward in `slm-train`), evaluation
//! (perplexity, agreement), teacher scoring, on-policy sampling and calibration (pruning,
//! GPTQ) all run this forward; it computes exactly what the composed candle model
//! [`crate::Llama`] computes (same parameters, names and RoPE tables) through the fused
//! kernels of `slm-kernels` — gemm matmuls with residual adds fused, one matmul for q|k|v
//! and one for gate|up. The candle model is the reference it is tested against. Token-by-token
//! decoding with a KV cache and quantised or sparse weights is the decode engine's work
//! (`slm-infer`), llama2.c's split.
//!
//! - [`layout`]: where each parameter lives in the flat buffer; the one q|k|v and gate|up
//!   packing.
//! - [`forward`]: the block, the whole-model pass over saved activations, the head, and a
//!   one-block runner with per-linear input callbacks for calibration.
//!
//! # Threads
//! All work runs on the current rayon pool (the global one, sized by `RAYON_NUM_THREADS`,
//! unless the caller runs inside another pool); matmuls get the same thread count.

pub mod forward;
pub mod frozen;
pub mod layout;

pub use forward::{
    block_forward, forward, forward_block, logits, Activations, AttnSave, BlockActs, BlockScratch,
    Dims, InputSlot, LinearDelta, OnInput, Saved,
};
pub use frozen::FrozenLinears;
pub use layout::{BlockParams, BlockWeights, LayerRanges, Layout, ParamBuf};

use crate::config::LlamaConfig;
use crate::llama::Llama;
use crate::rope::RopeTables;
use crate::weights::{check_tensors, expected_shapes};
use candle_core::{Device, Tensor};
use slm_core::{Error, Result};
use slm_kernels::quant::BlockKind;
use slm_kernels::segments::check_starts;
use std::collections::HashMap;
use std::path::Path;

/// Runs `f` on a thread of the current rayon pool, so the kernels' parallel loops fork from
/// inside the pool instead of waking it from outside at every call.
pub fn on_pool<R: Send>(f: impl FnOnce() -> R + Send) -> R {
    rayon::scope(|_| f())
}

/// A model's parameters packed in one flat buffer, with its layout and RoPE tables.
#[derive(Debug, Clone)]
pub struct FlatWeights {
    pub config: LlamaConfig,
    pub layout: Layout,
    /// All parameters, packed in storage order (see [`layout`]); without the block linears
    /// when `frozen` holds them.
    pub params: Vec<f32>,
    pub rope: RopeTables,
    /// The block linears as quantised blocks (a frozen base for adapters; see [`frozen`]).
    pub frozen: Option<FrozenLinears>,
}

impl FlatWeights {
    /// Packs Hugging Face-named tensors (checked against the config like every loader: each
    /// name present, each shape right).
    pub fn new(config: &LlamaConfig, tensors: &HashMap<String, Tensor>) -> Result<Self> {
        Self::pack(config, tensors, None)
    }

    /// Packs Hugging Face-named tensors with the block linears quantised to `kind` blocks
    /// (a frozen base: nothing may update them; see [`frozen`]). Passes compute what the f32
    /// weights would compute on the dequantised values.
    pub fn with_frozen_linears(
        config: &LlamaConfig,
        tensors: &HashMap<String, Tensor>,
        kind: BlockKind,
    ) -> Result<Self> {
        Self::pack(config, tensors, Some(kind))
    }

    fn pack(
        config: &LlamaConfig,
        tensors: &HashMap<String, Tensor>,
        frozen: Option<BlockKind>,
    ) -> Result<Self> {
        config.validate()?;
        check_tensors(config, tensors, Path::new("<flat weights>"))?;
        let (layout, frozen) = match frozen {
            Some(kind) => (
                Layout::with_frozen_linears(config),
                Some(FrozenLinears::quantize(config, tensors, kind)?),
            ),
            None => (Layout::new(config), None),
        };
        let params = layout.pack(tensors)?;
        Ok(Self {
            config: config.clone(),
            layout,
            params,
            rope: RopeTables::new(config),
            frozen,
        })
    }

    /// Block `l`'s weights: slices of the flat buffer, or with quantised linears the
    /// linears dequantised into `scratch` (one block's worth, reused block after block).
    pub fn block<'a>(&'a self, l: usize, scratch: &'a mut Vec<f32>) -> Result<BlockWeights<'a>> {
        let r = self.layout.layers.get(l).ok_or_else(|| {
            Error::invalid(format!(
                "block {l} does not exist: the model has {} blocks",
                self.layout.layers.len()
            ))
        })?;
        match &self.frozen {
            Some(f) => f.dequantize_block(l, r, &self.params, scratch),
            None => Ok(r.weights(&self.params)),
        }
    }

    /// Bytes held by the weights (the flat buffer and any quantised linears).
    pub fn bytes(&self) -> usize {
        4 * self.params.len() + self.frozen.as_ref().map_or(0, FrozenLinears::bytes)
    }

    /// Packs a candle model's parameters.
    pub fn from_llama(model: &Llama) -> Result<Self> {
        let tensors: HashMap<String, Tensor> = model.tensors().into_iter().collect();
        Self::new(&model.config, &tensors)
    }

    /// `flat` (this layout: the parameters, or gradients) as tensors on the CPU, in
    /// canonical checkpoint order ([`expected_shapes`]). Quantised linears are not in `flat`
    /// (see [`FlatWeights::export_params`]): asking for them is an error.
    pub fn export(&self, flat: &[f32]) -> Result<Vec<(String, Tensor)>> {
        self.export_with(flat, false)
    }

    /// The parameters as tensors in canonical checkpoint order, quantised linears
    /// dequantised.
    pub fn export_params(&self) -> Result<Vec<(String, Tensor)>> {
        self.export_with(&self.params, true)
    }

    fn export_with(&self, flat: &[f32], dequantize: bool) -> Result<Vec<(String, Tensor)>> {
        if flat.len() != self.layout.total {
            return Err(Error::invalid(format!(
                "{} values for a layout of {} (no gradients are kept for a frozen base)",
                flat.len(),
                self.layout.total
            )));
        }
        expected_shapes(&self.config)
            .into_iter()
            .map(|(name, shape)| {
                let p = self.layout.get(&name).ok_or_else(|| {
                    Error::msg(format!("the flat layout has no `{name}` (internal error)"))
                })?;
                let t = match (&self.frozen, p.len) {
                    (Some(f), 0) if dequantize => {
                        let values = f.dequantize_tensor(&name).ok_or_else(|| {
                            Error::msg(format!("`{name}` is neither packed nor quantised"))
                        })?;
                        Tensor::from_vec(values, shape, &Device::Cpu)?
                    }
                    (Some(_), 0) => {
                        return Err(Error::invalid(format!(
                            "`{name}` is held quantised (a frozen base): it has no flat values"
                        )))
                    }
                    _ => Tensor::from_slice(&flat[p.range()], shape, &Device::Cpu)?,
                };
                Ok((name, t))
            })
            .collect()
    }

    /// A candle model with these parameters (quantised linears dequantised).
    pub fn to_llama(&self) -> Result<Llama> {
        let tensors = self.export_params()?.into_iter().collect();
        Llama::from_tensors(self.config.clone(), tensors, Path::new("<flat weights>"))
    }

    /// The values of parameter `name` (`None` for one held quantised).
    pub fn param(&self, name: &str) -> Option<&[f32]> {
        self.layout
            .get(name)
            .filter(|p| p.len > 0 || !self.layout.frozen_linears)
            .map(|p| &self.params[p.range()])
    }

    /// The values of parameter `name`, mutably (`None` for one held quantised).
    pub fn param_mut(&mut self, name: &str) -> Option<&mut [f32]> {
        let r = self
            .layout
            .get(name)
            .filter(|p| p.len > 0 || !self.layout.frozen_linears)?
            .range();
        Some(&mut self.params[r])
    }

    /// Checks token ids for a [batch, seq] pass: positive sizes, within the context, every
    /// id inside the vocabulary.
    pub fn check_ids(&self, ids: &[u32], batch: usize, seq: usize) -> Result<()> {
        if batch == 0 || seq == 0 {
            return Err(Error::invalid(format!(
                "batch ({batch}) and seq ({seq}) must be positive"
            )));
        }
        if seq > self.config.max_position_embeddings {
            return Err(Error::invalid(format!(
                "seq {seq} is beyond the model context of {} tokens",
                self.config.max_position_embeddings
            )));
        }
        let v = self.config.vocab_size;
        if ids.len() != batch * seq {
            return Err(Error::invalid(format!(
                "{} input ids for batch {batch} × seq {seq}",
                ids.len()
            )));
        }
        if let Some(&bad) = ids.iter().find(|&&t| t as usize >= v) {
            return Err(Error::invalid(format!(
                "input id {bad} is outside the vocabulary of {v}"
            )));
        }
        Ok(())
    }
}

/// The flat forward with its activation buffers: logits and block outputs for whole
/// sequences (evaluation, teacher scoring); `slm-train` builds its engine on the same parts.
#[derive(Debug)]
pub struct FlatModel {
    weights: FlatWeights,
    acts: Activations,
    /// One block's dequantised linears (a quantised frozen base only).
    scratch: Vec<f32>,
    /// The sizes of the last pass, whose activations `acts` holds.
    last: Option<Dims>,
}

impl FlatModel {
    pub fn new(weights: FlatWeights) -> Self {
        Self {
            weights,
            acts: Activations::default(),
            scratch: Vec::new(),
            last: None,
        }
    }

    /// Packs a candle model's parameters.
    pub fn from_llama(model: &Llama) -> Result<Self> {
        Ok(Self::new(FlatWeights::from_llama(model)?))
    }

    pub fn config(&self) -> &LlamaConfig {
        &self.weights.config
    }

    pub fn weights(&self) -> &FlatWeights {
        &self.weights
    }

    /// The weights, mutably (a later pass sees the change).
    pub fn weights_mut(&mut self) -> &mut FlatWeights {
        &mut self.weights
    }

    /// The weights and the activations of the last pass, for a backward written on top.
    pub fn parts(&mut self) -> (&FlatWeights, &mut Activations) {
        (&self.weights, &mut self.acts)
    }

    /// Bytes held by activation buffers (grows with the largest batch·seq used).
    pub fn activation_bytes(&self) -> usize {
        self.acts.bytes()
    }

    /// Runs the forward for `ids` [batch, seq] (checked), keeping what `save` asks for, and
    /// returns the pass sizes. Runs on the current rayon pool.
    pub fn forward(&mut self, ids: &[u32], batch: usize, seq: usize, save: Saved) -> Result<Dims> {
        self.forward_with_starts(ids, None, batch, seq, save)
    }

    /// [`FlatModel::forward`] over packed sequences: `starts` [batch, seq] (checked; see
    /// `slm_kernels::segments`) gives where each position's example begins within its row,
    /// and each example is computed as if it ran alone (attention within it, RoPE positions
    /// from its start). `None` is [`FlatModel::forward`]. The starts stay with the
    /// activations ([`Activations::starts`]) for a backward.
    pub fn forward_with_starts(
        &mut self,
        ids: &[u32],
        starts: Option<&[u32]>,
        batch: usize,
        seq: usize,
        save: Saved,
    ) -> Result<Dims> {
        self.forward_with(ids, starts, batch, seq, save, None)
    }

    /// [`FlatModel::forward_with_starts`] with a term added to the output of every block's
    /// linears (`delta`, e.g. LoRA adapters; see [`LinearDelta`]).
    pub fn forward_with(
        &mut self,
        ids: &[u32],
        starts: Option<&[u32]>,
        batch: usize,
        seq: usize,
        save: Saved,
        delta: Option<&mut dyn LinearDelta>,
    ) -> Result<Dims> {
        self.weights.check_ids(ids, batch, seq)?;
        if let Some(st) = starts {
            check_starts(st, batch, seq)?;
        }
        let k = Dims::new(&self.weights.config, batch, seq, save);
        self.acts.ensure(&k);
        self.last = Some(k);
        let Self {
            weights,
            acts,
            scratch,
            ..
        } = self;
        on_pool(|| forward(weights, scratch, acts, ids, starts, &k, delta))?;
        Ok(k)
    }

    /// Logits [batch, seq, vocab] (row-major) for `ids` [batch, seq].
    pub fn logits(&mut self, ids: &[u32], batch: usize, seq: usize) -> Result<Vec<f32>> {
        let k = self.forward(ids, batch, seq, Saved::Outputs)?;
        let mut out = vec![0f32; k.n * k.vocab];
        let Self { weights, acts, .. } = self;
        on_pool(|| logits(&weights.layout, &weights.params, acts, &mut out, &k))?;
        Ok(out)
    }

    /// The output [batch·seq, hidden] of block `layer` in the last pass: a teacher's hidden
    /// states for hidden-state distillation.
    pub fn block_output(&self, layer: usize) -> Result<&[f32]> {
        let layers = self.weights.config.num_hidden_layers;
        if layer >= layers {
            return Err(Error::invalid(format!(
                "block {layer} does not exist: the model has {layers} blocks"
            )));
        }
        let k = self
            .last
            .ok_or_else(|| Error::invalid("no forward pass has run yet"))?;
        let nd = k.n * k.d;
        Ok(forward::slot(&self.acts.resid, 2 * layer + 2, nd))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use candle_core::Device;

    fn tiny(kv_heads: usize, bias: bool, tied: bool) -> LlamaConfig {
        let mut cfg = crate::preset("260k").unwrap();
        cfg.vocab_size = 50;
        cfg.hidden_size = 32;
        cfg.num_attention_heads = 4;
        cfg.num_key_value_heads = kv_heads;
        cfg.head_dim = 8;
        cfg.intermediate_size = 40;
        cfg.num_hidden_layers = 2;
        cfg.qkv_bias = bias;
        cfg.tie_word_embeddings = tied;
        cfg.max_position_embeddings = 64;
        cfg
    }

    fn max_diff(a: &[f32], b: &[f32]) -> f32 {
        assert_eq!(a.len(), b.len());
        a.iter()
            .zip(b)
            .map(|(x, y)| (x - y).abs())
            .fold(0f32, f32::max)
    }

    #[test]
    fn logits_match_the_candle_model() {
        for (kv, bias, tied) in [(2, false, true), (4, true, false)] {
            let cfg = tiny(kv, bias, tied);
            let model = Llama::random(cfg.clone(), 7, &Device::Cpu).unwrap();
            let (b, t) = (2, 13);
            let ids: Vec<u32> = (0..b * t).map(|i| (i * 11 % 50) as u32).collect();
            let input = Tensor::from_vec(ids.clone(), (b, t), &Device::Cpu).unwrap();
            let reference: Vec<f32> = model
                .forward(&input, None)
                .unwrap()
                .flatten_all()
                .unwrap()
                .to_vec1()
                .unwrap();
            let mut flat = FlatModel::from_llama(&model).unwrap();
            let got = flat.logits(&ids, b, t).unwrap();
            let worst = max_diff(&got, &reference);
            assert!(worst < 1e-4, "kv {kv} bias {bias}: max |diff| {worst}");
            // Keeping every layer (the training pass) gives the same block outputs.
            let out1 = flat.block_output(1).unwrap().to_vec();
            flat.forward(&ids, b, t, Saved::ForBackward { probs: true })
                .unwrap();
            assert_eq!(flat.block_output(1).unwrap(), &out1[..]);
            assert!(flat.block_output(2).is_err());
        }
    }

    /// A packed batch (examples back to back, padding after them) gives every example the
    /// block outputs it gets alone, whatever the forward saves; no starts and one example
    /// per row are the same pass bit for bit.
    #[test]
    fn packed_rows_equal_examples_alone() {
        let cfg = tiny(2, true, true);
        let model = Llama::random(cfg.clone(), 3, &Device::Cpu).unwrap();
        let mut flat = FlatModel::from_llama(&model).unwrap();
        let (b, t, d) = (2, 19, cfg.hidden_size);
        let ids: Vec<u32> = (0..b * t).map(|i| (i * 13 % 50) as u32).collect();
        let rows = [vec![5usize, 1, 9], vec![19]];
        let mut starts = Vec::new();
        for lengths in &rows {
            starts.extend(slm_kernels::segments::row_starts(lengths, t).unwrap());
        }
        for save in [
            Saved::Outputs,
            Saved::ForBackward { probs: true },
            Saved::ForBackward { probs: false },
        ] {
            flat.forward_with_starts(&ids, Some(&starts), b, t, save)
                .unwrap();
            let packed = flat.block_output(1).unwrap().to_vec();
            for (row, lengths) in rows.iter().enumerate() {
                let mut at = row * t;
                for &len in lengths {
                    flat.forward(&ids[at..at + len], 1, len, save).unwrap();
                    let alone = flat.block_output(1).unwrap();
                    let worst = max_diff(&packed[at * d..(at + len) * d], alone);
                    assert!(
                        worst < 1e-5,
                        "{save:?}: example at {at}: max |diff| {worst}"
                    );
                    at += len;
                }
            }
        }
        flat.forward(&ids, b, t, Saved::Outputs).unwrap();
        let plain = flat.block_output(1).unwrap().to_vec();
        let zeros = vec![0u32; b * t];
        flat.forward_with_starts(&ids, Some(&zeros), b, t, Saved::Outputs)
            .unwrap();
        assert_eq!(flat.block_output(1).unwrap(), &plain[..]);
        assert!(flat
            .forward_with_starts(&ids, Some(&zeros[1..]), b, t, Saved::Outputs)
            .is_err());
        let mut bad = zeros.clone();
        bad[3] = 2;
        assert!(flat
            .forward_with_starts(&ids, Some(&bad), b, t, Saved::Outputs)
            .is_err());
    }

    #[test]
    fn bad_inputs_are_refused() {
        let model = Llama::random(tiny(2, false, true), 1, &Device::Cpu).unwrap();
        let mut flat = FlatModel::from_llama(&model).unwrap();
        assert!(flat.block_output(0).is_err()); // no pass yet
        assert!(flat.logits(&[1, 2, 3], 1, 2).is_err()); // wrong count
        assert!(flat.logits(&[1, 50], 1, 2).is_err()); // outside the vocabulary
        assert!(flat.logits(&[], 0, 0).is_err());
        assert!(flat.logits(&vec![1; 65], 1, 65).is_err()); // beyond the context
    }

    #[test]
    fn one_block_runner_matches_the_candle_block_and_reports_every_input() {
        for (kv, bias) in [(2usize, false), (4, true)] {
            let cfg = tiny(kv, bias, true);
            let model = Llama::random(cfg.clone(), 5, &Device::Cpu).unwrap();
            let (b, t) = (3, 11);
            let ids: Vec<u32> = (0..b * t).map(|i| (i * 7 % 50) as u32).collect();
            let xt = model
                .embed(&Tensor::from_vec(ids, (b, t), &Device::Cpu).unwrap())
                .unwrap();
            let x: Vec<f32> = xt.flatten_all().unwrap().to_vec1().unwrap();
            let reference: Vec<f32> = model
                .block_forward(1, &xt, 0, None)
                .unwrap()
                .flatten_all()
                .unwrap()
                .to_vec1()
                .unwrap();
            let block = BlockParams::from_llama(&model, 1).unwrap();
            let rope = RopeTables::new(&cfg);
            let mut scratch = BlockScratch::default();
            let mut out = vec![0f32; x.len()];
            let mut seen = Vec::new();
            let mut record = |s: InputSlot, v: &[f32], rows: usize| {
                assert_eq!(v.len(), rows * s.width(&cfg));
                seen.push(s);
                Ok(())
            };
            scratch
                .run(
                    &cfg,
                    &block.weights(),
                    &rope,
                    &x,
                    b,
                    t,
                    &mut out,
                    Some(&mut record),
                )
                .unwrap();
            let worst = max_diff(&out, &reference);
            assert!(worst < 1e-4, "kv {kv}: max |diff| {worst}");
            assert_eq!(seen, InputSlot::ALL.to_vec());
            assert!(scratch
                .run(&cfg, &block.weights(), &rope, &x[1..], b, t, &mut out, None)
                .is_err());
            assert!(BlockParams::from_llama(&model, 2).is_err());
        }
    }
}
