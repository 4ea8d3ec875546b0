//! `slm distill generate`: a teacher writes a training set (the TinyStories recipe).
//!
//! Each sample `i` draws a prompt from a template set ([`templates`]) and a sampling seed,
//! both derived from (seed, i) alone; the teacher continues the prompt ([`teacher`]: stopping
//! at EOS or BOS, scoring each token as it goes) — or, for an instruction-tuned teacher
//! ([`GenerateConfig::chat`]), answers it as a user turn rendered through its chat template,
//! stopping at its end-of-turn token; the text is scored
//! ([`filters`]: words, repetition, teacher perplexity) and checked against the kept texts for
//! exact and near duplicates ([`dedup`]: MinHash over word n-grams). Samples are generated in
//! parallel in steps of a few, one sample per rayon task (for small teachers one sequence per
//! core is faster than splitting each token's matrix products across cores), then judged and
//! written in index order, so the output depends only on the settings, never on the threads.
//!
//! A text cut off at the token limit is cut back to its last full sentence (unless
//! `trim_cut_sentence` is off), so that no training document ends in the middle of a word;
//! `tokens` and the teacher perplexity still count every generated token.
//!
//! `--n` counts kept samples: the run stops at the sample that brings the kept count to n (or
//! at `max_attempts`). Kept samples go to `OUT`, rejected ones to `OUT.rejected`; a killed run
//! started again continues exactly where the kept file ends ([`output`]).

pub mod dedup;
pub mod filters;
pub mod output;
pub mod remote;
pub mod teacher;
pub mod templates;

use dedup::{mix64, DupCheck};
use filters::{FilterConfig, Reject};
use output::Record;
use rand::rngs::StdRng;
use rand::SeedableRng;
use rayon::prelude::*;
use serde_json::json;
use slm_core::{Error, Result};
use slm_data::chat::{ChatTemplate, Message};
use slm_data::tokenizer::Tokenizer;
use slm_infer::{GenerateOptions, SamplerConfig};
use slm_model::Llama;
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::time::Instant;
pub use teacher::{
    continue_prompt, continue_prompt_with, continue_tokens_with, teacher_nll, Stop, TeacherEngine,
};
use templates::TemplateSet;

/// The teacher: a model with its tokenizer. `name` identifies it in the settings file (a
/// resumed run must use the same teacher).
pub struct Teacher<'a> {
    pub model: &'a Llama,
    pub tokenizer: &'a dyn Tokenizer,
    pub name: String,
}

/// Settings of a generation run.
#[derive(Debug, Clone)]
pub struct GenerateConfig {
    /// Kept samples wanted.
    pub n: usize,
    /// Most new tokens per sample.
    pub max_tokens: usize,
    /// Sampling; `seed` is the base seed from which every sample's seed derives.
    pub sampler: SamplerConfig,
    pub stop: Vec<String>,
    pub filters: FilterConfig,
    /// Near-duplicate threshold on estimated Jaccard similarity, in (0, 1].
    pub dedup_threshold: f64,
    /// Word n-gram length of the MinHash shingles.
    pub ngram: usize,
    /// MinHash permutations.
    pub num_perm: usize,
    /// Stop after this many samples generated in all (kept or not); `None`: 10·n + 100.
    pub max_attempts: Option<u64>,
    /// Samples generated in parallel per step (0: 2 per rayon thread).
    pub chunk: usize,
    /// Cut a text that hit the token limit back to its last full sentence.
    pub trim_cut_sentence: bool,
    /// Start again instead of resuming.
    pub overwrite: bool,
    /// Send each filled prompt as a user turn through the teacher's chat template (an
    /// instruction-tuned teacher answers it); `None`: the teacher continues the raw prompt.
    pub chat: Option<ChatPrompt>,
}

/// How prompts reach an instruction-tuned teacher: its chat template, an optional system
/// prompt, and the tokens that end its answer.
#[derive(Debug, Clone)]
pub struct ChatPrompt {
    pub template: ChatTemplate,
    pub system: Option<String>,
    /// End-of-turn ids ([`ChatTemplate::stop_token_ids`]).
    pub stop_tokens: Vec<u32>,
}

impl ChatPrompt {
    /// The rendered conversation [system, user `prompt`] with the opening of the answer.
    pub fn render(&self, prompt: &str) -> Result<String> {
        let mut messages = Vec::with_capacity(2);
        if let Some(s) = &self.system {
            messages.push(Message::system(s.clone()));
        }
        messages.push(Message::user(prompt));
        self.template.render(&messages, true)
    }
}

impl Default for GenerateConfig {
    fn default() -> Self {
        Self {
            n: 100,
            max_tokens: 256,
            sampler: SamplerConfig::default(),
            stop: Vec::new(),
            filters: FilterConfig::default(),
            dedup_threshold: 0.8,
            ngram: 3,
            num_perm: 128,
            max_attempts: None,
            chunk: 0,
            trim_cut_sentence: true,
            overwrite: false,
            chat: None,
        }
    }
}

impl GenerateConfig {
    pub fn validate(&self) -> Result<()> {
        if self.n == 0 {
            return Err(Error::invalid("--n must be at least 1"));
        }
        if self.max_tokens == 0 {
            return Err(Error::invalid("--max-tokens must be at least 1"));
        }
        self.sampler.validate()?;
        self.filters.validate()?;
        dedup::Deduper::new(self.dedup_threshold, self.ngram, self.num_perm)?;
        Ok(())
    }

    /// The attempt limit in force.
    pub fn attempt_limit(&self) -> u64 {
        self.max_attempts.unwrap_or(10 * self.n as u64 + 100)
    }
}

/// A generated sample before judgement.
#[derive(Debug, Clone)]
pub struct Sample {
    pub index: u64,
    pub prompt: String,
    pub text: String,
    pub tokens: usize,
    pub stop: Stop,
    /// The teacher's mean NLL of the generated tokens (`None`: none generated, or a remote
    /// teacher that returned no log-probabilities).
    pub nll: Option<f64>,
    /// Where a remote teacher's sample came from (endpoint, model, settings, seed).
    pub provenance: Option<serde_json::Value>,
    /// A remote teacher's top-k distributions in the student's vocabulary.
    pub topk: Option<remote::TopK>,
}

/// A per-sample seed from the base seed, the sample index and a stream (0: prompt, 1: sampler).
pub fn sample_seed(seed: u64, index: u64, stream: u64) -> u64 {
    mix64(mix64(seed ^ mix64(index)) ^ stream)
}

/// The prompt of sample `index`.
pub fn prompt_for(templates: &TemplateSet, seed: u64, index: u64) -> Result<String> {
    templates.fill(&mut StdRng::seed_from_u64(sample_seed(seed, index, 0)))
}

/// Generates sample `index` (prompt, continuation, teacher NLL). Deterministic in
/// (settings, index).
pub fn generate_sample(
    teacher: &Teacher,
    engine: &TeacherEngine,
    templates: &TemplateSet,
    cfg: &GenerateConfig,
    index: u64,
) -> Result<Sample> {
    let seed = cfg.sampler.seed;
    let prompt = prompt_for(templates, seed, index)?;
    let opts = GenerateOptions {
        max_tokens: cfg.max_tokens,
        sampler: SamplerConfig {
            seed: sample_seed(seed, index, 1),
            ..cfg.sampler.clone()
        },
        stop: cfg.stop.clone(),
        add_bos: true,
        stop_at_eos: true,
        ..Default::default()
    };
    let gen = match &cfg.chat {
        None => engine.continue_prompt(teacher.tokenizer, &prompt, &opts),
        Some(chat) => chat.render(&prompt).and_then(|text| {
            // As transformers: the template writes every special token itself.
            let tokens = teacher.tokenizer.encode(&text, false)?;
            let opts = GenerateOptions {
                stop_tokens: chat.stop_tokens.clone(),
                ..opts
            };
            engine.continue_tokens(teacher.tokenizer, tokens, &opts)
        }),
    }
    .map_err(|e| Error::msg(format!("sample {index} (prompt {prompt:?}): {e}")))?;
    let text = training_text(templates, cfg, &prompt, &gen.text, gen.stop);
    Ok(Sample {
        index,
        prompt,
        text,
        tokens: gen.tokens.len(),
        stop: gen.stop,
        nll: gen.nll,
        provenance: None,
        topk: None,
    })
}

/// The training text of a sample: the continuation cut back to its last sentence when it
/// ran into a limit (unless `trim_cut_sentence` is off), after the prompt when the template
/// set includes it.
fn training_text(
    templates: &TemplateSet,
    cfg: &GenerateConfig,
    prompt: &str,
    text: &str,
    stop: Stop,
) -> String {
    let continuation = match stop {
        Stop::MaxTokens | Stop::ContextFull if cfg.trim_cut_sentence => to_last_sentence_end(text),
        _ => text,
    };
    if templates.file.include_prompt {
        format!("{prompt}{continuation}").trim_end().to_string()
    } else {
        continuation.trim().to_string()
    }
}

/// `text` up to its last sentence end (`.`, `!` or `?`, with closing quotes or brackets
/// after it); all of `text` when it has none.
pub fn to_last_sentence_end(text: &str) -> &str {
    let Some(p) = text.rfind(['.', '!', '?']) else {
        return text;
    };
    let mut end = p + 1;
    for c in text[end..].chars() {
        if matches!(c, '"' | '\'' | ')' | '”' | '’') {
            end += c.len_utf8();
        } else {
            break;
        }
    }
    &text[..end]
}

fn round(x: f64, places: i32) -> f64 {
    let s = 10f64.powi(places);
    (x * s).round() / s
}

/// Where a run stands, after each step.
#[derive(Debug, Clone)]
pub struct Progress {
    /// Kept samples in the file.
    pub kept: usize,
    pub n: usize,
    /// Next sample index (samples generated in all, this run and before).
    pub next_index: u64,
    /// Samples generated by this run.
    pub run_generated: u64,
    /// Tokens generated by this run.
    pub run_tokens: u64,
    /// Rejected in the file, by reason.
    pub rejected: BTreeMap<Reject, usize>,
    pub secs: f64,
}

/// The end of a run.
#[derive(Debug, Clone)]
pub struct Summary {
    pub out: PathBuf,
    pub rejected_out: PathBuf,
    /// Kept samples found on start (resumed), and the index resumed at.
    pub resumed_kept: usize,
    pub resumed_index: u64,
    /// Bytes of a partial last line dropped on resume.
    pub dropped_bytes: usize,
    /// Kept samples in the file now.
    pub kept: usize,
    pub n: usize,
    /// Samples generated, kept and rejected (by reason) by this run.
    pub run_generated: u64,
    pub run_kept: usize,
    pub run_rejected: BTreeMap<Reject, usize>,
    /// Rejected in the file, by reason.
    pub rejected: BTreeMap<Reject, usize>,
    pub run_tokens: u64,
    pub secs: f64,
    /// The run stopped at the attempt limit before reaching n.
    pub hit_attempt_limit: bool,
}

impl Summary {
    pub fn samples_per_sec(&self) -> f64 {
        self.run_generated as f64 / self.secs.max(1e-9)
    }

    /// One line: generated, kept, rejected by reason, tokens, seconds, samples/s.
    pub fn line(&self) -> String {
        let rejected: usize = self.run_rejected.values().sum();
        let reasons = if self.run_rejected.is_empty() {
            String::new()
        } else {
            let r: Vec<String> = self
                .run_rejected
                .iter()
                .map(|(k, v)| format!("{} {v}", k.name()))
                .collect();
            format!(" ({})", r.join(", "))
        };
        let resumed = if self.resumed_kept > 0 || self.resumed_index > 0 {
            format!(
                "; resumed at sample {} with {} kept",
                self.resumed_index, self.resumed_kept
            )
        } else {
            String::new()
        };
        format!(
            "generated {}, kept {}, rejected {rejected}{reasons}; {} tokens in {:.1} s, {:.2} \
             samples/s, {:.0} tokens/s; {} now holds {}/{} kept{resumed}",
            self.run_generated,
            self.run_kept,
            self.run_tokens,
            self.secs,
            self.samples_per_sec(),
            self.run_tokens as f64 / self.secs.max(1e-9),
            self.out.display(),
            self.kept,
            self.n,
        )
    }
}

/// The settings that decide the samples, for `OUT.settings.json`.
pub fn settings_json(
    teacher: &str,
    templates: &TemplateSet,
    cfg: &GenerateConfig,
) -> Result<serde_json::Value> {
    let tpl = serde_json::to_string(&templates.file)?;
    let mut settings = json!({
        "check": {
            "teacher": teacher,
            "templates": format!("{:016x}", dedup::stable_hash(tpl.as_bytes())),
            "seed": cfg.sampler.seed,
            "temperature": cfg.sampler.temperature,
            "top_k": cfg.sampler.top_k,
            "top_p": cfg.sampler.top_p,
            "repetition_penalty": cfg.sampler.repetition_penalty,
            "max_tokens": cfg.max_tokens,
            "stop": cfg.stop,
            "trim_cut_sentence": cfg.trim_cut_sentence,
            "filters": cfg.filters,
            "dedup": {
                "threshold": cfg.dedup_threshold,
                "ngram": cfg.ngram,
                "num_perm": cfg.num_perm,
            },
        },
        "info": {
            "templates": templates.origin,
            "written_by": "slm distill generate",
        },
    });
    // Only chat runs carry the key, so settings files written before it still match.
    if let Some(chat) = &cfg.chat {
        settings["check"]["chat"] = json!({
            "template": format!("{:016x}", dedup::stable_hash(chat.template.source().as_bytes())),
            "system": chat.system,
        });
        settings["info"]["chat_template"] = json!(chat.template.origin());
    }
    Ok(settings)
}

/// Runs (or resumes) generation into `out`, calling `on_progress` after every step.
pub fn run(
    teacher: &Teacher,
    templates: &TemplateSet,
    cfg: &GenerateConfig,
    out: &Path,
    on_progress: &mut dyn FnMut(&Progress),
) -> Result<Summary> {
    cfg.validate()?;
    let settings = settings_json(&teacher.name, templates, cfg)?;
    let engine = TeacherEngine::new(teacher.model)?;
    let chunk = if cfg.chunk == 0 {
        2 * rayon::current_num_threads()
    } else {
        cfg.chunk
    };
    let generate = |range: std::ops::Range<u64>| -> Vec<Result<Sample>> {
        range
            .into_par_iter()
            .map(|i| generate_sample(teacher, &engine, templates, cfg, i))
            .collect()
    };
    run_samples(&settings, cfg, chunk, out, &generate, on_progress)
}

/// As [`run`] with a remote teacher: `concurrency` requests in flight (steps of
/// `cfg.chunk`, default 2 × concurrency, are judged in index order as locally).
pub fn run_remote(
    teacher: &remote::RemoteTeacher,
    templates: &TemplateSet,
    cfg: &GenerateConfig,
    out: &Path,
    on_progress: &mut dyn FnMut(&Progress),
) -> Result<Summary> {
    cfg.validate()?;
    if teacher.concurrency == 0 {
        return Err(Error::invalid("--concurrency must be at least 1"));
    }
    if teacher.top_logprobs > 20 {
        return Err(Error::invalid(format!(
            "--top-logprobs must be 0-20 (the OpenAI API's limit), got {}",
            teacher.top_logprobs
        )));
    }
    if teacher.top_logprobs > 0 && teacher.vocab.is_none() {
        return Err(Error::invalid(
            "--top-logprobs needs the student's tokenizer (--tokenizer) to map the teacher's tokens onto",
        ));
    }
    let mut settings = settings_json(&teacher.identity(), templates, cfg)?;
    settings["check"]["remote"] = json!({
        "chat": teacher.chat,
        "system": teacher.system,
        "top_logprobs": teacher.top_logprobs,
    });
    let chunk = if cfg.chunk == 0 {
        2 * teacher.concurrency
    } else {
        cfg.chunk
    };
    let settings_ref = remote::Settings {
        max_tokens: cfg.max_tokens,
        sampler: &cfg.sampler,
        stop: &cfg.stop,
    };
    let generate = |range: std::ops::Range<u64>| -> Vec<Result<Sample>> {
        let next = std::sync::atomic::AtomicU64::new(range.start);
        let results = std::sync::Mutex::new(BTreeMap::new());
        std::thread::scope(|scope| {
            for _ in 0..teacher.concurrency.min((range.end - range.start) as usize) {
                scope.spawn(|| loop {
                    let i = next.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
                    if i >= range.end {
                        break;
                    }
                    let r = prompt_for(templates, cfg.sampler.seed, i).and_then(|prompt| {
                        let mut s = teacher.sample(&prompt, &settings_ref, i)?;
                        s.text = training_text(templates, cfg, &prompt, &s.text, s.stop);
                        Ok(s)
                    });
                    let failed = r.is_err();
                    results
                        .lock()
                        .unwrap_or_else(|e| e.into_inner())
                        .insert(i, r);
                    if failed {
                        break; // the step fails at its first error; stop asking
                    }
                });
            }
        });
        let mut results = results.into_inner().unwrap_or_else(|e| e.into_inner());
        // In index order, up to the first index that was never asked (after an error).
        (range.start..range.end)
            .map_while(|i| results.remove(&i))
            .collect()
    };
    run_samples(&settings, cfg, chunk, out, &generate, on_progress)
}

/// The judging and writing loop shared by local and remote teachers: `generate` returns
/// the samples of an index range in order (possibly fewer after an error, which ends the
/// run once the samples before it are written).
fn run_samples(
    settings: &serde_json::Value,
    cfg: &GenerateConfig,
    chunk: usize,
    out: &Path,
    generate: &(dyn Fn(std::ops::Range<u64>) -> Vec<Result<Sample>> + Sync),
    on_progress: &mut dyn FnMut(&Progress),
) -> Result<Summary> {
    let (existing, mut writer) = output::open(out, settings, cfg.overwrite)?;
    let mut deduper = dedup::Deduper::new(cfg.dedup_threshold, cfg.ngram, cfg.num_perm)?;
    for r in &existing.kept {
        let keys = deduper.keys(&r.text);
        deduper.insert(r.index, keys);
    }
    let t0 = Instant::now();
    let mut kept = existing.kept.len();
    let mut next = existing.next_index;
    let mut rejected = existing.rejected.clone();
    let mut run_rejected = BTreeMap::new();
    let (mut run_generated, mut run_kept, mut run_tokens) = (0u64, 0usize, 0u64);
    let limit = cfg.attempt_limit();
    let chunk = chunk.max(1) as u64;
    while kept < cfg.n && next < limit {
        let end = (next + chunk).min(limit);
        let samples = generate(next..end);
        let (mut kept_rs, mut rejected_rs) = (Vec::new(), Vec::new());
        let mut failure = None;
        for s in samples {
            if kept >= cfg.n {
                break; // the rest of the step lies past the n-th kept sample
            }
            let s = match s {
                Ok(s) => s,
                Err(e) => {
                    failure = Some(e);
                    break;
                }
            };
            let mut scores = filters::score(&s.text, s.nll);
            let ended = s.stop.ended();
            let mut reject = filters::check(&cfg.filters, &scores, s.tokens, ended);
            let mut duplicate_of = None;
            if reject.is_none() {
                let keys = deduper.keys(&s.text);
                match deduper.check(&keys) {
                    DupCheck::Unique => deduper.insert(s.index, keys),
                    DupCheck::Exact { of } => {
                        reject = Some(Reject::Duplicate);
                        duplicate_of = Some(of);
                        scores.similarity = Some(1.0);
                    }
                    DupCheck::Near { of, similarity } => {
                        reject = Some(Reject::NearDuplicate);
                        duplicate_of = Some(of);
                        scores.similarity = Some(round(similarity, 4));
                    }
                }
            }
            scores.teacher_ppl = scores.teacher_ppl.map(|p| round(p, 4));
            scores.repetition = round(scores.repetition, 4);
            let record = Record {
                index: s.index,
                prompt: s.prompt,
                text: s.text,
                tokens: s.tokens,
                stop: s.stop.name().to_string(),
                scores,
                kept: reject.is_none(),
                reject,
                duplicate_of,
                teacher: s.provenance,
                topk: s.topk,
            };
            run_generated += 1;
            run_tokens += s.tokens as u64;
            next = s.index + 1;
            match reject {
                None => {
                    kept += 1;
                    run_kept += 1;
                    kept_rs.push(record);
                }
                Some(why) => {
                    *rejected.entry(why).or_default() += 1;
                    *run_rejected.entry(why).or_default() += 1;
                    rejected_rs.push(record);
                }
            }
        }
        writer.append(&kept_rs, &rejected_rs)?;
        if let Some(e) = failure {
            return Err(Error::msg(format!(
                "{e} (the {kept} samples kept so far are in {}; run the same command again to \
                 continue)",
                out.display()
            )));
        }
        on_progress(&Progress {
            kept,
            n: cfg.n,
            next_index: next,
            run_generated,
            run_tokens,
            rejected: rejected.clone(),
            secs: t0.elapsed().as_secs_f64(),
        });
    }
    Ok(Summary {
        out: out.to_path_buf(),
        rejected_out: output::rejected_path(out),
        resumed_kept: existing.kept.len(),
        resumed_index: existing.next_index,
        dropped_bytes: existing.dropped_bytes,
        kept,
        n: cfg.n,
        run_generated,
        run_kept,
        run_rejected,
        rejected,
        run_tokens,
        secs: t0.elapsed().as_secs_f64(),
        hit_attempt_limit: kept < cfg.n,
    })
}
