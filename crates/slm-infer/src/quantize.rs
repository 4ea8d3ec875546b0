//! What `slm quantize` reports: the quantisation error of each matrix at the type the file
//! stores it in (one type for all, or the per-tensor types of a k-quant mix), and the bytes
//! before and after (the file itself is written by `slm_io::gguf::export`).

use slm_core::{Error, Result};
use slm_io::gguf::export::{gguf_name, matrix_type, GgufType, MixShape, TensorType};
use slm_kernels::kquant::quantize::{quantize_to_blocks, GgmlQuantize};
use slm_kernels::kquant::{dequantize_blocks, BlockQ4K, BlockQ5K, BlockQ5_0, BlockQ5_1, BlockQ6K};
use slm_kernels::quant::{BlockKind, QuantMatrix};
use slm_model::Llama;

/// One matrix's quantisation error.
#[derive(Debug, Clone, PartialEq)]
pub struct MatrixError {
    pub name: String,
    pub values: usize,
    /// The type the file stores the matrix in.
    pub ty: TensorType,
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

impl QuantizeReport {
    /// How many matrices each type holds, most first (ties by type).
    pub fn type_counts(&self) -> Vec<(TensorType, usize)> {
        let mut counts = std::collections::BTreeMap::new();
        for m in &self.matrices {
            *counts.entry(m.ty).or_insert(0usize) += 1;
        }
        let mut v: Vec<_> = counts.into_iter().collect();
        v.sort_by(|a, b| b.1.cmp(&a.1).then(a.0.cmp(&b.0)));
        v
    }
}

/// `w` after storing it as `t` and reading it back (f16 rounding for `F16`, `w` itself for
/// `F32`).
pub fn round_trip(w: &[f32], t: TensorType) -> Result<Vec<f32>> {
    fn k<B: GgmlQuantize>(w: &[f32]) -> Result<Vec<f32>> {
        let b = quantize_to_blocks::<B>(w)?;
        let mut out = vec![0f32; w.len()];
        dequantize_blocks(&b, &mut out)?;
        Ok(out)
    }
    let blocks = |kind| -> Result<Vec<f32>> { Ok(QuantMatrix::quantize(kind, w)?.dequantize()) };
    match t {
        TensorType::F32 => Ok(w.to_vec()),
        TensorType::F16 => Ok(w.iter().map(|&x| half::f16::from_f32(x).to_f32()).collect()),
        TensorType::Q8_0 => blocks(BlockKind::Q8_0),
        TensorType::Q4_0 => blocks(BlockKind::Q4_0),
        TensorType::Q4_1 => blocks(BlockKind::Q4_1),
        TensorType::Q5_0 => k::<BlockQ5_0>(w),
        TensorType::Q5_1 => k::<BlockQ5_1>(w),
        TensorType::Q4_K => k::<BlockQ4K>(w),
        TensorType::Q5_K => k::<BlockQ5K>(w),
        TensorType::Q6_K => k::<BlockQ6K>(w),
    }
}

/// The type the GGUF export stores `model`'s tensor `hf_name` (rows of `cols`) in.
pub fn stored_type(model: &Llama, hf_name: &str, cols: usize, ty: GgufType) -> TensorType {
    let c = &model.config;
    let shape = MixShape {
        layers: c.num_hidden_layers,
        heads: c.num_attention_heads,
        kv_heads: c.num_key_value_heads,
        tied: c.tie_word_embeddings,
    };
    let name = gguf_name(hf_name).unwrap_or_else(|| hf_name.to_string());
    matrix_type(ty, &name, cols, &shape)
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
        let stored = stored_type(model, &name, cols, ty);
        let back = round_trip(&w, stored)?;
        let (e, n) = orig
            .iter()
            .zip(&back)
            .fold((0f64, 0f64), |(e, n), (&a, &b)| {
                (e + ((a - b) as f64).powi(2), n + (a as f64).powi(2))
            });
        err += e;
        norm += n;
        q_bytes += (stored.bytes_per_value() * w.len() as f64).round() as u64;
        matrices.push(MatrixError {
            name,
            values: w.len(),
            ty: stored,
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

    #[test]
    fn k_mixes_report_their_per_tensor_types() {
        // Widths that fill 256-value blocks (k-quants) and one that does not (the head's
        // rows are 256 long; ffn_down's 384 fall back to Q5_0/Q5_1/Q8_0), 8 layers for
        // llama.cpp's use_more_bits pattern (layers 0, 3, 6, 7), an untied output.
        let mut c = slm_model::preset("260k").unwrap();
        c.hidden_size = 256;
        c.intermediate_size = 384;
        c.num_hidden_layers = 8;
        c.num_attention_heads = 4;
        c.num_key_value_heads = 2;
        c.head_dim = 64;
        c.vocab_size = 64;
        c.tie_word_embeddings = false;
        let m = Llama::random(c, 5, &Device::Cpu).unwrap();
        let r = |ty| quantize_report(&m, ty).unwrap();
        let (q4, q5, q6) = (r(GgufType::Q4_K_M), r(GgufType::Q5_K_M), r(GgufType::Q6_K));
        let ty_of = |rep: &QuantizeReport, name: &str| {
            rep.matrices.iter().find(|x| x.name == name).unwrap().ty
        };
        use TensorType as T;
        for (l, more) in [
            (0, true),
            (1, false),
            (3, true),
            (4, false),
            (6, true),
            (7, true),
        ] {
            let v = format!("model.layers.{l}.self_attn.v_proj.weight");
            let down = format!("model.layers.{l}.mlp.down_proj.weight");
            assert_eq!(ty_of(&q4, &v), if more { T::Q6_K } else { T::Q4_K }, "{v}");
            assert_eq!(ty_of(&q5, &v), if more { T::Q6_K } else { T::Q5_K }, "{v}");
            assert_eq!(
                ty_of(&q4, &down),
                if more { T::Q8_0 } else { T::Q5_0 },
                "{down}"
            );
            assert_eq!(
                ty_of(&q5, &down),
                if more { T::Q8_0 } else { T::Q5_1 },
                "{down}"
            );
            assert_eq!(ty_of(&q6, &v), T::Q6_K);
            assert_eq!(ty_of(&q6, &down), T::Q8_0);
        }
        assert_eq!(
            ty_of(&q4, "model.layers.2.self_attn.q_proj.weight"),
            T::Q4_K
        );
        assert_eq!(ty_of(&q4, "model.embed_tokens.weight"), T::Q4_K);
        assert_eq!(ty_of(&q4, "lm_head.weight"), T::Q6_K);
        assert_eq!(q4.type_counts()[0], (T::Q4_K, 8 * 6 - 4 + 1));
        // More bits, less error and more bytes.
        let (e4, e5, e6) = (
            q4.overall_relative_error,
            q5.overall_relative_error,
            q6.overall_relative_error,
        );
        assert!(
            0.0 < e6 && e6 < e5 && e5 < e4 && e4 < 0.02,
            "{e4} {e5} {e6}"
        );
        assert!(q4.quantized_bytes < q5.quantized_bytes);
        assert!(q5.quantized_bytes < q6.quantized_bytes);
        assert!(q6.quantized_bytes * 4 < q6.f32_bytes);
    }
}
