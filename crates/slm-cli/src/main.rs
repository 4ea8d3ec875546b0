//! `slm`: make small language models and run them on a laptop.
//!
//! One file per subcommand under `cmd/`; this file only declares the command tree and
//! dispatches. No algorithms live in the CLI crate.

mod cmd;
mod common;

use clap::{Parser, Subcommand};

#[derive(Parser)]
#[command(
    name = "slm",
    version,
    about = "Make small language models and run them fast on a laptop CPU",
    long_about = "slm turns large language models into small, fast ones: distil, prune, fine-tune, \
evaluate, and run them on an ordinary CPU. Models are Hugging Face directories, HF cache ids \
(org/name), GGUF files or llama2.c checkpoints.",
    after_help = "Examples:\n  slm generate --model stories260K.bin --tokenizer tok512.bin --prompt \"Once upon a time\"\n  slm eval --model runs/teacher --ppl wiki.test.raw\n  slm inspect -m runs/teacher\n  slm run quickstart"
)]
struct Cli {
    /// Worker threads for tensor math (default: all cores).
    #[arg(long, global = true)]
    threads: Option<usize>,
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// The whole pipeline offline on the built-in story corpus (a few minutes on 2 cores);
    /// the same as `slm run quickstart`.
    Quickstart(cmd::run::QuickstartArgs),
    /// Run a recipe: ordered, resumable stages from a TOML file or a built-in recipe.
    Run(cmd::run::Args),
    /// Prepare corpora into token shards.
    #[command(subcommand)]
    Data(cmd::data::DataCommand),
    /// Train tokenizers.
    #[command(subcommand)]
    Tokenizer(cmd::tokenizer::TokenizerCommand),
    /// Show a text's token ids and pieces with a model's own tokenizer (like llama-tokenize).
    Tokenize(cmd::tokenize::Args),
    /// Train a model from scratch or continue a run.
    Train(cmd::train::Args),
    /// Fine-tune a model for a task: chat/instruction/completion files, full or LoRA, PEFT adapters.
    Finetune(cmd::finetune::Args),
    /// Distil a teacher into a student: teacher-written data, logit distillation.
    #[command(subcommand)]
    Distill(cmd::distill::DistillCommand),
    /// Prune a model (magnitude, OBD, Wanda, SparseGPT; unstructured or N:M), or sweep.
    Prune(cmd::prune::PruneArgs),
    /// Quantise a model's weights (q8_0, q4_1, q4_0, or llama.cpp's q4_k_m, q5_k_m, q6_k mixes) to a
    /// GGUF file, with the error per matrix.
    Quantize(cmd::quantize::Args),
    /// Measure speed (medians over repetitions): a model's prefill/decode, the memory
    /// bandwidth, training steps.
    Bench(cmd::bench::BenchArgs),
    /// Generate text from a prompt, streaming it as tokens come.
    Generate(cmd::generate::Args),
    /// Chat with an instruction-tuned model: streamed answers through its chat template,
    /// history kept within the context; piped input runs a scripted conversation.
    Chat(cmd::chat::Args),
    /// Serve a model over the OpenAI API (chat and text completions, streaming, continuous
    /// batching, metrics).
    Serve(cmd::serve::Args),
    /// Measure a model: perplexity on a text file.
    Eval(cmd::eval::Args),
    /// Show a model's architecture, parameters by role, bytes and sparsity per tensor.
    Inspect(cmd::inspect::Args),
    /// Convert a model to another format.
    #[command(subcommand)]
    Export(cmd::export::ExportCommand),
}

fn main() {
    let cli = Cli::parse();
    if let Some(n) = cli.threads {
        common::set_threads(n);
    }
    let result = match cli.command {
        Command::Quickstart(a) => cmd::run::quickstart(a),
        Command::Run(a) => cmd::run::run(a),
        Command::Data(c) => cmd::data::run(c),
        Command::Tokenizer(c) => cmd::tokenizer::run(c),
        Command::Tokenize(a) => cmd::tokenize::run(a),
        Command::Train(a) => cmd::train::run(a),
        Command::Finetune(a) => cmd::finetune::run(a),
        Command::Prune(a) => cmd::prune::run(a),
        Command::Distill(c) => cmd::distill::run(c),
        Command::Quantize(a) => cmd::quantize::run(a),
        Command::Bench(c) => cmd::bench::run(c),
        Command::Generate(a) => cmd::generate::run(a),
        Command::Chat(a) => cmd::chat::run(a),
        Command::Serve(a) => cmd::serve::run(a),
        Command::Eval(a) => cmd::eval::run(a),
        Command::Inspect(a) => cmd::inspect::run(a),
        Command::Export(c) => cmd::export::run(c),
    };
    if let Err(e) = result {
        eprintln!("error: {e:#}");
        std::process::exit(1);
    }
}
