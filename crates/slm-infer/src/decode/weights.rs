//! The decode engine's weights: matrices in f32, block-quantised or sparse form, packed so
//! that matrices applied to the same input run as one matrix-vector product (q|k|v, gate|up).
//!
//! A pruned f32 matrix is stored sparse when that reads fewer bytes and runs faster than
//! dense ([`SparseUse::Auto`]): in the 2:4 format when every group of 4 keeps at most 2
//! weights, else as non-zeros with column offsets when at least [`OFFSETS_MIN_SPARSITY`] of it
//! is zero.

use slm_core::{Error, Result};
use slm_kernels::matmul::{linear_fwd, LinearDims};
use slm_kernels::matvec::{matvec, matvec_with, MAX_ROWS};
use slm_kernels::quant::{BlockKind, QuantMatrix, QK};
use slm_kernels::quant_x8::{matmul_x8, matvec_x8, InterleavedMatrix, Kind, QuantActs};
use slm_kernels::sparse::{is_2_4, OffsetMatrix, Sparse24Matrix, SparseMatrix};
use slm_model::flat::BlockParams;
use slm_model::Llama;
use std::collections::HashMap;
use std::ops::Range;

/// How the linear weights are stored.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum WeightType {
    #[default]
    F32,
    Q8_0,
    Q4_0,
    Q4_1,
}

impl WeightType {
    pub fn parse(s: &str) -> Result<Self> {
        match s.to_ascii_lowercase().as_str() {
            "f32" => Ok(Self::F32),
            "q8_0" => Ok(Self::Q8_0),
            "q4_0" => Ok(Self::Q4_0),
            "q4_1" => Ok(Self::Q4_1),
            other => Err(Error::invalid(format!(
                "unknown weight type `{other}`: use f32, q8_0, q4_0 or q4_1"
            ))),
        }
    }
}

/// Whether pruned f32 matrices are stored in a sparse format.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum SparseUse {
    /// Sparse where it reads fewer bytes and runs faster (see the module docs).
    #[default]
    Auto,
    /// Always dense (to time a pruned model against its dense storage).
    Off,
}

impl SparseUse {
    pub fn parse(s: &str) -> Result<Self> {
        match s.to_ascii_lowercase().as_str() {
            "auto" => Ok(Self::Auto),
            "off" => Ok(Self::Off),
            other => Err(Error::invalid(format!(
                "unknown sparse setting `{other}`: use auto or off"
            ))),
        }
    }
}

/// Share of zeros from which an unstructured f32 matrix is stored as non-zeros with byte
/// column offsets: from here it reads fewer bytes *and* decodes faster than dense on this
/// machine (docs/PERFORMANCE.md § Sparse decoding: whole models 1.2–1.3× at 70%, 1.7–2.2× at
/// 90%; at 50% the offsets kernel was 1.15× per matrix but 0.82–0.94× end to end, so a
/// 50%-pruned matrix stays dense). The bitmask format (fewer bytes at 50%) is not chosen: its
/// expand step makes it compute-bound at ~1.0× with AVX2.
pub const OFFSETS_MIN_SPARSITY: f64 = 0.6;

/// Rows from which a sparse matrix product expands the matrix and uses the dense matmul.
const DENSIFY_ROWS: usize = 16;

/// A weight matrix [rows = out, cols = in].
#[derive(Debug, Clone)]
pub enum Matrix {
    F32 {
        w: Vec<f32>,
        rows: usize,
        cols: usize,
    },
    /// Block-quantised, repacked 8 rows at a time (`slm_kernels::quant_x8`).
    Quant(InterleavedMatrix),
    Sparse(SparseMatrix),
}

impl Matrix {
    /// Stores `w` [rows, cols] as `ty` (quantised types need `cols` divisible by 32; other
    /// matrices stay f32).
    pub fn new(w: Vec<f32>, rows: usize, cols: usize, ty: WeightType) -> Result<Self> {
        Self::with_sparse(w, rows, cols, ty, SparseUse::Off)
    }

    /// As [`Matrix::new`], storing a pruned f32 matrix sparse when `sparse` allows and it
    /// pays (see the module docs).
    pub fn with_sparse(
        w: Vec<f32>,
        rows: usize,
        cols: usize,
        ty: WeightType,
        sparse: SparseUse,
    ) -> Result<Self> {
        if w.len() != rows * cols {
            return Err(Error::invalid(format!(
                "matrix of {} values for {rows} × {cols}",
                w.len()
            )));
        }
        if ty == WeightType::F32 && sparse == SparseUse::Auto && !w.is_empty() {
            let zeros = w.iter().filter(|v| **v == 0.0).count() as f64 / w.len() as f64;
            if zeros >= 0.45 && cols.is_multiple_of(16) && is_2_4(&w, cols) {
                return Ok(Self::Sparse(SparseMatrix::TwoFour(
                    Sparse24Matrix::from_dense(&w, rows, cols)?,
                )));
            }
            if zeros >= OFFSETS_MIN_SPARSITY {
                return Ok(Self::Sparse(SparseMatrix::Offsets(
                    OffsetMatrix::from_dense(&w, rows, cols)?,
                )));
            }
        }
        if ty == WeightType::F32 || !cols.is_multiple_of(QK) {
            return Ok(Self::F32 { w, rows, cols });
        }
        let kind = match ty {
            WeightType::Q8_0 => BlockKind::Q8_0,
            WeightType::Q4_1 => BlockKind::Q4_1,
            _ => BlockKind::Q4_0,
        };
        let q = QuantMatrix::quantize(kind, &w)?;
        Ok(Self::Quant(InterleavedMatrix::new(&q, rows, cols)?))
    }

    pub fn rows(&self) -> usize {
        match self {
            Self::F32 { rows, .. } => *rows,
            Self::Quant(m) => m.rows(),
            Self::Sparse(m) => m.rows(),
        }
    }

    pub fn cols(&self) -> usize {
        match self {
            Self::F32 { cols, .. } => *cols,
            Self::Quant(m) => m.cols(),
            Self::Sparse(m) => m.cols(),
        }
    }

    /// Bytes read by one matrix-vector product.
    pub fn bytes(&self) -> usize {
        match self {
            Self::F32 { w, .. } => 4 * w.len(),
            Self::Quant(m) => m.bytes(),
            Self::Sparse(m) => m.bytes(),
        }
    }

    /// y [rows] = W·x [cols] (+ bias); `xq` is scratch for the quantised activation.
    pub fn matvec(
        &self,
        x: &[f32],
        bias: Option<&[f32]>,
        xq: &mut QuantActs,
        y: &mut [f32],
    ) -> Result<()> {
        match self {
            Self::F32 { w, rows, cols } => matvec(w, bias, x, 1, *cols, *rows, y),
            Self::Quant(m) => {
                matvec_x8(m, x, xq, y)?;
                add_bias(y, bias);
                Ok(())
            }
            Self::Sparse(m) => {
                m.matvec(x, y)?;
                add_bias(y, bias);
                Ok(())
            }
        }
    }
}

impl Matrix {
    /// Y [n, rows] = X [n, cols]·Wᵀ (+ bias) for prefill: f32 through the blocked matmul,
    /// quantised weights streamed once for all n rows. `xq` and `y_t` (n·rows) are scratch.
    pub fn matmul(
        &self,
        x: &[f32],
        n: usize,
        bias: Option<&[f32]>,
        xq: &mut QuantActs,
        y_t: &mut [f32],
        y: &mut [f32],
    ) -> Result<()> {
        match self {
            // A few rows (batched decoding): stream the weights once for all of them.
            Self::F32 { w, rows, cols } if n <= MAX_ROWS => {
                matvec_with(w, bias, x, n, *cols, *rows, y_t, y)
            }
            Self::F32 { w, rows, cols } => {
                linear_fwd(y, x, w, bias, LinearDims::new(n, *cols, *rows), false)
            }
            Self::Quant(m) => {
                let rows = m.rows();
                matmul_x8(m, x, n, xq, &mut y_t[..n * rows], y)?;
                for row in y.chunks_exact_mut(rows) {
                    add_bias(row, bias);
                }
                Ok(())
            }
            // Many rows (prefill): expanding the matrix once and running the blocked matmul
            // beats walking the non-zeros once per row.
            Self::Sparse(sm) if n >= DENSIFY_ROWS => linear_fwd(
                y,
                x,
                &sm.to_dense(),
                bias,
                LinearDims::new(n, sm.cols(), sm.rows()),
                false,
            ),
            Self::Sparse(sm) => {
                sm.matmul(x, n, &mut y_t[..n * sm.rows()], y)?;
                for row in y.chunks_exact_mut(sm.rows()) {
                    add_bias(row, bias);
                }
                Ok(())
            }
        }
    }

    /// The storage, for reports: `f32`, `q8_0`, `q4_0`, `q4_1`, `bitmask`, `offsets` or `2:4`.
    pub fn kind(&self) -> &'static str {
        match self {
            Self::F32 { .. } => "f32",
            Self::Quant(m) => match m.kind() {
                Kind::Q8_0 => "q8_0",
                Kind::Q4_0 => "q4_0",
                Kind::Q4_1 => "q4_1",
            },
            Self::Sparse(SparseMatrix::Bitmask(_)) => "bitmask",
            Self::Sparse(SparseMatrix::Offsets(_)) => "offsets",
            Self::Sparse(SparseMatrix::TwoFour(_)) => "2:4",
        }
    }
}

fn add_bias(y: &mut [f32], bias: Option<&[f32]>) {
    if let Some(b) = bias {
        y.iter_mut().zip(b).for_each(|(v, &b)| *v += b);
    }
}

/// One decoder block.
#[derive(Debug, Clone)]
pub struct LayerWeights {
    pub attn_norm: Vec<f32>,
    /// q|k|v, [(h+2g)·e, d]
    pub wqkv: Matrix,
    pub bqkv: Option<Vec<f32>>,
    /// [d, h·e]
    pub wo: Matrix,
    pub ffn_norm: Vec<f32>,
    /// gate|up, [2·inter, d]
    pub wgu: Matrix,
    /// [d, inter]
    pub wdown: Matrix,
}

/// All weights of a model for decoding.
#[derive(Debug, Clone)]
pub struct Weights {
    /// [vocab, d], f32 (one row is read per token).
    pub embed: Vec<f32>,
    pub layers: Vec<LayerWeights>,
    pub final_norm: Vec<f32>,
    /// [vocab, d]
    pub lm_head: Matrix,
}

fn values(tensors: &HashMap<String, candle_core::Tensor>, name: &str) -> Result<Vec<f32>> {
    let t = tensors
        .get(name)
        .ok_or_else(|| Error::invalid(format!("the model has no tensor `{name}`")))?;
    Ok(t.to_dtype(candle_core::DType::F32)?
        .flatten_all()?
        .to_vec1::<f32>()?)
}

impl Weights {
    /// Packs `model`'s weights, storing the linear layers (and the output head) as `ty`;
    /// pruned f32 block matrices go sparse as `sparse` allows (the head stays dense).
    pub fn from_llama(model: &Llama, ty: WeightType, sparse: SparseUse) -> Result<Self> {
        let cfg = &model.config;
        let t: HashMap<String, candle_core::Tensor> = model.tensors().into_iter().collect();
        let (d, inter, v) = (cfg.hidden_size, cfg.intermediate_size, cfg.vocab_size);
        let (q, kv) = (cfg.q_dim(), cfg.kv_dim());
        let embed = values(&t, "model.embed_tokens.weight")?;
        let mut layers = Vec::with_capacity(cfg.num_hidden_layers);
        for l in 0..cfg.num_hidden_layers {
            // q|k|v and gate|up packed as the flat forward packs them.
            let BlockParams { ranges: r, values } = BlockParams::from_tensors(cfg, &t, l)?;
            let part = |range: &Range<usize>| values[range.clone()].to_vec();
            layers.push(LayerWeights {
                attn_norm: part(&r.norm1),
                wqkv: Matrix::with_sparse(part(&r.wqkv), q + 2 * kv, d, ty, sparse)?,
                bqkv: r.bqkv.as_ref().map(part),
                wo: Matrix::with_sparse(part(&r.wo), d, q, ty, sparse)?,
                ffn_norm: part(&r.norm2),
                wgu: Matrix::with_sparse(part(&r.wgu), 2 * inter, d, ty, sparse)?,
                wdown: Matrix::with_sparse(part(&r.wdown), d, inter, ty, sparse)?,
            });
        }
        let head = if cfg.tie_word_embeddings {
            embed.clone()
        } else {
            values(&t, "lm_head.weight")?
        };
        Ok(Self {
            embed,
            layers,
            final_norm: values(&t, "model.norm.weight")?,
            lm_head: Matrix::new(head, v, d, ty)?,
        })
    }

    /// How the matrices are stored, e.g. `bitmask ×24, f32 ×1` (the head included).
    pub fn storage(&self) -> String {
        let mut counts: std::collections::BTreeMap<&str, usize> = Default::default();
        for l in &self.layers {
            for m in [&l.wqkv, &l.wo, &l.wgu, &l.wdown] {
                *counts.entry(m.kind()).or_default() += 1;
            }
        }
        *counts.entry(self.lm_head.kind()).or_default() += 1;
        counts
            .iter()
            .map(|(k, n)| format!("{k} ×{n}"))
            .collect::<Vec<_>>()
            .join(", ")
    }

    /// Bytes of weights read per decoded token (every matrix once, one embedding row).
    pub fn bytes_per_token(&self) -> usize {
        let norms: usize = self
            .layers
            .iter()
            .map(|l| {
                4 * (l.attn_norm.len() + l.ffn_norm.len() + l.bqkv.as_ref().map_or(0, Vec::len))
                    + l.wqkv.bytes()
                    + l.wo.bytes()
                    + l.wgu.bytes()
                    + l.wdown.bytes()
            })
            .sum();
        let d = self.final_norm.len();
        // + the final norm, the head, and one embedding row
        norms + 4 * d + self.lm_head.bytes() + 4 * d
    }
}
