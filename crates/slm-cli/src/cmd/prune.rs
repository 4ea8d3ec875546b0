//! `slm prune`: remove the weights that matter least (magnitude, OBD, Wanda, SparseGPT;
//! unstructured or N:M), and `slm prune sweep`: a table and plot of perplexity against
//! sparsity. The work is `slm_recipes::prune`.

use crate::common::{choice, load_model_and_tokenizer, number, CalibText, ModelArgs};
use anyhow::{bail, Result};
use clap::{Args, Subcommand};
use slm_compress::Pattern;
use slm_core::LinearRole;
use slm_recipes::prune::{self as lib, MethodName, PruneOptions, SweepOptions};
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
    #[arg(long, value_parser = choice(&MethodName::NAMES, MethodName::parse))]
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
