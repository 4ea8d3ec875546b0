//! How much each structural unit of a model matters, measured on calibration text (Minitron's
//! activation-based importance, ShortGPT's Block Influence, and the loss of removing a layer).
//!
//! One forward walk over the calibration windows, block by block on the unchanged model,
//! reads each block's linear inputs and its input/output:
//!
//! - **attention head** h of layer l: the L2 norm of the head's attention output (the
//!   `head_dim` values o reads for that head) at each position, aggregated over positions;
//!   a KV group scores the sum of its query heads;
//! - **MLP channel** c of layer l: the MLP hidden state `silu(gate)·up` (what `down` reads) in
//!   channel c, aggregated over positions;
//! - **hidden (embedding) channel** c: the normed residual (what q/k/v and gate/up read) in
//!   channel c, aggregated over positions and summed over both norms of every layer;
//! - **layer** l: Block Influence `1 − mean over positions of cos(x_in, x_out)` (ShortGPT:
//!   a block that barely turns its input matters little) and, on request, the increase of the
//!   calibration loss when the layer alone is removed.
//!
//! The aggregation over positions is [`Aggregate`]: mean |a|, L2 (root mean square) or the
//! variance (Minitron compares these). [`Importance::random`] gives seeded random scores of
//! the same shape, the control that tells whether measuring helped.

use crate::sequential::embed_batches;
use rand::{rngs::StdRng, Rng, SeedableRng};
use serde::{Deserialize, Serialize};
use slm_core::{Error, Result};
use slm_model::flat::{BlockParams, BlockScratch, FlatModel, InputSlot};
use slm_model::rope::RopeTables;
use slm_model::{Llama, LlamaConfig};

/// How activations are aggregated over calibration positions into one score per unit.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Aggregate {
    /// Mean of |a| over positions.
    Mean,
    /// Root mean square of a over positions (the L2 norm, scaled).
    #[default]
    L2,
    /// Variance of a over positions.
    Variance,
}

impl Aggregate {
    pub const NAMES: [&'static str; 3] = ["mean", "l2", "variance"];

    pub fn parse(s: &str) -> Result<Self> {
        match s {
            "mean" => Ok(Self::Mean),
            "l2" => Ok(Self::L2),
            "variance" | "var" => Ok(Self::Variance),
            other => Err(Error::invalid(format!(
                "unknown aggregation `{other}` (mean, l2, variance)"
            ))),
        }
    }

    pub fn name(self) -> &'static str {
        match self {
            Self::Mean => "mean",
            Self::L2 => "l2",
            Self::Variance => "variance",
        }
    }
}

/// Running sums per column of a stream of `[rows, cols]` matrices, in f64.
#[derive(Debug, Clone)]
pub struct ColumnStats {
    sum: Vec<f64>,
    sum_abs: Vec<f64>,
    sum_sq: Vec<f64>,
    rows: u64,
}

impl ColumnStats {
    pub fn new(cols: usize) -> Self {
        Self {
            sum: vec![0.0; cols],
            sum_abs: vec![0.0; cols],
            sum_sq: vec![0.0; cols],
            rows: 0,
        }
    }

    pub fn cols(&self) -> usize {
        self.sum.len()
    }

    /// Adds `x` [rows, cols] (row-major).
    pub fn add(&mut self, x: &[f32]) -> Result<()> {
        let cols = self.cols();
        if cols == 0 || !x.len().is_multiple_of(cols) {
            return Err(Error::invalid(format!(
                "{} values are not whole rows of {cols}",
                x.len()
            )));
        }
        for row in x.chunks_exact(cols) {
            for (c, &v) in row.iter().enumerate() {
                let v = v as f64;
                self.sum[c] += v;
                self.sum_abs[c] += v.abs();
                self.sum_sq[c] += v * v;
            }
        }
        self.rows += (x.len() / cols) as u64;
        Ok(())
    }

    /// Adds another accumulator of the same width (its rows count as more positions).
    pub fn merge(&mut self, other: &ColumnStats) -> Result<()> {
        if other.cols() != self.cols() {
            return Err(Error::invalid("column statistics of different widths"));
        }
        for c in 0..self.cols() {
            self.sum[c] += other.sum[c];
            self.sum_abs[c] += other.sum_abs[c];
            self.sum_sq[c] += other.sum_sq[c];
        }
        self.rows += other.rows;
        Ok(())
    }

    /// One score per column.
    pub fn scores(&self, agg: Aggregate) -> Vec<f32> {
        let n = self.rows.max(1) as f64;
        (0..self.cols())
            .map(|c| {
                let s = match agg {
                    Aggregate::Mean => self.sum_abs[c] / n,
                    Aggregate::L2 => (self.sum_sq[c] / n).sqrt(),
                    Aggregate::Variance => {
                        let m = self.sum[c] / n;
                        (self.sum_sq[c] / n - m * m).max(0.0)
                    }
                };
                s as f32
            })
            .collect()
    }
}

/// The importance of every unit of one model (see the module documentation).
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Importance {
    /// What produced the scores: an [`Aggregate`] name, or `random` (seeded).
    pub source: String,
    /// [layers][query heads]
    pub heads: Vec<Vec<f32>>,
    /// Query heads per KV group (heads h·g..(h+1)·g share KV head h).
    pub group_size: usize,
    /// [layers][intermediate]
    pub mlp: Vec<Vec<f32>>,
    /// [hidden]
    pub hidden: Vec<f32>,
    /// [layers] Block Influence, 1 − mean cos(input, output).
    pub block_influence: Vec<f32>,
    /// [layers] calibration loss with the layer removed minus the full model's, when measured.
    pub loss_increase: Option<Vec<f32>>,
    /// The full model's mean calibration loss (nats per token), when measured.
    pub base_loss: Option<f64>,
    /// Calibration positions the activations were read at.
    pub positions: usize,
}

/// Which per-layer score decides which layers stay.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum LayerMetric {
    /// Block Influence (ShortGPT).
    #[default]
    BlockInfluence,
    /// The calibration loss increase when the layer alone is removed.
    LossIncrease,
}

impl LayerMetric {
    pub const NAMES: [&'static str; 2] = ["bi", "loss"];

    pub fn parse(s: &str) -> Result<Self> {
        match s {
            "bi" | "block-influence" => Ok(Self::BlockInfluence),
            "loss" | "loss-increase" | "ppl" => Ok(Self::LossIncrease),
            other => Err(Error::invalid(format!(
                "unknown layer metric `{other}` (bi, loss)"
            ))),
        }
    }

    pub fn name(self) -> &'static str {
        match self {
            Self::BlockInfluence => "bi",
            Self::LossIncrease => "loss",
        }
    }
}

impl Importance {
    /// Score of each KV group of `layer`: the sum of its query heads' scores.
    pub fn group_scores(&self, layer: usize) -> Vec<f32> {
        self.heads[layer]
            .chunks(self.group_size.max(1))
            .map(|g| g.iter().sum())
            .collect()
    }

    /// The per-layer scores `metric` names (an error if the loss was not measured).
    pub fn layer_scores(&self, metric: LayerMetric) -> Result<&[f32]> {
        match metric {
            LayerMetric::BlockInfluence => Ok(&self.block_influence),
            LayerMetric::LossIncrease => self.loss_increase.as_deref().ok_or_else(|| {
                Error::invalid(
                    "the layer-removal loss was not measured (measure it with the loss metric)",
                )
            }),
        }
    }

    /// Seeded uniform random scores for every unit of a `cfg` model: the control for
    /// "does measuring importance help".
    pub fn random(cfg: &LlamaConfig, seed: u64) -> Self {
        let mut rng = StdRng::seed_from_u64(seed);
        let mut draw = |n: usize| -> Vec<f32> { (0..n).map(|_| rng.gen::<f32>()).collect() };
        let layers = cfg.num_hidden_layers;
        let heads = (0..layers).map(|_| draw(cfg.num_attention_heads)).collect();
        let mlp = (0..layers).map(|_| draw(cfg.intermediate_size)).collect();
        let hidden = draw(cfg.hidden_size);
        let block_influence = draw(layers);
        let loss_increase = Some(draw(layers));
        Self {
            source: format!("random (seed {seed})"),
            heads,
            group_size: group_size(cfg),
            mlp,
            hidden,
            block_influence,
            loss_increase,
            base_loss: None,
            positions: 0,
        }
    }
}

/// Query heads per KV group of `cfg`.
pub fn group_size(cfg: &LlamaConfig) -> usize {
    cfg.num_attention_heads / cfg.num_key_value_heads.max(1)
}

/// Per-block accumulators of one walk.
struct LayerStats {
    heads: ColumnStats,
    mlp: ColumnStats,
    hidden: ColumnStats,
    /// Σ over positions of cos(input, output), and the position count.
    cos_sum: f64,
    positions: usize,
}

/// Measures activation importance and Block Influence over `calib` windows (a walk through
/// the unchanged model, `batch` windows per pass); `progress(done, total)` after each block.
pub fn measure(
    model: &Llama,
    calib: &[Vec<u32>],
    agg: Aggregate,
    batch: usize,
    progress: &mut dyn FnMut(usize, usize),
) -> Result<Importance> {
    crate::sequential::check_windows(model, calib)?;
    if calib.is_empty() {
        return Err(Error::invalid(
            "importance needs calibration windows: give calibration text",
        ));
    }
    let cfg = &model.config;
    let (d, hd, nh) = (cfg.hidden_size, cfg.head_dim, cfg.num_attention_heads);
    let rope = RopeTables::new(cfg);
    let mut scratch = BlockScratch::default();
    let mut xs = embed_batches(model, calib, batch.max(1))?;
    let nl = model.layers.len();
    let mut stats = Vec::with_capacity(nl);
    let mut head_norms = Vec::new();
    progress(0, nl);
    for l in 0..nl {
        let mut s = LayerStats {
            heads: ColumnStats::new(nh),
            mlp: ColumnStats::new(cfg.intermediate_size),
            hidden: ColumnStats::new(d),
            cos_sum: 0.0,
            positions: 0,
        };
        let block = BlockParams::from_llama(model, l)?;
        let w = block.weights();
        for h in &mut xs {
            let mut out = vec![0f32; h.x.len()];
            let mut on_input = |slot: InputSlot, x: &[f32], rows: usize| -> Result<()> {
                match slot {
                    InputSlot::Attn | InputSlot::Mlp => s.hidden.add(x),
                    InputSlot::MlpHidden => s.mlp.add(x),
                    InputSlot::AttnOut => {
                        // x [rows, heads · head_dim] → per-head L2 norms [rows, heads]
                        head_norms.clear();
                        head_norms.extend(
                            x.chunks_exact(hd)
                                .map(|v| v.iter().map(|a| a * a).sum::<f32>().sqrt()),
                        );
                        debug_assert_eq!(head_norms.len(), rows * nh);
                        s.heads.add(&head_norms)
                    }
                }
            };
            scratch.run(
                cfg,
                &w,
                &rope,
                &h.x,
                h.b,
                h.t,
                &mut out,
                Some(&mut on_input),
            )?;
            for (xin, xout) in h.x.chunks_exact(d).zip(out.chunks_exact(d)) {
                s.cos_sum += cosine(xin, xout);
                s.positions += 1;
            }
            h.x = out;
        }
        stats.push(s);
        progress(l + 1, nl);
    }
    let mut hidden = ColumnStats::new(d);
    for s in &stats {
        hidden.merge(&s.hidden)?;
    }
    let positions = stats.first().map_or(0, |s| s.positions);
    Ok(Importance {
        source: agg.name().to_string(),
        heads: stats.iter().map(|s| s.heads.scores(agg)).collect(),
        group_size: group_size(cfg),
        mlp: stats.iter().map(|s| s.mlp.scores(agg)).collect(),
        hidden: hidden.scores(agg),
        block_influence: stats
            .iter()
            .map(|s| (1.0 - s.cos_sum / s.positions.max(1) as f64) as f32)
            .collect(),
        loss_increase: None,
        base_loss: None,
        positions,
    })
}

/// cos(a, b) in f64; 0 when either is zero.
fn cosine(a: &[f32], b: &[f32]) -> f64 {
    let (mut ab, mut aa, mut bb) = (0f64, 0f64, 0f64);
    for (&x, &y) in a.iter().zip(b) {
        let (x, y) = (x as f64, y as f64);
        ab += x * y;
        aa += x * x;
        bb += y * y;
    }
    if aa == 0.0 || bb == 0.0 {
        0.0
    } else {
        ab / (aa.sqrt() * bb.sqrt())
    }
}

/// Mean next-token cross-entropy (nats) of `model` over `windows` (each scored from its
/// second token), `batch` windows per pass.
pub fn calibration_loss(model: &Llama, windows: &[Vec<u32>], batch: usize) -> Result<f64> {
    crate::sequential::check_windows(model, windows)?;
    let mut flat = FlatModel::from_llama(model)?;
    let vocab = model.config.vocab_size;
    let (mut sum, mut count) = (0f64, 0usize);
    let mut i = 0;
    while i < windows.len() {
        let t = windows[i].len();
        let mut j = i + 1;
        while j < windows.len() && j - i < batch.max(1) && windows[j].len() == t {
            j += 1;
        }
        let ids: Vec<u32> = windows[i..j].iter().flatten().copied().collect();
        let logits = flat.logits(&ids, j - i, t)?; // [b·t, vocab]
                                                   // Position p predicts token p+1 of its window; the last position of each is ignored.
        let targets: Vec<u32> = windows[i..j]
            .iter()
            .flat_map(|w| {
                w[1..]
                    .iter()
                    .copied()
                    .chain([slm_kernels::cross_entropy::IGNORE_INDEX])
            })
            .collect();
        sum += slm_kernels::cross_entropy::cross_entropy_loss(&logits, &targets, vocab)?;
        count += (j - i) * (t - 1);
        i = j;
    }
    if count == 0 {
        return Err(Error::invalid(
            "calibration windows of one token have nothing to score",
        ));
    }
    Ok(sum / count as f64)
}

/// `model` without block `layer` (the others unchanged).
pub fn without_layer(model: &Llama, layer: usize) -> Result<Llama> {
    if layer >= model.layers.len() || model.layers.len() < 2 {
        return Err(Error::invalid(format!(
            "cannot remove layer {layer} of a {}-layer model",
            model.layers.len()
        )));
    }
    let mut m = model.clone();
    m.layers.remove(layer);
    m.config.num_hidden_layers -= 1;
    Ok(m)
}

/// Adds the layer-removal loss to `imp`: for each layer, the calibration loss of the model
/// without it minus the full model's. `progress(done, total)` after each layer.
pub fn measure_layer_removal(
    imp: &mut Importance,
    model: &Llama,
    windows: &[Vec<u32>],
    batch: usize,
    progress: &mut dyn FnMut(usize, usize),
) -> Result<()> {
    let nl = model.layers.len();
    progress(0, nl + 1);
    let base = calibration_loss(model, windows, batch)?;
    progress(1, nl + 1);
    let mut inc = Vec::with_capacity(nl);
    for l in 0..nl {
        let m = without_layer(model, l)?;
        inc.push((calibration_loss(&m, windows, batch)? - base) as f32);
        progress(l + 2, nl + 1);
    }
    imp.base_loss = Some(base);
    imp.loss_increase = Some(inc);
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn column_stats_aggregate_as_named() {
        let mut s = ColumnStats::new(2);
        s.add(&[1.0, -2.0, 3.0, 2.0]).unwrap(); // rows (1, -2), (3, 2)
        assert_eq!(s.scores(Aggregate::Mean), vec![2.0, 2.0]);
        let l2 = s.scores(Aggregate::L2);
        assert!((l2[0] - 5f32.sqrt()).abs() < 1e-6 && (l2[1] - 2.0).abs() < 1e-6);
        assert_eq!(s.scores(Aggregate::Variance), vec![1.0, 4.0]);
        let mut t = ColumnStats::new(2);
        t.add(&[1.0, -2.0]).unwrap();
        let mut u = ColumnStats::new(2);
        u.add(&[3.0, 2.0]).unwrap();
        t.merge(&u).unwrap();
        assert_eq!(t.scores(Aggregate::Variance), s.scores(Aggregate::Variance));
        assert!(s.add(&[1.0, 2.0, 3.0]).is_err());
        assert!(Aggregate::parse("median").is_err());
    }
}
