//! Task evaluation as lm-evaluation-harness scores it (`slm eval --tasks`).
//!
//! - [`data`]: reading JSON Lines / CSV / TSV documents with their file and line.
//! - [`task`]: the task model (items, subtasks, few-shot context building).
//! - [`builtin`]: ARC, BoolQ, COPA, WinoGrande, OpenBookQA, LAMBADA (OpenAI), MMLU, GSM8K.
//! - [`taskfile`]: a user's multiple-choice task from a JSONL file and a small TOML.
//! - [`fewshot`]: Python's `random.Random(seed).sample`, for the harness's example draws.
//! - [`protocol`]: `loglikelihood` and greedy generation on the decode engine, KV cache shared.
//! - [`metrics`]: acc, acc_norm, mean_stderr, perplexity, GSM8K filters.
//! - this file: running a task over a model and the report (table, JSON, per-question JSONL).
//!
//! The protocol, the splits and where they differ from the harness: docs/EVALUATION.md.

pub mod builtin;
pub mod data;
pub mod fewshot;
pub mod metrics;
pub mod protocol;
pub mod task;
pub mod taskfile;

pub use builtin::{builtin, BUILTIN};
pub use protocol::{encode_pair, Session};
pub use task::{Item, Prepared, Sampler, Scoring, Subtask, Task};
pub use taskfile::load_task_file;

use metrics::{argmax_f64, gsm8k_flexible, gsm8k_normalise, gsm8k_strict, mean_stderr, pred_norm};
use serde_json::{json, Value};
use slm_core::{Error, Result};
use slm_data::tokenizer::Tokenizer;
use slm_infer::decode::Decoder;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Instant;

/// The harness's default few-shot seed.
pub const FEWSHOT_SEED: u64 = 1234;

/// How a task is run.
#[derive(Debug, Clone)]
pub struct TaskOptions {
    /// Few-shot examples (None: the task's default, 0 except GSM8K's 5).
    pub num_fewshot: Option<usize>,
    /// First N documents of each subtask.
    pub limit: Option<usize>,
    /// Only documents in this range of each subtask (a held-out part of a split that was
    /// partly trained on); `limit` then counts within it.
    pub rows: Option<std::ops::Range<usize>>,
    /// Documents scored at once, each on its own KV cache (1: one cache for all).
    pub batch: usize,
    pub seed: u64,
    /// Prepend BOS (the harness's HFLM does not by default).
    pub add_bos: bool,
    /// Tokens GSM8K may generate.
    pub max_gen_tokens: usize,
}

impl Default for TaskOptions {
    fn default() -> Self {
        Self {
            num_fewshot: None,
            limit: None,
            rows: None,
            batch: 1,
            seed: FEWSHOT_SEED,
            add_bos: false,
            max_gen_tokens: 256,
        }
    }
}

/// One reported figure.
#[derive(Debug, Clone, PartialEq)]
pub struct Metric {
    pub name: String,
    pub value: f64,
    pub stderr: Option<f64>,
}

/// A task's figures and its per-question records.
#[derive(Debug, Clone)]
pub struct TaskReport {
    pub task: String,
    pub num_fewshot: usize,
    pub n: usize,
    pub seconds: f64,
    pub metrics: Vec<Metric>,
    pub note: String,
    /// One JSON object per document (log-likelihoods, prediction, gold; or generation).
    pub records: Vec<Value>,
}

/// What scoring one document gives.
#[derive(Debug, Clone)]
enum Outcome {
    Lls { lls: Vec<f64>, greedy: Vec<bool> },
    Generated { ids: Vec<u32>, text: String },
}

/// Writes `(prompt, completion)` pairs as JSONL rows `{"prompt": .., "completion": ..}`
/// (what `slm finetune` reads), atomically; an existing file is kept unless `force`.
/// Returns the number of rows.
pub fn write_training_pairs(
    path: &std::path::Path,
    pairs: &[(String, String)],
    force: bool,
) -> Result<usize> {
    if path.exists() && !force {
        return Err(Error::invalid(format!(
            "{} exists; pass --force to replace it",
            path.display()
        )));
    }
    let mut text = String::new();
    for (prompt, completion) in pairs {
        text += &serde_json::json!({"prompt": prompt, "completion": completion}).to_string();
        text.push('\n');
    }
    slm_io::atomic::write_atomic(path, text.as_bytes())?;
    Ok(pairs.len())
}

/// Runs `task` on the model: builds every document's context, scores them (`progress(done,
/// total)` after each document) and aggregates the harness's metrics.
pub fn run_task(
    dec: &Decoder,
    tok: &dyn Tokenizer,
    task: &Task,
    opts: &TaskOptions,
    progress: &(dyn Fn(usize, usize) + Sync),
) -> Result<TaskReport> {
    let t0 = Instant::now();
    let k = opts.num_fewshot.unwrap_or(task.default_fewshot);
    let prepared = task.prepare(k, opts.limit, opts.rows.as_ref(), opts.seed)?;
    if prepared.is_empty() {
        return Err(Error::invalid(format!(
            "task `{}` has no documents",
            task.name
        )));
    }
    let total = prepared.len();
    let done = AtomicUsize::new(0);
    let stop_ids: Vec<u32> = tok
        .eos_id()
        .into_iter()
        .chain(
            ["<|im_end|>", "</s>"]
                .iter()
                .filter_map(|p| tok.token_to_id(p)),
        )
        .collect();
    let score_chunk = |chunk: &[Prepared]| -> Result<Vec<Outcome>> {
        let mut sess = Session::new(dec);
        let mut out = Vec::with_capacity(chunk.len());
        for p in chunk {
            let o = match &p.item {
                Item::Generate { context, .. } => {
                    let ids = encode_nonempty(tok, context, opts.add_bos)?;
                    let (ids, text) = sess.generate(
                        dec,
                        tok,
                        &ids,
                        opts.max_gen_tokens,
                        &stop_ids,
                        &["Question:", "</s>", "<|im_end|>"],
                    )?;
                    Outcome::Generated { ids, text }
                }
                item => {
                    let pairs = item
                        .requests(&task.target_delimiter)
                        .iter()
                        .map(|(c, x)| encode_pair(tok, c, x, opts.add_bos))
                        .collect::<Result<Vec<_>>>()?;
                    // One context for every choice: scored together; else one by one.
                    let shared = pairs.len() > 1 && pairs.iter().all(|(c, _)| *c == pairs[0].0);
                    let scored = if shared {
                        let conts: Vec<Vec<u32>> = pairs.iter().map(|(_, x)| x.clone()).collect();
                        sess.choice_loglikelihoods(dec, &pairs[0].0, &conts)?
                    } else {
                        pairs
                            .iter()
                            .map(|(c, x)| sess.loglikelihood(dec, c, x))
                            .collect::<Result<Vec<_>>>()?
                    };
                    let (lls, greedy) = scored.into_iter().unzip();
                    Outcome::Lls { lls, greedy }
                }
            };
            out.push(o);
            progress(done.fetch_add(1, Ordering::Relaxed) + 1, total);
        }
        Ok(out)
    };
    let outcomes: Vec<Outcome> = if opts.batch <= 1 {
        score_chunk(&prepared)?
    } else {
        use rayon::prelude::*;
        let per = total.div_ceil(opts.batch);
        let parts: Vec<Vec<Outcome>> = prepared
            .par_chunks(per)
            .map(score_chunk)
            .collect::<Result<_>>()?;
        parts.into_iter().flatten().collect()
    };
    let (metrics, records) = aggregate(task, &prepared, &outcomes)?;
    Ok(TaskReport {
        task: task.name.clone(),
        num_fewshot: k,
        n: total,
        seconds: t0.elapsed().as_secs_f64(),
        metrics,
        note: task.note.clone(),
        records,
    })
}

fn encode_nonempty(tok: &dyn Tokenizer, text: &str, add_bos: bool) -> Result<Vec<u32>> {
    let ids = tok.encode(text, add_bos)?;
    if ids.is_empty() {
        return Err(Error::invalid("an empty generation context"));
    }
    Ok(ids)
}

fn metric(name: &str, xs: &[f64]) -> Metric {
    let (value, stderr) = mean_stderr(xs);
    Metric {
        name: name.into(),
        value,
        stderr,
    }
}

fn aggregate(
    task: &Task,
    prepared: &[Prepared],
    outcomes: &[Outcome],
) -> Result<(Vec<Metric>, Vec<Value>)> {
    let mut records = Vec::with_capacity(prepared.len());
    let (mut acc, mut acc_norm, mut lls_all, mut strict, mut flex) =
        (Vec::new(), Vec::new(), Vec::new(), Vec::new(), Vec::new());
    for (p, o) in prepared.iter().zip(outcomes) {
        let mut rec = json!({"task": task.name, "subtask": p.subtask, "doc": p.doc});
        match (&p.item, o) {
            (Item::Choice { choices, gold, .. }, Outcome::Lls { lls, .. }) => {
                let pred = argmax_f64(lls);
                let pn = pred_norm(lls, choices);
                acc.push(f64::from(u8::from(pred == *gold)));
                acc_norm.push(f64::from(u8::from(pn == *gold)));
                rec["lls"] = json!(lls);
                rec["gold"] = json!(gold);
                rec["pred"] = json!(pred);
                rec["pred_norm"] = json!(pn);
            }
            (Item::Inputs { gold, .. }, Outcome::Lls { lls, .. }) => {
                let pred = argmax_f64(lls);
                acc.push(f64::from(u8::from(pred == *gold)));
                rec["lls"] = json!(lls);
                rec["gold"] = json!(gold);
                rec["pred"] = json!(pred);
            }
            (Item::Cloze { target, .. }, Outcome::Lls { lls, greedy }) => {
                lls_all.push(lls[0]);
                acc.push(f64::from(u8::from(greedy[0])));
                rec["target"] = json!(target);
                rec["ll"] = json!(lls[0]);
                rec["greedy"] = json!(greedy[0]);
            }
            (Item::Generate { answer, .. }, Outcome::Generated { ids, text }) => {
                let gold = gsm8k_normalise(answer);
                let (s, f) = (gsm8k_strict(text), gsm8k_flexible(text));
                strict.push(f64::from(u8::from(gsm8k_normalise(&s) == gold)));
                flex.push(f64::from(u8::from(gsm8k_normalise(&f) == gold)));
                rec["generated"] = json!(text);
                rec["generated_ids"] = json!(ids);
                rec["strict"] = json!(s);
                rec["flexible"] = json!(f);
                rec["gold"] = json!(gold);
            }
            _ => return Err(Error::msg("an outcome that does not fit its item")),
        }
        records.push(rec);
    }
    let metrics = match task.scoring {
        Scoring::MultipleChoice { norm } => {
            let mut m = vec![metric("acc", &acc)];
            if norm {
                m.push(metric("acc_norm", &acc_norm));
            }
            m
        }
        Scoring::MultipleInput => vec![metric("acc", &acc)],
        Scoring::Cloze => {
            let (mean_ll, se) = mean_stderr(&lls_all);
            let ppl = (-mean_ll).exp();
            vec![
                // stderr by the delta method (the harness bootstraps it)
                Metric {
                    name: "perplexity".into(),
                    value: ppl,
                    stderr: se.map(|s| ppl * s),
                },
                metric("acc", &acc),
            ]
        }
        Scoring::Gsm8k => vec![
            metric("exact_match,strict-match", &strict),
            metric("exact_match,flexible-extract", &flex),
        ],
    };
    Ok((metrics, records))
}

impl TaskReport {
    /// The report as one JSON object (records left out).
    pub fn to_json(&self) -> Value {
        json!({
            "task": self.task,
            "num_fewshot": self.num_fewshot,
            "n": self.n,
            "seconds": self.seconds,
            "note": self.note,
            "metrics": self.metrics.iter().map(|m| json!({
                "metric": m.name, "value": m.value, "stderr": m.stderr,
            })).collect::<Vec<_>>(),
        })
    }
}

/// The reports as a table: task, metric, value, stderr, n, seconds.
pub fn format_table(reports: &[TaskReport]) -> String {
    let mut s = format!(
        "{:<16} {:>6} {:<30} {:>9} {:>8} {:>6} {:>8}\n",
        "task", "shots", "metric", "value", "stderr", "n", "seconds"
    );
    for r in reports {
        for (i, m) in r.metrics.iter().enumerate() {
            let se = m.stderr.map_or("-".to_string(), |e| format!("{e:.4}"));
            let (task, n, secs) = if i == 0 {
                (r.task.clone(), r.n.to_string(), format!("{:.1}", r.seconds))
            } else {
                (String::new(), String::new(), String::new())
            };
            let shots = if i == 0 {
                r.num_fewshot.to_string()
            } else {
                String::new()
            };
            s += &format!(
                "{task:<16} {shots:>6} {:<30} {:>9.4} {se:>8} {n:>6} {secs:>8}\n",
                m.name, m.value
            );
        }
    }
    s
}

/// Writes `DIR/<task>.jsonl`, one line per document.
pub fn write_records(dir: &std::path::Path, report: &TaskReport) -> Result<std::path::PathBuf> {
    std::fs::create_dir_all(dir).map_err(|e| Error::io(dir, e))?;
    let path = dir.join(format!("{}.jsonl", report.task.replace(':', "_")));
    let mut text = String::new();
    for r in &report.records {
        text += &r.to_string();
        text.push('\n');
    }
    std::fs::write(&path, text).map_err(|e| Error::io(&path, e))?;
    Ok(path)
}
