//! LoRA adapters on the block linears, trained by the engine with the base frozen.
//!
//! A linear `y = x·Wᵀ` with an adapter computes `y = x·Wᵀ + s·(drop(x)·Aᵀ)·Bᵀ` with
//! A [r, in], B [out, r] and `s = α/r` (or `α/√r`, rsLoRA), PEFT's definition. The dense
//! `ΔW = s·B·A` is never formed in a step: the engine runs two thin products per linear.
//!
//! The engine runs q|k|v and gate|up as one product each (see `slm_model::flat::layout`), so
//! adapters are packed the same way: per block and per *pack* (the product reading one
//! [`InputSlot`]), the adapters of its m targeted linears are stacked into one
//! `A [m·r, in]` and one block-structured `B [out, m·r]` whose entries outside each linear's
//! (rows, columns) block are structural zeros, kept zero by masking their gradient. One
//! product then serves all of them:
//!
//! ```text
//! xd = drop(x)                 [n, in]       (x itself without dropout)
//! u  = s · xd·Aᵀ               [n, m·r]      saved for the backward
//! y += u·Bᵀ                    [n, out]      before RoPE for q|k|v
//! backward, given dy [n, out]:
//! dB += dyᵀ·u  (masked)        [out, m·r]
//! du  = s · dy·B               [n, m·r]
//! dA += duᵀ·xd                 [m·r, in]
//! dx += drop'(du·A)            [n, in]       (same mask and 1/(1−p) as the forward)
//! ```
//!
//! Dropout masks come from a hash of (seed, step, layer, pack, element), so the backward
//! regenerates the forward's mask instead of storing it, and a resumed run draws the same
//! masks. The trainable parameters ([`Lora::params`]) are laid out A then B per pack in block
//! order, described by [`ParamBuf`]s the optimiser and checkpoints walk like the model's own.

use slm_core::{Error, LinearRole, Result};
use slm_io::peft::{LoraAdapter, LoraConfig as PeftConfig, LoraPair};
use slm_kernels::matmul::{linear_bwd_input, linear_bwd_weight, linear_fwd, LinearDims};
use slm_model::flat::forward::grow;
use slm_model::flat::{InputSlot, ParamBuf};
use slm_model::LlamaConfig;
use std::ops::Range;

/// What to adapt and how (PEFT's `LoraConfig` fields that change the math).
#[derive(Debug, Clone, PartialEq)]
pub struct LoraSpec {
    pub rank: usize,
    pub alpha: f64,
    /// Dropout on the adapter's input while training (0 = none).
    pub dropout: f64,
    /// Scale by α/√r instead of α/r.
    pub rslora: bool,
    pub targets: Vec<LinearRole>,
}

impl LoraSpec {
    /// The factor s on the adapter's output.
    pub fn scaling(&self) -> f64 {
        if self.rslora {
            self.alpha / (self.rank as f64).sqrt()
        } else {
            self.alpha / self.rank as f64
        }
    }

    pub fn validate(&self) -> Result<()> {
        if self.rank == 0 {
            return Err(Error::config("the LoRA rank must be at least 1"));
        }
        if !(self.alpha > 0.0) || !self.alpha.is_finite() {
            return Err(Error::config("the LoRA alpha must be positive"));
        }
        if !(0.0..1.0).contains(&self.dropout) {
            return Err(Error::config(format!(
                "the LoRA dropout must be in [0, 1), got {}",
                self.dropout
            )));
        }
        if self.targets.is_empty() {
            return Err(Error::config("LoRA needs at least one target linear"));
        }
        Ok(())
    }
}

/// The adapters of one pack of one block.
#[derive(Debug, Clone)]
struct Pack {
    slot: InputSlot,
    input: usize,
    output: usize,
    /// Each adapted linear: its role and its rows in the pack's output.
    members: Vec<(LinearRole, Range<usize>)>,
    /// A [m·r, in] and B [out, m·r] in [`Lora::params`].
    a: Range<usize>,
    b: Range<usize>,
    /// Index of this pack among all packs (for the saved `u` slots and dropout masks).
    index: usize,
}

impl Pack {
    fn rank_total(&self, r: usize) -> usize {
        self.members.len() * r
    }
}

/// The output rows of each linear inside its pack.
fn pack_rows(cfg: &LlamaConfig, role: LinearRole) -> (InputSlot, Range<usize>) {
    let (q, kv, i) = (cfg.q_dim(), cfg.kv_dim(), cfg.intermediate_size);
    let d = cfg.hidden_size;
    match role {
        LinearRole::Q => (InputSlot::Attn, 0..q),
        LinearRole::K => (InputSlot::Attn, q..q + kv),
        LinearRole::V => (InputSlot::Attn, q + kv..q + 2 * kv),
        LinearRole::O => (InputSlot::AttnOut, 0..d),
        LinearRole::Gate => (InputSlot::Mlp, 0..i),
        LinearRole::Up => (InputSlot::Mlp, i..2 * i),
        LinearRole::Down => (InputSlot::MlpHidden, 0..d),
    }
}

fn pack_output(cfg: &LlamaConfig, slot: InputSlot) -> usize {
    match slot {
        InputSlot::Attn => cfg.q_dim() + 2 * cfg.kv_dim(),
        InputSlot::AttnOut | InputSlot::MlpHidden => cfg.hidden_size,
        InputSlot::Mlp => 2 * cfg.intermediate_size,
    }
}

/// SplitMix64's finaliser: a well-mixed 64-bit hash.
fn mix(mut z: u64) -> u64 {
    z = z.wrapping_add(0x9E37_79B9_7F4A_7C15);
    z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
    z ^ (z >> 31)
}

/// LoRA adapters for every block of one model, their gradients and the saved products.
#[derive(Debug, Clone)]
pub struct Lora {
    spec: LoraSpec,
    scaling: f32,
    /// packs[layer] = the block's adapted packs, in block order.
    packs: Vec<Vec<Pack>>,
    /// Names, shapes and places of A and B of every pack (see the module documentation).
    layout: Vec<ParamBuf>,
    pub params: Vec<f32>,
    pub grads: Vec<f32>,
    /// Per pack p: u [n, m·r] of the last forward, at `p · saved_stride`.
    saved: Vec<f32>,
    saved_stride: usize,
    /// Scratch: the dropped input [n, in], du [n, m·r] and a dx term [n, in].
    xd: Vec<f32>,
    du: Vec<f32>,
    dx: Vec<f32>,
    /// Dropout is applied (training passes only) with masks drawn from this seed.
    dropout_seed: Option<u64>,
}

impl Lora {
    /// Adapters for `spec.targets` on every block of `cfg`: A from PEFT's default
    /// initialisation (Kaiming-uniform with a = √5, i.e. U(−1/√in, 1/√in), seeded), B zero,
    /// so the adapted model starts equal to the base.
    pub fn new(cfg: &LlamaConfig, spec: LoraSpec, seed: u64) -> Result<Self> {
        spec.validate()?;
        let r = spec.rank;
        let mut packs = Vec::new();
        let mut layout = Vec::new();
        let mut end = 0usize;
        let mut index = 0usize;
        for l in 0..cfg.num_hidden_layers {
            let mut block = Vec::new();
            for slot in InputSlot::ALL {
                let members: Vec<(LinearRole, Range<usize>)> = slot
                    .roles()
                    .iter()
                    .filter(|role| spec.targets.contains(role))
                    .map(|&role| (role, pack_rows(cfg, role).1))
                    .collect();
                if members.is_empty() {
                    continue;
                }
                let input = slot.width(cfg);
                let output = pack_output(cfg, slot);
                let m = members.len() * r;
                let names: Vec<&str> = members.iter().map(|(role, _)| role.short()).collect();
                let base = format!("model.layers.{l}.lora.{}", names.join("_"));
                let a = end..end + m * input;
                let b = a.end..a.end + output * m;
                layout.push(ParamBuf {
                    name: format!("{base}.A"),
                    shape: vec![m, input],
                    offset: a.start,
                    len: a.len(),
                });
                layout.push(ParamBuf {
                    name: format!("{base}.B"),
                    shape: vec![output, m],
                    offset: b.start,
                    len: b.len(),
                });
                end = b.end;
                block.push(Pack {
                    slot,
                    input,
                    output,
                    members,
                    a,
                    b,
                    index,
                });
                index += 1;
            }
            packs.push(block);
        }
        let mut params = vec![0f32; end];
        let mut state = seed ^ 0x5EED_10BA;
        for p in packs.iter().flatten() {
            let bound = 1.0 / (p.input as f64).sqrt();
            for v in &mut params[p.a.clone()] {
                state = mix(state);
                let u = (state >> 11) as f64 / (1u64 << 53) as f64; // [0, 1)
                *v = ((2.0 * u - 1.0) * bound) as f32;
            }
        }
        Ok(Self {
            scaling: spec.scaling() as f32,
            spec,
            packs,
            layout,
            grads: vec![0f32; end],
            params,
            saved: Vec::new(),
            saved_stride: 0,
            xd: Vec::new(),
            du: Vec::new(),
            dx: Vec::new(),
            dropout_seed: None,
        })
    }

    pub fn spec(&self) -> &LoraSpec {
        &self.spec
    }

    /// The trainable tensors (A and B of every pack).
    pub fn layout(&self) -> &[ParamBuf] {
        &self.layout
    }

    /// The layout, values and gradients at once (what the optimiser updates).
    pub fn parts_mut(&mut self) -> (&[ParamBuf], &mut [f32], &mut [f32]) {
        (&self.layout, &mut self.params, &mut self.grads)
    }

    /// Number of trainable values (structural zeros of B included).
    pub fn num_values(&self) -> usize {
        self.params.len()
    }

    /// Number of real adapter parameters (PEFT's count: r·(in + out) per adapted linear).
    pub fn num_parameters(&self) -> usize {
        let r = self.spec.rank;
        self.packs
            .iter()
            .flatten()
            .map(|p| {
                p.members
                    .iter()
                    .map(|(_, rows)| r * (p.input + rows.len()))
                    .sum::<usize>()
            })
            .sum()
    }

    /// Turns dropout on for the next passes, with masks drawn from `seed` (e.g. a hash of
    /// the run's seed, the step and the micro-batch), or off with `None` (evaluation).
    pub fn set_dropout_seed(&mut self, seed: Option<u64>) {
        self.dropout_seed = seed.filter(|_| self.spec.dropout > 0.0);
    }

    fn pack(&self, layer: usize, slot: InputSlot) -> Option<&Pack> {
        self.packs.get(layer)?.iter().find(|p| p.slot == slot)
    }

    /// Sizes the saved products for passes of `n` rows.
    pub(crate) fn ensure(&mut self, n: usize) {
        let max_m = self
            .packs
            .iter()
            .flatten()
            .map(|p| p.rank_total(self.spec.rank))
            .max()
            .unwrap_or(0);
        let count = self.packs.iter().map(|b| b.len()).sum::<usize>();
        if self.saved_stride < n * max_m {
            self.saved_stride = n * max_m;
            self.saved = vec![0.0; count * self.saved_stride];
        }
    }

    /// Bytes held by the adapters, their gradients and buffers.
    pub fn bytes(&self) -> usize {
        4 * (self.params.len()
            + self.grads.len()
            + self.saved.len()
            + self.xd.len()
            + self.du.len()
            + self.dx.len())
    }

    /// The dropout factor of element `i` of pack `p_index`'s input this pass: 0 (dropped)
    /// or 1/(1−p); `None` without dropout. The forward and the backward draw the same mask.
    fn dropout_factors(&self, p_index: usize) -> Option<impl Fn(usize) -> f32> {
        let seed = self.dropout_seed?;
        let keep = 1.0 / (1.0 - self.spec.dropout) as f32;
        let threshold = (self.spec.dropout * (1u64 << 53) as f64) as u64;
        let key = mix(seed ^ mix(p_index as u64 + 1));
        Some(move |i: usize| {
            if mix(key ^ i as u64) >> 11 < threshold {
                0.0
            } else {
                keep
            }
        })
    }

    /// The dropped input of pack `p_index` for `x` [n, in] into `self.xd`; false without
    /// dropout (use x).
    fn drop_input(&mut self, p_index: usize, x: &[f32]) -> bool {
        let Some(factor) = self.dropout_factors(p_index) else {
            return false;
        };
        grow(&mut self.xd, x.len());
        for (i, (d, &v)) in self.xd.iter_mut().zip(x).enumerate() {
            *d = v * factor(i);
        }
        true
    }

    /// Adds block `layer`'s adapters on the pack reading `slot` to its output
    /// `y` [rows, out], given the pack's input `x` [rows, in]; saves u for the backward.
    pub fn forward(
        &mut self,
        layer: usize,
        slot: InputSlot,
        x: &[f32],
        y: &mut [f32],
        rows: usize,
    ) -> Result<()> {
        let Some(p) = self.pack(layer, slot).cloned() else {
            return Ok(());
        };
        let m = p.rank_total(self.spec.rank);
        if self.saved_stride < rows * m {
            return Err(Error::invalid("lora: buffers not sized for this pass"));
        }
        let dropped = self.drop_input(p.index, x);
        let xd: &[f32] = if dropped { &self.xd[..x.len()] } else { x };
        let u = &mut self.saved[p.index * self.saved_stride..][..rows * m];
        // u = s · xd·Aᵀ  [rows, m·r]
        linear_fwd(
            u,
            xd,
            &self.params[p.a.clone()],
            None,
            LinearDims::new(rows, p.input, m),
            false,
        )?;
        let s = self.scaling;
        u.iter_mut().for_each(|v| *v *= s);
        // y += u·Bᵀ  [rows, out]
        linear_fwd(
            y,
            u,
            &self.params[p.b.clone()],
            None,
            LinearDims::new(rows, m, p.output),
            true,
        )
    }

    /// The backward of [`Lora::forward`] for the same pass: adds ∂L/∂A and ∂L/∂B to the
    /// gradients and s·(dy·B)·A (through the dropout) to `dx` [rows, in].
    pub fn backward(
        &mut self,
        layer: usize,
        slot: InputSlot,
        x: &[f32],
        dy: &[f32],
        dx: &mut [f32],
        rows: usize,
    ) -> Result<()> {
        let Some(p) = self.pack(layer, slot).cloned() else {
            return Ok(());
        };
        let r = self.spec.rank;
        let m = p.rank_total(r);
        let u = &self.saved[p.index * self.saved_stride..][..rows * m];
        // dB += dyᵀ·u  [out, m·r], then the structural zeros are put back.
        let db = &mut self.grads[p.b.clone()];
        linear_bwd_weight(db, dy, u, LinearDims::new(rows, m, p.output))?;
        for (j, (_, own)) in p.members.iter().enumerate() {
            for o in 0..p.output {
                if own.contains(&o) {
                    continue;
                }
                db[o * m + j * r..o * m + (j + 1) * r].fill(0.0);
            }
        }
        // du = s · dy·B  [rows, m·r]
        grow(&mut self.du, rows * m);
        let du = &mut self.du[..rows * m];
        linear_bwd_input(
            du,
            dy,
            &self.params[p.b.clone()],
            LinearDims::new(rows, m, p.output),
            false,
        )?;
        let s = self.scaling;
        du.iter_mut().for_each(|v| *v *= s);
        let dims = LinearDims::new(rows, p.input, m);
        let dropped = self.drop_input(p.index, x);
        let du = &self.du[..rows * m];
        let xd: &[f32] = if dropped { &self.xd[..x.len()] } else { x };
        // dA += duᵀ·xd  [m·r, in]
        linear_bwd_weight(&mut self.grads[p.a.clone()], du, xd, dims)?;
        let a = &self.params[p.a.clone()];
        if !dropped {
            // dx += du·A
            return linear_bwd_input(dx, du, a, dims, true);
        }
        grow(&mut self.dx, rows * p.input);
        let t = &mut self.dx[..rows * p.input];
        linear_bwd_input(t, du, a, dims, false)?;
        // The dropped input is x·mask/(1−p): its gradient takes the same factors.
        if let Some(factor) = self.dropout_factors(p.index) {
            for (i, (d, &g)) in dx
                .iter_mut()
                .zip(self.dx[..rows * p.input].iter())
                .enumerate()
            {
                *d += g * factor(i);
            }
        }
        Ok(())
    }

    /// The adapter of linear `role` in block `layer` as PEFT stores it: A [r, in] and
    /// B [out, r] (rows of its own output only), or `None` if it is not adapted.
    pub fn adapter(&self, layer: usize, role: LinearRole) -> Option<(Vec<f32>, Vec<f32>)> {
        let p = self.pack(layer, InputSlot::of(role))?;
        let j = p.members.iter().position(|(r, _)| *r == role)?;
        let (r, m) = (self.spec.rank, p.rank_total(self.spec.rank));
        let rows = p.members[j].1.clone();
        let a = self.params[p.a.clone()][j * r * p.input..(j + 1) * r * p.input].to_vec();
        let bp = &self.params[p.b.clone()];
        let mut b = Vec::with_capacity(rows.len() * r);
        for o in rows {
            b.extend_from_slice(&bp[o * m + j * r..o * m + (j + 1) * r]);
        }
        Some((a, b))
    }

    /// Sets the adapter of linear `role` in block `layer` (shapes as [`Lora::adapter`]).
    pub fn set_adapter(
        &mut self,
        layer: usize,
        role: LinearRole,
        a: &[f32],
        b: &[f32],
    ) -> Result<()> {
        let Some(p) = self.pack(layer, InputSlot::of(role)).cloned() else {
            return Err(Error::invalid(format!(
                "block {layer} has no adapter on {role}"
            )));
        };
        let Some(j) = p.members.iter().position(|(r, _)| *r == role) else {
            return Err(Error::invalid(format!(
                "block {layer} has no adapter on {role}"
            )));
        };
        let (r, m) = (self.spec.rank, p.rank_total(self.spec.rank));
        let rows = p.members[j].1.clone();
        if a.len() != r * p.input || b.len() != rows.len() * r {
            return Err(Error::invalid(format!(
                "adapter {role} of block {layer}: A has {} values and B {}, expected [{r}, {}] and [{}, {r}]",
                a.len(),
                b.len(),
                p.input,
                rows.len()
            )));
        }
        self.params[p.a.clone()][j * r * p.input..(j + 1) * r * p.input].copy_from_slice(a);
        let bp = &mut self.params[p.b.clone()];
        for (k, o) in rows.enumerate() {
            bp[o * m + j * r..o * m + (j + 1) * r].copy_from_slice(&b[k * r..(k + 1) * r]);
        }
        Ok(())
    }

    /// The adapted (layer, role) pairs in block order.
    pub fn targets(&self) -> Vec<(usize, LinearRole)> {
        self.packs
            .iter()
            .enumerate()
            .flat_map(|(l, b)| {
                b.iter()
                    .flat_map(move |p| p.members.iter().map(move |(r, _)| (l, *r)))
            })
            .collect()
    }
}

impl Lora {
    /// The adapters in PEFT's format (`slm_io::peft`), naming `base` as their base model.
    pub fn to_peft(&self, cfg: &LlamaConfig, base: Option<String>) -> LoraAdapter {
        let spec = &self.spec;
        let shapes = slm_model::lora::base_shapes(cfg);
        let mut config = PeftConfig::new(spec.rank, spec.alpha, &spec.targets);
        config.lora_dropout = spec.dropout;
        config.use_rslora = spec.rslora;
        config.base_model_name_or_path = base;
        let mut pairs = std::collections::BTreeMap::new();
        for (layer, role) in self.targets() {
            if let Some((a, b)) = self.adapter(layer, role) {
                let (out_features, in_features) = shapes.linear(role);
                pairs.insert(
                    (layer, role),
                    LoraPair {
                        a,
                        b,
                        in_features,
                        out_features,
                    },
                );
            }
        }
        LoraAdapter { config, pairs }
    }

    /// Adapters from a PEFT adapter (e.g. to continue training one), checked against `cfg`.
    pub fn from_peft(cfg: &LlamaConfig, adapter: &LoraAdapter) -> Result<Self> {
        adapter.check_against(&slm_model::lora::base_shapes(cfg))?;
        let c = &adapter.config;
        let spec = LoraSpec {
            rank: c.r,
            alpha: c.lora_alpha,
            dropout: c.lora_dropout,
            rslora: c.use_rslora,
            targets: c.target_modules.clone(),
        };
        let mut lora = Lora::new(cfg, spec, 0)?;
        for (&(layer, role), pair) in &adapter.pairs {
            lora.set_adapter(layer, role, &pair.a, &pair.b)?;
        }
        Ok(lora)
    }
}

impl slm_model::flat::LinearDelta for Lora {
    fn add(
        &mut self,
        layer: usize,
        slot: InputSlot,
        x: &[f32],
        y: &mut [f32],
        rows: usize,
    ) -> Result<()> {
        self.forward(layer, slot, x, y, rows)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn tiny() -> LlamaConfig {
        let mut c = slm_model::preset("260k").expect("a preset");
        c.num_hidden_layers = 1;
        c
    }

    #[test]
    fn adapters_round_trip_and_structural_zeros() {
        let cfg = tiny();
        let spec = LoraSpec {
            rank: 2,
            alpha: 4.0,
            dropout: 0.0,
            rslora: false,
            targets: LinearRole::ALL.to_vec(),
        };
        let mut lora = Lora::new(&cfg, spec, 1).unwrap();
        for (l, role) in lora.targets() {
            let (a, b) = lora.adapter(l, role).unwrap();
            let b2: Vec<f32> = (0..b.len()).map(|i| i as f32 + 1.0).collect();
            lora.set_adapter(l, role, &a, &b2).unwrap();
            assert_eq!(lora.adapter(l, role).unwrap(), (a, b2));
        }
        // Every value of every B is now non-zero exactly on its own blocks.
        let nonzero: usize = lora
            .layout()
            .iter()
            .filter(|p| p.name.ends_with(".B"))
            .map(|p| lora.params[p.range()].iter().filter(|v| **v != 0.0).count())
            .sum();
        let own: usize = lora
            .targets()
            .iter()
            .map(|&(l, r)| lora.adapter(l, r).unwrap().1.len())
            .sum();
        assert_eq!(nonzero, own);
    }
}
