//! Pruning as the pipelines run it: method names, calibration windows checked before any
//! work, the Fisher diagonal OBD needs (loss gradients over the calibration windows), the
//! pruned model's `slm.json`, and the sweep (perplexity against sparsity: CSV, Markdown, PNG).

use crate::calib::CalibSpec;
use crate::progress::progress_bar;
use serde::{Deserialize, Serialize};
use slm_compress::{prune, FisherDiag, Method, Pattern, PruneConfig, PruneReport};
use slm_core::{Error, LinearRole, Result};
use slm_data::tokenizer::Tokenizer;
use slm_model::Llama;
use std::fmt::Write as _;
use std::path::{Path, PathBuf};

/// A pruning method by its command-line and recipe name.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum MethodName {
    Magnitude,
    MagnitudeGlobal,
    Obd,
    ObdGlobal,
    ObdLayerwise,
    Wanda,
    Sparsegpt,
}

impl MethodName {
    /// Every name, as written on the command line.
    pub const NAMES: [&'static str; 7] = [
        "magnitude",
        "magnitude-global",
        "obd",
        "obd-global",
        "obd-layerwise",
        "wanda",
        "sparsegpt",
    ];

    pub fn parse(s: &str) -> Result<Self> {
        Ok(match s {
            "magnitude" => Self::Magnitude,
            "magnitude-global" => Self::MagnitudeGlobal,
            "obd" => Self::Obd,
            "obd-global" => Self::ObdGlobal,
            "obd-layerwise" => Self::ObdLayerwise,
            "wanda" => Self::Wanda,
            "sparsegpt" => Self::Sparsegpt,
            other => {
                return Err(Error::invalid(format!(
                    "unknown method `{other}` ({})",
                    Self::NAMES.join(", ")
                )))
            }
        })
    }

    /// The method with its default settings (OBD's Fisher diagonal is filled by [`prune_model`]).
    pub fn method(self) -> Method {
        match self {
            Self::Magnitude => Method::Magnitude { global: false },
            Self::MagnitudeGlobal => Method::Magnitude { global: true },
            Self::Wanda => Method::Wanda,
            Self::Sparsegpt => Method::sparsegpt(),
            Self::Obd => Method::Obd {
                fisher: FisherDiag::new(),
                global: false,
            },
            Self::ObdGlobal => Method::Obd {
                fisher: FisherDiag::new(),
                global: true,
            },
            Self::ObdLayerwise => Method::ObdLayerwise,
        }
    }

    /// Whether the method reads calibration text (activations, or OBD's loss gradients).
    pub fn needs_calibration(self) -> bool {
        let m = self.method();
        m.needs_calibration() || matches!(m, Method::Obd { .. })
    }

    pub fn name(self) -> &'static str {
        self.method().name()
    }
}

/// Roles from a comma list of q,k,v,o,gate,up,down.
pub fn parse_roles(s: &str) -> Result<Vec<LinearRole>> {
    s.split(',')
        .map(|r| {
            LinearRole::parse(r.trim())
                .ok_or_else(|| Error::invalid(format!("unknown role `{r}` (q,k,v,o,gate,up,down)")))
        })
        .collect()
}

/// What a pruning needs besides the method, sparsity and pattern.
#[derive(Debug, Clone)]
pub struct PruneOptions {
    pub calib: CalibSpec,
    /// Block linears to prune.
    pub roles: Vec<LinearRole>,
    /// Report each tensor's relative reconstruction error (free with SparseGPT).
    pub measure_error: bool,
}

impl Default for PruneOptions {
    fn default() -> Self {
        Self {
            calib: CalibSpec::default(),
            roles: LinearRole::ALL.to_vec(),
            measure_error: false,
        }
    }
}

/// Calibration windows for `model`, checked before any pruning work.
fn windows_for(
    model: &Llama,
    tok: &dyn Tokenizer,
    o: &PruneOptions,
    method: &Method,
) -> Result<Vec<Vec<u32>>> {
    let needs = method.needs_calibration() || matches!(method, Method::Obd { .. });
    let Some(path) = &o.calib.file else {
        if needs {
            return Err(Error::invalid(format!(
                "method `{}` needs calibration text: give --calib FILE",
                method.name()
            )));
        }
        return Ok(Vec::new());
    };
    o.calib.windows(path, model, tok)
}

/// Fills the Fisher diagonal for OBD from loss gradients over the calibration windows.
fn with_fisher(method: Method, model: &Llama, windows: &[Vec<u32>]) -> Result<Method> {
    let Method::Obd { global, .. } = method else {
        return Ok(method);
    };
    let mut fisher = FisherDiag::new();
    let bar = progress_bar("fisher", "batches");
    slm_train::fisher::for_each_batch_gradient(
        model,
        windows,
        8,
        &mut |layer, role, g| fisher.add_grad_slice(layer, role, g),
        &mut |d, t| {
            bar.set_length(t as u64);
            bar.set_position(d as u64);
        },
    )?;
    bar.finish_and_clear();
    Ok(Method::Obd { fisher, global })
}

/// Prunes `model` in place; returns the report. Every argument error comes before any work.
pub fn prune_model(
    model: &mut Llama,
    tok: &dyn Tokenizer,
    method: MethodName,
    sparsity: f64,
    pattern: Pattern,
    o: &PruneOptions,
) -> Result<PruneReport> {
    if !(0.0..1.0).contains(&sparsity) {
        return Err(Error::invalid(format!(
            "sparsity must be in [0, 1), got {sparsity}"
        )));
    }
    let mut cfg = PruneConfig::new(method.method(), sparsity, pattern);
    cfg.roles = o.roles.clone();
    cfg.measure_error = o.measure_error || cfg.method.needs_gram();
    let windows = windows_for(model, tok, o, &cfg.method)?;
    cfg.validate(model, &windows)?;
    cfg.method = with_fisher(cfg.method, model, &windows)?;
    let b = progress_bar("prune", "");
    let report = prune(model, &windows, &cfg, &mut |stage, d, t| {
        b.set_message(stage.to_string());
        b.set_length(t as u64);
        b.set_position(d as u64);
    })?;
    b.finish_and_clear();
    Ok(report)
}

/// The pruned model's `slm.json`.
pub fn prune_meta(parent: &str, report: &PruneReport, calib: &CalibSpec) -> serde_json::Value {
    serde_json::json!({
        "stage": "prune",
        "parent": parent,
        "method": report.method,
        "pattern": report.pattern,
        "target_sparsity": report.target_sparsity,
        "sparsity": report.overall_sparsity(),
        "calibration": {"file": calib.file.as_ref().map(|p| p.display().to_string()), "nsamples": report.calib_windows, "tokens": report.calib_tokens, "seed": calib.seed},
        "seconds": report.seconds,
        "tensors": report.tensors.iter().map(|t| serde_json::json!({"name": t.name, "sparsity": t.sparsity, "rel_error": t.rel_error})).collect::<Vec<_>>(),
    })
}

/// Saves the pruned `model` as a model directory with the parent's tokenizer files and `meta`.
pub fn save_pruned(
    model: &Llama,
    tokenizer: &slm_io::TokenizerSource,
    meta: &serde_json::Value,
    out: &Path,
) -> Result<()> {
    let mut extra = tokenizer.files()?;
    extra.push(("slm.json", serde_json::to_vec_pretty(meta)?));
    slm_model::save(model, out, &extra)
}

/// Sparsities from `start:end:step` (inclusive) or a comma list.
pub fn parse_sparsities(s: &str) -> Result<Vec<f64>> {
    let num = |x: &str| {
        x.trim()
            .parse::<f64>()
            .map_err(|_| Error::invalid(format!("sparsity `{x}` is not a number")))
    };
    if let Some((a, rest)) = s.split_once(':') {
        let (b, step) = rest
            .split_once(':')
            .ok_or_else(|| Error::invalid("sparsity range: start:end:step"))?;
        let (a, b, step) = (num(a)?, num(b)?, num(step)?);
        if step <= 0.0 || b < a {
            return Err(Error::invalid(
                "sparsity range needs start ≤ end and step > 0",
            ));
        }
        let n = ((b - a) / step + 1e-9).floor() as usize;
        Ok((0..=n)
            .map(|i| ((a + i as f64 * step) * 1e6).round() / 1e6)
            .collect())
    } else {
        s.split(',').map(num).collect()
    }
}

/// A sweep: every method × pattern × sparsity, perplexity after each.
#[derive(Debug, Clone)]
pub struct SweepOptions {
    pub methods: Vec<MethodName>,
    pub patterns: Vec<Pattern>,
    pub sparsities: Vec<f64>,
    pub prune: PruneOptions,
    /// Text whose perplexity is measured.
    pub ppl_text: PathBuf,
    /// Window length for perplexity (default: the model context).
    pub ctx: Option<usize>,
    /// Folder for sweep.md, sweep.csv and sweep.png.
    pub out: PathBuf,
}

/// One pruned model of a sweep.
#[derive(Debug, Clone, Serialize)]
pub struct SweepRow {
    pub method: String,
    pub pattern: String,
    pub sparsity: f64,
    pub ppl: f64,
    pub prune_seconds: f64,
}

/// Runs the sweep, printing a line per pruned model through `log`; writes
/// `out/sweep.{csv,md,png}` and returns the dense perplexity and the rows.
pub fn sweep(
    model: &Llama,
    tok: &dyn Tokenizer,
    o: &SweepOptions,
    log: &mut dyn FnMut(&str),
) -> Result<(f64, Vec<SweepRow>)> {
    let text = slm_eval::read_eval_text(&o.ppl_text, slm_eval::TextFormat::Auto)?;
    let popts = slm_eval::PplOptions {
        ctx: o.ctx,
        add_bos: true,
        ..Default::default()
    };
    std::fs::create_dir_all(&o.out).map_err(|e| Error::io(&o.out, e))?;
    let dense = slm_eval::perplexity(model, tok, &text, &popts, &mut |_, _| {})?.ppl;
    log(&format!("dense perplexity {dense:.3}"));
    let mut rows = Vec::new();
    let mut chart =
        slm_report::LineChart::new("Perplexity after pruning", "sparsity", "perplexity");
    chart.log_y = true;
    for pattern in &o.patterns {
        for &m in &o.methods {
            let mut points = Vec::new();
            let levels = match pattern {
                Pattern::Unstructured => o.sparsities.clone(),
                Pattern::NM { .. } => vec![pattern.effective_sparsity(0.0)],
            };
            for &s in &levels {
                let mut pruned = model.clone();
                let report = match prune_model(&mut pruned, tok, m, s, *pattern, &o.prune) {
                    Ok(r) => r,
                    Err(e) => {
                        // One impossible combination (e.g. 4:8 on a width not divisible by 8)
                        // must not lose the rest of the sweep.
                        log(&format!("{:<12} {pattern:<12} skipped: {e}", m.name()));
                        continue;
                    }
                };
                let p = slm_eval::perplexity(&pruned, tok, &text, &popts, &mut |_, _| {})?;
                log(&format!(
                    "{:<12} {pattern:<12} sparsity {:.2}  ppl {:.3}  ({:.1} s)",
                    m.name(),
                    report.overall_sparsity(),
                    p.ppl,
                    report.seconds
                ));
                rows.push(SweepRow {
                    method: m.name().into(),
                    pattern: pattern.to_string(),
                    sparsity: report.overall_sparsity(),
                    ppl: p.ppl,
                    prune_seconds: report.seconds,
                });
                points.push((report.overall_sparsity(), p.ppl));
            }
            chart.add(format!("{} {pattern}", m.name()), points);
        }
    }
    chart.add("dense", vec![(0.0, dense)]);
    let mut csv = String::from("method,pattern,sparsity,ppl,prune_seconds\n");
    let mut md = format!("Dense perplexity {dense:.3} on `{}`.\n\n| method | pattern | sparsity | perplexity | prune time (s) |\n|---|---|---|---|---|\n", o.ppl_text.display());
    for r in &rows {
        let _ = writeln!(
            csv,
            "{},{},{:.4},{:.4},{:.2}",
            r.method, r.pattern, r.sparsity, r.ppl, r.prune_seconds
        );
        let _ = writeln!(
            md,
            "| {} | {} | {:.2} | {:.3} | {:.1} |",
            r.method, r.pattern, r.sparsity, r.ppl, r.prune_seconds
        );
    }
    let write = |name: &str, text: &str| {
        let p = o.out.join(name);
        std::fs::write(&p, text).map_err(|e| Error::io(&p, e))
    };
    write("sweep.csv", &csv)?;
    write("sweep.md", &md)?;
    chart.render_png(&o.out.join("sweep.png"))?;
    Ok((dense, rows))
}
