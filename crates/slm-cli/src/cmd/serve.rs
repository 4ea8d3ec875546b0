//! `slm serve`: the model behind an OpenAI-compatible HTTP API (`slm_serve::serve`); this
//! file loads the model, template and defaults and prints where the server listens.

use crate::common::{
    chat_template, choice, generation_defaults, load_model_and_tokenizer, ModelArgs,
};
use anyhow::{Context, Result};
use clap::Args as ClapArgs;
use slm_infer::decode::{Decoder, KvType, SparseUse};
use slm_infer::SamplerFlags;
use std::io::Write;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

#[derive(ClapArgs, Debug)]
#[command(
    after_help = "Routes: GET /v1/models, POST /v1/chat/completions (the model's chat template), \
POST /v1/completions, GET /health, GET /metrics (Prometheus text). Request fields: \
messages/prompt, max_tokens (max_completion_tokens), temperature, top_p, top_k, \
repetition_penalty, seed, stop, n, stream (+ stream_options.include_usage), logprobs and \
top_logprobs; tools, logit_bias, penalties and response_format other than text are refused \
with a 400.\n\n\
Concurrent requests are decoded together (continuous batching): up to --max-batch sequences \
share each step's read of the weights, new requests join between steps, long prompts are \
prefilled --prefill-chunk tokens per step. Past --max-batch, requests wait in a queue of \
--queue; beyond it they get 429 with Retry-After. Ctrl-C or SIGTERM: new requests get 503, \
those in flight finish (up to --drain seconds), then the server exits.\n\n\
Examples:\n  slm serve -m SmolLM2-135M-Instruct.Q4_1.gguf --type q4_0\n  \
curl http://127.0.0.1:8080/v1/chat/completions -H 'Content-Type: application/json' \\\n    \
-d '{\"messages\": [{\"role\": \"user\", \"content\": \"Hi!\"}], \"max_tokens\": 32}'\n  \
slm chat --url http://127.0.0.1:8080"
)]
pub struct Args {
    #[command(flatten)]
    pub model: ModelArgs,
    /// Address to listen on (loopback by default; 0.0.0.0 exposes the server to the network).
    #[arg(long, default_value = "127.0.0.1")]
    pub host: String,
    /// Port (0: any free port; the address is printed).
    #[arg(long, default_value_t = 8080)]
    pub port: u16,
    #[command(flatten)]
    pub types: crate::common::TypeArgs,
    /// KV cache storage: f32 (exact) or f16 (half the memory).
    #[arg(long, default_value = "f32", value_parser = choice(&["f32", "f16"], KvType::parse))]
    pub kv: KvType,
    /// Require `Authorization: Bearer KEY` on every route but /health.
    #[arg(long, value_name = "KEY")]
    pub api_key: Option<String>,
    /// Read the API key from this environment variable instead of the command line.
    #[arg(long, value_name = "VAR", conflicts_with = "api_key")]
    pub api_key_env: Option<String>,
    /// Sequences decoded together (each holds a KV cache of --ctx tokens).
    #[arg(long, default_value_t = 16)]
    pub max_batch: usize,
    /// Requests waiting for a free sequence before new ones get 429.
    #[arg(long, default_value_t = 64)]
    pub queue: usize,
    /// Context per sequence in tokens (prompt + answer) [default: the model's, at most 2048].
    #[arg(long)]
    pub ctx: Option<usize>,
    /// Prompt tokens prefilled per engine step while other sequences decode (they wait for
    /// it: smaller keeps their inter-token latency even, larger prefills faster).
    #[arg(long, default_value_t = 64)]
    pub prefill_chunk: usize,
    /// End a request still running after this many seconds (504).
    #[arg(long, default_value_t = 600)]
    pub timeout: u64,
    /// On Ctrl-C/SIGTERM, seconds requests in flight may take to finish.
    #[arg(long, default_value_t = 30)]
    pub drain: u64,
    /// The model name /v1/models reports [default: the model file or directory name].
    #[arg(long)]
    pub model_name: Option<String>,
    /// Jinja chat template to use instead of the model's own.
    #[arg(long, value_name = "FILE")]
    pub chat_template: Option<PathBuf>,
}

pub fn run(args: Args) -> Result<()> {
    let api_key = match &args.api_key_env {
        Some(var) => Some(
            std::env::var(var)
                .with_context(|| format!("--api-key-env {var}: the variable is not set"))?,
        ),
        None => args.api_key.clone(),
    };
    if args.max_batch == 0 || args.queue == 0 || args.prefill_chunk == 0 {
        anyhow::bail!("--max-batch, --queue and --prefill-chunk must be at least 1");
    }
    let (mut loaded, tokenizer) = load_model_and_tokenizer(&args.model)?;
    let model_ctx = loaded.model.config.max_position_embeddings;
    let ctx = match args.ctx {
        Some(c) if c < 2 || c > model_ctx => {
            anyhow::bail!("--ctx must be between 2 and the model's context of {model_ctx}, got {c}")
        }
        Some(c) => c,
        None => model_ctx.min(2048),
    };
    // Sequences hold `ctx` positions: the engine's RoPE tables and caches are sized by it.
    loaded.model.config.max_position_embeddings = ctx;
    let template = match chat_template(&loaded, tokenizer.as_ref(), args.chat_template.as_deref()) {
        Ok(t) => Some(t),
        Err(e) if args.chat_template.is_none() => {
            eprintln!("note: {e:#}; /v1/chat/completions will answer 400 (completions work)");
            None
        }
        Err(e) => return Err(e),
    };
    let gen = generation_defaults(&loaded)?;
    let mut stop_tokens = gen.eos_token_ids.clone();
    stop_tokens.extend(tokenizer.eos_id());
    if let Some(t) = &template {
        stop_tokens.extend(t.stop_token_ids(tokenizer.as_ref()));
    }
    stop_tokens.sort_unstable();
    stop_tokens.dedup();
    // OpenAI's defaults (temperature 1, top_p 1) under the model's generation_config.json.
    let defaults = slm_infer::sampler_config(
        &slm_infer::GenerationDefaults {
            temperature: gen.temperature.or(Some(1.0)),
            top_p: gen.top_p.or(Some(1.0)),
            ..gen.clone()
        },
        &SamplerFlags {
            temperature: None,
            top_k: None,
            top_p: None,
            repetition_penalty: None,
            seed: 0,
        },
    );
    let plan = args.types.plan(&loaded)?;
    let decoder = Decoder::with_plan(&loaded.model, &plan, SparseUse::Auto)?;
    // The decoder holds its own copy of the weights: the loaded f32 model is no longer needed.
    drop(loaded);
    release_freed_memory();
    let model_name = args.model_name.clone().unwrap_or_else(|| {
        let p = std::path::Path::new(&args.model.model);
        p.file_name()
            .map(|n| n.to_string_lossy().into_owned())
            .unwrap_or_else(|| args.model.model.clone())
    });
    let opts = slm_serve::ServeOptions {
        host: args.host.clone(),
        port: args.port,
        api_key,
        max_batch: args.max_batch,
        queue: args.queue,
        prefill_chunk: args.prefill_chunk,
        timeout: Duration::from_secs(args.timeout),
        drain: Duration::from_secs(args.drain),
        max_body: 8 << 20,
        kv: args.kv,
        model_name: model_name.clone(),
        defaults,
        stop_tokens,
    };
    let summary = format!(
        "{model_name} ({} weights, context {ctx}, {} sequences at once, chat template: {})",
        decoder.weights.storage(),
        args.max_batch,
        template
            .as_ref()
            .map(|t| t.origin().to_string())
            .unwrap_or_else(|| "none".into()),
    );
    let tokenizer: Arc<dyn slm_data::tokenizer::Tokenizer> = Arc::from(tokenizer);
    slm_serve::serve(
        decoder,
        tokenizer,
        template,
        opts,
        slm_serve::shutdown_signal(),
        |addr| {
            println!("slm serve: {summary}");
            println!("listening on http://{addr} (OpenAI API at http://{addr}/v1; Ctrl-C stops)");
            let _ = std::io::stdout().flush();
        },
    )?;
    eprintln!("slm serve: stopped");
    Ok(())
}

/// Hands memory freed after loading back to the system. glibc's allocator keeps the freed
/// f32 model (hundreds of MB in blocks under its mmap threshold) in the heap otherwise, and a
/// long-running server would show it as resident for its whole life.
fn release_freed_memory() {
    #[cfg(all(target_os = "linux", target_env = "gnu"))]
    // SAFETY: malloc_trim only returns free heap pages to the kernel; it touches no live
    // allocation and is thread-safe.
    unsafe {
        libc::malloc_trim(0);
    }
}
