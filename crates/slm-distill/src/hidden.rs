//! Hidden-state distillation (the hidden-state loss of DistillKit and TinyBERT): the
//! student's block outputs are pulled towards the teacher's at mapped layers.
//!
//! For each pair (student block s, teacher block t) the loss is `D(P·h_s, h_t)` with `D`
//! cosine distance or MSE ([`crate::hidden_match`]) and `P` [d_teacher, d_student] a
//! learned linear projection when the widths differ (none when they are equal), initialised
//! like PyTorch's `nn.Linear` (uniform ±1/√d_student, seeded). The pairs' losses are averaged
//! and multiplied by the weight; the result joins the training loss
//! (`slm_train::DistillLoss::hidden`) and its gradient enters the student's backward
//! pass at block s (`slm_train::ResidualLoss`).
//!
//! The projection is trained with its own AdamW (same learning rate schedule, no weight
//! decay, not part of gradient clipping), saved in checkpoints beside the model
//! (`hidden.bin`) and discarded at the end: the student is unchanged in shape.
//!
//! Default layer map: for a student cut from the teacher by `slm prune --structured`, each
//! block ↔ the parent block it was cut from ([`pruned_pairs`]); otherwise student block i ↔
//! teacher block ⌈(i+1)·L_t/L_s⌉ − 1, so the last blocks meet and the others spread evenly.

use crate::hidden_match::{hidden_match_fwd_bwd, HiddenMatch};
use crate::teacher::Teacher;
use slm_core::{error::IoContext, Error, Result};
use slm_kernels::matmul::{linear_bwd_input, linear_bwd_weight, linear_fwd, LinearDims};
use slm_train::optim::{adamw_step, AdamWConfig};
use slm_train::ResidualLoss;
use std::io::Write;
use std::path::Path;

/// The projection's file, beside a run's latest checkpoint.
pub const HIDDEN_PROJECTION: &str = "hidden.bin";

/// Learned projections, one [d_teacher, d_student] matrix per pair, with AdamW state.
#[derive(Debug, Clone)]
pub struct Projection {
    pub values: Vec<f32>,
    pub grads: Vec<f32>,
    pub m: Vec<f32>,
    pub v: Vec<f32>,
    pub step: u64,
}

/// The hidden-state loss of one run (see the module documentation).
#[derive(Debug)]
pub struct HiddenDistill {
    kind: HiddenMatch,
    weight: f32,
    student_layers: Vec<usize>,
    teacher_layers: Vec<usize>,
    student_dim: usize,
    teacher_dim: usize,
    proj: Option<Projection>,
    /// The teacher's block outputs for the current batch: [pairs, rows, d_teacher].
    teacher_states: Vec<f32>,
    rows: usize,
    /// Scratch: projected student states and their gradient, [rows, d_teacher].
    projected: Vec<f32>,
    d_projected: Vec<f32>,
}

/// The layer map of a structurally pruned student: student block i ↔ the parent block it was
/// cut from (`kept.layers` in the `slm.json` that `slm prune --structured` writes), when the
/// student directory `init` has one that fits `student_layers` and `teacher_layers`.
pub fn pruned_pairs(
    init: &Path,
    student_layers: usize,
    teacher_layers: usize,
) -> Option<Vec<(usize, usize)>> {
    let meta: serde_json::Value =
        serde_json::from_slice(&std::fs::read(init.join("slm.json")).ok()?).ok()?;
    if meta.get("method")?.as_str()? != "structured" {
        return None;
    }
    let kept: Vec<usize> = meta
        .get("kept")?
        .get("layers")?
        .as_array()?
        .iter()
        .map(|v| v.as_u64().map(|x| x as usize))
        .collect::<Option<_>>()?;
    let fits = kept.len() == student_layers && kept.iter().all(|&t| t < teacher_layers);
    fits.then(|| kept.into_iter().enumerate().collect())
}

/// Student block i ↔ teacher block ⌈(i+1)·L_t/L_s⌉ − 1 for every student block.
pub fn default_pairs(student_layers: usize, teacher_layers: usize) -> Vec<(usize, usize)> {
    (0..student_layers)
        .map(|i| (i, ((i + 1) * teacher_layers).div_ceil(student_layers) - 1))
        .collect()
}

/// Parses a layer map `s:t,s:t,...` (student block : teacher block, 0-based).
pub fn parse_pairs(spec: &str) -> Result<Vec<(usize, usize)>> {
    let bad = |p: &str| {
        Error::config(format!(
            "`distill.hidden.layers`: `{p}` is not `student:teacher` (e.g. \"0:1,1:3\")"
        ))
    };
    spec.split(',')
        .map(|p| {
            let (s, t) = p.trim().split_once(':').ok_or_else(|| bad(p))?;
            Ok((
                s.trim().parse().map_err(|_| bad(p))?,
                t.trim().parse().map_err(|_| bad(p))?,
            ))
        })
        .collect()
}

/// Uniform values in ±bound from SplitMix64 (deterministic by seed).
fn uniform(n: usize, bound: f32, seed: u64) -> Vec<f32> {
    let mut s = seed;
    (0..n)
        .map(|_| {
            s = s.wrapping_add(0x9E37_79B9_7F4A_7C15);
            let mut z = s;
            z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
            z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
            z ^= z >> 31;
            let u = (z >> 40) as f32 / (1u64 << 24) as f32; // [0, 1)
            (2.0 * u - 1.0) * bound
        })
        .collect()
}

impl HiddenDistill {
    /// A loss over `pairs` (student block, teacher block) between a student of
    /// `student_blocks` blocks and width `student_dim` and a teacher of `teacher_blocks`
    /// blocks and width `teacher_dim`.
    pub fn new(
        kind: HiddenMatch,
        weight: f32,
        pairs: &[(usize, usize)],
        (student_blocks, student_dim): (usize, usize),
        (teacher_blocks, teacher_dim): (usize, usize),
        seed: u64,
    ) -> Result<Self> {
        if pairs.is_empty() {
            return Err(Error::config("`distill.hidden.layers` names no layer pair"));
        }
        if !(weight.is_finite() && weight >= 0.0) {
            return Err(Error::config("`distill.hidden.weight` must be ≥ 0"));
        }
        for &(s, t) in pairs {
            if s >= student_blocks || t >= teacher_blocks {
                return Err(Error::config(format!(
                    "`distill.hidden.layers` pair {s}:{t}: the student has blocks 0..{student_blocks}, \
                     the teacher 0..{teacher_blocks}"
                )));
            }
        }
        let proj = (student_dim != teacher_dim).then(|| {
            let n = pairs.len() * teacher_dim * student_dim;
            Projection {
                values: uniform(n, 1.0 / (student_dim as f32).sqrt(), seed),
                grads: vec![0.0; n],
                m: vec![0.0; n],
                v: vec![0.0; n],
                step: 0,
            }
        });
        Ok(Self {
            kind,
            weight,
            student_layers: pairs.iter().map(|p| p.0).collect(),
            teacher_layers: pairs.iter().map(|p| p.1).collect(),
            student_dim,
            teacher_dim,
            proj,
            teacher_states: Vec::new(),
            rows: 0,
            projected: Vec::new(),
            d_projected: Vec::new(),
        })
    }

    /// The (student block, teacher block) pairs.
    pub fn pairs(&self) -> Vec<(usize, usize)> {
        self.student_layers
            .iter()
            .copied()
            .zip(self.teacher_layers.iter().copied())
            .collect()
    }

    /// The learned projections, when the widths differ.
    pub fn projection(&self) -> Option<&Projection> {
        self.proj.as_ref()
    }

    /// The learned projections, mutably.
    pub fn projection_mut(&mut self) -> Option<&mut Projection> {
        self.proj.as_mut()
    }

    /// Copies the teacher's block outputs from its last forward pass ([`Teacher::logits`]
    /// on the same batch) of `rows` tokens.
    pub fn set_teacher(&mut self, teacher: &dyn Teacher, rows: usize) -> Result<()> {
        let dt = self.teacher_dim;
        self.teacher_states.clear();
        for &t in &self.teacher_layers {
            let out = teacher.block_output(t)?;
            if out.len() != rows * dt {
                return Err(Error::invalid(format!(
                    "teacher block {t} holds {} values, the batch needs {rows} × {dt}",
                    out.len()
                )));
            }
            self.teacher_states.extend_from_slice(out);
        }
        self.rows = rows;
        self.projected.resize(rows * dt, 0.0);
        self.d_projected.resize(rows * dt, 0.0);
        Ok(())
    }

    /// Clears the projection's gradients (before each optimiser step).
    pub fn zero_grad(&mut self) {
        if let Some(p) = &mut self.proj {
            p.grads.fill(0.0);
        }
    }

    /// Scales the projection's gradients (gradient accumulation).
    pub fn scale_grads(&mut self, s: f32) {
        if let Some(p) = &mut self.proj {
            p.grads.iter_mut().for_each(|g| *g *= s);
        }
    }

    /// One AdamW update of the projection at learning rate `lr` (no weight decay).
    pub fn step(&mut self, config: &AdamWConfig, lr: f64) -> Result<()> {
        let Some(p) = &mut self.proj else {
            return Ok(());
        };
        p.step += 1;
        let cfg = AdamWConfig {
            lr,
            weight_decay: 0.0,
            ..*config
        };
        adamw_step(&mut p.values, &p.grads, &mut p.m, &mut p.v, p.step, &cfg)
    }

    /// Writes the projection and its optimiser state (nothing to write without one).
    pub fn save(&self, path: &Path) -> Result<()> {
        let Some(p) = &self.proj else {
            return Ok(());
        };
        slm_io::atomic::write_atomic_with(path, |w| {
            w.write_all(b"SLMHPRJ\0").with_path(path)?;
            w.write_all(&p.step.to_le_bytes()).with_path(path)?;
            w.write_all(&(p.values.len() as u64).to_le_bytes())
                .with_path(path)?;
            for xs in [&p.values, &p.m, &p.v] {
                let bytes: Vec<u8> = xs.iter().flat_map(|x| x.to_le_bytes()).collect();
                w.write_all(&bytes).with_path(path)?;
            }
            Ok(())
        })
    }

    /// Reads what [`HiddenDistill::save`] wrote, checking it fits this loss's projection.
    pub fn load(&mut self, path: &Path) -> Result<()> {
        let Some(p) = &mut self.proj else {
            return Ok(());
        };
        let bytes = std::fs::read(path).with_path(path)?;
        let n = p.values.len();
        if bytes.len() != 24 + 12 * n || &bytes[..8] != b"SLMHPRJ\0" {
            return Err(Error::format(
                path,
                format!("not a hidden-state projection of {n} values"),
            ));
        }
        let word = |i: usize| u64::from_le_bytes(bytes[i..i + 8].try_into().unwrap_or([0; 8]));
        if word(16) as usize != n {
            return Err(Error::format(path, "projection size differs from this run"));
        }
        p.step = word(8);
        let floats = |k: usize| -> Vec<f32> {
            bytes[24 + 4 * n * k..24 + 4 * n * (k + 1)]
                .chunks_exact(4)
                .map(|c| f32::from_le_bytes([c[0], c[1], c[2], c[3]]))
                .collect()
        };
        p.values = floats(0);
        p.m = floats(1);
        p.v = floats(2);
        Ok(())
    }
}

impl ResidualLoss for HiddenDistill {
    fn layers(&self) -> &[usize] {
        &self.student_layers
    }

    fn loss_grad(&mut self, index: usize, output: &[f32], grad: Option<&mut [f32]>) -> Result<f64> {
        let (n, ds, dt) = (self.rows, self.student_dim, self.teacher_dim);
        if output.len() != n * ds || self.teacher_states.len() != self.teacher_layers.len() * n * dt
        {
            return Err(Error::invalid(format!(
                "hidden-state loss: the student batch has {} values, the teacher states were set \
                 for {n} rows (call set_teacher with the same batch first)",
                output.len()
            )));
        }
        let target = &self.teacher_states[index * n * dt..(index + 1) * n * dt];
        let scale = self.weight / self.student_layers.len() as f32;
        let Some(p) = &mut self.proj else {
            return hidden_match_fwd_bwd(self.kind, output, target, grad, n, ds, scale);
        };
        // y [n, dt] = h [n, ds] · P_indexᵀ, P_index [dt, ds]
        let w = index * dt * ds..(index + 1) * dt * ds;
        let dims = LinearDims::new(n, ds, dt);
        linear_fwd(
            &mut self.projected,
            output,
            &p.values[w.clone()],
            None,
            dims,
            false,
        )?;
        let Some(grad) = grad else {
            return hidden_match_fwd_bwd(self.kind, &self.projected, target, None, n, dt, scale);
        };
        let loss = hidden_match_fwd_bwd(
            self.kind,
            &self.projected,
            target,
            Some(&mut self.d_projected),
            n,
            dt,
            scale,
        )?;
        // dP += dyᵀ·h, dh = dy·P
        linear_bwd_weight(&mut p.grads[w.clone()], &self.d_projected, output, dims)?;
        linear_bwd_input(grad, &self.d_projected, &p.values[w], dims, false)?;
        Ok(loss)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_structurally_pruned_student_maps_to_the_blocks_it_was_cut_from() {
        let dir = tempfile::tempdir().unwrap();
        let meta = |m: &str| {
            std::fs::write(
                dir.path().join("slm.json"),
                format!("{{\"method\": \"{m}\", \"kept\": {{\"layers\": [0, 2, 5]}}}}"),
            )
            .unwrap()
        };
        meta("structured");
        assert_eq!(
            pruned_pairs(dir.path(), 3, 6),
            Some(vec![(0, 0), (1, 2), (2, 5)])
        );
        assert_eq!(pruned_pairs(dir.path(), 4, 6), None); // another student
        assert_eq!(pruned_pairs(dir.path(), 3, 5), None); // another teacher
        meta("wanda");
        assert_eq!(pruned_pairs(dir.path(), 3, 6), None);
        assert_eq!(pruned_pairs(&dir.path().join("none"), 3, 6), None);
    }

    #[test]
    fn default_map_spreads_and_ends_together() {
        assert_eq!(default_pairs(2, 4), vec![(0, 1), (1, 3)]);
        assert_eq!(default_pairs(4, 5), vec![(0, 1), (1, 2), (2, 3), (3, 4)]);
        assert_eq!(default_pairs(3, 3), vec![(0, 0), (1, 1), (2, 2)]);
        assert_eq!(parse_pairs("0:1, 1:3").unwrap(), vec![(0, 1), (1, 3)]);
        assert!(parse_pairs("0-1").is_err());
        assert!(
            HiddenDistill::new(HiddenMatch::Cosine, 1.0, &[(2, 0)], (2, 8), (4, 8), 0).is_err()
        );
    }
}
