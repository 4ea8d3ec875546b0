//! What several subcommands share: the model arguments and loading, calibration arguments,
//! choice-option parsers, thread settings, sampling flags over generation_config.json, the
//! chat template.

use anyhow::{Context, Result};
use clap::builder::{PossibleValuesParser, TypedValueParser};
use clap::Args;
use slm_data::chat::ChatTemplate;
use slm_data::tokenizer::Tokenizer;
use slm_infer::decode::{TypeChoice, TypePlan};
use slm_infer::{GenerationDefaults, SamplerConfig, SamplerFlags};
use slm_model::LoadedLlama;
use slm_recipes::calib::CalibSpec;
use std::path::{Path, PathBuf};

/// `--model` and `--tokenizer`, flattened into every command that reads a model.
#[derive(Args, Debug, Clone)]
pub struct ModelArgs {
    /// Model: a Hugging Face directory, an HF cache id (org/name), a .gguf file or a llama2.c
    /// checkpoint (.bin).
    #[arg(long, short = 'm')]
    pub model: String,
    /// Tokenizer for models that carry none, or to replace theirs: tokenizer.json, a llama2.c
    /// tokenizer.bin, or a GGUF model (its vocabulary).
    #[arg(long)]
    pub tokenizer: Option<PathBuf>,
    /// A LoRA adapter directory in PEFT's format (adapter_config.json +
    /// adapter_model.safetensors, from `slm finetune` or PEFT), merged into the model at load.
    #[arg(long)]
    pub adapter: Option<PathBuf>,
}

/// `--type`: how the decode engine stores the weights, flattened into every command that
/// decodes (generate, chat, serve, eval, bench).
#[derive(Args, Debug, Clone)]
pub struct TypeArgs {
    /// Weight storage while decoding. `auto`: a quantised GGUF runs at its own types, tensor by
    /// tensor, as llama.cpp runs it (Q8_0, Q4_0, Q4_1 repacked; Q4_K, Q5_K, Q6_K, Q5_0, Q5_1
    /// block for block as stored; Q2_K/Q3_K as Q4_1), float files at f32. f32, q8_0, q4_1,
    /// q4_0: every matrix so, quantised at load (round-to-nearest; a file's own type gives
    /// back its blocks).
    #[arg(long = "type", default_value = "auto",
          value_parser = choice(&["auto", "f32", "q8_0", "q4_1", "q4_0"], TypeChoice::parse))]
    pub weight_type: TypeChoice,
}

impl TypeArgs {
    /// The storage of every matrix of `loaded`.
    pub fn plan(&self, loaded: &LoadedLlama) -> Result<TypePlan> {
        Ok(self
            .weight_type
            .plan(&loaded.stored_types, &loaded.stored_blocks)?)
    }
}

/// `--bos` / `--no-bos`: whether BOS goes first; by default as the model's tokenizer does
/// (`Tokenizer::adds_bos`: GGUF `add_bos_token`, `tokenizer_config.json`, the post-processor).
#[derive(Args, Debug, Clone, Default)]
pub struct BosArgs {
    /// Do not put BOS first (default: as the model's own tokenizer does).
    #[arg(long, conflicts_with = "bos")]
    pub no_bos: bool,
    /// Put BOS first even when the model's tokenizer does not add it.
    #[arg(long)]
    pub bos: bool,
}

impl BosArgs {
    /// `Some(choice)` when the user chose, `None` for the tokenizer's default.
    pub fn choice(&self) -> Option<bool> {
        match (self.bos, self.no_bos) {
            (true, _) => Some(true),
            (_, true) => Some(false),
            _ => None,
        }
    }

    /// Whether to put BOS first with `tok`.
    pub fn add_bos(&self, tok: &dyn Tokenizer) -> bool {
        self.choice().unwrap_or_else(|| tok.adds_bos())
    }
}

/// The calibration text and how windows are drawn from it (prune, quantize --gptq).
#[derive(Args, Debug, Clone)]
pub struct CalibText {
    /// Calibration text (.txt, .jsonl with `text`, or an slm token shard).
    #[arg(long)]
    pub calib: Option<PathBuf>,
    /// Calibration windows.
    #[arg(long, default_value_t = 128)]
    pub nsamples: usize,
    /// Tokens per window (default: min(2048, model context)).
    #[arg(long)]
    pub seqlen: Option<usize>,
    /// Seed of the window positions.
    #[arg(long, default_value_t = 0)]
    pub seed: u64,
}

impl CalibText {
    pub fn spec(&self) -> CalibSpec {
        CalibSpec {
            file: self.calib.clone(),
            nsamples: self.nsamples,
            seqlen: self.seqlen,
            seed: self.seed,
        }
    }
}

/// A choice option: `names` are listed in the help and in the error for any other value;
/// `parse` turns the chosen one into the library's type.
pub fn choice<T: Clone + Send + Sync + 'static>(
    names: &'static [&'static str],
    parse: fn(&str) -> slm_core::Result<T>,
) -> impl TypedValueParser<Value = T> {
    PossibleValuesParser::new(names).try_map(move |s| parse(&s))
}

/// A number for which `ok` holds (`what` says which), checked while the arguments are parsed.
pub fn number<T: std::str::FromStr + Copy>(
    ok: fn(T) -> bool,
    what: &'static str,
) -> impl Fn(&str) -> Result<T, String> + Clone {
    move |s| {
        s.parse::<T>()
            .ok()
            .filter(|v| ok(*v))
            .ok_or_else(|| format!("expected a number {what}"))
    }
}

/// A range of document indices, `A..B` (from A up to but not including B), `A..` or `..B`.
pub fn rows(s: &str) -> Result<std::ops::Range<usize>, String> {
    let bad = || format!("expected rows as A..B, A.. or ..B (0-based, B excluded), not `{s}`");
    let (a, b) = s.split_once("..").ok_or_else(bad)?;
    let a: usize = if a.is_empty() {
        0
    } else {
        a.trim().parse().map_err(|_| bad())?
    };
    let b: usize = if b.is_empty() {
        usize::MAX
    } else {
        b.trim().parse().map_err(|_| bad())?
    };
    if a >= b {
        return Err(format!("rows `{s}` select nothing"));
    }
    Ok(a..b)
}

/// Sets the number of threads candle and rayon use; call before any tensor work.
pub fn set_threads(n: usize) {
    std::env::set_var("RAYON_NUM_THREADS", n.max(1).to_string());
}

pub fn load_model(args: &ModelArgs) -> Result<LoadedLlama> {
    let mut loaded = slm_model::load(&args.model, args.tokenizer.as_deref())
        .with_context(|| format!("loading model `{}`", args.model))?;
    if let Some(dir) = &args.adapter {
        let adapter = slm_io::peft::LoraAdapter::read(dir)
            .with_context(|| format!("reading the adapter {}", dir.display()))?;
        slm_model::lora::merge(&mut loaded.model, &adapter).with_context(|| {
            format!("applying the adapter {} to `{}`", dir.display(), args.model)
        })?;
    }
    Ok(loaded)
}

pub fn load_model_and_tokenizer(args: &ModelArgs) -> Result<(LoadedLlama, Box<dyn Tokenizer>)> {
    let loaded = load_model(args)?;
    let tokenizer = slm_data::tokenizer::load_tokenizer_with_config(
        &loaded.tokenizer,
        loaded.tokenizer_config.as_ref(),
    )
    .with_context(|| {
        format!(
            "loading the tokenizer of `{}` (pass --tokenizer PATH for models without one)",
            args.model
        )
    })?;
    if tokenizer.vocab_size() > loaded.model.config.vocab_size {
        anyhow::bail!(
            "the tokenizer has {} tokens but the model's vocabulary is {}: wrong --tokenizer?",
            tokenizer.vocab_size(),
            loaded.model.config.vocab_size
        );
    }
    Ok((loaded, tokenizer))
}

/// Sampling flags shared by `generate` and `chat`. A flag not given takes the model's
/// `generation_config.json` value when it has one, else slm's default.
#[derive(Args, Debug, Clone)]
pub struct SamplingArgs {
    /// Sampling temperature; 0 = greedy [default: the model's generation_config.json, else 0.8;
    /// its do_sample=false means 0].
    #[arg(long, short = 't')]
    pub temperature: Option<f32>,
    /// Keep only the k most likely tokens, 0 = off [default: generation_config.json, else 0].
    #[arg(long)]
    pub top_k: Option<usize>,
    /// Nucleus sampling: keep the most likely tokens up to this probability mass
    /// [default: generation_config.json, else 0.95].
    #[arg(long)]
    pub top_p: Option<f32>,
    /// Penalise tokens already in the text, 1.0 = off, 1.1–1.3 typical
    /// [default: generation_config.json, else 1.0].
    #[arg(long)]
    pub repetition_penalty: Option<f32>,
    /// Random seed (same seed, same text).
    #[arg(long, default_value_t = 42)]
    pub seed: u64,
}

impl SamplingArgs {
    /// The sampler: these flags over `gen` over slm's defaults.
    pub fn config(&self, gen: &GenerationDefaults) -> SamplerConfig {
        slm_infer::sampler_config(
            gen,
            &SamplerFlags {
                temperature: self.temperature,
                top_k: self.top_k,
                top_p: self.top_p,
                repetition_penalty: self.repetition_penalty,
                seed: self.seed,
            },
        )
    }
}

/// The model's `generation_config.json` defaults (none for a model without one).
pub fn generation_defaults(loaded: &LoadedLlama) -> Result<GenerationDefaults> {
    GenerationDefaults::from_optional(loaded.generation_config.as_ref()).with_context(|| {
        format!(
            "reading the generation config of `{}`",
            loaded.source.display()
        )
    })
}

/// The chat template: `file` (`--chat-template`) or the model's own; an error that says how
/// to give one when the model has none.
pub fn chat_template(
    loaded: &LoadedLlama,
    tokenizer: &dyn Tokenizer,
    file: Option<&Path>,
) -> Result<ChatTemplate> {
    Ok(ChatTemplate::resolve(
        file,
        &loaded.tokenizer,
        loaded.tokenizer_config.as_ref(),
        &loaded.source,
        tokenizer,
    )?)
}
