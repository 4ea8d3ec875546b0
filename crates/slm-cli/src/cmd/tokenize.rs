//! `slm tokenize`: a text's token ids and pieces with the model's own tokenizer, like
//! llama.cpp's `llama-tokenize` (the work is `slm_data::tokenizer::tokenize`).

use crate::common::BosArgs;
use anyhow::{bail, Context, Result};
use clap::Args as ClapArgs;
use slm_data::chat::{load_messages, ChatTemplate};
use slm_data::tokenizer::model_tokenizer_files;
use slm_data::tokenizer::tokenize::tokenize;
use std::path::PathBuf;

#[derive(ClapArgs, Debug)]
#[command(
    after_help = "The tokenizer is the model's own, read without its weights: a GGUF's vocabulary \
(tokenizer.ggml.pre picks the BPE pre-tokenizer, as llama.cpp does), a directory's tokenizer.json with its \
tokenizer_config.json, or --tokenizer. BOS goes first when the model's tokenizer adds it by default \
(GGUF add_bos_token, tokenizer_config.json add_bos_token, the tokenizer.json template); --bos/--no-bos \
decide instead. Special tokens written in the text (<|im_start|>...) become their ids, as in transformers.\n\n\
Output: one `id -> 'text'` line per token (with the raw piece in brackets when it differs), then the count; \
--ids prints only the ids, --json one object {tokenizer, bos, count, ids, tokens: [{id, piece, text}]}.\n\n\
Examples:\n  slm tokenize -m ../shared/data/models/SmolLM2-135M-Instruct.Q4_1.gguf --text 'Hello world 123'\n  \
slm tokenize -m runs/model --file notes.txt --json\n  \
slm tokenize -m SmolLM2-135M-Instruct.Q4_1.gguf --chat messages.json\n  \
slm tokenize -m stories260K.bin --tokenizer tok512.bin --text 'Once upon a time' --ids"
)]
pub struct Args {
    /// Model whose tokenizer to use: a .gguf file, a Hugging Face directory or cache id.
    #[arg(long, short = 'm')]
    pub model: String,
    /// Tokenizer file instead of the model's (tokenizer.json, tokenizer.bin or a GGUF model).
    #[arg(long)]
    pub tokenizer: Option<PathBuf>,
    /// Text to tokenise.
    #[arg(long, conflicts_with = "file")]
    pub text: Option<String>,
    /// File whose text to tokenise (UTF-8).
    #[arg(long)]
    pub file: Option<PathBuf>,
    /// Messages file (a JSON array of {"role", "content"}): render it with the model's chat
    /// template (add_generation_prompt = true, as `slm chat` sends it) and tokenise the result.
    #[arg(long, conflicts_with_all = ["text", "file"])]
    pub chat: Option<PathBuf>,
    /// Jinja chat template file instead of the model's (with --chat).
    #[arg(long, requires = "chat")]
    pub chat_template: Option<PathBuf>,
    #[command(flatten)]
    pub bos: BosArgs,
    /// Print only the ids, as a list.
    #[arg(long, conflicts_with = "json")]
    pub ids: bool,
    /// Print one JSON object.
    #[arg(long)]
    pub json: bool,
}

pub fn run(args: Args) -> Result<()> {
    let tok = slm_data::tokenizer::load_model_tokenizer(&args.model, args.tokenizer.as_deref())
        .with_context(|| format!("loading the tokenizer of `{}`", args.model))?;
    let (text, bos) = match (&args.text, &args.file, &args.chat) {
        (Some(t), None, None) => (t.clone(), args.bos.choice()),
        (None, Some(f), None) => (
            std::fs::read_to_string(f).with_context(|| format!("reading {}", f.display()))?,
            args.bos.choice(),
        ),
        (None, None, Some(messages)) => {
            let messages = load_messages(messages)?;
            let files = model_tokenizer_files(&args.model)?;
            let template = ChatTemplate::resolve(
                args.chat_template.as_deref(),
                &files.source,
                files.config.as_ref(),
                &files.path,
                tok.as_ref(),
            )?;
            // As transformers: the template writes every special token itself, BOS included.
            (template.render(&messages, true)?, Some(false))
        }
        _ => bail!("nothing to tokenise: give --text TEXT, --file FILE or --chat MESSAGES.json"),
    };
    let report = tokenize(tok.as_ref(), &text, bos)?;
    if args.json {
        println!("{}", report.to_json()?);
    } else if args.ids {
        println!("{}", report.ids_line());
    } else {
        print!("{}", report.to_text());
    }
    Ok(())
}
