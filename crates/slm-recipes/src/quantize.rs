//! Block quantisation to a GGUF file (round-to-nearest, llama.cpp's k-quant mixes, or GPTQ
//! calibrated on text) with the error it costs per matrix, as `slm quantize` and the recipes'
//! quantise stage run it.

use crate::calib::CalibSpec;
use crate::progress::progress_bar;
use slm_compress::{gptq_model, GptqConfig, GptqReport};
use slm_core::{Error, Result};
use slm_infer::quantize::{quantize_report_against, QuantizeReport};
use slm_io::gguf::export::{ExportReport, GgufType};
use slm_model::LoadedLlama;
use std::path::Path;

/// How to quantise.
#[derive(Debug, Clone)]
pub struct QuantizeOptions {
    /// q8_0, q4_1, q4_0, or a k-quant mix (q4_k_m, q5_k_m, q6_k).
    pub ty: GgufType,
    /// GPTQ calibration (needs `calib.file`); None: round to nearest.
    pub gptq: Option<CalibSpec>,
    /// GPTQ dampening, as a fraction of the mean diagonal of XᵀX.
    pub damp: f64,
}

impl QuantizeOptions {
    /// Argument errors, before any model is read.
    pub fn validate(&self) -> Result<()> {
        if !self.ty.is_quantised() {
            return Err(Error::invalid(format!(
                "{} is not a quantised type: use q8_0, q4_1, q4_0, q4_k_m, q5_k_m or q6_k \
                 (slm export gguf writes f32/f16)",
                self.ty.name()
            )));
        }
        if self.gptq.is_some() && self.ty.block_kind().is_none() {
            return Err(Error::invalid(format!(
                "GPTQ writes q8_0, q4_1 or q4_0 blocks, not {}: the k-quant mixes are rounded \
                 by llama.cpp's own scale search (drop --gptq, or pick one of those types)",
                self.ty.name()
            )));
        }
        if self.gptq.as_ref().is_some_and(|c| c.file.is_none()) {
            return Err(Error::invalid(
                "GPTQ needs calibration text: give --calib FILE",
            ));
        }
        if !self.damp.is_finite() || self.damp < 0.0 {
            return Err(Error::invalid(format!(
                "--damp must be ≥ 0, got {}",
                self.damp
            )));
        }
        Ok(())
    }
}

/// What quantising wrote and cost.
pub struct QuantizeOutcome {
    pub report: QuantizeReport,
    pub written: ExportReport,
    pub gptq: Option<GptqReport>,
}

/// Quantises `loaded` (read from `spec`; `tok` needed for GPTQ) and writes the GGUF file `out`.
/// `warn` gets advice such as too little calibration text.
pub fn quantize_to_gguf(
    mut loaded: LoadedLlama,
    spec: &str,
    tok: Option<&dyn slm_data::tokenizer::Tokenizer>,
    o: &QuantizeOptions,
    out: &Path,
    warn: &mut dyn FnMut(&str),
) -> Result<QuantizeOutcome> {
    o.validate()?;
    let mut gptq = None;
    let mut reference = None;
    if let (Some(calib), Some(path)) = (&o.gptq, o.gptq.as_ref().and_then(|c| c.file.clone())) {
        let kind =
            o.ty.block_kind()
                .ok_or_else(|| Error::invalid("GPTQ writes q8_0, q4_1 or q4_0 blocks"))?;
        let tok = tok.ok_or_else(|| Error::invalid("GPTQ needs the model's tokenizer"))?;
        let windows = calib.windows(&path, &loaded.model, tok)?;
        let tokens: usize = windows.iter().map(|w| w.len()).sum();
        let c = &loaded.model.config;
        let widest = c.hidden_size.max(c.intermediate_size).max(c.q_dim());
        if tokens < 2 * widest {
            warn(&format!(
                "{tokens} calibration tokens for layer inputs up to {widest} wide: with fewer \
                 tokens than about twice the width XᵀX is (nearly) singular and GPTQ fits the \
                 calibration text rather than the model's use; raise --nsamples or --seqlen"
            ));
        }
        reference = Some(loaded.model.clone());
        let mut cfg = GptqConfig::new(kind);
        cfg.options.damp = o.damp;
        let bar = progress_bar("gptq", "blocks");
        gptq = Some(gptq_model(
            &mut loaded.model,
            &windows,
            &cfg,
            &mut |_, d, t| {
                bar.set_length(t as u64);
                bar.set_position(d as u64);
            },
        )?);
        bar.finish_and_clear();
    }
    let report = quantize_report_against(
        reference.as_ref().unwrap_or(&loaded.model),
        &loaded.model,
        o.ty,
    )?;
    let (written, _) = crate::export::export_gguf(&loaded, spec, o.ty, out)?;
    Ok(QuantizeOutcome {
        report,
        written,
        gptq,
    })
}

impl QuantizeOutcome {
    /// Mean output error of the GPTQ'd linears and of round-to-nearest on the same inputs.
    pub fn gptq_means(&self) -> Option<(f64, f64)> {
        let g = self.gptq.as_ref()?;
        let n = g.tensors.len().max(1) as f64;
        Some((
            g.tensors.iter().map(|t| t.rel_error_gptq).sum::<f64>() / n,
            g.tensors.iter().map(|t| t.rel_error_rtn).sum::<f64>() / n,
        ))
    }

    /// The report as one JSON object.
    pub fn to_json(&self, out: &Path, ty: &str) -> serde_json::Value {
        let r = &self.report;
        let matrices: Vec<_> = r.matrices.iter()
            .map(|m| serde_json::json!({"name": m.name, "type": m.ty.name(), "values": m.values, "relative_error": m.relative_error}))
            .collect();
        let types: serde_json::Map<String, serde_json::Value> = r
            .type_counts()
            .into_iter()
            .map(|(t, n)| (t.name().to_string(), n.into()))
            .collect();
        serde_json::json!({"out": out, "type": ty, "method": if self.gptq.is_some() { "gptq" } else { "rtn" },
            "tensor_types": types,
            "file_bytes": self.written.bytes,
            "f32_bytes": r.f32_bytes, "weight_bytes": r.quantized_bytes,
            "overall_relative_error": r.overall_relative_error,
            "kept_f16": self.written.kept_f16, "matrices": matrices, "gptq": self.gptq})
    }

    /// The report as text lines: file size, the matrices' types (k-quant mixes), overall
    /// error, the five worst matrices with their types, GPTQ's gain, matrices kept in f16.
    pub fn summary(&self, out: &Path, ty: &str) -> Vec<String> {
        let r = &self.report;
        let mut lines = vec![format!(
            "wrote {} ({ty}{}, {:.1} MB; f32 weights {:.1} MB → {:.1} MB, {:.2}× smaller)",
            out.display(),
            if self.gptq.is_some() { ", GPTQ" } else { "" },
            self.written.bytes as f64 / 1e6,
            r.f32_bytes as f64 / 1e6,
            r.quantized_bytes as f64 / 1e6,
            r.f32_bytes as f64 / r.quantized_bytes.max(1) as f64
        )];
        if r.type_counts().len() > 1 {
            let counts: Vec<String> = r
                .type_counts()
                .iter()
                .map(|(t, n)| format!("{n} {}", t.name()))
                .collect();
            lines.push(format!("matrix types: {}", counts.join(", ")));
        }
        lines.push(format!(
            "relative error ‖W − Ŵ‖²/‖W‖² over all matrices: {:.3e}; largest:",
            r.overall_relative_error
        ));
        let mut worst: Vec<_> = r.matrices.iter().collect();
        worst.sort_by(|x, y| y.relative_error.total_cmp(&x.relative_error));
        lines.extend(worst.iter().take(5).map(|m| {
            format!(
                "  {:<48} {:<5} {:.3e}",
                m.name,
                m.ty.name(),
                m.relative_error
            )
        }));
        if let (Some(g), Some((mg, mr))) = (&self.gptq, self.gptq_means()) {
            lines.push(format!(
                "GPTQ on {} linears ({} windows, {} tokens, {:.1} s): mean output error ‖XWᵀ − XŴᵀ‖²/‖XWᵀ‖² {mg:.3e} vs {mr:.3e} round-to-nearest ({:.2}×)",
                g.tensors.len(), g.calib_windows, g.calib_tokens, g.seconds,
                if mg > 0.0 { mr / mg } else { 0.0 }
            ));
            if !g.skipped_roles.is_empty() {
                lines.push(format!(
                    "  not GPTQ'd (rows do not fill 32-value blocks): {}",
                    g.skipped_roles.join(", ")
                ));
            }
        }
        if !self.written.kept_f16.is_empty() {
            lines.push(format!(
                "kept in f16 (rows do not fill 32-value blocks): {}",
                self.written.kept_f16.join(", ")
            ));
        }
        lines
    }
}
