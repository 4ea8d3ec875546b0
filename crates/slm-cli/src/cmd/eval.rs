//! `slm eval`: perplexity of a model on a text file, and its agreement with a teacher.

use crate::common::{choice, load_model, load_model_and_tokenizer, ModelArgs};
use anyhow::{bail, Result};
use clap::Args as ClapArgs;
use slm_eval::{perplexity, read_eval_text, teacher_agreement, PplOptions, TextFormat};
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
    /// Do not prepend BOS.
    #[arg(long)]
    pub no_bos: bool,
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
    let opts = PplOptions {
        ctx: args.ctx,
        stride: args.stride,
        doc_separator: args.doc_separator.clone(),
        add_bos: !args.no_bos,
    };
    let bar = progress_bar("perplexity", "windows");
    let mut progress = bar_callback(&bar);
    let report = perplexity(
        &loaded.model,
        tokenizer.as_ref(),
        &text,
        &opts,
        &mut progress,
    )?;
    bar.finish_and_clear();
    let agreement = match &args.teacher {
        None => None,
        Some(t) => {
            let teacher = load_model(&ModelArgs {
                model: t.clone(),
                tokenizer: args.teacher_tokenizer.clone(),
            })?;
            bar.reset();
            let a = teacher_agreement(
                &loaded.model,
                &teacher.model,
                tokenizer.as_ref(),
                &text,
                &opts,
                &mut progress,
            )?;
            bar.finish_and_clear();
            Some(a)
        }
    };
    if args.json {
        let mut v = serde_json::to_value(&report)?;
        v["model"] = args.model.model.clone().into();
        v["file"] = path.display().to_string().into();
        if let (Some(a), Some(t)) = (&agreement, &args.teacher) {
            v["teacher"] = t.clone().into();
            v["top1_agreement"] = a.top1_agreement.into();
            v["kl_to_teacher"] = a.kl_to_teacher.into();
            v["teacher_ppl"] = a.teacher_ppl.into();
        }
        println!("{v}");
    } else {
        let r = &report;
        println!("file        {}", path.display());
        println!(
            "tokens      {} scored in {} windows of ≤{}",
            r.tokens, r.windows, r.ctx
        );
        println!("mean NLL    {:.4}\nperplexity  {:.4}", r.mean_nll, r.ppl);
        println!(
            "speed       {:.0} tokens/s ({:.1} s)",
            r.tokens_per_sec, r.seconds
        );
        if let Some(a) = &agreement {
            println!("teacher     perplexity {:.4}", a.teacher_ppl);
            println!("agreement   top-1 {:.2}%", 100.0 * a.top1_agreement);
            println!(
                "KL          {:.4} nats/token (teacher ‖ model)",
                a.kl_to_teacher
            );
        }
    }
    Ok(())
}
