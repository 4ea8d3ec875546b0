//! Shared helpers of the engine tests: small configs, seeded parameters, the candle-autograd
//! reference (the composed `slm_model::Llama`) and gradient comparison.
#![allow(dead_code)]

use candle_core::{Device, Tensor, Var, D};
use slm_model::{Llama, LlamaConfig};
use std::collections::HashMap;
use std::path::Path;

/// A small config from the 260k preset with the given sizes.
#[allow(clippy::too_many_arguments)]
pub fn config(
    vocab: usize,
    hidden: usize,
    inter: usize,
    layers: usize,
    heads: usize,
    kv_heads: usize,
    head_dim: usize,
    tied: bool,
    qkv_bias: bool,
) -> LlamaConfig {
    let mut c = slm_model::preset("260k").unwrap();
    c.vocab_size = vocab;
    c.hidden_size = hidden;
    c.intermediate_size = inter;
    c.num_hidden_layers = layers;
    c.num_attention_heads = heads;
    c.num_key_value_heads = kv_heads;
    c.head_dim = head_dim;
    c.tie_word_embeddings = tied;
    c.qkv_bias = qkv_bias;
    c.max_position_embeddings = 128;
    c.validate().unwrap();
    c
}

/// Deterministic values in [-1, 1).
pub struct Lcg(u64);

impl Lcg {
    pub fn new(seed: u64) -> Self {
        Self(seed.wrapping_mul(0x9E37_79B9_7F4A_7C15) ^ 0x2545_F491_4F6C_DD1D)
    }
    pub fn next_f32(&mut self) -> f32 {
        self.0 = self
            .0
            .wrapping_mul(6364136223846793005)
            .wrapping_add(1442695040888963407);
        ((self.0 >> 40) as f32 / (1u64 << 24) as f32) * 2.0 - 1.0
    }
    pub fn below(&mut self, n: usize) -> u32 {
        self.0 = self
            .0
            .wrapping_mul(6364136223846793005)
            .wrapping_add(1442695040888963407);
        ((self.0 >> 33) % n as u64) as u32
    }
}

/// `slm_model::llama::random_tensors`, with matrices scaled ×`gain` (so attention is far
/// from uniform) and the norm gains and biases perturbed (so they are not 1 and 0 and
/// their gradients are exercised).
pub fn random_tensors(cfg: &LlamaConfig, seed: u64, gain: f32) -> HashMap<String, Tensor> {
    let base = slm_model::llama::random_tensors(cfg, seed, &Device::Cpu).unwrap();
    let mut rng = Lcg::new(seed + 17);
    // In name order: the draws must not depend on the map's iteration order.
    let mut base: Vec<(String, Tensor)> = base.into_iter().collect();
    base.sort_by(|a, b| a.0.cmp(&b.0));
    base.into_iter()
        .map(|(name, t)| {
            let shape = t.dims().to_vec();
            let v: Vec<f32> = t.flatten_all().unwrap().to_vec1().unwrap();
            let v: Vec<f32> = if name.ends_with("norm.weight") {
                v.iter().map(|x| x + 0.3 * rng.next_f32()).collect()
            } else if name.ends_with(".bias") {
                v.iter().map(|_| 0.2 * rng.next_f32()).collect()
            } else {
                v.iter().map(|x| x * gain).collect()
            };
            (name, Tensor::from_vec(v, shape, &Device::Cpu).unwrap())
        })
        .collect()
}

/// Loss and gradients from candle autograd through the composed model: logits → composed
/// log-softmax → mean negative log-likelihood over non-ignored targets → backward.
pub fn candle_reference(
    cfg: &LlamaConfig,
    tensors: &HashMap<String, Tensor>,
    inputs: &[u32],
    targets: &[u32],
    batch: usize,
    seq: usize,
) -> (f32, HashMap<String, Vec<f32>>) {
    let vars: HashMap<String, Var> = tensors
        .iter()
        .map(|(n, t)| (n.clone(), Var::from_tensor(t).unwrap()))
        .collect();
    let model = Llama::from_tensors(
        cfg.clone(),
        vars.iter()
            .map(|(n, v)| (n.clone(), v.as_tensor().clone()))
            .collect(),
        Path::new("<vars>"),
    )
    .unwrap();
    let ids = Tensor::from_slice(inputs, (batch, seq), &Device::Cpu).unwrap();
    let logits = model
        .forward(&ids, None)
        .unwrap()
        .reshape((batch * seq, cfg.vocab_size))
        .unwrap();
    let logp = candle_nn::ops::log_softmax(&logits, D::Minus1).unwrap();
    let rows: Vec<u32> = (0..targets.len() as u32)
        .filter(|&r| targets[r as usize] != u32::MAX)
        .collect();
    let tgt: Vec<u32> = rows.iter().map(|&r| targets[r as usize]).collect();
    let rows = Tensor::from_slice(&rows, rows.len(), &Device::Cpu).unwrap();
    let tgt = Tensor::from_slice(&tgt, (tgt.len(), 1), &Device::Cpu).unwrap();
    let picked = logp
        .index_select(&rows, 0)
        .unwrap()
        .gather(&tgt, 1)
        .unwrap();
    let loss = (picked.sum_all().unwrap().neg().unwrap() / tgt.dims()[0] as f64).unwrap();
    let grads = loss.backward().unwrap();
    let out = vars
        .iter()
        .map(|(n, v)| {
            let g = grads
                .get(v.as_tensor())
                .unwrap_or_else(|| panic!("candle autograd gave no gradient for {n}"));
            (
                n.clone(),
                g.flatten_all().unwrap().to_vec1::<f32>().unwrap(),
            )
        })
        .collect();
    (loss.to_scalar::<f32>().unwrap(), out)
}

/// max |a − b| / max |b|.
pub fn rel_max_diff(a: &[f32], b: &[f32]) -> f32 {
    assert_eq!(a.len(), b.len());
    let scale = b.iter().fold(0f32, |m, x| m.max(x.abs())).max(1e-30);
    a.iter().zip(b).fold(0f32, |m, (x, y)| m.max((x - y).abs())) / scale
}

/// Random [batch, seq] inputs and next-token targets; every `ignore_every`-th target is
/// ignored (0 = none).
pub fn batch(
    vocab: usize,
    batch: usize,
    seq: usize,
    ignore_every: usize,
    seed: u64,
) -> (Vec<u32>, Vec<u32>) {
    let mut rng = Lcg::new(seed);
    let n = batch * seq;
    let inputs: Vec<u32> = (0..n).map(|_| rng.below(vocab)).collect();
    let targets = (0..n)
        .map(|i| {
            if ignore_every > 0 && i % ignore_every == ignore_every - 1 {
                u32::MAX
            } else {
                rng.below(vocab)
            }
        })
        .collect();
    (inputs, targets)
}
