//! The run report: `report.md` with the settings and results, and `plots/loss.png` with the
//! training and validation loss curves.

use crate::trainer::{read_curves, Outcome};
use slm_core::{error::IoContext, Result};
use std::fmt::Write as _;
use std::path::Path;

/// Writes `plots/loss.png` from `metrics.jsonl`; returns false when there is nothing to plot.
pub fn write_loss_plot(run_dir: &Path) -> Result<bool> {
    let (train, val) = read_curves(run_dir)?;
    if train.is_empty() {
        return Ok(false);
    }
    let plots = run_dir.join("plots");
    std::fs::create_dir_all(&plots).with_path(&plots)?;
    let mut chart = slm_report::LineChart::new("Loss", "step", "cross-entropy (nats/token)");
    chart.add("train", smooth(&train, 10));
    if !val.is_empty() {
        chart.add("validation", val);
    }
    chart.render_png(&plots.join("loss.png"))?;
    Ok(true)
}

/// A trailing moving average over `k` points (raw per-step losses are noisy).
fn smooth(points: &[(f64, f64)], k: usize) -> Vec<(f64, f64)> {
    let mut out = Vec::with_capacity(points.len());
    let mut sum = 0.0;
    for (i, &(x, y)) in points.iter().enumerate() {
        sum += y;
        if i >= k {
            sum -= points[i - k].1;
        }
        out.push((x, sum / (i + 1).min(k) as f64));
    }
    out
}

/// Writes `report.md` (and the plot) for a training run.
pub fn write_train_report(run_dir: &Path, settings: &str, outcome: &Outcome) -> Result<()> {
    let plotted = write_loss_plot(run_dir)?;
    let mut md = String::new();
    let _ = writeln!(md, "# Training run `{}`\n", run_dir.display());
    let _ = writeln!(md, "| | |\n|---|---|");
    let _ = writeln!(md, "| steps | {} |", outcome.step);
    let _ = writeln!(md, "| tokens seen | {} |", outcome.tokens_seen);
    let _ = writeln!(md, "| wall time this session | {:.1} s |", outcome.seconds);
    let _ = writeln!(md, "| final train loss | {:.4} |", outcome.train_loss);
    if let Some(v) = outcome.val_loss {
        let _ = writeln!(
            md,
            "| validation loss | {v:.4} (perplexity {:.3}) |",
            v.exp()
        );
    }
    let _ = writeln!(md, "| interrupted | {} |", outcome.interrupted);
    if plotted {
        let _ = writeln!(md, "\n![loss](plots/loss.png)");
    }
    let _ = writeln!(md, "\n## Settings (config.toml)\n\n```toml\n{settings}```");
    slm_io::atomic::write_atomic(&run_dir.join("report.md"), md.as_bytes())
}
