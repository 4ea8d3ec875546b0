//! `slm prune`: remove the weights that matter least (magnitude, OBD, Wanda, SparseGPT;
//! unstructured or N:M), and `slm prune sweep`: a table and plot of perplexity against sparsity.

use crate::common::{load_model_and_tokenizer, ModelArgs};
use anyhow::{bail, Context, Result};
use clap::{Args, Subcommand};
use indicatif::{ProgressBar, ProgressStyle};
use slm_compress::{
    calibration_windows, prune, FisherDiag, Method, Pattern, PruneConfig, PruneReport,
};
use slm_core::LinearRole;
use slm_data::tokenizer::Tokenizer;
use slm_model::Llama;
use std::fmt::Write as _;
use std::path::{Path, PathBuf};

#[derive(Args, Debug)]
#[command(
    args_conflicts_with_subcommands = true,
    after_help = "Methods:\n  magnitude          smallest |w| per tensor (magnitude-global: across all pruned tensors)\n  \
obd                Optimal Brain Damage: ½·F_kk·w² with F the empirical Fisher (squared loss gradients over the calibration batches)\n  \
obd-layerwise      OBD with the layer-wise Hessian 2XXᵀ: ‖X_j‖²·w² per tensor (within a row this ranking is Wanda's)\n  \
wanda              |W_ij|·‖X_j‖₂ within each output row, no weight update\n  \
sparsegpt          OBS with Cholesky of H⁻¹, lazy blocks of 128 columns, remaining weights updated\n\
Calibration runs block by block: block i sees the outputs of the already pruned blocks 0..i-1.\n\n\
Examples:\n  slm prune -m runs/teacher --method sparsegpt --sparsity 0.5 --calib ../shared/data/calib/c4_demo.jsonl --out runs/teacher-sgpt50\n  \
slm prune -m runs/teacher --method wanda --pattern 2:4 --calib calib.txt --nsamples 64 --seqlen 256 --out runs/teacher-2of4\n  \
slm prune sweep -m runs/teacher --calib calib.txt --ppl val.txt --methods magnitude,wanda,sparsegpt --sparsity 0.1:0.9:0.1 --out runs/sweep"
)]
pub struct PruneArgs {
    #[command(subcommand)]
    pub sweep: Option<SweepCommand>,
    #[command(flatten)]
    pub one: PruneOne,
}

#[derive(Subcommand, Debug)]
pub enum SweepCommand {
    /// Prune at many sparsities with several methods and patterns; perplexity table + plot.
    Sweep(SweepArgs),
}

/// The calibration text and how windows are drawn from it (shared with `slm quantize --gptq`).
#[derive(Args, Debug, Clone)]
pub struct CalibText {
    /// Calibration text (.txt, .jsonl with `text`, or an slm token shard).
    #[arg(long)]
    pub calib: Option<PathBuf>,
    /// Calibration windows.
    #[arg(long, default_value_t = 128)]
    pub nsamples: usize,
    /// Tokens per window (default: min(2048, model context)).
    #[arg(long)]
    pub seqlen: Option<usize>,
    /// Seed of the window positions.
    #[arg(long, default_value_t = 0)]
    pub seed: u64,
}

impl CalibText {
    /// The windows for `model` from the file at `path`.
    pub fn windows(
        &self,
        path: &Path,
        model: &Llama,
        tok: &dyn Tokenizer,
    ) -> Result<Vec<Vec<u32>>> {
        let seqlen = self
            .seqlen
            .unwrap_or(2048)
            .min(model.config.max_position_embeddings);
        let tokens = calibration_tokens(path, tok)?;
        Ok(calibration_windows(
            &tokens,
            self.nsamples,
            seqlen,
            self.seed,
        )?)
    }
}

#[derive(Args, Debug)]
pub struct CalibArgs {
    #[command(flatten)]
    pub text: CalibText,
    /// Block linears to prune (comma-separated from q,k,v,o,gate,up,down).
    #[arg(long, default_value = "q,k,v,o,gate,up,down")]
    pub roles: String,
    /// Report each tensor's relative reconstruction error ‖WX − ŴX‖²/‖WX‖² (free with
    /// SparseGPT, which builds XᵀX anyway; costs one XᵀX per linear input for the others).
    #[arg(long)]
    pub measure_error: bool,
}

#[derive(Args, Debug)]
pub struct PruneOne {
    /// Model: HF directory, HF cache id, .gguf or llama2.c checkpoint.
    #[arg(long, short = 'm')]
    pub model: Option<String>,
    /// Tokenizer for models that carry none.
    #[arg(long)]
    pub tokenizer: Option<PathBuf>,
    /// magnitude, magnitude-global, obd, obd-global, obd-layerwise, wanda, sparsegpt.
    #[arg(long)]
    pub method: Option<String>,
    /// Fraction of each pruned tensor set to zero, in [0, 1) (ignored with an N:M pattern).
    #[arg(long, default_value_t = 0.5)]
    pub sparsity: f64,
    /// unstructured, or N:M such as 2:4 and 4:8.
    #[arg(long, default_value = "unstructured")]
    pub pattern: String,
    #[command(flatten)]
    pub calib: CalibArgs,
    /// Output model directory.
    #[arg(long, short = 'o')]
    pub out: Option<PathBuf>,
    /// Print the pruning report as JSON.
    #[arg(long)]
    pub json: bool,
}

#[derive(Args, Debug)]
pub struct SweepArgs {
    #[command(flatten)]
    pub model: ModelArgs,
    /// Comma-separated methods.
    #[arg(long, default_value = "magnitude,obd,wanda,sparsegpt")]
    pub methods: String,
    /// start:end:step (inclusive), or a comma list.
    #[arg(long, default_value = "0.1:0.9:0.1")]
    pub sparsity: String,
    /// Comma-separated patterns (unstructured, 2:4, 4:8).
    #[arg(long, default_value = "unstructured")]
    pub patterns: String,
    #[command(flatten)]
    pub calib: CalibArgs,
    /// Text whose perplexity is measured after each pruning.
    #[arg(long)]
    pub ppl: PathBuf,
    /// Window length for perplexity (default: the model context).
    #[arg(long)]
    pub ctx: Option<usize>,
    /// Output folder for sweep.md, sweep.csv and sweep.png.
    #[arg(long, short = 'o')]
    pub out: PathBuf,
}

pub fn run(a: PruneArgs) -> Result<()> {
    match a.sweep {
        Some(SweepCommand::Sweep(s)) => run_sweep(s),
        None => run_one(a.one),
    }
}

pub fn parse_method(name: &str) -> Result<Method> {
    Ok(match name {
        "magnitude" => Method::Magnitude { global: false },
        "magnitude-global" => Method::Magnitude { global: true },
        "wanda" => Method::Wanda,
        "sparsegpt" => Method::sparsegpt(),
        "obd" => Method::Obd { fisher: FisherDiag::new(), global: false },
        "obd-global" => Method::Obd { fisher: FisherDiag::new(), global: true },
        "obd-layerwise" => Method::ObdLayerwise,
        other => bail!("unknown method `{other}` (magnitude, magnitude-global, obd, obd-global, obd-layerwise, wanda, sparsegpt)"),
    })
}

fn parse_roles(s: &str) -> Result<Vec<LinearRole>> {
    s.split(',')
        .map(|r| {
            LinearRole::parse(r.trim())
                .with_context(|| format!("unknown role `{r}` (q,k,v,o,gate,up,down)"))
        })
        .collect()
}

/// Tokens of the calibration file: a token shard as it is, text and JSONL through the tokenizer.
pub fn calibration_tokens(path: &Path, tok: &dyn Tokenizer) -> Result<Vec<u32>> {
    let bytes = std::fs::read(path).with_context(|| path.display().to_string())?;
    if bytes.starts_with(slm_data::shards::MAGIC) {
        return Ok(slm_data::shards::Shard::open(path)?.to_vec()?);
    }
    let text = slm_data::documents::text_from_bytes(path, bytes)?;
    let text = if path.extension().and_then(|e| e.to_str()) == Some("jsonl") {
        slm_data::documents::jsonl_documents(path, &text)?.join("\n\n")
    } else {
        text
    };
    Ok(tok.encode(&text, true)?)
}

/// Calibration windows for `model`, checked before any pruning work.
fn windows_for(
    model: &Llama,
    tok: &dyn Tokenizer,
    c: &CalibArgs,
    method: &Method,
) -> Result<Vec<Vec<u32>>> {
    let needs = method.needs_calibration() || matches!(method, Method::Obd { .. });
    let Some(path) = &c.text.calib else {
        if needs {
            bail!(
                "method `{}` needs calibration text: give --calib FILE",
                method.name()
            );
        }
        return Ok(Vec::new());
    };
    c.text.windows(path, model, tok)
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

/// A progress bar "what [bar] pos/len unit [elapsed < eta]"; set its length when known.
pub(crate) fn progress_bar(what: &str, unit: &str) -> ProgressBar {
    let b = ProgressBar::new(0);
    b.set_style(
        ProgressStyle::with_template(&format!(
            "{what} {{bar:30}} {{pos}}/{{len}} {unit} [{{elapsed}} < {{eta}}]"
        ))
        .unwrap_or_else(|_| ProgressStyle::default_bar()),
    );
    b
}

/// Prunes `model` in place; returns the report.
pub fn prune_model(
    model: &mut Llama,
    tok: &dyn Tokenizer,
    method: Method,
    sparsity: f64,
    pattern: Pattern,
    c: &CalibArgs,
) -> Result<PruneReport> {
    let mut cfg = PruneConfig::new(method, sparsity, pattern);
    cfg.roles = parse_roles(&c.roles)?;
    cfg.measure_error = c.measure_error || cfg.method.needs_gram();
    let windows = windows_for(model, tok, c, &cfg.method)?;
    cfg.validate(model, &windows)?; // all argument errors before any work
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

fn run_one(a: PruneOne) -> Result<()> {
    let (Some(model), Some(method), Some(out)) = (a.model.clone(), a.method.clone(), a.out.clone())
    else {
        bail!("give --model, --method and --out (see `slm prune --help`)");
    };
    let model_args = ModelArgs {
        model,
        tokenizer: a.tokenizer.clone(),
    };
    let method = parse_method(&method)?;
    let pattern = Pattern::parse(&a.pattern)?;
    if !(0.0..1.0).contains(&a.sparsity) {
        bail!("--sparsity must be in [0, 1), got {}", a.sparsity);
    }
    let (mut loaded, tok) = load_model_and_tokenizer(&model_args)?;
    let report = prune_model(
        &mut loaded.model,
        tok.as_ref(),
        method,
        a.sparsity,
        pattern,
        &a.calib,
    )?;
    let mut extra = loaded.tokenizer.files()?;
    let meta = serde_json::json!({
        "stage": "prune",
        "parent": model_args.model,
        "method": report.method,
        "pattern": report.pattern,
        "target_sparsity": report.target_sparsity,
        "sparsity": report.overall_sparsity(),
        "calibration": {"file": a.calib.text.calib.as_ref().map(|p| p.display().to_string()), "nsamples": report.calib_windows, "tokens": report.calib_tokens, "seed": a.calib.text.seed},
        "seconds": report.seconds,
        "tensors": report.tensors.iter().map(|t| serde_json::json!({"name": t.name, "sparsity": t.sparsity, "rel_error": t.rel_error})).collect::<Vec<_>>(),
    });
    extra.push(("slm.json", serde_json::to_vec_pretty(&meta)?));
    slm_model::save(&loaded.model, &out, &extra)?;
    if a.json {
        println!("{}", report.to_json()?);
    } else {
        println!(
            "{} {} → {:.1}% of the pruned tensors are zero ({} tensors, {} calibration tokens, {:.1} s); model in {}",
            report.method,
            report.pattern,
            100.0 * report.overall_sparsity(),
            report.tensors.len(),
            report.calib_tokens,
            report.seconds,
            out.display()
        );
    }
    Ok(())
}

fn parse_sparsities(s: &str) -> Result<Vec<f64>> {
    if let Some((a, rest)) = s.split_once(':') {
        let (b, step) = rest
            .split_once(':')
            .context("sparsity range: start:end:step")?;
        let (a, b, step): (f64, f64, f64) = (a.parse()?, b.parse()?, step.parse()?);
        if step <= 0.0 || b < a {
            bail!("sparsity range needs start ≤ end and step > 0");
        }
        let n = ((b - a) / step + 1e-9).floor() as usize;
        Ok((0..=n)
            .map(|i| ((a + i as f64 * step) * 1e6).round() / 1e6)
            .collect())
    } else {
        s.split(',').map(|x| Ok(x.trim().parse::<f64>()?)).collect()
    }
}

fn run_sweep(a: SweepArgs) -> Result<()> {
    let (loaded, tok) = load_model_and_tokenizer(&a.model)?;
    let methods: Vec<String> = a.methods.split(',').map(|s| s.trim().to_string()).collect();
    for m in &methods {
        parse_method(m)?;
    }
    let patterns: Vec<Pattern> = a
        .patterns
        .split(',')
        .map(Pattern::parse)
        .collect::<std::result::Result<_, _>>()?;
    let sparsities = parse_sparsities(&a.sparsity)?;
    let text = slm_eval::read_eval_text(&a.ppl, slm_eval::TextFormat::Auto)?;
    let popts = slm_eval::PplOptions {
        ctx: a.ctx,
        add_bos: true,
        ..Default::default()
    };
    std::fs::create_dir_all(&a.out)?;
    let dense = slm_eval::perplexity(&loaded.model, tok.as_ref(), &text, &popts, &mut |_, _| {})?;
    println!("dense perplexity {:.3}", dense.ppl);
    let mut rows: Vec<(String, String, f64, f64, f64)> = Vec::new(); // method, pattern, sparsity, ppl, seconds
    let mut chart =
        slm_report::LineChart::new("Perplexity after pruning", "sparsity", "perplexity");
    chart.log_y = true;
    for pattern in &patterns {
        for m in &methods {
            let mut points = Vec::new();
            let levels: Vec<f64> = match pattern {
                Pattern::Unstructured => sparsities.clone(),
                Pattern::NM { .. } => vec![pattern.effective_sparsity(0.0)],
            };
            for &s in &levels {
                let mut model = loaded.model.clone();
                let report = match prune_model(
                    &mut model,
                    tok.as_ref(),
                    parse_method(m)?,
                    s,
                    *pattern,
                    &a.calib,
                ) {
                    Ok(r) => r,
                    Err(e) => {
                        // One impossible combination (e.g. 4:8 on a width not divisible by 8)
                        // must not lose the rest of the sweep.
                        println!("{m:<12} {:<12} skipped: {e:#}", pattern_label(pattern));
                        continue;
                    }
                };
                let p = slm_eval::perplexity(&model, tok.as_ref(), &text, &popts, &mut |_, _| {})?;
                let label = pattern_label(pattern);
                println!(
                    "{m:<12} {label:<12} sparsity {:.2}  ppl {:.3}  ({:.1} s)",
                    report.overall_sparsity(),
                    p.ppl,
                    report.seconds
                );
                rows.push((
                    m.clone(),
                    label,
                    report.overall_sparsity(),
                    p.ppl,
                    report.seconds,
                ));
                points.push((report.overall_sparsity(), p.ppl));
            }
            chart.add(format!("{m} {}", pattern_label(pattern)), points);
        }
    }
    chart.add("dense", vec![(0.0, dense.ppl)]);
    let mut csv = String::from("method,pattern,sparsity,ppl,prune_seconds\n");
    let mut md = format!("Dense perplexity {:.3} on `{}`.\n\n| method | pattern | sparsity | perplexity | prune time (s) |\n|---|---|---|---|---|\n", dense.ppl, a.ppl.display());
    for (m, p, s, ppl, secs) in &rows {
        let _ = writeln!(csv, "{m},{p},{s:.4},{ppl:.4},{secs:.2}");
        let _ = writeln!(md, "| {m} | {p} | {s:.2} | {ppl:.3} | {secs:.1} |");
    }
    std::fs::write(a.out.join("sweep.csv"), csv)?;
    std::fs::write(a.out.join("sweep.md"), md)?;
    chart.render_png(&a.out.join("sweep.png"))?;
    println!("wrote {}/sweep.{{md,csv,png}}", a.out.display());
    Ok(())
}

fn pattern_label(p: &Pattern) -> String {
    match p {
        Pattern::Unstructured => "unstructured".into(),
        Pattern::NM { n, m } => format!("{n}:{m}"),
    }
}
