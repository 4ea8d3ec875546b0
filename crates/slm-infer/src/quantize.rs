//! What `slm quantize` reports: the round-to-nearest error of each block matrix and the
//! bytes per token before and after, for a weight type (the file itself is written by
//! `slm_io::gguf::export`).

use slm_core::{Error, Result};
use slm_io::gguf::export::GgufType;
use slm_kernels::quant::{QuantMatrix, QK};
use slm_model::Llama;

/// One matrix's quantisation error.
#[derive(Debug, Clone, PartialEq)]
pub struct MatrixError {
    pub name: String,
    pub values: usize,
    /// ‖W − Ŵ‖² / ‖W‖² (0 for matrices kept as they are).
    pub relative_error: f64,
}

/// Per-matrix errors and sizes of quantising `model` to `ty`.
#[derive(Debug, Clone, PartialEq)]
pub struct QuantizeReport {
    pub matrices: Vec<MatrixError>,
    /// Relative error over all quantised values together.
    pub overall_relative_error: f64,
    pub f32_bytes: u64,
    pub quantized_bytes: u64,
}

/// `w` after quantising to `ty` and back (f16 rounding for `F16`; `w` itself for `F32` or
/// rows that do not fill 32-value blocks, which the exporter keeps in f16).
pub fn round_trip(w: &[f32], cols: usize, ty: GgufType) -> Result<Vec<f32>> {
    let f16 = |w: &[f32]| w.iter().map(|&x| half::f16::from_f32(x).to_f32()).collect();
    if ty.is_quantised() && !cols.is_multiple_of(QK) {
        return Ok(f16(w));
    }
    match ty.block_kind() {
        Some(kind) => Ok(QuantMatrix::quantize(kind, w)?.dequantize()),
        None if ty == GgufType::F16 => Ok(f16(w)),
        None => Ok(w.to_vec()),
    }
}

/// Bytes per value of `ty` (blocks included).
fn bytes_per_value(ty: GgufType) -> f64 {
    match ty {
        GgufType::F32 => 4.0,
        GgufType::F16 => 2.0,
        GgufType::Q8_0 => 34.0 / 32.0,
        GgufType::Q4_0 => 18.0 / 32.0,
        GgufType::Q4_1 => 20.0 / 32.0,
    }
}

/// The error report for quantising every 2-D weight of `model` (block linears, embedding,
/// head) to `ty`, as `slm export gguf --type ty` writes them.
pub fn quantize_report(model: &Llama, ty: GgufType) -> Result<QuantizeReport> {
    quantize_report_against(model, model, ty)
}

/// The report for writing `model` as `ty` when it was made from `reference` (GPTQ changes
/// the block linears before they are written): each matrix's error is that of the written
/// values against `reference`'s.
pub fn quantize_report_against(
    reference: &Llama,
    model: &Llama,
    ty: GgufType,
) -> Result<QuantizeReport> {
    let originals: std::collections::HashMap<String, candle_core::Tensor> =
        reference.tensors().into_iter().collect();
    let values = |name: &str, t: &candle_core::Tensor| -> Result<Vec<f32>> {
        t.to_dtype(candle_core::DType::F32)?
            .flatten_all()?
            .to_vec1::<f32>()
            .map_err(|e| Error::msg(format!("{name}: {e}")))
    };
    let mut matrices = Vec::new();
    let (mut err, mut norm) = (0f64, 0f64);
    let (mut f32_bytes, mut q_bytes) = (0u64, 0u64);
    for (name, t) in model.tensors() {
        let dims = t.dims().to_vec();
        let w = values(&name, &t)?;
        f32_bytes += 4 * w.len() as u64;
        if dims.len() != 2 {
            q_bytes += 4 * w.len() as u64; // norms stay f32
            continue;
        }
        let orig = match originals.get(&name) {
            Some(o) if o.dims() == t.dims() => values(&name, o)?,
            _ => {
                return Err(Error::invalid(format!(
                    "the reference model has no tensor `{name}` of shape {dims:?}"
                )))
            }
        };
        let cols = dims[1];
        let back = round_trip(&w, cols, ty)?;
        let (e, n) = orig
            .iter()
            .zip(&back)
            .fold((0f64, 0f64), |(e, n), (&a, &b)| {
                (e + ((a - b) as f64).powi(2), n + (a as f64).powi(2))
            });
        err += e;
        norm += n;
        // Quantised types keep rows that do not fill blocks in f16.
        let per = if ty.is_quantised() && cols % QK != 0 {
            2.0
        } else {
            bytes_per_value(ty)
        };
        q_bytes += (per * w.len() as f64).round() as u64;
        matrices.push(MatrixError {
            name,
            values: w.len(),
            relative_error: if n > 0.0 { e / n } else { 0.0 },
        });
    }
    Ok(QuantizeReport {
        matrices,
        overall_relative_error: if norm > 0.0 { err / norm } else { 0.0 },
        f32_bytes,
        quantized_bytes: q_bytes,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use candle_core::Device;

    #[test]
    fn errors_order_the_types_and_sizes_shrink() {
        let mut c = slm_model::preset("260k").unwrap();
        c.hidden_size = 64;
        c.intermediate_size = 128;
        c.num_attention_heads = 4;
        c.num_key_value_heads = 4;
        c.head_dim = 16;
        c.vocab_size = 96;
        let m = Llama::random(c, 3, &Device::Cpu).unwrap();
        let r = |ty| quantize_report(&m, ty).unwrap();
        let (f32r, q8, q40, q41) = (
            r(GgufType::F32),
            r(GgufType::Q8_0),
            r(GgufType::Q4_0),
            r(GgufType::Q4_1),
        );
        assert_eq!(f32r.overall_relative_error, 0.0);
        assert!(q8.overall_relative_error > 0.0);
        assert!(q8.overall_relative_error < q41.overall_relative_error);
        assert!(
            q41.overall_relative_error < q40.overall_relative_error,
            "{} vs {}",
            q41.overall_relative_error,
            q40.overall_relative_error
        );
        assert!(
            q40.quantized_bytes < q41.quantized_bytes && q41.quantized_bytes < q8.quantized_bytes
        );
        assert!(q8.quantized_bytes * 3 < q8.f32_bytes);
        // One entry per 2-D tensor, each with its own error.
        assert!(q40
            .matrices
            .iter()
            .all(|m| m.relative_error > 0.0 && m.relative_error < 0.05));
    }
}
