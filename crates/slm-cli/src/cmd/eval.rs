//! `slm eval`: perplexity of a model on a text file, and its agreement with a teacher.

use crate::common::{choice, load_model, load_model_and_tokenizer, ModelArgs};
use anyhow::{bail, Result};
use clap::Args as ClapArgs;
use slm_eval::{read_eval_text, PplOptions, TextFormat};
use slm_recipes::evaluate::evaluate;
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
slm eval -m runs/student --ppl valid.txt --teacher stories260K.bin --teacher-tokenizer tok512.bin"
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
}

pub fn run(args: Args) -> Result<()> {
    let Some(path) = &args.ppl else {
        bail!("nothing to evaluate: give --ppl FILE");
    };
    let text = read_eval_text(path, args.format)?;
    let (loaded, tokenizer) = load_model_and_tokenizer(&args.model)?;
    let teacher = match &args.teacher {
        Some(t) => Some(load_model(&ModelArgs {
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
