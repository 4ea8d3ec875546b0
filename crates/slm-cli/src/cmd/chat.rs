//! `slm chat`: an interactive conversation with an instruction-tuned model in the terminal,
//! or turns read line by line from piped standard input. The conversation logic (template,
//! history, context, KV cache reuse) is `slm_infer::ChatSession`; this file reads input,
//! handles the commands and Ctrl-C, and prints.

use crate::common::{
    chat_template, choice, generation_defaults, load_model_and_tokenizer, ModelArgs, SamplingArgs,
};
use anyhow::Result;
use clap::Args as ClapArgs;
use slm_infer::decode::KvType;
use slm_infer::{ChatOptions, ChatSession, GenerationDefaults, StopReason};
use std::io::{BufRead, IsTerminal, Write};
use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, Ordering};

#[derive(ClapArgs, Debug)]
#[command(
    after_help = "In the conversation:\n  /reset          forget the conversation (the system prompt stays)\n  /exit, /quit    leave (so does Ctrl-D)\n  line \\          a line ending in a backslash continues on the next line\n  \"\"\"             a line holding only \"\"\" starts a multi-line message; the next such line ends it\n  Ctrl-C          stops the answer being written (at the prompt: quits)\n\nWith piped input (not a terminal) each line (or continued / \"\"\" block) is one user turn, each\nanswer is printed on its own, and the program ends at the end of the input.\n\nThe model's chat template is found in chat_template.jinja, tokenizer_config.json or GGUF\nmetadata (tokenizer.chat_template); --chat-template FILE gives one. When the conversation no\nlonger fits in the context (with room for --max-tokens), the oldest turns are dropped and a\nnote says so.\n\nExamples:\n  slm chat -m SmolLM2-135M-Instruct.Q4_1.gguf\n  slm chat -m SmolLM2-135M-Instruct.Q4_1.gguf --system \"Answer in one sentence.\" -t 0\n  printf 'What is the capital of France?\\nAnd of Italy?\\n' | slm chat -m SmolLM2-135M-Instruct.Q4_1.gguf"
)]
pub struct Args {
    /// Model: a Hugging Face directory, an HF cache id (org/name), a .gguf file or a llama2.c
    /// checkpoint.
    #[arg(
        long,
        short = 'm',
        required_unless_present = "url",
        conflicts_with = "url"
    )]
    pub model: Option<String>,
    /// Tokenizer for models that carry none, or to replace theirs.
    #[arg(long)]
    pub tokenizer: Option<PathBuf>,
    /// A LoRA adapter directory in PEFT's format, merged into the model at load.
    #[arg(long)]
    pub adapter: Option<PathBuf>,
    /// Talk to an OpenAI-compatible server instead of a local model (`slm serve`, llama.cpp's
    /// server, vLLM, Ollama), e.g. http://127.0.0.1:8080; it applies its own chat template.
    #[arg(long, value_name = "URL")]
    pub url: Option<String>,
    /// With --url: the `model` name sent (default: none, the server's own).
    #[arg(long, requires = "url")]
    pub remote_model: Option<String>,
    /// With --url: environment variable holding the server's API key.
    #[arg(long, value_name = "VAR", requires = "url")]
    pub api_key_env: Option<String>,
    /// System prompt: instructions the model sees before the conversation.
    #[arg(long)]
    pub system: Option<String>,
    /// Jinja chat template to use instead of the model's own (a model without one needs it).
    #[arg(long, value_name = "FILE")]
    pub chat_template: Option<PathBuf>,
    /// Most tokens in one answer [default: generation_config.json's max_new_tokens, else 512].
    #[arg(long, short = 'n')]
    pub max_tokens: Option<usize>,
    #[command(flatten)]
    pub sampling: SamplingArgs,
    /// Also stop an answer when this string appears (repeatable); it is not printed.
    #[arg(long)]
    pub stop: Vec<String>,
    /// Print timing and cache reuse of each answer to stderr.
    #[arg(long)]
    pub stats: bool,
    /// KV cache storage: f32 (exact) or f16 (half the memory).
    #[arg(long, default_value = "f32", value_parser = choice(&["f32", "f16"], KvType::parse))]
    pub kv: KvType,
    #[command(flatten)]
    pub types: crate::common::TypeArgs,
}

/// Set while an answer is being written: Ctrl-C then stops the answer, not the program.
static ANSWERING: AtomicBool = AtomicBool::new(false);
/// Set by Ctrl-C during an answer; the session polls it before every token.
static STOP: AtomicBool = AtomicBool::new(false);

pub fn run(args: Args) -> Result<()> {
    args.sampling
        .config(&GenerationDefaults::default())
        .validate()?;
    if let Some(url) = &args.url {
        return run_remote(&args, url);
    }
    let model_args = ModelArgs {
        model: args.model.clone().unwrap_or_default(),
        tokenizer: args.tokenizer.clone(),
        adapter: args.adapter.clone(),
    };
    let (loaded, tokenizer) = load_model_and_tokenizer(&model_args)?;
    let template = chat_template(&loaded, tokenizer.as_ref(), args.chat_template.as_deref())?;
    let gen = generation_defaults(&loaded)?;
    let opts = ChatOptions {
        max_tokens: args.max_tokens.or(gen.max_new_tokens).unwrap_or(512),
        sampler: args.sampling.config(&gen),
        stop: args.stop.clone(),
        stop_tokens: gen.eos_token_ids.clone(),
        kv: args.kv,
        weights: args.types.plan(&loaded)?,
    };
    opts.sampler.validate()?;
    let origin = template.origin().to_string();
    let mut session = ChatSession::new(&loaded.model, tokenizer.as_ref(), template, opts)?;
    session.set_system(args.system.clone());

    let banner = format!(
        "chat with {} (template: {origin}; context {} tokens)",
        model_args.model,
        session.context()
    );
    converse(
        &mut Local {
            session,
            stats: args.stats,
        },
        &banner,
    )
}

/// `slm chat --url`: the same conversation loop against a server (`slm_openai::RemoteChat`).
fn run_remote(args: &Args, url: &str) -> Result<()> {
    let api_key = match &args.api_key_env {
        Some(var) => Some(std::env::var(var).map_err(|_| {
            anyhow::anyhow!("--api-key-env {var}: the environment variable is not set")
        })?),
        None => None,
    };
    if args.chat_template.is_some() || args.adapter.is_some() || args.tokenizer.is_some() {
        anyhow::bail!(
            "--chat-template, --adapter and --tokenizer apply to local models, not --url"
        );
    }
    let client = slm_openai::Client::new(url, api_key, std::time::Duration::from_secs(600))?;
    let s = &args.sampling;
    let sampling = slm_openai::Sampling {
        max_tokens: args.max_tokens.map(|m| m as u64),
        temperature: s.temperature,
        top_p: s.top_p,
        top_k: s.top_k.map(|k| k as i64),
        repetition_penalty: s.repetition_penalty,
        seed: Some(s.seed),
        stop: (!args.stop.is_empty()).then(|| slm_openai::StopField::Many(args.stop.clone())),
        ..Default::default()
    };
    let chat = slm_openai::RemoteChat::new(
        client,
        args.remote_model.clone().unwrap_or_default(),
        sampling,
        args.system.clone(),
    );
    converse(
        &mut Remote(chat),
        &format!("chat with {url} (its model's template and context)"),
    )
}

/// What the conversation loop talks to: a model held here or a server.
trait Conversation {
    fn reset(&mut self);
    /// Answers `message`, streaming its text to `on_text` and stopping when `stop` says so;
    /// returns the notes to print after the answer.
    fn answer(
        &mut self,
        message: &str,
        on_text: &mut dyn FnMut(&str) -> slm_core::Result<()>,
        stop: &dyn Fn() -> bool,
    ) -> slm_core::Result<Vec<String>>;
}

struct Local<'t> {
    session: ChatSession<'t>,
    stats: bool,
}

impl Conversation for Local<'_> {
    fn reset(&mut self) {
        self.session.reset();
    }

    fn answer(
        &mut self,
        message: &str,
        on_text: &mut dyn FnMut(&str) -> slm_core::Result<()>,
        stop: &dyn Fn() -> bool,
    ) -> slm_core::Result<Vec<String>> {
        let reply = self.session.send(message, on_text, stop)?;
        let mut notes = Vec::new();
        if reply.interrupted {
            notes.push("[answer stopped]".to_string());
        } else if reply.stop_reason == StopReason::MaxTokens {
            notes.push(format!(
                "[answer cut at {} tokens: --max-tokens]",
                reply.tokens
            ));
        } else if reply.stop_reason == StopReason::ContextFull {
            notes.push("[answer cut: the context is full]".to_string());
        }
        if reply.dropped_messages > 0 {
            notes.push(format!(
                "[dropped the {} oldest messages to fit the context of {} tokens]",
                reply.dropped_messages,
                self.session.context()
            ));
        }
        if self.stats {
            notes.push(format!(
                "[prompt {} tokens ({} reused from the cache), prefill {:.2}s; {} tokens, {:.1} tok/s; stop: {:?}]",
                reply.prompt_tokens,
                reply.reused_tokens,
                reply.prefill_secs,
                reply.tokens,
                reply.tokens.saturating_sub(1) as f64 / reply.decode_secs.max(1e-9),
                reply.stop_reason
            ));
        }
        Ok(notes)
    }
}

struct Remote(slm_openai::RemoteChat);

impl Conversation for Remote {
    fn reset(&mut self) {
        self.0.reset();
    }

    fn answer(
        &mut self,
        message: &str,
        on_text: &mut dyn FnMut(&str) -> slm_core::Result<()>,
        stop: &dyn Fn() -> bool,
    ) -> slm_core::Result<Vec<String>> {
        let reply = self.0.send(message, on_text, stop)?;
        Ok(if reply.interrupted {
            vec!["[answer stopped]".to_string()]
        } else if reply.finish_reason.as_deref() == Some("length") {
            vec!["[answer cut: --max-tokens or the server's context]".to_string()]
        } else {
            vec![]
        })
    }
}

/// The conversation loop: reads messages (and the commands), streams each answer to stdout,
/// and lets Ctrl-C stop an answer (at the prompt it quits).
fn converse(conversation: &mut dyn Conversation, banner: &str) -> Result<()> {
    let interactive = std::io::stdin().is_terminal();
    ctrlc::set_handler(|| {
        if ANSWERING.load(Ordering::SeqCst) {
            STOP.store(true, Ordering::SeqCst);
        } else {
            eprintln!();
            std::process::exit(130);
        }
    })?;
    if interactive {
        eprintln!(
            "{banner}\n\
             /reset forgets the conversation, /exit quits; end a line with \\ to continue it, \
             or write a message between two lines of \"\"\"; Ctrl-C stops an answer."
        );
    }
    let stdin = std::io::stdin();
    let mut input = stdin.lock();
    let stdout = std::io::stdout();
    loop {
        if interactive {
            let mut out = stdout.lock();
            write!(out, "\n> ")?;
            out.flush()?;
        }
        let Some(message) = read_message(&mut input, interactive)? else {
            break;
        };
        let trimmed = message.trim();
        match trimmed {
            "" => continue,
            "/exit" | "/quit" => break,
            "/reset" => {
                conversation.reset();
                eprintln!("(conversation reset)");
                continue;
            }
            _ if trimmed.starts_with('/') && !trimmed.contains(char::is_whitespace) => {
                eprintln!("unknown command {trimmed}: /reset, /exit (a message starting with / needs a space in it)");
                continue;
            }
            _ => {}
        }
        STOP.store(false, Ordering::SeqCst);
        ANSWERING.store(true, Ordering::SeqCst);
        let mut out = stdout.lock();
        let notes = conversation.answer(
            trimmed,
            &mut |t| {
                write!(out, "{t}")
                    .and_then(|_| out.flush())
                    .map_err(|e| slm_core::Error::msg(e.to_string()))
            },
            &|| STOP.load(Ordering::SeqCst),
        );
        ANSWERING.store(false, Ordering::SeqCst);
        writeln!(out)?;
        drop(out);
        match notes {
            Ok(notes) => notes.iter().for_each(|n| eprintln!("{n}")),
            Err(e) if interactive => eprintln!("error: {e}"),
            Err(e) => return Err(e.into()),
        }
        if !interactive {
            println!();
        }
    }
    Ok(())
}

/// One user message: a line; lines ending in `\` continue on the next; a line holding only
/// `"""` starts a block that the next such line ends. `None` at the end of input with
/// nothing read.
fn read_message(input: &mut dyn BufRead, interactive: bool) -> Result<Option<String>> {
    let mut message = String::new();
    let mut block = false;
    let mut any = false;
    loop {
        let mut line = String::new();
        if input.read_line(&mut line)? == 0 {
            return Ok(any.then_some(message));
        }
        any = true;
        let line = line.trim_end_matches(['\n', '\r']);
        if line.trim() == "\"\"\"" {
            if block {
                return Ok(Some(message));
            }
            block = true;
        } else if block {
            message.push_str(line);
            message.push('\n');
        } else if let Some(head) = line.strip_suffix('\\') {
            message.push_str(head);
            message.push('\n');
        } else {
            message.push_str(line);
            return Ok(Some(message));
        }
        if interactive {
            let mut err = std::io::stderr();
            let _ = write!(err, ". ");
            let _ = err.flush();
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn messages(text: &str) -> Vec<String> {
        let mut input = std::io::Cursor::new(text.as_bytes().to_vec());
        let mut out = Vec::new();
        while let Some(m) = read_message(&mut input, false).unwrap() {
            out.push(m);
        }
        out
    }

    #[test]
    fn lines_continuations_and_blocks() {
        assert_eq!(messages("a\nb\n"), vec!["a", "b"]);
        assert_eq!(messages("one \\\ntwo\nthree"), vec!["one \ntwo", "three"]);
        assert_eq!(
            messages("\"\"\"\nx\n\ny\n\"\"\"\nz\n"),
            vec!["x\n\ny\n", "z"]
        );
        assert_eq!(messages(""), Vec::<String>::new());
        assert_eq!(messages("\n"), vec![""]);
    }
}
