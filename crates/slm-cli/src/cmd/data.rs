//! `slm data`: corpora to token shards.

use anyhow::{Context, Result};
use clap::{Args, Subcommand};
use slm_data::documents::{expand_inputs, Split};
use slm_data::prepare::{prepare, PrepareOptions, ValMode};
use slm_recipes::progress::{bar_callback, progress_bar};
use std::path::PathBuf;

#[derive(Subcommand, Debug)]
pub enum DataCommand {
    /// Tokenise .txt/.jsonl files, folders or globs into train/val token shards.
    #[command(
        after_help = "Documents: .txt files are split on --separator when present, else on blank lines; \
.jsonl lines need a `text` field or chat `messages`. Each document becomes tokens [EOS], with BOS first \
when the tokenizer adds one by default (GGUF add_bos_token, tokenizer_config.json, the tokenizer.json template).\n\n\
Examples:\n  slm data prepare corpus/*.txt --tokenizer runs/tok/tokenizer.json --out data/\n  \
slm data prepare corpus/ --tokenizer ../shared/data/models/SmolLM2-135M-Instruct.Q4_1.gguf --out data/"
    )]
    Prepare(PrepareArgs),
    /// Write an evaluation task's documents, solved, as prompt/completion JSONL for
    /// `slm finetune` (the prompt and gold answer exactly as `slm eval --tasks` scores them).
    #[command(
        after_help = "Train on part of a split and score the rest, which is never trained on, with \
`slm eval --rows`:\n  \
slm data task-sft --task boolq --rows 0..2270 --out boolq-train.jsonl\n  \
slm finetune -m SmolLM2-135M-Instruct.Q4_1.gguf --data boolq-train.jsonl --out runs/boolq --lora-rank 16\n  \
slm eval -m runs/boolq --tasks boolq --rows 2270..\n\n\
Multiple-choice documents become (context, target delimiter + gold choice); WinoGrande's become (the \
prompt with the right option, delimiter + target); GSM8K's (question, delimiter + worked answer)."
    )]
    TaskSft(TaskSftArgs),
}

#[derive(Args, Debug)]
pub struct TaskSftArgs {
    /// A built-in task (arc_easy, arc_challenge, boolq, copa, winogrande, openbookqa,
    /// lambada, gsm8k; `openbookqa:dev` etc. for a dev split).
    #[arg(long)]
    pub task: String,
    /// Documents A..B of the task (0-based, B excluded; `A..`, `..B`); default all.
    #[arg(long, value_parser = crate::common::rows)]
    pub rows: Option<std::ops::Range<usize>>,
    /// The evaluation data directory (holding arc/, boolq/, ...).
    #[arg(long, default_value = "../shared/data/eval")]
    pub data_dir: PathBuf,
    /// Output JSONL file (not overwritten unless --force).
    #[arg(long, short = 'o')]
    pub out: PathBuf,
    #[arg(long)]
    pub force: bool,
}

#[derive(Args, Debug)]
pub struct PrepareArgs {
    /// Input files, folders or glob patterns.
    #[arg(required = true)]
    pub inputs: Vec<String>,
    /// Tokenizer: tokenizer.json, a llama2.c tokenizer.bin (copied into --out), or a GGUF model
    /// (its vocabulary, written into --out as tokenizer.json + tokenizer_config.json).
    #[arg(long)]
    pub tokenizer: PathBuf,
    /// Output folder for train.bin, val.bin, data.json and the tokenizer.
    #[arg(long, short = 'o')]
    pub out: PathBuf,
    /// Document separator in .txt files.
    #[arg(long, default_value = "<|endoftext|>")]
    pub separator: String,
    /// How to split .txt files: auto (separator if present, else blank lines), blank-lines,
    /// separator, whole-file.
    #[arg(long, default_value = "auto", value_parser = ["auto", "blank-lines", "separator", "whole-file"])]
    pub split: String,
    /// Share held out for validation.
    #[arg(long, default_value_t = 0.05)]
    pub val_fraction: f64,
    /// documents: random whole documents; tail: the last share of the token stream (nanoGPT).
    #[arg(long, default_value = "documents", value_parser = ["documents", "tail"])]
    pub val_split: String,
    #[arg(long, default_value_t = 1337)]
    pub seed: u64,
}

pub fn run(cmd: DataCommand) -> Result<()> {
    match cmd {
        DataCommand::Prepare(a) => run_prepare(a),
        DataCommand::TaskSft(a) => run_task_sft(a),
    }
}

pub fn run_task_sft(a: TaskSftArgs) -> Result<()> {
    let task = slm_eval::tasks::builtin(a.task.trim(), &a.data_dir)?;
    let pairs = task.training_pairs(a.rows.as_ref())?;
    let n = slm_eval::tasks::write_training_pairs(&a.out, &pairs, a.force)?;
    println!(
        "{}: {n} documents{} -> {} (prompt/completion JSONL)",
        task.name,
        a.rows
            .as_ref()
            .map(|r| format!(" (rows {}..{})", r.start, r.end.min(task.len())))
            .unwrap_or_default(),
        a.out.display()
    );
    Ok(())
}

pub fn run_prepare(a: PrepareArgs) -> Result<()> {
    let files = expand_inputs(&a.inputs)?;
    let tok = slm_data::tokenizer::load_tokenizer_file(&a.tokenizer)
        .with_context(|| format!("loading tokenizer {}", a.tokenizer.display()))?;
    let split = match a.split.as_str() {
        "blank-lines" => Split::BlankLines,
        "separator" => Split::Separator(a.separator.clone()),
        "whole-file" => Split::WholeFile,
        _ => Split::Auto(a.separator.clone()),
    };
    let val_mode = if a.val_split == "tail" {
        ValMode::Tail
    } else {
        ValMode::RandomDocuments
    };
    let opts = PrepareOptions {
        split,
        val_fraction: a.val_fraction,
        val_mode,
        seed: a.seed,
    };
    let bar = progress_bar("tokenising", "documents");
    let s = prepare(&files, tok.as_ref(), &a.out, &opts, &bar_callback(&bar))?;
    bar.finish_and_clear();
    slm_data::tokenizer::export::place_tokenizer_file(&a.tokenizer, &a.out)
        .with_context(|| format!("putting the tokenizer into {}", a.out.display()))?;
    println!(
        "{} files -> {}: train {} tokens ({} documents), val {} tokens ({} documents), {}-byte tokens, vocabulary {}",
        files.len(),
        a.out.display(),
        s.train_tokens,
        s.train_documents,
        s.val_tokens,
        s.val_documents,
        s.token_bytes,
        s.vocab_size
    );
    Ok(())
}
