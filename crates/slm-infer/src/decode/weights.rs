//! The decode engine's weights: matrices in f32, block-quantised or sparse form, packed so
//! that matrices applied to the same input run as one matrix-vector product (q|k|v, gate|up).
//!
//! A pruned f32 matrix is stored sparse when that reads fewer bytes and runs faster than
//! dense ([`SparseUse::Auto`]): in the 2:4 format when every group of 4 keeps at most 2
//! weights, else as non-zeros with column offsets when at least [`OFFSETS_MIN_SPARSITY`] of it
//! is zero.

use slm_core::{Error, Result};
use slm_kernels::kquant::{matmul_rows, matvec_rows, RowMatrix};
use slm_kernels::matmul::{linear_fwd, LinearDims};
use slm_kernels::matvec::{matvec, matvec_with, MAX_ROWS};
use slm_kernels::quant::{BlockKind, QuantMatrix, QK};
use slm_kernels::quant_x8::{matmul_x8, matvec_x8, InterleavedMatrix, Kind, QuantActs};
use slm_kernels::sparse::{is_2_4, OffsetMatrix, Sparse24Matrix, SparseMatrix};
use slm_model::flat::BlockParams;
use slm_model::Llama;
use std::collections::{BTreeMap, HashMap};
use std::ops::Range;
use std::sync::Arc;

/// How the linear weights are stored.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum WeightType {
    #[default]
    F32,
    Q8_0,
    Q4_0,
    Q4_1,
    /// Blocks run as a GGUF file stored them (`slm_kernels::kquant`): Q4_K, Q5_K, Q6_K,
    /// Q5_0, Q5_1. Only from a file's own blocks (`--type auto`).
    Q4K,
    Q5K,
    Q6K,
    Q5_0,
    Q5_1,
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

impl WeightType {
    /// Rank by precision: f32 > q8_0 > q4_1 > q4_0.
    fn precision(self) -> u8 {
        match self {
            Self::F32 => 9,
            Self::Q8_0 => 8,
            Self::Q6K => 7,
            Self::Q5K => 6,
            Self::Q5_1 => 5,
            Self::Q5_0 => 4,
            Self::Q4K => 3,
            Self::Q4_1 => 2,
            Self::Q4_0 => 1,
        }
    }

    /// GGML's name of a stored block type the engine runs as stored (`Q4_K`); None for the
    /// types it quantises itself.
    pub fn stored_name(self) -> Option<&'static str> {
        Some(match self {
            Self::Q4K => "Q4_K",
            Self::Q5K => "Q5_K",
            Self::Q6K => "Q6_K",
            Self::Q5_0 => "Q5_0",
            Self::Q5_1 => "Q5_1",
            _ => return None,
        })
    }

    /// The type the engine quantises to when a stored type's blocks are not at hand (the
    /// model changed after loading, e.g. an adapter was merged): the block type that holds
    /// its values at no less precision.
    pub fn widened(self) -> Self {
        match self {
            Self::Q4K => Self::Q4_1,
            Self::Q5K | Self::Q6K | Self::Q5_0 | Self::Q5_1 => Self::Q8_0,
            t => t,
        }
    }

    /// The name users write (`q4_1`).
    pub fn name(self) -> &'static str {
        match self {
            Self::F32 => "f32",
            Self::Q8_0 => "q8_0",
            Self::Q4_1 => "q4_1",
            Self::Q4_0 => "q4_0",
            Self::Q4K => "q4_k",
            Self::Q5K => "q5_k",
            Self::Q6K => "q6_k",
            Self::Q5_0 => "q5_0",
            Self::Q5_1 => "q5_1",
        }
    }

    /// The engine type that runs a tensor stored in the file as GGML type `ggml` (`Q4_K`,
    /// `F16`, …): its own where the engine has it (Q8_0, Q4_0, Q4_1 repacked; Q4_K, Q5_K,
    /// Q6_K, Q5_0, Q5_1 as stored); Q2_K and Q3_K as Q4_1, which holds their values at no
    /// less precision (16 levels per 32 values with a scale and a minimum); floats as f32.
    /// None for a type the reader does not decode either.
    pub fn for_stored(ggml: &str) -> Option<Self> {
        Some(match ggml {
            "F32" | "F16" | "BF16" | "F64" => Self::F32,
            "Q8_0" | "Q8_1" | "Q8_K" => Self::Q8_0,
            "Q4_K" => Self::Q4K,
            "Q5_K" => Self::Q5K,
            "Q6_K" => Self::Q6K,
            "Q5_0" => Self::Q5_0,
            "Q5_1" => Self::Q5_1,
            "Q4_1" | "Q3_K" | "Q2_K" => Self::Q4_1,
            "Q4_0" => Self::Q4_0,
            _ => return None,
        })
    }
}

/// `--type`: a fixed weight type for every matrix, or `auto` — a quantised file runs at its
/// own types (per tensor, [`TypePlan::from_stored`]), float files at f32.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum TypeChoice {
    #[default]
    Auto,
    Fixed(WeightType),
}

impl TypeChoice {
    pub fn parse(s: &str) -> Result<Self> {
        if s.eq_ignore_ascii_case("auto") {
            return Ok(Self::Auto);
        }
        WeightType::parse(s).map(Self::Fixed).map_err(|_| {
            Error::invalid(format!(
                "unknown weight type `{s}`: use auto, f32, q8_0, q4_0 or q4_1"
            ))
        })
    }

    /// The plan for a model whose tensors were stored as `stored` (HF name → GGML type name;
    /// empty for float formats), with `blocks` the stored bytes of those the engine runs as
    /// stored (`LoadedModel::stored_blocks`).
    pub fn plan(
        self,
        stored: &BTreeMap<String, String>,
        blocks: &BTreeMap<String, Arc<[u8]>>,
    ) -> Result<TypePlan> {
        match self {
            Self::Fixed(ty) => Ok(TypePlan::uniform(ty)),
            Self::Auto => TypePlan::from_stored(stored, blocks),
        }
    }
}

/// The weight type of every matrix the engine packs: a default and per-tensor choices (by HF
/// name). A packed matrix (q|k|v, gate|up) takes the most precise type of its members.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct TypePlan {
    pub default: WeightType,
    pub by_tensor: BTreeMap<String, WeightType>,
    /// The stored bytes (GGUF blocks, rows in HF order) of the tensors planned at a type
    /// the engine runs as stored ([`WeightType::stored_name`]).
    pub blocks: BTreeMap<String, Arc<[u8]>>,
}

impl From<WeightType> for TypePlan {
    fn from(ty: WeightType) -> Self {
        Self::uniform(ty)
    }
}

impl TypePlan {
    /// Every matrix as `ty`.
    pub fn uniform(ty: WeightType) -> Self {
        Self {
            default: ty,
            by_tensor: BTreeMap::new(),
            blocks: BTreeMap::new(),
        }
    }

    /// Each tensor at the engine type of its stored type ([`WeightType::for_stored`]);
    /// tensors not listed (and models whose file held only floats) as f32.
    pub fn from_stored(
        stored: &BTreeMap<String, String>,
        blocks: &BTreeMap<String, Arc<[u8]>>,
    ) -> Result<Self> {
        let mut plan = Self::uniform(WeightType::F32);
        for (name, ggml) in stored {
            let ty = WeightType::for_stored(ggml).ok_or_else(|| {
                Error::Unsupported(format!(
                    "tensor `{name}` is stored as {ggml}, which slm cannot run"
                ))
            })?;
            if ty.stored_name().is_some() {
                if let Some(b) = blocks.get(name) {
                    plan.blocks.insert(name.clone(), b.clone());
                }
            }
            plan.by_tensor.insert(name.clone(), ty);
        }
        Ok(plan)
    }

    /// The type of tensor `name`.
    pub fn for_tensor(&self, name: &str) -> WeightType {
        *self.by_tensor.get(name).unwrap_or(&self.default)
    }

    /// The type of a matrix made of the tensors `names` (the most precise of theirs).
    pub fn for_tensors(&self, names: &[String]) -> WeightType {
        names
            .iter()
            .map(|n| self.for_tensor(n))
            .max_by_key(|t| t.precision())
            .unwrap_or(self.default)
    }

    /// The matrix [Σ rows, cols] of the tensors `members` (name, rows) stacked, whose values
    /// are `w`: one matrix at the members' type when they share it, else a
    /// [`Matrix::Stack`] of each at its own. A type run as stored takes the file's blocks
    /// when they still hold exactly `w` (a model changed after loading, e.g. by a merged
    /// adapter, is quantised at the [`WeightType::widened`] type instead).
    pub fn matrix(
        &self,
        members: &[(String, usize)],
        w: Vec<f32>,
        cols: usize,
        sparse: SparseUse,
    ) -> Result<Matrix> {
        let rows: usize = members.iter().map(|m| m.1).sum();
        let types: Vec<WeightType> = members.iter().map(|m| self.for_tensor(&m.0)).collect();
        if members.len() > 1 && types.iter().any(|t| *t != types[0]) {
            // Runs of consecutive members of one type make one part each.
            let mut parts = Vec::new();
            let (mut first, mut at) = (0, 0);
            while first < members.len() {
                let end = (first..members.len())
                    .find(|&i| types[i] != types[first])
                    .unwrap_or(members.len());
                let run = &members[first..end];
                let run_rows: usize = run.iter().map(|m| m.1).sum();
                let part = w[at * cols..(at + run_rows) * cols].to_vec();
                parts.push(self.matrix(run, part, cols, sparse)?);
                (first, at) = (end, at + run_rows);
            }
            return Ok(Matrix::Stack(parts));
        }
        let ty = types.first().copied().unwrap_or(self.default);
        if let Some(m) = self.stored_rows(members, ty, &w, cols) {
            // Q5_0 runs, exactly, as the 8-bit blocks holding the same values (repacked).
            if let Some(q8) = m.q5_0_as_q8_0() {
                let q = QuantMatrix::Q8_0(q8);
                return Ok(Matrix::Quant(InterleavedMatrix::new(&q, rows, cols)?));
            }
            return Ok(Matrix::Rows(m));
        }
        Matrix::with_sparse(w, rows, cols, ty.widened(), sparse)
    }

    /// The file's own blocks of `members` stacked, when `ty` runs as stored, every member's
    /// blocks are at hand, and they stand for exactly `w`.
    fn stored_rows(
        &self,
        members: &[(String, usize)],
        ty: WeightType,
        w: &[f32],
        cols: usize,
    ) -> Option<RowMatrix> {
        let name = ty.stored_name()?;
        let parts: Vec<RowMatrix> = members
            .iter()
            .map(|(n, rows)| RowMatrix::from_ggml(name, self.blocks.get(n)?, *rows, cols).ok())
            .collect::<Option<_>>()?;
        let m = RowMatrix::stack(&parts.iter().collect::<Vec<_>>()).ok()?;
        let same = m
            .dequantize()
            .iter()
            .zip(w)
            .all(|(a, b)| a.to_bits() == b.to_bits());
        same.then_some(m)
    }

    /// What `slm bench --json` reports as the type: the type's name when every matrix gets
    /// it, `auto` for a plan read from a file.
    pub fn describe(&self) -> &'static str {
        if self.by_tensor.is_empty() {
            self.default.name()
        } else {
            "auto"
        }
    }

    /// Whether every matrix gets the same type `ty`.
    pub fn is_uniform(&self, ty: WeightType) -> bool {
        self.default == ty && self.by_tensor.values().all(|t| *t == ty)
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

/// Rows from which a sparse or stored-block matrix product expands the matrix to f32 and uses
/// the dense matmul (Q4_K: repacks it as Q4_1 tiles, [`RowMatrix::q4_k_as_q4_1`]).
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
    /// Blocks as a GGUF file stored them (`slm_kernels::kquant`).
    Rows(RowMatrix),
    Sparse(SparseMatrix),
    /// Matrices stacked row-wise, each stored its own way (a q|k|v or gate|up pack whose
    /// tensors a file stored at different types).
    Stack(Vec<Matrix>),
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
        let kind = match ty.widened() {
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
            Self::Rows(m) => m.rows(),
            Self::Sparse(m) => m.rows(),
            Self::Stack(parts) => parts.iter().map(Matrix::rows).sum(),
        }
    }

    pub fn cols(&self) -> usize {
        match self {
            Self::F32 { cols, .. } => *cols,
            Self::Quant(m) => m.cols(),
            Self::Rows(m) => m.cols(),
            Self::Sparse(m) => m.cols(),
            Self::Stack(parts) => parts.first().map_or(0, Matrix::cols),
        }
    }

    /// Bytes read by one matrix-vector product.
    pub fn bytes(&self) -> usize {
        match self {
            Self::F32 { w, .. } => 4 * w.len(),
            Self::Quant(m) => m.bytes(),
            Self::Rows(m) => m.bytes(),
            Self::Sparse(m) => m.bytes(),
            Self::Stack(parts) => parts.iter().map(Matrix::bytes).sum(),
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
            Self::Rows(m) => {
                matvec_rows(m, x, xq, y)?;
                add_bias(y, bias);
                Ok(())
            }
            Self::Sparse(m) => {
                m.matvec(x, y)?;
                add_bias(y, bias);
                Ok(())
            }
            Self::Stack(parts) => {
                let (mut at, mut y) = (0, y);
                for p in parts {
                    let (head, rest) = y.split_at_mut(p.rows());
                    p.matvec(x, bias.map(|b| &b[at..at + p.rows()]), xq, head)?;
                    (at, y) = (at + p.rows(), rest);
                }
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
                matmul_x8(m, x, n, xq, y)?;
                for row in y.chunks_exact_mut(rows) {
                    add_bias(row, bias);
                }
                Ok(())
            }
            // A few rows (batched decoding), or Q6_K's prefill where the CPU has its multi-row
            // kernel (each block unpacked once per 8 activation rows: 336M Q6_K prefill
            // 297–312 → 324–344 tok/s against expanding to f32, on the Intel(R) Xeon(R)
            // Processor, family 6 model 167, AVX-512, 2 threads).
            Self::Rows(m)
                if n < DENSIFY_ROWS || (m.type_name() == "Q6_K" && m.has_multi_row_dot()) =>
            {
                let rows = m.rows();
                matmul_rows(m, x, n, xq, y)?;
                for row in y.chunks_exact_mut(rows) {
                    add_bias(row, bias);
                }
                Ok(())
            }
            // Many rows (prefill): Q4_K as Q4_1 blocks repacked for this chunk (the 4-bit
            // tiles reuse each weight block across every row; its multi-row kernel measured
            // level with them), other types as f32 once through the blocked matmul (Q5_K's
            // multi-row kernel measured ~5% below that; both on the same Xeon).
            Self::Rows(m) => match m.q4_k_as_q4_1() {
                Some(blocks) => {
                    let tiles =
                        InterleavedMatrix::new(&QuantMatrix::Q4_1(blocks), m.rows(), m.cols())?;
                    Self::Quant(tiles).matmul(x, n, bias, xq, y_t, y)
                }
                None => linear_fwd(
                    y,
                    x,
                    &m.dequantize(),
                    bias,
                    LinearDims::new(n, m.cols(), m.rows()),
                    false,
                ),
            },
            // Each part into a scratch [n, part rows], then into its columns of y.
            Self::Stack(parts) => {
                let rows = self.rows();
                let mut at = 0;
                for p in parts {
                    let pr = p.rows();
                    let mut part = vec![0f32; n * pr];
                    p.matmul(
                        x,
                        n,
                        bias.map(|b| &b[at..at + pr]),
                        xq,
                        &mut y_t[..n * pr],
                        &mut part,
                    )?;
                    for (dst, src) in y.chunks_exact_mut(rows).zip(part.chunks_exact(pr)) {
                        dst[at..at + pr].copy_from_slice(src);
                    }
                    at += pr;
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

    /// The storage, for reports: `f32`, `q8_0`, `q4_0`, `q4_1`, `q4_k`, `q5_k`, `q6_k`,
    /// `q5_0`, `q5_1`, `bitmask`, `offsets`, `2:4`, or the parts' joined by `|` (`q5_0|q8_0`).
    pub fn kind(&self) -> String {
        match self {
            Self::Stack(parts) => parts.iter().map(Matrix::kind).collect::<Vec<_>>().join("|"),
            m => m.leaf_kind().to_string(),
        }
    }

    fn leaf_kind(&self) -> &'static str {
        match self {
            Self::F32 { .. } => "f32",
            Self::Quant(m) => match m.kind() {
                Kind::Q8_0 => "q8_0",
                Kind::Q4_0 => "q4_0",
                Kind::Q4_1 => "q4_1",
            },
            Self::Rows(m) => match m.type_name() {
                "Q4_K" => "q4_k",
                "Q5_K" => "q5_k",
                "Q6_K" => "q6_k",
                "Q5_0" => "q5_0",
                _ => "q5_1",
            },
            Self::Stack(_) => "stack",
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
    /// Packs `model`'s weights, storing the linear layers (and the output head) as `plan`
    /// says; pruned f32 block matrices go sparse as `sparse` allows (the head stays dense).
    pub fn from_llama(model: &Llama, plan: &TypePlan, sparse: SparseUse) -> Result<Self> {
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
            let name = |p: &str| format!("model.layers.{l}.{p}.weight");
            let matrix = |range: &Range<usize>, members: &[(&str, usize)], cols: usize| {
                let members: Vec<(String, usize)> =
                    members.iter().map(|&(p, rows)| (name(p), rows)).collect();
                plan.matrix(&members, part(range), cols, sparse)
            };
            layers.push(LayerWeights {
                attn_norm: part(&r.norm1),
                wqkv: matrix(
                    &r.wqkv,
                    &[
                        ("self_attn.q_proj", q),
                        ("self_attn.k_proj", kv),
                        ("self_attn.v_proj", kv),
                    ],
                    d,
                )?,
                bqkv: r.bqkv.as_ref().map(part),
                wo: matrix(&r.wo, &[("self_attn.o_proj", d)], q)?,
                ffn_norm: part(&r.norm2),
                wgu: matrix(
                    &r.wgu,
                    &[("mlp.gate_proj", inter), ("mlp.up_proj", inter)],
                    d,
                )?,
                wdown: matrix(&r.wdown, &[("mlp.down_proj", d)], inter)?,
            });
        }
        let (head, head_name) = if cfg.tie_word_embeddings {
            (embed.clone(), "model.embed_tokens.weight")
        } else {
            (values(&t, "lm_head.weight")?, "lm_head.weight")
        };
        // The head stays dense (pruning leaves it whole).
        let head = plan.matrix(&[(head_name.to_string(), v)], head, d, SparseUse::Off)?;
        Ok(Self {
            embed,
            layers,
            final_norm: values(&t, "model.norm.weight")?,
            lm_head: head,
        })
    }

    /// How the matrices are stored, e.g. `bitmask ×24, f32 ×1` (the head included).
    pub fn storage(&self) -> String {
        let mut counts: BTreeMap<String, usize> = Default::default();
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

#[cfg(test)]
mod tests {
    use super::*;

    fn stored(pairs: &[(&str, &str)]) -> BTreeMap<String, String> {
        pairs
            .iter()
            .map(|(n, t)| (n.to_string(), t.to_string()))
            .collect()
    }

    #[test]
    fn auto_runs_each_tensor_at_its_stored_type() {
        let l0 = |p: &str| format!("model.layers.0.{p}.weight");
        // A Q4_K_M-like mix: q/k Q4_K, v Q6_K, gate/up Q4_K, down Q6_K, o Q4_0, embeddings Q8_0.
        let s = stored(&[
            (&l0("self_attn.q_proj"), "Q4_K"),
            (&l0("self_attn.k_proj"), "Q4_K"),
            (&l0("self_attn.v_proj"), "Q6_K"),
            (&l0("self_attn.o_proj"), "Q4_0"),
            (&l0("mlp.gate_proj"), "Q4_K"),
            (&l0("mlp.up_proj"), "Q4_K"),
            (&l0("mlp.down_proj"), "Q6_K"),
            (&l0("input_layernorm"), "F32"),
            ("model.embed_tokens.weight", "Q8_0"),
        ]);
        let plan = TypeChoice::Auto.plan(&s, &BTreeMap::new()).unwrap();
        let qkv: Vec<String> = ["q_proj", "k_proj", "v_proj"]
            .iter()
            .map(|p| l0(&format!("self_attn.{p}")))
            .collect();
        // k-quants run as stored; the most precise member of q|k|v is v's Q6_K.
        assert_eq!(plan.for_tensors(&qkv), WeightType::Q6K);
        assert_eq!(plan.for_tensors(&qkv[..2]), WeightType::Q4K);
        assert_eq!(plan.for_tensor(&qkv[0]).widened(), WeightType::Q4_1);
        assert_eq!(plan.for_tensor(&qkv[2]).widened(), WeightType::Q8_0);
        assert_eq!(
            plan.for_tensors(&[l0("self_attn.o_proj")]),
            WeightType::Q4_0
        );
        assert_eq!(plan.for_tensors(&[l0("mlp.down_proj")]), WeightType::Q6K);
        assert_eq!(plan.for_tensors(&[l0("input_layernorm")]), WeightType::F32);
        // Not in the file's table: f32.
        assert_eq!(
            plan.for_tensors(&["lm_head.weight".into()]),
            WeightType::F32
        );
        assert_eq!(plan.describe(), "auto");
        // A float file, or a fixed type, is uniform.
        let float = TypeChoice::Auto
            .plan(&BTreeMap::new(), &BTreeMap::new())
            .unwrap();
        assert!(float.is_uniform(WeightType::F32));
        let fixed = TypeChoice::Fixed(WeightType::Q4_0)
            .plan(&s, &BTreeMap::new())
            .unwrap();
        assert!(fixed.is_uniform(WeightType::Q4_0));
        assert_eq!(fixed.describe(), "q4_0");
        // A type the engine cannot run is refused by name.
        let err = TypeChoice::Auto
            .plan(
                &stored(&[("model.norm.weight", "IQ2_XS")]),
                &BTreeMap::new(),
            )
            .unwrap_err()
            .to_string();
        assert!(
            err.contains("IQ2_XS") && err.contains("model.norm.weight"),
            "{err}"
        );
    }

    /// A file's own blocks run as stored while they stand for the model's values, and give
    /// way to the widened type once the model changed (e.g. a merged adapter).
    #[test]
    fn stored_blocks_run_only_while_they_hold_the_model_s_values() {
        use slm_kernels::kquant::quantize::quantize_to_blocks;
        use slm_kernels::kquant::{blocks_to_bytes, BlockQ5_1, RowMatrix};
        let original = crate::testutil::tiny_llama(96, true, false, 32, 4);
        let name = "model.layers.0.mlp.down_proj.weight";
        let mut tensors: HashMap<String, candle_core::Tensor> =
            original.tensors().into_iter().collect();
        let (rows, cols) = tensors[name].dims2().unwrap();
        let values = values(&tensors, name).unwrap();
        let blocks: Vec<BlockQ5_1> = quantize_to_blocks(&values).unwrap();
        let bytes: Arc<[u8]> = Arc::from(blocks_to_bytes(&blocks));
        // The model as read from a Q5_1 file: its values are the blocks'.
        let stored_values = RowMatrix::from_ggml("Q5_1", &bytes, rows, cols)
            .unwrap()
            .dequantize();
        tensors.insert(
            name.to_string(),
            candle_core::Tensor::from_vec(stored_values, (rows, cols), &candle_core::Device::Cpu)
                .unwrap(),
        );
        let from_file = Llama::from_tensors(
            original.config.clone(),
            tensors,
            std::path::Path::new("test"),
        )
        .unwrap();
        let plan = TypeChoice::Auto
            .plan(
                &stored(&[(name, "Q5_1")]),
                &[(name.to_string(), bytes)].into_iter().collect(),
            )
            .unwrap();
        let w = Weights::from_llama(&from_file, &plan, SparseUse::Off).unwrap();
        assert_eq!(w.layers[0].wdown.kind(), "q5_1");
        // The same plan on values the blocks do not hold: quantised again, at Q8_0.
        let w = Weights::from_llama(&original, &plan, SparseUse::Off).unwrap();
        assert_eq!(w.layers[0].wdown.kind(), "q8_0");
    }

    #[test]
    fn type_choice_parses_auto_and_the_fixed_types() {
        assert_eq!(TypeChoice::parse("auto").unwrap(), TypeChoice::Auto);
        assert_eq!(
            TypeChoice::parse("Q4_1").unwrap(),
            TypeChoice::Fixed(WeightType::Q4_1)
        );
        let err = TypeChoice::parse("q5_k").unwrap_err().to_string();
        assert!(err.contains("auto, f32"), "{err}");
    }

    #[test]
    fn a_plan_stores_each_packed_matrix_at_its_type() {
        let model = crate::testutil::tiny_llama(96, true, false, 32, 9);
        let s = stored(&[
            ("model.layers.0.self_attn.q_proj.weight", "Q4_0"),
            ("model.layers.0.self_attn.k_proj.weight", "Q4_0"),
            ("model.layers.0.self_attn.v_proj.weight", "Q4_0"),
            ("model.layers.1.mlp.down_proj.weight", "Q8_0"),
            ("model.embed_tokens.weight", "Q4_1"),
        ]);
        let plan = TypeChoice::Auto.plan(&s, &BTreeMap::new()).unwrap();
        let w = Weights::from_llama(&model, &plan, SparseUse::Off).unwrap();
        assert_eq!(w.layers[0].wqkv.kind(), "q4_0");
        assert_eq!(w.layers[1].wqkv.kind(), "f32");
        assert_eq!(w.layers[1].wdown.kind(), "q8_0");
        assert_eq!(w.layers[0].wdown.kind(), "f32");
        // The tied head is stored as the embeddings were.
        assert_eq!(w.lm_head.kind(), "q4_1");
        // A uniform plan equals the old single-type packing.
        let uniform =
            Weights::from_llama(&model, &WeightType::Q8_0.into(), SparseUse::Off).unwrap();
        assert_eq!(uniform.storage(), "q8_0 ×9");
        // A pack whose tensors were stored at different types: each run of one type its own
        // part; a type run as stored without its blocks at hand: the widened type.
        let mixed = stored(&[
            ("model.layers.0.self_attn.q_proj.weight", "Q4_0"),
            ("model.layers.0.self_attn.k_proj.weight", "Q4_0"),
            ("model.layers.0.self_attn.v_proj.weight", "Q8_0"),
            ("model.layers.0.mlp.gate_proj.weight", "Q4_K"),
            ("model.layers.0.mlp.up_proj.weight", "Q4_K"),
        ]);
        let mixed = TypeChoice::Auto.plan(&mixed, &BTreeMap::new()).unwrap();
        let wm = Weights::from_llama(&model, &mixed, SparseUse::Off).unwrap();
        assert_eq!(wm.layers[0].wqkv.kind(), "q4_0|q8_0");
        assert_eq!(wm.layers[0].wgu.kind(), "q4_1");
        // The stack computes what its parts do, for one row and for several.
        let m = &wm.layers[0].wqkv;
        let Matrix::Stack(parts) = m else {
            panic!("not a stack: {}", m.kind())
        };
        let (cols, rows) = (m.cols(), m.rows());
        let x: Vec<f32> = (0..3 * cols)
            .map(|i| ((i * 7919) % 97) as f32 / 97.0 - 0.5)
            .collect();
        let mut xq = QuantActs::default();
        let mut y = vec![0f32; rows];
        m.matvec(&x[..cols], None, &mut xq, &mut y).unwrap();
        let mut at = 0;
        for p in parts {
            let mut yp = vec![0f32; p.rows()];
            p.matvec(&x[..cols], None, &mut xq, &mut yp).unwrap();
            assert_eq!(&y[at..at + p.rows()], &yp[..]);
            at += p.rows();
        }
        let (mut y3, mut y_t) = (vec![0f32; 3 * rows], vec![0f32; 3 * rows]);
        m.matmul(&x, 3, None, &mut xq, &mut y_t, &mut y3).unwrap();
        for r in 0..3 {
            m.matvec(&x[r * cols..][..cols], None, &mut xq, &mut y)
                .unwrap();
            for (a, b) in y3[r * rows..][..rows].iter().zip(&y) {
                assert!(
                    (a - b).abs() <= 1e-5 * (1.0 + b.abs()),
                    "row {r}: {a} vs {b}"
                );
            }
        }
    }
}
