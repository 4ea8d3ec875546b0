//! `slm generate`: stream a continuation of a prompt, or with `--chat` / `--messages` an
//! instruction-tuned model's answer to a conversation rendered through its chat template.

use crate::common::{
    chat_template, choice, generation_defaults, load_model_and_tokenizer, ModelArgs, SamplingArgs,
};
use anyhow::{bail, Result};
use clap::Args as ClapArgs;
use slm_data::chat::{load_messages, Message};
use slm_infer::decode::KvType;
use slm_infer::{generate_from_tokens, GenerateOptions, GenerationDefaults};
use std::io::Write;
use std::path::PathBuf;

#[derive(ClapArgs, Debug)]
#[command(
    after_help = "Examples:\n  slm generate -m stories260K.bin --tokenizer tok512.bin --prompt \"Once upon a time\" --temperature 0\n  slm generate -m runs/teacher --prompt \"Tom had a\" --top-p 0.9 --seed 7 --stop \"THE END\"\n  slm generate -m SmolLM2-135M-Instruct.Q4_1.gguf --chat --prompt \"What is the capital of France?\" -t 0\n  slm generate -m SmolLM2-135M-Instruct.Q4_1.gguf --messages conversation.json --system \"Answer briefly.\"\n\nSampling flags not given take the model's generation_config.json values (when it has one).\nThe end of generation: the EOS token, generation_config.json's eos_token_id, and with --chat the\ntemplate's end-of-turn token (<|im_end|>, <|eot_id|>...)."
)]
pub struct Args {
    #[command(flatten)]
    pub model: ModelArgs,
    /// Text to continue (empty: start from the BOS token); with --chat, the user's message.
    #[arg(long, short = 'p', default_value = "")]
    pub prompt: String,
    /// Maximum number of new tokens [default: generation_config.json's max_new_tokens, else 256].
    #[arg(long, short = 'n')]
    pub max_tokens: Option<usize>,
    /// Chat format: render `--prompt` as a user turn (after `--system`, if given) through the
    /// model's chat template, let the model answer, stop at its end-of-turn token. Prints the
    /// answer only.
    #[arg(long)]
    pub chat: bool,
    /// A conversation to answer, as a JSON array of {"role": ..., "content": ...}; implies
    /// --chat. The template decides which roles it accepts.
    #[arg(long, value_name = "FILE", conflicts_with = "prompt")]
    pub messages: Option<PathBuf>,
    /// System prompt for --chat / --messages (replaces a system message the file starts with).
    #[arg(long)]
    pub system: Option<String>,
    /// Jinja chat template for --chat, instead of the model's own (needed for a model that
    /// carries none: tokenizer_config.json, chat_template.jinja or GGUF metadata).
    #[arg(long, value_name = "FILE")]
    pub chat_template: Option<PathBuf>,
    #[command(flatten)]
    pub sampling: SamplingArgs,
    /// Stop when this string appears (repeatable); it is not printed.
    #[arg(long)]
    pub stop: Vec<String>,
    #[command(flatten)]
    pub bos: crate::common::BosArgs,
    /// Keep going past the end-of-sequence token.
    #[arg(long)]
    pub ignore_eos: bool,
    /// Do not print the prompt before the generated text.
    #[arg(long)]
    pub no_echo: bool,
    /// Print timing (prefill and decode tokens/s) to stderr at the end.
    #[arg(long)]
    pub stats: bool,
    /// KV cache storage: f32 (exact) or f16 (half the memory and bytes read per cached
    /// position, as llama.cpp's default; logits change slightly).
    #[arg(long, default_value = "f32", value_parser = choice(&["f32", "f16"], KvType::parse))]
    pub kv: KvType,
    #[command(flatten)]
    pub types: crate::common::TypeArgs,
}

pub fn run(args: Args) -> Result<()> {
    let chat = args.chat || args.messages.is_some();
    if !chat && (args.system.is_some() || args.chat_template.is_some()) {
        bail!("--system and --chat-template apply to the chat format: add --chat (or --messages FILE)");
    }
    // Argument errors before loading: the flags alone, then with the model's defaults.
    args.sampling
        .config(&GenerationDefaults::default())
        .validate()?;
    let messages = match &args.messages {
        Some(path) => Some(load_messages(path)?),
        None => None,
    };
    let (loaded, tokenizer) = load_model_and_tokenizer(&args.model)?;
    let gen = generation_defaults(&loaded)?;
    let sampler = args.sampling.config(&gen);
    sampler.validate()?;
    let mut stop_tokens = Vec::new();
    if !args.ignore_eos {
        stop_tokens.extend(&gen.eos_token_ids);
    }
    let prompt_tokens = if chat {
        let template = chat_template(&loaded, tokenizer.as_ref(), args.chat_template.as_deref())?;
        let mut conversation = messages.unwrap_or_else(|| vec![Message::user(args.prompt.clone())]);
        if let Some(system) = &args.system {
            if conversation.first().is_some_and(|m| m.role == "system") {
                conversation.remove(0);
            }
            conversation.insert(0, Message::system(system.clone()));
        }
        if !args.ignore_eos {
            stop_tokens.extend(template.stop_token_ids(tokenizer.as_ref()));
        }
        let text = template.render(&conversation, true)?;
        // As transformers: the template writes every special token itself.
        tokenizer.encode(&text, false)?
    } else {
        tokenizer.encode(&args.prompt, args.bos.add_bos(tokenizer.as_ref()))?
    };
    let opts = GenerateOptions {
        max_tokens: args.max_tokens.or(gen.max_new_tokens).unwrap_or(256),
        sampler,
        stop: args.stop.clone(),
        add_bos: false, // the prompt is already tokenised above
        stop_at_eos: !args.ignore_eos,
        stop_tokens,
        kv: args.kv,
        weights: args.types.plan(&loaded)?,
        ..Default::default()
    };
    let stdout = std::io::stdout();
    let mut out = stdout.lock();
    if !args.no_echo && !chat {
        write!(out, "{}", args.prompt)?;
        out.flush()?;
    }
    let gen = generate_from_tokens(
        &loaded.model,
        tokenizer.as_ref(),
        prompt_tokens,
        &opts,
        &mut |s| {
            write!(out, "{s}")
                .and_then(|_| out.flush())
                .map_err(|e| slm_core::Error::msg(e.to_string()))
        },
    )?;
    writeln!(out)?;
    if args.stats {
        eprintln!(
            "prompt {} tokens, prefill {:.1} tok/s; generated {} tokens, decode {:.1} tok/s; stop: {:?}",
            gen.prompt_tokens.len(),
            gen.prompt_tokens.len() as f64 / gen.prefill_secs.max(1e-9),
            gen.tokens.len(),
            gen.decode_tokens_per_sec(),
            gen.stop_reason
        );
    }
    Ok(())
}
