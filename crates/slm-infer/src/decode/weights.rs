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
use std::collections::{BTreeMap, HashMap};
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

impl WeightType {
    /// Rank by precision: f32 > q8_0 > q4_1 > q4_0.
    fn precision(self) -> u8 {
        match self {
            Self::F32 => 3,
            Self::Q8_0 => 2,
            Self::Q4_1 => 1,
            Self::Q4_0 => 0,
        }
    }

    /// The name users write (`q4_1`).
    pub fn name(self) -> &'static str {
        match self {
            Self::F32 => "f32",
            Self::Q8_0 => "q8_0",
            Self::Q4_1 => "q4_1",
            Self::Q4_0 => "q4_0",
        }
    }

    /// The engine type that runs a tensor stored in the file as GGML type `ggml` (`Q4_K`,
    /// `F16`, …): its own where the engine has it; a k-quant as the block type that holds
    /// its values at no less precision — Q4_K's 32-value sub-blocks (a scale and a minimum
    /// each, 16 levels) are Q4_1 blocks up to the f16 rounding of their scale and minimum;
    /// Q2_K and Q3_K also as Q4_1; Q5_0, Q5_1, Q5_K, Q6_K and Q8_K as Q8_0; floats as f32.
    /// None for a type the reader does not decode either.
    pub fn for_stored(ggml: &str) -> Option<Self> {
        Some(match ggml {
            "F32" | "F16" | "BF16" | "F64" => Self::F32,
            "Q8_0" | "Q8_1" | "Q8_K" | "Q5_0" | "Q5_1" | "Q5_K" | "Q6_K" => Self::Q8_0,
            "Q4_1" | "Q4_K" | "Q3_K" | "Q2_K" => Self::Q4_1,
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
    /// empty for float formats).
    pub fn plan(self, stored: &BTreeMap<String, String>) -> Result<TypePlan> {
        match self {
            Self::Fixed(ty) => Ok(TypePlan::uniform(ty)),
            Self::Auto => TypePlan::from_stored(stored),
        }
    }
}

/// The weight type of every matrix the engine packs: a default and per-tensor choices (by HF
/// name). A packed matrix (q|k|v, gate|up) takes the most precise type of its members.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct TypePlan {
    pub default: WeightType,
    pub by_tensor: BTreeMap<String, WeightType>,
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
        }
    }

    /// Each tensor at the engine type of its stored type ([`WeightType::for_stored`]);
    /// tensors not listed (and models whose file held only floats) as f32.
    pub fn from_stored(stored: &BTreeMap<String, String>) -> Result<Self> {
        let mut by_tensor = BTreeMap::new();
        for (name, ggml) in stored {
            let ty = WeightType::for_stored(ggml).ok_or_else(|| {
                Error::Unsupported(format!(
                    "tensor `{name}` is stored as {ggml}, which slm cannot run"
                ))
            })?;
            by_tensor.insert(name.clone(), ty);
        }
        Ok(Self {
            default: WeightType::F32,
            by_tensor,
        })
    }

    /// The type of a matrix made of the tensors `names` (the most precise of theirs).
    pub fn for_tensors(&self, names: &[String]) -> WeightType {
        names
            .iter()
            .map(|n| *self.by_tensor.get(n).unwrap_or(&self.default))
            .max_by_key(|t| t.precision())
            .unwrap_or(self.default)
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
                matmul_x8(m, x, n, xq, y)?;
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
            let ty = |parts: &[&str]| {
                let names: Vec<String> = parts
                    .iter()
                    .map(|p| format!("model.layers.{l}.{p}.weight"))
                    .collect();
                plan.for_tensors(&names)
            };
            let qkv_ty = ty(&["self_attn.q_proj", "self_attn.k_proj", "self_attn.v_proj"]);
            let gu_ty = ty(&["mlp.gate_proj", "mlp.up_proj"]);
            layers.push(LayerWeights {
                attn_norm: part(&r.norm1),
                wqkv: Matrix::with_sparse(part(&r.wqkv), q + 2 * kv, d, qkv_ty, sparse)?,
                bqkv: r.bqkv.as_ref().map(part),
                wo: Matrix::with_sparse(part(&r.wo), d, q, ty(&["self_attn.o_proj"]), sparse)?,
                ffn_norm: part(&r.norm2),
                wgu: Matrix::with_sparse(part(&r.wgu), 2 * inter, d, gu_ty, sparse)?,
                wdown: Matrix::with_sparse(
                    part(&r.wdown),
                    d,
                    inter,
                    ty(&["mlp.down_proj"]),
                    sparse,
                )?,
            });
        }
        let (head, head_name) = if cfg.tie_word_embeddings {
            (embed.clone(), "model.embed_tokens.weight")
        } else {
            (values(&t, "lm_head.weight")?, "lm_head.weight")
        };
        let head_ty = plan.for_tensors(&[head_name.to_string()]);
        Ok(Self {
            embed,
            layers,
            final_norm: values(&t, "model.norm.weight")?,
            lm_head: Matrix::new(head, v, d, head_ty)?,
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
        let plan = TypeChoice::Auto.plan(&s).unwrap();
        let qkv: Vec<String> = ["q_proj", "k_proj", "v_proj"]
            .iter()
            .map(|p| l0(&format!("self_attn.{p}")))
            .collect();
        // The packed q|k|v takes the most precise member (v's Q6_K → Q8_0).
        assert_eq!(plan.for_tensors(&qkv), WeightType::Q8_0);
        assert_eq!(plan.for_tensors(&qkv[..2]), WeightType::Q4_1);
        assert_eq!(
            plan.for_tensors(&[l0("self_attn.o_proj")]),
            WeightType::Q4_0
        );
        assert_eq!(plan.for_tensors(&[l0("mlp.down_proj")]), WeightType::Q8_0);
        assert_eq!(plan.for_tensors(&[l0("input_layernorm")]), WeightType::F32);
        // Not in the file's table: f32.
        assert_eq!(
            plan.for_tensors(&["lm_head.weight".into()]),
            WeightType::F32
        );
        assert_eq!(plan.describe(), "auto");
        // A float file, or a fixed type, is uniform.
        let float = TypeChoice::Auto.plan(&BTreeMap::new()).unwrap();
        assert!(float.is_uniform(WeightType::F32));
        let fixed = TypeChoice::Fixed(WeightType::Q4_0).plan(&s).unwrap();
        assert!(fixed.is_uniform(WeightType::Q4_0));
        assert_eq!(fixed.describe(), "q4_0");
        // A type the engine cannot run is refused by name.
        let err = TypeChoice::Auto
            .plan(&stored(&[("model.norm.weight", "IQ2_XS")]))
            .unwrap_err()
            .to_string();
        assert!(
            err.contains("IQ2_XS") && err.contains("model.norm.weight"),
            "{err}"
        );
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
        let plan = TypeChoice::Auto.plan(&s).unwrap();
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
    }
}
