//! `slm distill generate`: the teacher writes a training set (wiring only; the work is in
//! `slm_distill::generate`).

use crate::common::{chat_template, load_model_and_tokenizer, ModelArgs};
use anyhow::Result;
use clap::Args as ClapArgs;
use slm_data::chat::ChatTemplate;
use slm_distill::generate::{
    filters::FilterConfig, output, templates::TemplateSet, ChatPrompt, GenerateConfig, Teacher,
};
use slm_infer::SamplerConfig;
use slm_recipes::teacher_data;
use std::path::PathBuf;

const EXAMPLES: &str = "Examples:
  slm distill generate --teacher stories260K.bin --tokenizer tok512.bin --n 200 --max-tokens 200 --out synth.jsonl
  slm data prepare synth.jsonl --tokenizer tok512.bin --out data/synth
  slm distill generate --teacher runs/teacher --n 20000 --out synth.jsonl --max-teacher-ppl 20 --dedup-threshold 0.7
  slm distill generate --show-templates --templates instruct > my-prompts.toml
  slm distill generate --teacher runs/chat --templates my-prompts.toml --n 1000 --out chat-stories.jsonl
  slm distill generate --teacher SmolLM2-135M-Instruct.Q4_1.gguf --templates instruct --n 100 --out smol.jsonl";

const GUIDE: &str = "How it works:
  Every prompt comes from a template with slots filled from word lists (a random verb, noun and
  adjective) and feature lists (dialogue, bad ending, moral value, plot twist, foreshadowing,
  conflict), the TinyStories recipe. The teacher continues it; each text is scored (words,
  repetition, teacher perplexity), filtered, and checked for exact and near duplicates (MinHash
  over word n-grams) against the texts already kept.

  --n counts KEPT samples. Kept samples go to --out (JSONL: index, prompt, text, tokens, stop,
  scores), which `slm data prepare` reads as it is; rejected ones go to OUT.rejected with the
  reason; OUT.settings.json records the settings a resumed run must match.

  Resumable: kill it and run the same command again (or with a larger --n) and it continues at
  the sample it reached, with nothing lost or duplicated. Each sample's prompt and sampling seed
  come from (--seed, its index), so the output does not depend on --threads or on restarts.

  Built-in template sets: `stories` (default: story openings for a base model such as
  stories260K, which continues text; the training text is opening + continuation) and
  `instruct` (the TinyStories instruction prompt, for instruction-tuned teachers; the training
  text is the answer). Print one with --show-templates to start your own.

  Chat format: a teacher with a chat template (chat_template.jinja, tokenizer_config.json or
  GGUF metadata; or --chat-template FILE) gets each filled prompt as a user turn (after
  --system, if given) and the sample is its answer, ended by its end-of-turn token (e.g.
  <|im_end|>). --raw makes it continue the raw prompt instead, as a base model does.";

#[derive(ClapArgs, Debug)]
#[command(after_help = EXAMPLES, after_long_help = format!("{GUIDE}\n\n{EXAMPLES}"))]
pub struct GenerateArgs {
    /// Teacher model: a Hugging Face directory, an HF cache id, a .gguf file or a llama2.c
    /// checkpoint.
    #[arg(long, required_unless_present_any = ["show_templates", "teacher_url"], conflicts_with = "teacher_url")]
    pub teacher: Option<String>,
    /// A remote teacher: the URL of an OpenAI-compatible server (vLLM, SGLang, llama.cpp's
    /// server, Ollama, `slm serve`), e.g. http://127.0.0.1:8000/v1. Each sample is one chat
    /// completion (text completion with --raw).
    #[arg(long, value_name = "URL")]
    pub teacher_url: Option<String>,
    /// The `model` name sent to the remote teacher (default: none, the server's own).
    #[arg(long, requires = "teacher_url")]
    pub teacher_model: Option<String>,
    /// Environment variable holding the remote teacher's API key (sent as a bearer token).
    #[arg(long, value_name = "VAR", requires = "teacher_url")]
    pub api_key_env: Option<String>,
    /// Requests to the remote teacher in flight at once.
    #[arg(long, default_value_t = 4)]
    pub concurrency: usize,
    /// At most this many requests per second to the remote teacher.
    #[arg(long, value_name = "PER_SEC", requires = "teacher_url")]
    pub rate_limit: Option<f64>,
    /// Seconds to wait for one remote answer before it counts as failed (and is retried).
    #[arg(long, default_value_t = 300, requires = "teacher_url")]
    pub request_timeout: u64,
    /// Ask the remote teacher for this many alternatives per generated token (1-20) and keep
    /// them, mapped onto the student's vocabulary (--tokenizer), with each sample: `slm
    /// distill cache --samples OUT` turns them into an offline KD cache.
    #[arg(long, default_value_t = 0, requires = "teacher_url")]
    pub top_logprobs: usize,
    /// Tokenizer for teachers that carry none (llama2.c tokenizer.bin, or tokenizer.json); with
    /// --teacher-url, the student's tokenizer that --top-logprobs maps onto.
    #[arg(long)]
    pub tokenizer: Option<PathBuf>,
    /// Prompt templates: a TOML file, or a built-in set (`stories`, `instruct`).
    #[arg(long, default_value = "stories")]
    pub templates: String,
    /// Print the template set chosen by --templates (TOML) and exit.
    #[arg(long)]
    pub show_templates: bool,
    /// Kept samples wanted (rejected ones do not count).
    #[arg(long, required_unless_present = "show_templates")]
    pub n: Option<usize>,
    /// Output JSONL of kept samples (OUT.rejected and OUT.settings.json sit beside it).
    #[arg(long, required_unless_present = "show_templates")]
    pub out: Option<PathBuf>,
    /// Most new tokens per sample (default: the template set's, else 256).
    #[arg(long)]
    pub max_tokens: Option<usize>,
    /// Sampling temperature; 0 = greedy (default: the template set's, else 0.8).
    #[arg(long)]
    pub temperature: Option<f32>,
    /// Keep only the k most likely tokens, 0 = off (default: the template set's, else 0).
    #[arg(long)]
    pub top_k: Option<usize>,
    /// Nucleus sampling mass (default: the template set's, else 0.95).
    #[arg(long)]
    pub top_p: Option<f32>,
    /// Penalise tokens already in the text, 1.0 = off (default: the template set's, else 1.0).
    #[arg(long)]
    pub repetition_penalty: Option<f32>,
    /// Stop a sample when this string appears (repeatable; added to the template set's).
    #[arg(long)]
    pub stop: Vec<String>,
    /// Base random seed: sample i's prompt and sampling seed derive from (seed, i).
    #[arg(long, default_value_t = 42)]
    pub seed: u64,
    /// Reject texts with fewer words.
    #[arg(long, default_value_t = 20)]
    pub min_words: usize,
    /// Reject texts with more words (default: no bound).
    #[arg(long)]
    pub max_words: Option<usize>,
    /// Reject texts whose share of repeated word 3-grams is above this (1 = off).
    #[arg(long, default_value_t = 0.3)]
    pub max_repetition: f64,
    /// Reject texts the teacher finds this predictable or more (degenerate loops).
    #[arg(long)]
    pub min_teacher_ppl: Option<f64>,
    /// Reject texts the teacher finds this unlikely or more (noise).
    #[arg(long)]
    pub max_teacher_ppl: Option<f64>,
    /// Reject samples cut off at --max-tokens (the teacher did not end the text).
    #[arg(long)]
    pub require_end: bool,
    /// Keep a text cut off at --max-tokens whole, instead of cutting it back to its last full
    /// sentence.
    #[arg(long)]
    pub keep_cut_sentence: bool,
    /// Near-duplicate threshold: reject a text whose estimated Jaccard similarity (word
    /// n-grams, MinHash) with a kept text is at least this. Exact duplicates are always removed.
    #[arg(long, default_value_t = 0.8)]
    pub dedup_threshold: f64,
    /// Word n-gram length for near-duplicate detection.
    #[arg(long, default_value_t = 3)]
    pub ngram: usize,
    /// MinHash permutations (more: a finer similarity estimate, slower).
    #[arg(long, default_value_t = 128)]
    pub num_perm: usize,
    /// Stop after this many samples generated in all, kept or not (default: 10·n + 100).
    #[arg(long)]
    pub max_attempts: Option<u64>,
    /// Samples generated in parallel per step, one per thread at a time (default: 2 per
    /// thread; 1: one sample at a time, each token's matrix products split across threads).
    #[arg(long)]
    pub chunk: Option<usize>,
    /// Start again, deleting OUT, OUT.rejected and OUT.settings.json, instead of resuming.
    #[arg(long)]
    pub overwrite: bool,
    /// The teacher continues each prompt as raw text, even when it has a chat template (for
    /// base models, and today's behaviour). Without it, a teacher with a chat template gets
    /// each filled prompt as a user turn and its answer (up to the end-of-turn token) is the
    /// sample.
    #[arg(long, conflicts_with_all = ["system", "chat_template"])]
    pub raw: bool,
    /// System prompt before each user turn (chat format only).
    #[arg(long)]
    pub system: Option<String>,
    /// Jinja chat template for a teacher that carries none (turns the chat format on).
    #[arg(long, value_name = "FILE")]
    pub chat_template: Option<PathBuf>,
}

pub fn run(a: GenerateArgs) -> Result<()> {
    if a.show_templates {
        print!("{}", teacher_data::template_source(&a.templates)?);
        return Ok(());
    }
    let (Some(n), Some(out)) = (a.n, a.out.clone()) else {
        anyhow::bail!("--n and --out are required");
    };
    let templates = TemplateSet::resolve(&a.templates)?;
    let d = &templates.file.sampling;
    let mut stop = d.stop.clone();
    stop.extend(a.stop.iter().cloned());
    let cfg = GenerateConfig {
        n,
        max_tokens: a.max_tokens.or(d.max_tokens).unwrap_or(256),
        sampler: SamplerConfig {
            temperature: a.temperature.or(d.temperature).unwrap_or(0.8),
            top_k: a.top_k.or(d.top_k).unwrap_or(0),
            top_p: a.top_p.or(d.top_p).unwrap_or(0.95),
            repetition_penalty: a.repetition_penalty.or(d.repetition_penalty).unwrap_or(1.0),
            seed: a.seed,
        },
        stop,
        filters: FilterConfig {
            min_words: a.min_words,
            max_words: a.max_words,
            max_repetition: a.max_repetition,
            min_teacher_ppl: a.min_teacher_ppl,
            max_teacher_ppl: a.max_teacher_ppl,
            require_end: a.require_end,
        },
        dedup_threshold: a.dedup_threshold,
        ngram: a.ngram,
        num_perm: a.num_perm,
        max_attempts: a.max_attempts,
        chunk: a.chunk.unwrap_or(0),
        trim_cut_sentence: !a.keep_cut_sentence,
        overwrite: a.overwrite,
        chat: None,
    };
    cfg.validate()?;
    if let Some(url) = &a.teacher_url {
        return run_remote(&a, url, &templates, cfg, &out);
    }
    let Some(teacher_spec) = a.teacher.clone() else {
        anyhow::bail!("--teacher or --teacher-url is required");
    };
    let (loaded, tokenizer) = load_model_and_tokenizer(&ModelArgs {
        adapter: None,
        model: teacher_spec.clone(),
        tokenizer: a.tokenizer.clone(),
    })?;
    let mut cfg = cfg;
    // The chat format when the teacher has a template (or one is given), unless --raw.
    let template = match (&a.chat_template, a.raw) {
        (_, true) => None,
        (Some(file), false) => Some(chat_template(&loaded, tokenizer.as_ref(), Some(file))?),
        (None, false) => ChatTemplate::from_loaded(
            &loaded.tokenizer,
            loaded.tokenizer_config.as_ref(),
            &loaded.source,
        )?
        .map(|t| t.with_tokenizer_tokens(tokenizer.as_ref())),
    };
    if template.is_none() && a.system.is_some() {
        anyhow::bail!(
            "--system needs the chat format, and `{teacher_spec}` has no chat template: give one with --chat-template FILE"
        );
    }
    cfg.chat = template.map(|template| ChatPrompt {
        stop_tokens: template.stop_token_ids(tokenizer.as_ref()),
        template,
        system: a.system.clone(),
    });
    let teacher = Teacher {
        model: &loaded.model,
        tokenizer: tokenizer.as_ref(),
        name: teacher_data::identity(&teacher_spec, a.tokenizer.as_deref()),
    };
    let format = match &cfg.chat {
        Some(c) => format!(
            "chat format ({}; --raw to continue raw prompts)",
            c.template.origin()
        ),
        None => "raw prompts".to_string(),
    };
    eprintln!(
        "teacher {teacher_spec}, {format}; templates: {} ({} templates); {} threads; kept samples → {}, \
         rejected → {}",
        templates.origin,
        templates.len(),
        rayon::current_num_threads(),
        out.display(),
        output::rejected_path(&out).display()
    );
    let summary = teacher_data::generate_with_progress(
        teacher_data::AnyTeacher::Local(&teacher),
        &templates,
        &cfg,
        &out,
    )?;
    for note in teacher_data::notes(&summary, &cfg, &out) {
        eprintln!("{note}");
    }
    println!("{}", summary.line());
    Ok(())
}

fn run_remote(
    a: &GenerateArgs,
    url: &str,
    templates: &TemplateSet,
    cfg: GenerateConfig,
    out: &std::path::Path,
) -> Result<()> {
    if a.chat_template.is_some() {
        anyhow::bail!("--chat-template applies to local teachers; a remote server uses its own");
    }
    let api_key = match &a.api_key_env {
        Some(var) => Some(std::env::var(var).map_err(|_| {
            anyhow::anyhow!("--api-key-env {var}: the environment variable is not set")
        })?),
        None => None,
    };
    let mut client = slm_openai::Client::new(
        url,
        api_key,
        std::time::Duration::from_secs(a.request_timeout),
    )?;
    if let Some(r) = a.rate_limit {
        client = client.with_rate_limit(r)?;
    }
    let vocab = match &a.tokenizer {
        Some(path) => {
            let tok = slm_data::tokenizer::load_tokenizer_file(path)?;
            Some(slm_distill::generate::remote::VocabMap::new(tok.as_ref())?)
        }
        None => None,
    };
    let needs_lp = cfg.filters.min_teacher_ppl.is_some() || cfg.filters.max_teacher_ppl.is_some();
    let teacher = slm_distill::generate::remote::RemoteTeacher {
        client,
        model: a.teacher_model.clone().unwrap_or_default(),
        chat: !a.raw,
        system: a.system.clone(),
        concurrency: a.concurrency,
        top_logprobs: a.top_logprobs,
        logprobs: needs_lp,
        vocab,
    };
    eprintln!(
        "remote teacher {} ({}; {} requests at once); templates: {} ({} templates); kept samples → {}, \
         rejected → {}",
        teacher.identity(),
        if teacher.chat { "chat completions" } else { "text completions (--raw)" },
        teacher.concurrency,
        templates.origin,
        templates.len(),
        out.display(),
        output::rejected_path(out).display()
    );
    let summary = teacher_data::generate_with_progress(
        teacher_data::AnyTeacher::Remote(&teacher),
        templates,
        &cfg,
        out,
    )?;
    for note in teacher_data::notes(&summary, &cfg, out) {
        eprintln!("{note}");
    }
    println!("{}", summary.line());
    Ok(())
}
