//! `slm eval`: perplexity of a model on a text file, its agreement with a teacher, and task
//! accuracy as lm-evaluation-harness scores it (`--tasks`, `--task-file`).

use crate::common::{choice, load_model, load_model_and_tokenizer, ModelArgs};
use anyhow::{bail, Result};
use clap::Args as ClapArgs;
use slm_eval::tasks::{self, TaskOptions};
use slm_eval::{read_eval_text, PplOptions, TextFormat};
use slm_infer::decode::{Decoder, SparseUse};
use slm_recipes::evaluate::evaluate;
use slm_recipes::progress::{bar_callback, progress_bar};
use std::path::PathBuf;

#[derive(ClapArgs, Debug)]
#[command(
    after_help = "Protocol: WikiText files (wiki.*.raw) are read as Hugging Face rows joined with \"\\n\\n\" \
and cut into non-overlapping windows of the model context, the tail dropped, as SparseGPT and Wanda do. \
Other text is tokenised as it is. --stride gives sliding windows; --doc-separator scores documents one by one.\n\n\
With --teacher, the same positions are also scored by the teacher (same vocabulary): top-1 agreement (share of \
positions where both models' most likely token is the same), KL(teacher ‖ student) in nats per token, and the \
teacher's perplexity.\n\n\
Examples:\n  slm eval -m runs/teacher --ppl ../shared/data/wikitext-2-raw/wiki.test.raw --ctx 256\n  \
slm eval -m stories260K.bin --tokenizer tok512.bin --ppl stories.txt --doc-separator '<|endoftext|>' --json\n  \
slm eval -m runs/student --ppl valid.txt --teacher stories260K.bin --teacher-tokenizer tok512.bin\n\n\
Tasks (--tasks): lm-evaluation-harness's prompts, few-shot draws (seed 1234), loglikelihood and metrics on the files \
of --data-dir (see docs/EVALUATION.md): arc_easy, arc_challenge, boolq, copa, winogrande, openbookqa, lambada, \
mmlu, gsm8k; or your own multiple-choice task with --task-file TASK.toml.\n  \
slm eval -m SmolLM2-135M-Instruct.Q4_1.gguf --tasks arc_easy,copa --limit 100\n  \
slm eval -m model.gguf --tasks mmlu --num-fewshot 5 --type q4_1 --json --output runs/eval"
)]
pub struct Args {
    #[command(flatten)]
    pub model: ModelArgs,
    /// Text file whose perplexity to measure.
    #[arg(long)]
    pub ppl: Option<PathBuf>,
    /// Window length in tokens (default: the model context).
    #[arg(long)]
    pub ctx: Option<usize>,
    /// Sliding-window stride (default: non-overlapping windows).
    #[arg(long)]
    pub stride: Option<usize>,
    /// Score documents separately, split on this string (each starts with BOS).
    #[arg(long)]
    pub doc_separator: Option<String>,
    /// How to read the file: auto (WikiText by file name), wikitext or plain.
    #[arg(long, default_value = "auto", value_parser = choice(&["auto", "wikitext", "plain"], |s| Ok(match s {
        "wikitext" => TextFormat::WikiText,
        "plain" => TextFormat::Plain,
        _ => TextFormat::Auto,
    })))]
    pub format: TextFormat,
    #[command(flatten)]
    pub bos: crate::common::BosArgs,
    /// Also compare with this teacher (top-1 agreement, KL to the teacher).
    #[arg(long)]
    pub teacher: Option<String>,
    /// Tokenizer file for a teacher that carries none.
    #[arg(long, requires = "teacher")]
    pub teacher_tokenizer: Option<PathBuf>,
    /// Print one JSON object instead of text.
    #[arg(long)]
    pub json: bool,
    /// Comma-separated harness tasks: arc_easy, arc_challenge, boolq, copa, winogrande,
    /// openbookqa, lambada, mmlu, gsm8k (`arc_easy:dev`, `arc_challenge:dev`, `openbookqa:dev`:
    /// the dev split).
    #[arg(long, value_delimiter = ',')]
    pub tasks: Vec<String>,
    /// A multiple-choice task described by a TOML file (repeatable; see docs/EVALUATION.md).
    #[arg(long)]
    pub task_file: Vec<PathBuf>,
    /// The evaluation data directory (holding arc/, boolq/, mmlu/, ...).
    #[arg(long, default_value = "../shared/data/eval")]
    pub data_dir: PathBuf,
    /// Few-shot examples (default: the task's, 0 except gsm8k's 5).
    #[arg(long)]
    pub num_fewshot: Option<usize>,
    /// Score only the first N documents of each task (each MMLU subject).
    #[arg(long)]
    pub limit: Option<usize>,
    /// Score only documents A..B of each task (0-based, B excluded; `A..`, `..B`): the
    /// held-out part of a split partly used for fine-tuning (`slm data task-sft --rows`).
    #[arg(long, value_parser = crate::common::rows)]
    pub rows: Option<std::ops::Range<usize>>,
    /// Documents scored at once, each on its own KV cache.
    #[arg(long, default_value_t = 1, value_parser = crate::common::number::<usize>(|b| b >= 1, "of at least 1"))]
    pub batch: usize,
    #[command(flatten)]
    pub types: crate::common::TypeArgs,
    /// Few-shot seed (the harness's default 1234).
    #[arg(long, default_value_t = tasks::FEWSHOT_SEED)]
    pub seed: u64,
    /// Write per-question log-likelihoods (and generations) as DIR/<task>.jsonl.
    #[arg(long)]
    pub output: Option<PathBuf>,
}

pub fn run(args: Args) -> Result<()> {
    if !args.tasks.is_empty() || !args.task_file.is_empty() {
        return run_tasks(&args);
    }
    let Some(path) = &args.ppl else {
        bail!("nothing to evaluate: give --ppl FILE, --tasks NAMES or --task-file TASK.toml");
    };
    let text = read_eval_text(path, args.format)?;
    let (loaded, tokenizer) = load_model_and_tokenizer(&args.model)?;
    let teacher = match &args.teacher {
        Some(t) => Some(load_model(&ModelArgs {
            adapter: None,
            model: t.clone(),
            tokenizer: args.teacher_tokenizer.clone(),
        })?),
        None => None,
    };
    let opts = PplOptions {
        ctx: args.ctx,
        stride: args.stride,
        doc_separator: args.doc_separator.clone(),
        add_bos: args.bos.add_bos(tokenizer.as_ref()),
    };
    let t = teacher.as_ref().map(|t| &t.model);
    let report = evaluate(&loaded.model, t, tokenizer.as_ref(), &text, &opts)?;
    if args.json {
        let v = report.to_json(&args.model.model, path, args.teacher.as_deref())?;
        println!("{v}");
    } else {
        println!("{}", report.to_text(path));
    }
    Ok(())
}

fn run_tasks(args: &Args) -> Result<()> {
    if args.ppl.is_some() || args.teacher.is_some() {
        bail!("--tasks/--task-file and --ppl/--teacher are separate runs: give one or the other");
    }
    // Every task's files are read (and checked) before the model is loaded.
    let mut list = Vec::new();
    for name in &args.tasks {
        list.push(tasks::builtin(name.trim(), &args.data_dir)?);
    }
    for f in &args.task_file {
        list.push(tasks::load_task_file(f)?);
    }
    let (loaded, tokenizer) = load_model_and_tokenizer(&args.model)?;
    let plan = args.types.plan(&loaded)?;
    let dec = Decoder::with_plan(&loaded.model, &plan, SparseUse::Auto)?;
    let opts = TaskOptions {
        num_fewshot: args.num_fewshot,
        limit: args.limit,
        rows: args.rows.clone(),
        batch: args.batch,
        seed: args.seed,
        // The harness (HFLM) adds no BOS to task requests unless asked, whatever the
        // tokenizer does; --bos asks.
        add_bos: args.bos.choice().unwrap_or(false),
        ..TaskOptions::default()
    };
    let mut reports = Vec::new();
    for task in &list {
        let bar = progress_bar(&format!("{:<14}", task.name), "docs");
        let report = tasks::run_task(&dec, tokenizer.as_ref(), task, &opts, &bar_callback(&bar))?;
        bar.finish_and_clear();
        if let Some(dir) = &args.output {
            tasks::write_records(dir, &report)?;
        }
        if !args.json {
            eprintln!(
                "{}: {} documents in {:.1} s ({})",
                report.task, report.n, report.seconds, report.note
            );
        }
        reports.push(report);
    }
    if args.json {
        let v = serde_json::json!({
            "model": args.model.model,
            "type": plan.describe(),
            "limit": args.limit,
            "rows": args.rows.as_ref().map(|r| [r.start, r.end.min(u32::MAX as usize)]),
            "tasks": reports.iter().map(|r| r.to_json()).collect::<Vec<_>>(),
        });
        println!("{v}");
    } else {
        print!("{}", tasks::format_table(&reports));
    }
    Ok(())
}
