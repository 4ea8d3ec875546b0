//! GPTQ over a whole model: every block linear whose rows fill 32-value blocks is rounded onto
//! a block grid ([`crate::gptq`]) with the statistics of the inputs it sees in the model
//! quantised so far ([`crate::sequential`], as the GPTQ paper runs it), and written back as
//! the blocks' f32 values. Round-to-nearest of the result gives back the same blocks, so
//! `slm export gguf` / `slm quantize` write them as they are and the decode engine runs them
//! as they are.
//!
//! For each linear the report holds the relative output error ‖XWᵀ − XŴᵀ‖²/‖XWᵀ‖² on its
//! calibration inputs for GPTQ and, for comparison, for round-to-nearest of the same weight.
//! Embeddings, the output head and norms are not touched here (the exporter rounds the
//! matrices to nearest), nor are linears whose rows do not fill blocks (the exporter keeps them
//! in f16).

use crate::gptq::{gptq_quantize, GptqOptions};
use crate::report::{output_energy, reconstruction_error};
use crate::sequential::{check_windows, tensor_name, weight_of, Walk, Weight};
use serde::{Deserialize, Serialize};
use slm_core::{Error, LinearRole, Result};
use slm_kernels::quant::{BlockKind, QuantMatrix, QK};
use slm_model::Llama;
use std::time::Instant;

/// One GPTQ run over a model.
#[derive(Debug, Clone)]
pub struct GptqConfig {
    pub options: GptqOptions,
    /// The block linears to quantise (default: all seven).
    pub roles: Vec<LinearRole>,
    /// Calibration windows per forward pass (default 8).
    pub batch_size: usize,
}

impl GptqConfig {
    /// The paper's settings for `kind` on all seven roles.
    pub fn new(kind: BlockKind) -> Self {
        Self {
            options: GptqOptions::new(kind),
            roles: LinearRole::ALL.to_vec(),
            batch_size: 8,
        }
    }
}

/// What GPTQ did to one linear.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct GptqTensorReport {
    pub name: String,
    pub shape: [usize; 2],
    /// ‖XWᵀ − XŴᵀ‖²/‖XWᵀ‖² of the GPTQ weight on the calibration inputs.
    pub rel_error_gptq: f64,
    /// The same for round-to-nearest onto the same block format.
    pub rel_error_rtn: f64,
    pub seconds: f64,
}

/// What a GPTQ run did.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct GptqReport {
    pub tensors: Vec<GptqTensorReport>,
    /// Roles left as they are because their rows do not fill 32-value blocks.
    pub skipped_roles: Vec<String>,
    pub calib_windows: usize,
    pub calib_tokens: usize,
    pub seconds: f64,
    pub forward_seconds: f64,
}

/// Quantises the block linears of `model` in place with GPTQ as `cfg` says, calibrated on
/// `calib` windows of token ids. `progress("block", done, total)` after each block.
pub fn gptq_model(
    model: &mut Llama,
    calib: &[Vec<u32>],
    cfg: &GptqConfig,
    progress: &mut dyn FnMut(&str, usize, usize),
) -> Result<GptqReport> {
    if calib.is_empty() {
        return Err(Error::invalid(
            "GPTQ needs calibration windows, none were given",
        ));
    }
    if cfg.batch_size == 0 {
        return Err(Error::invalid("calibration batch size must be ≥ 1"));
    }
    check_windows(model, calib)?;
    let first = model
        .layers
        .first()
        .ok_or_else(|| Error::invalid("the model has no blocks"))?;
    // Every block has the same shapes: a role either fills blocks everywhere or nowhere.
    let (roles, skipped): (Vec<LinearRole>, Vec<LinearRole>) = LinearRole::ALL
        .into_iter()
        .filter(|r| cfg.roles.contains(r))
        .partition(|&r| first.linear(r).in_features() % QK == 0);
    if roles.is_empty() {
        return Err(Error::invalid(format!(
            "none of the chosen linears has rows that fill {QK}-value blocks"
        )));
    }
    let t0 = Instant::now();
    let walk = Walk {
        roles: &roles,
        batch_size: cfg.batch_size,
        true_sequential: false,
        with_gram: true,
    };
    let opts = cfg.options;
    let (tensors, forward_seconds) = walk.run(model, calib, progress, &|m, l, role, stats| {
        let start = Instant::now();
        let name = tensor_name(l, role);
        let w = weight_of(m, l, role)?;
        let (rows, cols) = (w.rows, w.cols);
        let stats =
            stats.ok_or_else(|| Error::msg(format!("no calibration statistics for `{name}`")))?;
        let (gram, hessian) = match (stats.gram(), stats.sparsegpt_hessian()) {
            (Some(g), Some(h)) => (g, h),
            _ => return Err(Error::msg(format!("no Gram matrix for `{name}`"))),
        };
        let out = gptq_quantize(&w.data, rows, cols, hessian.as_ref(), &opts)
            .map_err(|e| Error::msg(format!("`{name}`: {e}")))?;
        let rtn = QuantMatrix::quantize(opts.kind, &w.data)?.dequantize();
        let energy = output_energy(&w.data, rows, cols, gram.as_ref())?;
        let rel = |new: &[f32]| -> Result<f64> {
            let e = reconstruction_error(&w.data, new, rows, cols, gram.as_ref())?;
            Ok(if energy > 0.0 { e / energy } else { 0.0 })
        };
        let report = GptqTensorReport {
            name,
            shape: [rows, cols],
            rel_error_gptq: rel(&out.weight)?,
            rel_error_rtn: rel(&rtn)?,
            seconds: start.elapsed().as_secs_f64(),
        };
        Ok((
            Weight {
                data: out.weight,
                rows,
                cols,
            },
            report,
        ))
    })?;
    Ok(GptqReport {
        tensors,
        skipped_roles: skipped.iter().map(|r| r.short().to_string()).collect(),
        calib_windows: calib.len(),
        calib_tokens: calib.iter().map(|w| w.len()).sum(),
        seconds: t0.elapsed().as_secs_f64(),
        forward_seconds,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use candle_core::Device;

    fn model() -> Llama {
        let mut c = slm_model::preset("260k").unwrap();
        c.hidden_size = 64;
        c.intermediate_size = 96; // fills blocks, so down is quantised too
        c.num_attention_heads = 4;
        c.num_key_value_heads = 2;
        c.head_dim = 16;
        c.num_hidden_layers = 2;
        c.vocab_size = 64;
        Llama::random(c, 5, &Device::Cpu).unwrap()
    }

    fn windows() -> Vec<Vec<u32>> {
        (0..12u32)
            .map(|w| {
                (0..48u32)
                    .map(|t| (w * 7 + t * t * 3 + t / 5) % 64)
                    .collect()
            })
            .collect()
    }

    #[test]
    fn every_linear_lands_on_its_grid_with_less_error_than_round_to_nearest() {
        for kind in [BlockKind::Q4_0, BlockKind::Q4_1] {
            let mut m = model();
            let before = m.clone();
            let report = gptq_model(
                &mut m,
                &windows(),
                &GptqConfig::new(kind),
                &mut |_, _, _| {},
            )
            .unwrap();
            assert_eq!(report.tensors.len(), 2 * 7);
            assert!(report.skipped_roles.is_empty());
            let (mut sum_g, mut sum_r) = (0.0, 0.0);
            for l in 0..2 {
                for role in LinearRole::ALL {
                    let w = weight_of(&m, l, role).unwrap().data;
                    // On the grid: round-to-nearest gives the same values back.
                    assert_eq!(QuantMatrix::quantize(kind, &w).unwrap().dequantize(), w);
                    assert_ne!(w, weight_of(&before, l, role).unwrap().data);
                }
            }
            for t in &report.tensors {
                assert!(t.rel_error_gptq > 0.0 && t.rel_error_gptq < 0.2, "{t:?}");
                sum_g += t.rel_error_gptq;
                sum_r += t.rel_error_rtn;
            }
            // Random weights with random-token inputs: GPTQ still wins on the whole.
            assert!(
                sum_g < sum_r,
                "{kind:?}: GPTQ {sum_g} vs round-to-nearest {sum_r}"
            );
            // Embeddings and head untouched.
            let emb = |m: &Llama| {
                m.tensors()
                    .into_iter()
                    .find(|(n, _)| n.contains("embed"))
                    .unwrap()
                    .1
                    .flatten_all()
                    .unwrap()
                    .to_vec1::<f32>()
                    .unwrap()
            };
            assert_eq!(emb(&m), emb(&before));
        }
    }

    #[test]
    fn unblockable_roles_are_skipped_and_bad_input_refused() {
        let mut c = model().config.clone();
        c.intermediate_size = 72; // down's rows (72) do not fill blocks
        let mut m = Llama::random(c, 1, &Device::Cpu).unwrap();
        let r = gptq_model(
            &mut m,
            &windows(),
            &GptqConfig::new(BlockKind::Q4_0),
            &mut |_, _, _| {},
        )
        .unwrap();
        assert_eq!(r.skipped_roles, ["down"]);
        assert_eq!(r.tensors.len(), 2 * 6);
        assert!(gptq_model(
            &mut m,
            &[],
            &GptqConfig::new(BlockKind::Q4_0),
            &mut |_, _, _| {}
        )
        .is_err());
        let e = gptq_model(
            &mut m,
            &[vec![999]],
            &GptqConfig::new(BlockKind::Q4_0),
            &mut |_, _, _| {},
        )
        .unwrap_err()
        .to_string();
        assert!(e.contains("vocabulary"), "{e}");
    }
}
