//! Structured pruning as the pipelines run it: importance measured on the calibration text
//! (or drawn at random, the control), the shape asked for (explicit sizes, or a parameter
//! target searched over candidate shapes), the smaller dense model, its `slm.json`, and the
//! importance report (printed rankings, `importance.json`, plots).

use crate::calib::{calibration_tokens, CalibSpec};
use crate::progress::{bar_callback, progress_bar};
use serde::Serialize;
use slm_compress::calibration_windows;
use slm_compress::structured::{
    self, importance, Aggregate, Candidate, Importance, LayerMetric, Plan, Shape,
};
use slm_core::{Error, Result};
use slm_data::tokenizer::Tokenizer;
use slm_model::{Llama, LlamaConfig};
use std::fmt::Write as _;
use std::path::{Path, PathBuf};
use std::time::Instant;

/// Where unit scores come from.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum ImportanceSource {
    /// Activations on the calibration text, aggregated over positions.
    Measured(Aggregate),
    /// Seeded random scores (the control).
    Random(u64),
}

impl ImportanceSource {
    pub const NAMES: [&'static str; 4] = ["l2", "mean", "variance", "random"];

    /// `random` takes `seed`; the others name an [`Aggregate`].
    pub fn parse(s: &str, seed: u64) -> Result<Self> {
        if s == "random" {
            return Ok(Self::Random(seed));
        }
        Ok(Self::Measured(Aggregate::parse(s)?))
    }
}

/// The shape asked for: explicit sizes (the rest stay the parent's) or a parameter target.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct ShapeRequest {
    pub layers: Option<usize>,
    pub hidden: Option<usize>,
    pub heads: Option<usize>,
    pub kv_heads: Option<usize>,
    pub mlp: Option<usize>,
    /// Non-embedding parameters (`53M`) or a fraction of the parent's (`0.5`).
    pub target: Option<String>,
}

impl ShapeRequest {
    /// Whether any size is given explicitly.
    pub fn explicit(&self) -> bool {
        self.layers.is_some()
            || self.hidden.is_some()
            || self.heads.is_some()
            || self.kv_heads.is_some()
            || self.mlp.is_some()
    }

    /// Whether anything is asked for.
    pub fn is_empty(&self) -> bool {
        !self.explicit() && self.target.is_none()
    }

    /// The explicit shape: given sizes, the parent's elsewhere. Query heads without KV
    /// heads keep the parent's KV heads; KV heads without query heads keep whole groups.
    pub fn resolve(&self, parent: &LlamaConfig) -> Result<Shape> {
        let full = Shape::of(parent);
        let group = full.heads / full.kv_heads.max(1);
        let (heads, kv_heads) = match (self.heads, self.kv_heads) {
            (Some(h), Some(k)) => (h, k),
            (Some(h), None) => (h, full.kv_heads.min(h.max(1))),
            (None, Some(k)) => (k * group, k),
            (None, None) => (full.heads, full.kv_heads),
        };
        let s = Shape {
            layers: self.layers.unwrap_or(full.layers),
            hidden: self.hidden.unwrap_or(full.hidden),
            heads,
            kv_heads,
            mlp: self.mlp.unwrap_or(full.mlp),
        };
        s.check(parent)?;
        Ok(s)
    }
}

/// Everything a structured pruning needs.
#[derive(Debug, Clone)]
pub struct StructuredOptions {
    pub calib: CalibSpec,
    pub importance: ImportanceSource,
    pub layer_metric: LayerMetric,
    pub shape: ShapeRequest,
    /// Windows (drawn with the calibration seed + 1, apart from the importance windows) on
    /// which the layer-removal loss and the candidate search score models.
    pub score_samples: usize,
    /// Also measure the layer-removal loss (for the report) when the metric does not need it.
    pub measure_layer_loss: bool,
    /// Windows per forward pass.
    pub batch: usize,
}

impl Default for StructuredOptions {
    fn default() -> Self {
        Self {
            calib: CalibSpec::default(),
            importance: ImportanceSource::Measured(Aggregate::L2),
            layer_metric: LayerMetric::BlockInfluence,
            shape: ShapeRequest::default(),
            score_samples: 16,
            measure_layer_loss: false,
            batch: 4,
        }
    }
}

/// What a structured pruning did.
#[derive(Debug, Clone, Serialize)]
pub struct StructuredReport {
    pub importance: Importance,
    pub plan: Plan,
    pub parent: Shape,
    pub shape: Shape,
    /// The parameter-target search, when one ran.
    pub candidates: Vec<Candidate>,
    pub chosen: Option<usize>,
    pub parent_params: usize,
    pub parent_non_embedding: usize,
    pub params: usize,
    pub non_embedding: usize,
    pub layer_metric: LayerMetric,
    pub calib_tokens: usize,
    pub seconds: f64,
}

/// Token windows, one `Vec` per window.
type Windows = Vec<Vec<u32>>;

/// The calibration windows for importance and the separate windows for scoring.
fn windows(
    model: &Llama,
    tok: &dyn Tokenizer,
    o: &StructuredOptions,
    need_importance: bool,
) -> Result<(Windows, Windows)> {
    let Some(path) = &o.calib.file else {
        return Err(Error::invalid(
            "structured pruning needs calibration text to measure importance and score shapes: give --calib FILE",
        ));
    };
    let seqlen = o
        .calib
        .seqlen
        .unwrap_or(2048)
        .min(model.config.max_position_embeddings);
    let tokens = calibration_tokens(path, tok)?;
    let imp = if need_importance {
        calibration_windows(&tokens, o.calib.nsamples, seqlen, o.calib.seed)?
    } else {
        Vec::new()
    };
    let score = calibration_windows(&tokens, o.score_samples.max(1), seqlen, o.calib.seed + 1)?;
    Ok((imp, score))
}

/// Measures (or draws) the importance of every unit of `model`, with the layer-removal loss
/// when the metric or the report needs it.
pub fn measure_importance(
    model: &Llama,
    tok: &dyn Tokenizer,
    o: &StructuredOptions,
) -> Result<(Importance, Windows, usize)> {
    let measured = matches!(o.importance, ImportanceSource::Measured(_));
    let (calib, score) = windows(model, tok, o, measured)?;
    let calib_tokens = calib.iter().map(Vec::len).sum();
    let mut imp = match o.importance {
        ImportanceSource::Measured(agg) => {
            let bar = progress_bar("importance", "blocks");
            let imp = structured::measure(model, &calib, agg, o.batch, &mut bar_callback(&bar))?;
            bar.finish_and_clear();
            imp
        }
        ImportanceSource::Random(seed) => Importance::random(&model.config, seed),
    };
    if measured && (o.measure_layer_loss || o.layer_metric == LayerMetric::LossIncrease) {
        let bar = progress_bar("layer removal", "passes");
        importance::measure_layer_removal(
            &mut imp,
            model,
            &score,
            o.batch,
            &mut bar_callback(&bar),
        )?;
        bar.finish_and_clear();
    }
    Ok((imp, score, calib_tokens))
}

/// Prunes `model` to the shape `o` asks for; returns the smaller model and the report.
/// Every argument error comes before any work.
pub fn structured_prune(
    model: &Llama,
    tok: &dyn Tokenizer,
    o: &StructuredOptions,
) -> Result<(Llama, StructuredReport)> {
    let t0 = Instant::now();
    let parent_cfg = &model.config;
    if o.shape.is_empty() {
        return Err(Error::invalid(
            "say what to keep: --layers, --hidden, --heads/--kv-heads, --mlp, or --target-params",
        ));
    }
    if o.shape.explicit() && o.shape.target.is_some() {
        return Err(Error::invalid(
            "give either --target-params or explicit sizes (--layers, --hidden, --heads, --kv-heads, --mlp), not both",
        ));
    }
    let target = match &o.shape.target {
        Some(t) => Some(structured::parse_target(t, parent_cfg)?),
        None => None,
    };
    // Explicit sizes are checked before any work.
    let explicit = match target {
        None => Some(o.shape.resolve(parent_cfg)?),
        Some(_) => None,
    };
    let (imp, score, calib_tokens) = measure_importance(model, tok, o)?;
    let (shape, candidates, chosen) = match (explicit, target) {
        (Some(s), _) => (s, Vec::new(), None),
        (None, t) => {
            let t = t.ok_or_else(|| Error::invalid("no shape was asked for"))?;
            let bar = progress_bar("candidate shapes", "");
            let (best, cands) = structured::search(
                model,
                &imp,
                o.layer_metric,
                t,
                &score,
                o.batch,
                &mut bar_callback(&bar),
            )?;
            bar.finish_and_clear();
            (cands[best].shape, cands, Some(best))
        }
    };
    let plan = Plan::from_importance(&imp, parent_cfg, &shape, o.layer_metric)?;
    let pruned = plan.apply(model)?;
    let parent = Shape::of(parent_cfg);
    let report = StructuredReport {
        importance: imp,
        plan,
        parent,
        shape,
        candidates,
        chosen,
        parent_params: parent.total_params(parent_cfg),
        parent_non_embedding: parent.non_embedding_params(parent_cfg),
        params: shape.total_params(parent_cfg),
        non_embedding: shape.non_embedding_params(parent_cfg),
        layer_metric: o.layer_metric,
        calib_tokens,
        seconds: t0.elapsed().as_secs_f64(),
    };
    Ok((pruned, report))
}

/// Millions, one decimal.
fn m(x: usize) -> String {
    format!("{:.1}M", x as f64 / 1e6)
}

/// What the pruning did, for the terminal: the search table (and why the winner), the shape
/// and the parameter counts.
pub fn summary(r: &StructuredReport) -> String {
    let mut s = String::new();
    if let Some(best) = r.chosen {
        let _ = writeln!(
            s,
            "candidate shapes for the target (calibration loss right after pruning, no retraining; lower is better):"
        );
        let _ = writeln!(
            s,
            "  {:<10} {:<48} {:>10} {:>9}",
            "candidate", "shape", "non-emb", "loss"
        );
        for (i, c) in r.candidates.iter().enumerate() {
            let _ = writeln!(
                s,
                "{} {:<10} {:<48} {:>10} {:>9.4}",
                if i == best { "*" } else { " " },
                c.name,
                c.shape.to_string(),
                m(c.non_embedding_params),
                c.loss
            );
        }
        let c = &r.candidates[best];
        let runner_up = r
            .candidates
            .iter()
            .enumerate()
            .filter(|(i, _)| *i != best)
            .map(|(_, c)| c.loss)
            .fold(f64::INFINITY, f64::min);
        let _ = writeln!(
            s,
            "chose `{}`: the lowest calibration loss ({:.4}{}); Minitron retrains each candidate briefly before choosing, this ranks them as pruned",
            c.name,
            c.loss,
            if runner_up.is_finite() {
                format!(", {:.4} below the next", runner_up - c.loss)
            } else {
                String::new()
            }
        );
    }
    let _ = writeln!(
        s,
        "{} → {}; parameters {} → {} ({:.1}%), non-embedding {} → {} ({:.1}%); importance: {}, layers by {}",
        r.parent,
        r.shape,
        m(r.parent_params),
        m(r.params),
        100.0 * r.params as f64 / r.parent_params as f64,
        m(r.parent_non_embedding),
        m(r.non_embedding),
        100.0 * r.non_embedding as f64 / r.parent_non_embedding as f64,
        r.importance.source,
        r.layer_metric.name(),
    );
    s
}

/// The pruned model's `slm.json`: the parent, the shape, the kept units (the layer map
/// hidden-state distillation can use) and the search.
pub fn structured_meta(parent: &str, r: &StructuredReport, calib: &CalibSpec) -> serde_json::Value {
    serde_json::json!({
        "stage": "prune",
        "method": "structured",
        "parent": parent,
        "parent_shape": r.parent,
        "shape": r.shape,
        "params": r.params,
        "non_embedding_params": r.non_embedding,
        "parent_params": r.parent_params,
        "importance": r.importance.source,
        "layer_metric": r.layer_metric,
        "kept": r.plan,
        "candidates": r.candidates,
        "chosen": r.chosen.map(|i| r.candidates[i].name.clone()),
        "calibration": {"file": calib.file.as_ref().map(|p| p.display().to_string()), "nsamples": calib.nsamples, "tokens": r.calib_tokens, "seed": calib.seed},
        "seconds": r.seconds,
    })
}

/// The rankings, for the terminal: layers by both metrics, KV groups and heads per layer,
/// the spread of MLP channel scores per layer, the weakest and strongest hidden channels.
pub fn format_importance(imp: &Importance) -> String {
    let mut s = String::new();
    let nl = imp.block_influence.len();
    let _ = writeln!(
        s,
        "importance ({}, {} calibration positions)",
        imp.source, imp.positions
    );
    let bi_rank = ranks(&imp.block_influence);
    let loss_rank = imp.loss_increase.as_ref().map(|v| ranks(v));
    let _ = writeln!(
        s,
        "\nlayers (rank 1 = most important){}:",
        imp.base_loss
            .map(|b| format!("; full-model calibration loss {b:.4}"))
            .unwrap_or_default()
    );
    let _ = writeln!(
        s,
        "  {:>5} {:>10} {:>7} {:>14} {:>7}",
        "layer", "BI", "rank", "loss if gone", "rank"
    );
    for l in 0..nl {
        let (li, lr) = match (&imp.loss_increase, &loss_rank) {
            (Some(v), Some(r)) => (format!("{:+.4}", v[l]), r[l].to_string()),
            _ => ("-".into(), "-".into()),
        };
        let _ = writeln!(
            s,
            "  {l:>5} {:>10.5} {:>7} {li:>14} {lr:>7}",
            imp.block_influence[l], bi_rank[l]
        );
    }
    let _ = writeln!(
        s,
        "\nattention heads (KV groups by summed score; heads within groups, best first):"
    );
    for l in 0..nl {
        let g = imp.group_scores(l);
        let order = order_desc(&g);
        let parts: Vec<String> = order
            .iter()
            .map(|&k| {
                let members = &imp.heads[l][k * imp.group_size..(k + 1) * imp.group_size];
                let hs: Vec<String> = order_desc(members)
                    .into_iter()
                    .map(|h| format!("{}:{:.3}", k * imp.group_size + h, members[h]))
                    .collect();
                format!("g{k} [{}]", hs.join(" "))
            })
            .collect();
        let _ = writeln!(s, "  layer {l:>2}: {}", parts.join("  "));
    }
    let _ = writeln!(s, "\nMLP channels (score quantiles per layer):");
    let _ = writeln!(
        s,
        "  {:>5} {:>9} {:>9} {:>9} {:>9} {:>9}",
        "layer", "min", "25%", "median", "75%", "max"
    );
    for (l, v) in imp.mlp.iter().enumerate() {
        let q = quantiles(v);
        let _ = writeln!(
            s,
            "  {l:>5} {:>9.4} {:>9.4} {:>9.4} {:>9.4} {:>9.4}",
            q[0], q[1], q[2], q[3], q[4]
        );
    }
    let order = order_desc(&imp.hidden);
    let show = |ids: &[usize]| -> String {
        ids.iter()
            .map(|&c| format!("{c}:{:.3}", imp.hidden[c]))
            .collect::<Vec<_>>()
            .join(" ")
    };
    let k = order.len().min(8);
    let _ = writeln!(s, "\nhidden channels: strongest {}", show(&order[..k]));
    let _ = writeln!(
        s,
        "                 weakest   {}",
        show(&order[order.len() - k..])
    );
    s
}

/// Indices by descending score (ties: lower index first).
fn order_desc(v: &[f32]) -> Vec<usize> {
    let mut i: Vec<usize> = (0..v.len()).collect();
    i.sort_by(|&a, &b| v[b].total_cmp(&v[a]).then(a.cmp(&b)));
    i
}

/// 1-based rank of each entry by descending score.
fn ranks(v: &[f32]) -> Vec<usize> {
    let mut r = vec![0; v.len()];
    for (pos, i) in order_desc(v).into_iter().enumerate() {
        r[i] = pos + 1;
    }
    r
}

/// min, 25%, median, 75%, max.
fn quantiles(v: &[f32]) -> [f32; 5] {
    let mut s = v.to_vec();
    s.sort_by(f32::total_cmp);
    let at = |q: f64| {
        s.get(((s.len().saturating_sub(1)) as f64 * q).round() as usize)
            .copied()
            .unwrap_or(0.0)
    };
    [at(0.0), at(0.25), at(0.5), at(0.75), at(1.0)]
}

/// Writes `importance.json` and the plots (`layers.png`: both layer metrics by layer;
/// `heads.png`: each KV group's score by layer; `mlp.png` and `hidden.png`: sorted channel
/// scores) into `dir`; returns the files written.
pub fn write_importance(imp: &Importance, dir: &Path) -> Result<Vec<PathBuf>> {
    std::fs::create_dir_all(dir).map_err(|e| Error::io(dir, e))?;
    let mut files = Vec::new();
    let json = dir.join("importance.json");
    std::fs::write(&json, serde_json::to_vec_pretty(imp)?).map_err(|e| Error::io(&json, e))?;
    files.push(json);
    let layer_pts = |v: &[f32]| -> Vec<(f64, f64)> {
        v.iter()
            .enumerate()
            .map(|(l, &x)| (l as f64, x as f64))
            .collect()
    };
    let mut c = slm_report::LineChart::new("Layer importance", "layer", "score");
    c.add(
        "Block Influence, 1 - cos(in, out)",
        layer_pts(&imp.block_influence),
    );
    if let Some(inc) = &imp.loss_increase {
        c.add("loss increase if removed (nats)", layer_pts(inc));
    }
    // The two metrics differ by orders of magnitude: a log axis when it can show them.
    c.log_y = c.series.iter().all(|s| s.points.iter().all(|p| p.1 > 0.0));
    let p = dir.join("layers.png");
    c.render_png(&p)?;
    files.push(p);
    let mut c = slm_report::LineChart::new(
        "KV group importance (sum of its query heads)",
        "layer",
        "score",
    );
    let groups = imp
        .heads
        .first()
        .map_or(0, |h| h.len() / imp.group_size.max(1));
    for g in 0..groups {
        let pts: Vec<(f64, f64)> = (0..imp.heads.len())
            .map(|l| (l as f64, imp.group_scores(l)[g] as f64))
            .collect();
        c.add(format!("group {g}"), pts);
    }
    let p = dir.join("heads.png");
    c.render_png(&p)?;
    files.push(p);
    let sorted = |v: &[f32]| -> Vec<(f64, f64)> {
        let mut s = v.to_vec();
        s.sort_by(|a, b| b.total_cmp(a));
        s.iter()
            .enumerate()
            .map(|(i, &x)| (i as f64, x as f64))
            .collect()
    };
    let mut c =
        slm_report::LineChart::new("MLP channel importance, sorted", "channel rank", "score");
    let nl = imp.mlp.len();
    for l in [0, nl / 2, nl.saturating_sub(1)] {
        if l < nl && !c.series.iter().any(|s| s.name == format!("layer {l}")) {
            c.add(format!("layer {l}"), sorted(&imp.mlp[l]));
        }
    }
    c.markers = slm_report::Markers::Never;
    let p = dir.join("mlp.png");
    c.render_png(&p)?;
    files.push(p);
    let mut c =
        slm_report::LineChart::new("Hidden channel importance, sorted", "channel rank", "score");
    c.add("all layers' normed inputs", sorted(&imp.hidden));
    c.markers = slm_report::Markers::Never;
    let p = dir.join("hidden.png");
    c.render_png(&p)?;
    files.push(p);
    Ok(files)
}

/// Saves the pruned model (with the parent's tokenizer files and `slm.json`) and its
/// importance report files beside it (`importance/`).
pub fn save_structured(
    model: &Llama,
    tokenizer: &slm_io::TokenizerSource,
    meta: &serde_json::Value,
    imp: &Importance,
    out: &Path,
) -> Result<()> {
    crate::prune::save_pruned(model, tokenizer, meta, out)?;
    write_importance(imp, &out.join("importance"))?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parent() -> LlamaConfig {
        let mut c = slm_model::preset("260k").unwrap_or_else(|e| panic!("{e}"));
        c.hidden_size = 64;
        c.intermediate_size = 128;
        c.num_hidden_layers = 4;
        c.num_attention_heads = 6;
        c.num_key_value_heads = 2;
        c.head_dim = 8;
        c
    }

    #[test]
    fn sizes_not_given_stay_the_parents_and_heads_follow_their_groups() {
        let p = parent();
        let r = ShapeRequest {
            layers: Some(3),
            ..Default::default()
        };
        assert_eq!(
            r.resolve(&p).unwrap(),
            Shape {
                layers: 3,
                hidden: 64,
                heads: 6,
                kv_heads: 2,
                mlp: 128
            }
        );
        // KV heads alone: whole groups go with their query heads.
        let r = ShapeRequest {
            kv_heads: Some(1),
            ..Default::default()
        };
        let s = r.resolve(&p).unwrap();
        assert_eq!((s.heads, s.kv_heads), (3, 1));
        // Query heads alone: the parent's groups, fewer heads in each.
        let r = ShapeRequest {
            heads: Some(4),
            ..Default::default()
        };
        let s = r.resolve(&p).unwrap();
        assert_eq!((s.heads, s.kv_heads), (4, 2));
        let r = ShapeRequest {
            heads: Some(5),
            ..Default::default()
        };
        assert!(r.resolve(&p).is_err());
        assert!(ShapeRequest::default().is_empty());
    }
}
