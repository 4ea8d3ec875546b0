//! `slm prune`: remove the weights that matter least (magnitude, OBD, Wanda, SparseGPT;
//! unstructured or N:M), and `slm prune sweep`: a table and plot of perplexity against
//! sparsity. The work is `slm_recipes::prune`.

use crate::common::{choice, load_model_and_tokenizer, number, CalibText, ModelArgs};
use anyhow::{bail, Result};
use clap::{Args, Subcommand};
use slm_compress::structured::LayerMetric;
use slm_compress::Pattern;
use slm_core::LinearRole;
use slm_recipes::prune::{self as lib, MethodName, PruneOptions, SweepOptions};
use slm_recipes::structured::{self as st, ImportanceSource, ShapeRequest, StructuredOptions};
use std::path::PathBuf;

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
slm prune sweep -m runs/teacher --calib calib.txt --ppl val.txt --methods magnitude,wanda,sparsegpt --sparsity 0.1:0.9:0.1 --out runs/sweep\n\n\
Structured (--structured): a smaller dense model that every command treats as any other.\n  \
Importance is measured on --calib (Minitron): per query head the L2 norm of its attention output, per MLP channel silu(gate)·up,\n  \
per hidden channel the normed residual over all layers, aggregated over positions (--importance l2|mean|variance, or random);\n  \
per layer Block Influence 1 − cos(in, out) (ShortGPT) or the calibration loss if it alone is removed (--layer-metric loss).\n  \
Query heads go within their KV group (the same number per group); --kv-heads alone removes whole groups. Removing hidden\n  \
channels rescales the norms (and rms_norm_eps) so the smaller model computes what the parent does with those channels zero.\n  \
Recover afterwards by distilling from the parent: slm distill train --teacher PARENT --student PRUNED ...\n\n  \
slm prune -m smollm2.gguf --structured --report --calib wiki.train.txt --nsamples 32 --seqlen 512 -o runs/importance\n  \
slm prune -m smollm2.gguf --structured --layers 20 --mlp 1024 --calib wiki.train.txt --nsamples 32 --seqlen 512 -o runs/smol-d20-f1024\n  \
slm prune -m smollm2.gguf --structured --target-params 0.5 --calib wiki.train.txt --nsamples 32 --seqlen 512 -o runs/smol-half"
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

#[derive(Args, Debug)]
pub struct CalibArgs {
    #[command(flatten)]
    pub text: CalibText,
    /// Block linears to prune.
    #[arg(long, value_delimiter = ',', default_value = "q,k,v,o,gate,up,down",
          value_parser = choice(&["q", "k", "v", "o", "gate", "up", "down"], |s| {
              LinearRole::parse(s).ok_or_else(|| slm_core::Error::invalid(s.to_string()))
          }))]
    pub roles: Vec<LinearRole>,
    /// Report each tensor's relative reconstruction error ‖WX − ŴX‖²/‖WX‖² (free with
    /// SparseGPT, which builds XᵀX anyway; costs one XᵀX per linear input for the others).
    #[arg(long)]
    pub measure_error: bool,
}

impl CalibArgs {
    fn options(&self) -> PruneOptions {
        PruneOptions {
            calib: self.text.spec(),
            roles: self.roles.clone(),
            measure_error: self.measure_error,
        }
    }
}

#[derive(Args, Debug)]
pub struct PruneOne {
    /// Model: HF directory, HF cache id, .gguf or llama2.c checkpoint.
    #[arg(long, short = 'm')]
    pub model: Option<String>,
    /// Tokenizer for models that carry none.
    #[arg(long)]
    pub tokenizer: Option<PathBuf>,
    #[arg(long, value_parser = choice(&MethodName::NAMES, MethodName::parse), conflicts_with = "structured")]
    pub method: Option<MethodName>,
    /// Fraction of each pruned tensor set to zero, in [0, 1) (ignored with an N:M pattern).
    #[arg(long, default_value_t = 0.5, value_parser = number(|v: f64| (0.0..1.0).contains(&v), "in [0, 1)"))]
    pub sparsity: f64,
    /// unstructured, or N:M such as 2:4 and 4:8.
    #[arg(long, default_value = "unstructured", value_parser = |s: &str| Pattern::parse(s))]
    pub pattern: Pattern,
    #[command(flatten)]
    pub calib: CalibArgs,
    /// Output model directory.
    #[arg(long, short = 'o')]
    pub out: Option<PathBuf>,
    /// Print the pruning report as JSON.
    #[arg(long)]
    pub json: bool,
    /// Structured pruning: remove whole layers, attention heads, MLP channels or hidden
    /// channels and write a smaller dense model (see "Structured" below).
    #[arg(long)]
    pub structured: bool,
    #[command(flatten)]
    pub shape: StructuredArgs,
}

#[derive(Args, Debug)]
pub struct StructuredArgs {
    /// Layers to keep (the least important go: --layer-metric).
    #[arg(long, requires = "structured")]
    pub layers: Option<usize>,
    /// Hidden (embedding) channels to keep; the embedding shrinks too.
    #[arg(long, requires = "structured")]
    pub hidden: Option<usize>,
    /// Query heads to keep, the same number within each kept KV group.
    #[arg(long, requires = "structured")]
    pub heads: Option<usize>,
    /// KV heads (groups) to keep; alone, whole groups go with their query heads.
    #[arg(long, requires = "structured")]
    pub kv_heads: Option<usize>,
    /// MLP channels to keep per layer.
    #[arg(long, requires = "structured")]
    pub mlp: Option<usize>,
    /// Non-embedding parameters to keep (53M, or 0.5 of the parent's): candidate shapes
    /// (depth, width, both) are pruned and the lowest calibration loss wins.
    #[arg(long, requires = "structured", conflicts_with_all = ["layers", "hidden", "heads", "kv_heads", "mlp"])]
    pub target_params: Option<String>,
    /// How unit scores aggregate activations over positions, or `random` (the control).
    #[arg(long, default_value = "l2", value_parser = choice(&ImportanceSource::NAMES, |s| Ok(s.to_string())), requires = "structured")]
    pub importance: String,
    /// Which layers go first: bi (Block Influence, 1 − cos(in, out)) or loss (calibration
    /// loss increase when the layer alone is removed; one pass per layer).
    #[arg(long, default_value = "bi", value_parser = choice(&LayerMetric::NAMES, LayerMetric::parse), requires = "structured")]
    pub layer_metric: LayerMetric,
    /// Windows (seed + 1, apart from the importance windows) on which the layer-removal loss
    /// and the candidate shapes are scored.
    #[arg(long, default_value_t = 16, requires = "structured")]
    pub score_samples: usize,
    /// Print the importance rankings (both layer metrics) and, with --out, write
    /// importance.json and plots; without sizes, only the report is made.
    #[arg(long, requires = "structured")]
    pub report: bool,
}

#[derive(Args, Debug)]
pub struct SweepArgs {
    #[command(flatten)]
    pub model: ModelArgs,
    #[arg(long, value_delimiter = ',', default_value = "magnitude,obd,wanda,sparsegpt",
          value_parser = choice(&MethodName::NAMES, MethodName::parse))]
    pub methods: Vec<MethodName>,
    /// start:end:step (inclusive), or a comma list.
    #[arg(long, default_value = "0.1:0.9:0.1", value_parser = |s: &str| lib::parse_sparsities(s).map(|_| s.to_string()))]
    pub sparsity: String,
    /// Patterns (unstructured, 2:4, 4:8, ...).
    #[arg(long, value_delimiter = ',', default_value = "unstructured", value_parser = |s: &str| Pattern::parse(s))]
    pub patterns: Vec<Pattern>,
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

fn run_one(a: PruneOne) -> Result<()> {
    if a.structured {
        return run_structured(a);
    }
    let (Some(model), Some(method), Some(out)) = (a.model.clone(), a.method, a.out.clone()) else {
        bail!("give --model, --method and --out (see `slm prune --help`)");
    };
    let opts = a.calib.options();
    let (mut loaded, tok) = load_model_and_tokenizer(&ModelArgs {
        adapter: None,
        model: model.clone(),
        tokenizer: a.tokenizer.clone(),
    })?;
    let report = lib::prune_model(
        &mut loaded.model,
        tok.as_ref(),
        method,
        a.sparsity,
        a.pattern,
        &opts,
    )?;
    let meta = lib::prune_meta(&model, &report, &opts.calib);
    lib::save_pruned(&loaded.model, &loaded.tokenizer, &meta, &out)?;
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

fn run_structured(a: PruneOne) -> Result<()> {
    let Some(model) = a.model.clone() else {
        bail!("give --model (see `slm prune --help`)");
    };
    let sh = &a.shape;
    let o = StructuredOptions {
        calib: a.calib.text.spec(),
        importance: ImportanceSource::parse(&sh.importance, a.calib.text.seed)?,
        layer_metric: sh.layer_metric,
        shape: ShapeRequest {
            layers: sh.layers,
            hidden: sh.hidden,
            heads: sh.heads,
            kv_heads: sh.kv_heads,
            mlp: sh.mlp,
            target: sh.target_params.clone(),
        },
        score_samples: sh.score_samples,
        measure_layer_loss: sh.report,
        batch: 4,
    };
    if o.shape.is_empty() && !sh.report {
        bail!("say what to keep (--layers, --hidden, --heads/--kv-heads, --mlp or --target-params), or ask for --report");
    }
    if !o.shape.is_empty() && a.out.is_none() {
        bail!("give --out for the pruned model");
    }
    let (loaded, tok) = load_model_and_tokenizer(&ModelArgs {
        adapter: None,
        model: model.clone(),
        tokenizer: a.tokenizer.clone(),
    })?;
    if o.shape.is_empty() {
        let (imp, _, _) = st::measure_importance(&loaded.model, tok.as_ref(), &o)?;
        print!("{}", st::format_importance(&imp));
        if let Some(out) = &a.out {
            for f in st::write_importance(&imp, out)? {
                println!("wrote {}", f.display());
            }
        }
        return Ok(());
    }
    let out = a.out.clone().unwrap_or_default();
    let (pruned, report) = st::structured_prune(&loaded.model, tok.as_ref(), &o)?;
    let meta = st::structured_meta(&model, &report, &o.calib);
    st::save_structured(&pruned, &loaded.tokenizer, &meta, &report.importance, &out)?;
    if a.json {
        println!("{}", serde_json::to_string_pretty(&meta)?);
        return Ok(());
    }
    if sh.report {
        print!("{}", st::format_importance(&report.importance));
    }
    print!("{}", st::summary(&report));
    println!(
        "model in {} (importance and plots in {}/importance; {:.1} s)",
        out.display(),
        out.display(),
        report.seconds
    );
    Ok(())
}

fn run_sweep(a: SweepArgs) -> Result<()> {
    let (loaded, tok) = load_model_and_tokenizer(&a.model)?;
    let o = SweepOptions {
        methods: a.methods,
        patterns: a.patterns,
        sparsities: lib::parse_sparsities(&a.sparsity)?,
        prune: a.calib.options(),
        ppl_text: a.ppl,
        ctx: a.ctx,
        out: a.out,
    };
    lib::sweep(&loaded.model, tok.as_ref(), &o, &mut |line| {
        println!("{line}")
    })?;
    println!("wrote {}/sweep.{{md,csv,png}}", o.out.display());
    Ok(())
}
