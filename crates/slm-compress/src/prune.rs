//! One-shot pruning of a whole model: the method and pattern chosen per run, applied to the
//! chosen roles of every block, calibration run block by block.
//!
//! Calibration follows SparseGPT and Wanda ([`crate::sequential`]): block by block, each
//! block's linears pruned with the statistics of the inputs they see in the model pruned so
//! far, and written back as dense weights with zeros.
//!
//! Magnitude and Fisher-OBD masks depend on the weights alone and are chosen before
//! calibration (which lets them be global across tensors); calibration then only measures
//! their reconstruction error, and is skipped without calibration windows.
//!
//! Embeddings, norms, biases and the output head are never changed.

use crate::gram::InputStats;
use crate::magnitude::magnitude_scores;
use crate::obd::{obd_layerwise_saliency, obd_saliency, FisherDiag};
use crate::pattern::Pattern;
use crate::report::{output_energy, reconstruction_error, PruneReport, TensorReport};
use crate::select::{global_masks, select_mask, Group};
use crate::sequential::{check_windows, set_weight, tensor_name, weight_of, Walk, Weight};
use crate::sparsegpt::{sparsegpt_prune, SparseGptOptions};
use crate::wanda::wanda_mask;
use rayon::prelude::*;
use slm_core::{Error, LinearRole, Result};
use slm_model::Llama;
use std::collections::HashMap;
use std::time::Instant;

/// How weights are chosen (and, for SparseGPT, updated).
#[derive(Debug, Clone)]
pub enum Method {
    /// Smallest |w|, compared within each tensor or, with `global`, across all pruned
    /// tensors (unstructured only; N:M is always per group). No calibration needed.
    Magnitude { global: bool },
    /// |W_ij|·‖X_j‖₂ compared within each output row; no weight update.
    Wanda,
    /// OBS column by column with lazy blocks of `block_size` columns and relative dampening
    /// `damp` (paper: 128 and 0.01).
    SparseGpt { block_size: usize, damp: f64 },
    /// OBD with the empirical Fisher diagonal: saliency ½·F·w², compared within each tensor
    /// or, with `global`, across all pruned tensors. `fisher` must hold every pruned tensor.
    Obd { fisher: FisherDiag, global: bool },
    /// OBD with the layer-wise Hessian 2XXᵀ: saliency ‖X_j‖²·w², compared within each tensor
    /// (compared within each row it would be Wanda).
    ObdLayerwise,
}

impl Method {
    /// SparseGPT with the paper's settings (blocks of 128 columns, damp 0.01).
    pub fn sparsegpt() -> Self {
        Method::SparseGpt {
            block_size: 128,
            damp: 0.01,
        }
    }

    /// The name used in reports and on the command line.
    pub fn name(&self) -> &'static str {
        match self {
            Method::Magnitude { global: false } => "magnitude",
            Method::Magnitude { global: true } => "magnitude-global",
            Method::Wanda => "wanda",
            Method::SparseGpt { .. } => "sparsegpt",
            Method::Obd { global: false, .. } => "obd",
            Method::Obd { global: true, .. } => "obd-global",
            Method::ObdLayerwise => "obd-layerwise",
        }
    }

    /// Whether the method needs calibration activations to choose its mask.
    pub fn needs_calibration(&self) -> bool {
        matches!(
            self,
            Method::Wanda | Method::SparseGpt { .. } | Method::ObdLayerwise
        )
    }

    /// Whether the method needs the full Gram XᵀX (not only its diagonal).
    pub fn needs_gram(&self) -> bool {
        matches!(self, Method::SparseGpt { .. })
    }
}

/// One pruning run.
#[derive(Debug, Clone)]
pub struct PruneConfig {
    pub method: Method,
    /// Fraction of each pruned tensor to zero, in [0, 1) (unstructured; N:M implies 1 − n/m
    /// and ignores this).
    pub sparsity: f64,
    pub pattern: Pattern,
    /// The block linears to prune (default: all seven).
    pub roles: Vec<LinearRole>,
    /// Calibration windows per forward pass (default 8).
    pub batch_size: usize,
    /// Accumulate XᵀX for every pruned layer so that the report carries its reconstruction
    /// error (default true; off, Wanda and layer-wise OBD only sum column norms).
    pub measure_error: bool,
    /// Prune q/k/v, o, gate/up, down of a block in turn, re-capturing inputs between steps
    /// (default false: one capture per block, as Wanda and SparseGPT's default).
    pub true_sequential: bool,
}

impl PruneConfig {
    /// All seven roles, batches of 8 windows, errors measured, one capture per block.
    pub fn new(method: Method, sparsity: f64, pattern: Pattern) -> Self {
        Self {
            method,
            sparsity,
            pattern,
            roles: LinearRole::ALL.to_vec(),
            batch_size: 8,
            measure_error: true,
            true_sequential: false,
        }
    }

    /// The roles to prune, deduplicated, in model order.
    fn ordered_roles(&self) -> Vec<LinearRole> {
        LinearRole::ALL
            .into_iter()
            .filter(|r| self.roles.contains(r))
            .collect()
    }

    /// Checks the arguments before any work: the ratio, the pattern against every pruned
    /// tensor's input width, the method's settings and the calibration windows against the
    /// model. The Fisher diagonal of OBD is not checked here, so a caller may validate first
    /// and compute the (costly) Fisher afterwards; [`prune`] checks it (with
    /// [`PruneConfig::validate_fisher`]) before it changes anything.
    pub fn validate(&self, model: &Llama, calib: &[Vec<u32>]) -> Result<()> {
        if !self.sparsity.is_finite() || !(0.0..1.0).contains(&self.sparsity) {
            return Err(Error::invalid(format!(
                "sparsity {} must be in [0, 1)",
                self.sparsity
            )));
        }
        self.pattern.validate()?;
        if self.roles.is_empty() {
            return Err(Error::invalid("no roles to prune"));
        }
        if self.batch_size == 0 {
            return Err(Error::invalid("calibration batch size must be ≥ 1"));
        }
        if let Method::SparseGpt { block_size, damp } = self.method {
            if block_size == 0 {
                return Err(Error::invalid("sparsegpt block size must be ≥ 1"));
            }
            if !damp.is_finite() || damp < 0.0 {
                return Err(Error::invalid(format!(
                    "sparsegpt dampening {damp} must be ≥ 0"
                )));
            }
            if let Pattern::NM { m, .. } = self.pattern {
                if block_size % m != 0 {
                    return Err(Error::invalid(format!(
                        "sparsegpt block size {block_size} must be a multiple of {m} for pattern {}",
                        self.pattern
                    )));
                }
            }
        }
        for (l, layer) in model.layers.iter().enumerate() {
            for role in self.ordered_roles() {
                let lin = layer.linear(role);
                let name = format!("{}.weight", role.hf_prefix(l));
                self.pattern.check_width(lin.in_features(), &name)?;
            }
        }
        if self.method.needs_calibration() && calib.is_empty() {
            return Err(Error::invalid(format!(
                "{} needs calibration windows, none were given",
                self.method.name()
            )));
        }
        check_windows(model, calib)?;
        Ok(())
    }
}

impl PruneConfig {
    /// For OBD with the Fisher: checks that `fisher` holds every pruned tensor, with as many
    /// entries as the weight. Other methods: nothing to check.
    pub fn validate_fisher(&self, model: &Llama) -> Result<()> {
        let Method::Obd { fisher, .. } = &self.method else {
            return Ok(());
        };
        for (l, layer) in model.layers.iter().enumerate() {
            for role in self.ordered_roles() {
                let lin = layer.linear(role);
                let name = tensor_name(l, role);
                let want = lin.in_features() * lin.out_features();
                match fisher.len_of(l, role) {
                    Some(n) if n == want => {}
                    Some(n) => {
                        return Err(Error::invalid(format!(
                            "fisher diagonal for `{name}` has {n} entries, the weight has {want}"
                        )))
                    }
                    None => {
                        return Err(Error::invalid(format!(
                            "OBD needs the fisher diagonal of `{name}`, which was not given"
                        )))
                    }
                }
            }
        }
        Ok(())
    }
}

fn apply_mask(w: &[f32], mask: &[bool]) -> Vec<f32> {
    w.iter()
        .zip(mask)
        .map(|(&x, &p)| if p { 0.0 } else { x })
        .collect()
}

/// Masks of the methods that need no activations (magnitude, Fisher OBD), keyed by
/// (layer, role); empty for the others.
fn weight_only_masks(
    model: &Llama,
    targets: &[(usize, LinearRole)],
    cfg: &PruneConfig,
) -> Result<HashMap<(usize, LinearRole), Vec<bool>>> {
    let global = match &cfg.method {
        Method::Magnitude { global } | Method::Obd { global, .. } => *global,
        _ => return Ok(HashMap::new()),
    };
    // scores[i]: (scores [rows · cols], rows, cols) of targets[i].
    let scores: Vec<(Vec<f64>, usize, usize)> = targets
        .par_iter()
        .map(|&(l, role)| {
            let w = weight_of(model, l, role)?;
            let s = match &cfg.method {
                Method::Obd { fisher, .. } => {
                    let f = fisher.get(l, role).ok_or_else(|| {
                        Error::invalid(format!(
                            "OBD needs the fisher diagonal of `{}`",
                            tensor_name(l, role)
                        ))
                    })?;
                    obd_saliency(&w.data, &f)?
                }
                _ => magnitude_scores(&w.data),
            };
            Ok((s, w.rows, w.cols))
        })
        .collect::<Result<_>>()?;
    let masks: Vec<Vec<bool>> = if global && cfg.pattern == Pattern::Unstructured {
        let refs: Vec<&[f64]> = scores.iter().map(|s| s.0.as_slice()).collect();
        global_masks(&refs, cfg.sparsity)?
    } else {
        scores
            .par_iter()
            .map(|(s, rows, cols)| {
                select_mask(s, *rows, *cols, cfg.pattern, cfg.sparsity, Group::Tensor)
            })
            .collect::<Result<_>>()?
    };
    Ok(targets.iter().copied().zip(masks).collect())
}

/// The result of pruning one tensor, before it is written back.
struct Pruned {
    weight: Weight,
    report: TensorReport,
}

/// Prunes the weight of (`layer`, `role`) with the statistics of its input (if calibrated)
/// or its precomputed mask.
fn prune_linear(
    model: &Llama,
    layer: usize,
    role: LinearRole,
    stats: Option<&InputStats>,
    fixed: Option<&Vec<bool>>,
    cfg: &PruneConfig,
) -> Result<Pruned> {
    let start = Instant::now();
    let name = tensor_name(layer, role);
    let w = weight_of(model, layer, role)?;
    let (rows, cols) = (w.rows, w.cols);
    let need_stats =
        || stats.ok_or_else(|| Error::msg(format!("no calibration statistics for `{name}`")));
    let gram = stats.and_then(|s| s.gram());
    let hessian = match cfg.method {
        Method::SparseGpt { .. } => stats.and_then(|s| s.sparsegpt_hessian()),
        _ => None,
    };
    let new = match &cfg.method {
        Method::Magnitude { .. } | Method::Obd { .. } => {
            let mask = fixed.ok_or_else(|| Error::msg(format!("no mask for `{name}`")))?;
            apply_mask(&w.data, mask)
        }
        Method::Wanda => {
            let s = need_stats()?;
            let mask = wanda_mask(
                &w.data,
                rows,
                cols,
                s.col_sq_norms(),
                cfg.pattern,
                cfg.sparsity,
            )?;
            apply_mask(&w.data, &mask)
        }
        Method::ObdLayerwise => {
            let s = need_stats()?;
            let sal = obd_layerwise_saliency(&w.data, rows, cols, s.col_sq_norms())?;
            let mask = select_mask(&sal, rows, cols, cfg.pattern, cfg.sparsity, Group::Tensor)?;
            apply_mask(&w.data, &mask)
        }
        Method::SparseGpt { block_size, damp } => {
            let h = hessian
                .as_ref()
                .ok_or_else(|| Error::msg(format!("no Gram matrix for `{name}`")))?;
            let opts = SparseGptOptions {
                pattern: cfg.pattern,
                sparsity: cfg.sparsity,
                block_size: *block_size,
                damp: *damp,
            };
            sparsegpt_prune(&w.data, rows, cols, h.as_ref(), &opts)
                .map_err(|e| Error::msg(format!("`{name}`: {e}")))?
                .weight
        }
    };
    let seconds = start.elapsed().as_secs_f64();
    let (recon_error, rel_error) = match (&gram, cfg.measure_error) {
        (Some(g), true) => {
            let e = reconstruction_error(&w.data, &new, rows, cols, g.as_ref())?;
            let energy = output_energy(&w.data, rows, cols, g.as_ref())?;
            (Some(e), Some(if energy > 0.0 { e / energy } else { 0.0 }))
        }
        _ => (None, None),
    };
    let zeros = new.iter().filter(|&&x| x == 0.0).count();
    let report = TensorReport {
        name,
        layer,
        role: role.short().to_string(),
        shape: [rows, cols],
        zeros,
        sparsity: zeros as f64 / (rows * cols).max(1) as f64,
        recon_error,
        rel_error,
        input_sq_norm: stats.map(|s| s.mean_sq_norm()),
        tokens: stats.map_or(0, |s| s.tokens()),
        seconds,
    };
    Ok(Pruned {
        weight: Weight {
            data: new,
            rows,
            cols,
        },
        report,
    })
}

/// Prunes `model` in place as `cfg` says, with `calib` windows of token ids (needed by Wanda,
/// SparseGPT and layer-wise OBD; optional for magnitude and Fisher OBD, where they only
/// measure the error). `progress(stage, done, total)` is called with stage `"block"` (blocks
/// done of all) when calibrating, else `"tensor"` (tensors done of all).
pub fn prune(
    model: &mut Llama,
    calib: &[Vec<u32>],
    cfg: &PruneConfig,
    progress: &mut dyn FnMut(&str, usize, usize),
) -> Result<PruneReport> {
    cfg.validate(model, calib)?;
    cfg.validate_fisher(model)?;
    let t0 = Instant::now();
    let roles = cfg.ordered_roles();
    let nl = model.layers.len();
    let targets: Vec<(usize, LinearRole)> = (0..nl)
        .flat_map(|l| roles.iter().map(move |&r| (l, r)))
        .collect();
    let fixed = weight_only_masks(model, &targets, cfg)?;
    let use_calib = cfg.method.needs_calibration() || (cfg.measure_error && !calib.is_empty());
    let mut tensors = Vec::with_capacity(targets.len());
    let mut forward_seconds = 0.0;

    if !use_calib {
        for (i, &(l, role)) in targets.iter().enumerate() {
            let p = prune_linear(model, l, role, None, fixed.get(&(l, role)), cfg)?;
            set_weight(model, l, role, p.weight)?;
            tensors.push(p.report);
            progress("tensor", i + 1, targets.len());
        }
    } else {
        let with_gram = cfg.method.needs_gram() || cfg.measure_error;
        let walk = Walk {
            roles: &roles,
            batch_size: cfg.batch_size,
            true_sequential: cfg.true_sequential,
            with_gram,
        };
        let (reports, seconds) = walk.run(model, calib, progress, &|m, l, role, stats| {
            let p = prune_linear(m, l, role, stats, fixed.get(&(l, role)), cfg)?;
            Ok((p.weight, p.report))
        })?;
        tensors = reports;
        forward_seconds = seconds;
    }

    Ok(PruneReport {
        method: cfg.method.name().to_string(),
        pattern: cfg.pattern.to_string(),
        target_sparsity: cfg.pattern.effective_sparsity(cfg.sparsity),
        roles: roles.iter().map(|r| r.short().to_string()).collect(),
        calib_windows: if use_calib { calib.len() } else { 0 },
        calib_tokens: if use_calib {
            calib.iter().map(|w| w.len()).sum()
        } else {
            0
        },
        tensors,
        seconds: t0.elapsed().as_secs_f64(),
        forward_seconds,
    })
}
