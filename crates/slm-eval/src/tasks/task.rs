//! What a task is once its files are read: subtasks of documents, each document turned into
//! an [`Item`] (the harness's `doc_to_text` / `doc_to_choice` / `doc_to_target`), the few-shot
//! pool and sampler, and the building of each document's context (description + examples +
//! prompt) exactly as lm-evaluation-harness's `fewshot_context` writes it.

use super::data::Doc;
use super::fewshot::PyRandom;
use slm_core::Result;
use std::ops::Range;

/// What one document asks of the model, before any few-shot prefix.
#[derive(Debug, Clone, PartialEq)]
pub enum Item {
    /// One context, several continuations `delimiter + choice` (ARC, BoolQ, COPA, MMLU...).
    Choice {
        context: String,
        choices: Vec<String>,
        gold: usize,
    },
    /// Several contexts (the prompt with each option filled in), one continuation
    /// `delimiter + target` (WinoGrande's partial evaluation).
    Inputs {
        contexts: Vec<String>,
        target: String,
        gold: usize,
    },
    /// The log-likelihood of `target` after `context`, no delimiter (LAMBADA).
    Cloze { context: String, target: String },
    /// Greedy generation after `context`; `answer` is the reference (GSM8K).
    Generate { context: String, answer: String },
}

impl Item {
    /// The document written as a solved few-shot example (the harness's sampler:
    /// `doc_to_text + target_delimiter + target`).
    pub fn example(&self, delim: &str) -> String {
        match self {
            Item::Choice {
                context,
                choices,
                gold,
            } => format!("{context}{delim}{}", choices[*gold]),
            Item::Inputs {
                contexts,
                target,
                gold,
            } => format!("{}{delim}{target}", contexts[*gold]),
            Item::Cloze { context, target } => format!("{context}{delim}{target}"),
            Item::Generate { context, answer } => format!("{context}{delim}{answer}"),
        }
    }

    /// The document solved, as a training pair `(prompt, completion)`: the context and the
    /// gold continuation exactly as the harness scores it (delimiter included), so a model
    /// fine-tuned on these pairs is trained on what the task asks.
    pub fn solved(&self, delim: &str) -> (String, String) {
        match self {
            Item::Choice {
                context,
                choices,
                gold,
            } => (context.clone(), format!("{delim}{}", choices[*gold])),
            Item::Inputs {
                contexts,
                target,
                gold,
            } => (contexts[*gold].clone(), format!("{delim}{target}")),
            Item::Cloze { context, target } => (context.clone(), target.clone()),
            Item::Generate { context, answer } => (context.clone(), format!("{delim}{answer}")),
        }
    }

    /// The item with `prefix` (description and examples) before every context.
    pub fn with_prefix(self, prefix: &str) -> Item {
        if prefix.is_empty() {
            return self;
        }
        let p = |s: String| format!("{prefix}{s}");
        match self {
            Item::Choice {
                context,
                choices,
                gold,
            } => Item::Choice {
                context: p(context),
                choices,
                gold,
            },
            Item::Inputs {
                contexts,
                target,
                gold,
            } => Item::Inputs {
                contexts: contexts.into_iter().map(p).collect(),
                target,
                gold,
            },
            Item::Cloze { context, target } => Item::Cloze {
                context: p(context),
                target,
            },
            Item::Generate { context, answer } => Item::Generate {
                context: p(context),
                answer,
            },
        }
    }

    /// `(context, continuation)` log-likelihood requests (none for generation).
    pub fn requests(&self, delim: &str) -> Vec<(String, String)> {
        match self {
            Item::Choice {
                context, choices, ..
            } => choices
                .iter()
                .map(|c| (context.clone(), format!("{delim}{c}")))
                .collect(),
            Item::Inputs {
                contexts, target, ..
            } => contexts
                .iter()
                .map(|c| (c.clone(), format!("{delim}{target}")))
                .collect(),
            Item::Cloze { context, target } => vec![(context.clone(), target.clone())],
            Item::Generate { .. } => Vec::new(),
        }
    }
}

/// How few-shot examples are drawn from the pool.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Sampler {
    /// `rnd.sample(pool, k)` with the task's seeded generator (the harness's default).
    Random,
    /// The first k of the pool in order (the harness's `first_n`, MMLU).
    FirstN,
}

/// Converts a document into its item (the task's `doc_to_*` functions).
pub type ToItem = dyn Fn(&Doc) -> Result<Item> + Send + Sync;

/// A set of documents scored under one description and few-shot pool (one MMLU subject, or
/// the whole of any other task).
pub struct Subtask {
    pub name: String,
    pub docs: Vec<Doc>,
    /// Where few-shot examples come from; `None`: the evaluated documents themselves (then
    /// k + 1 are drawn and the document itself is dropped, as the harness does when the
    /// few-shot split is the evaluated one).
    pub pool: Option<Vec<Doc>>,
    /// Text before the examples (MMLU's "The following are multiple choice questions...").
    pub description: String,
}

/// How a task is scored and reported.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Scoring {
    /// acc (and acc_norm when `norm`) from the choices' log-likelihoods.
    MultipleChoice { norm: bool },
    /// acc of the contexts' log-likelihoods (WinoGrande).
    MultipleInput,
    /// Perplexity and greedy accuracy of the target (LAMBADA).
    Cloze,
    /// Exact match of extracted numbers, strict and flexible (GSM8K).
    Gsm8k,
}

/// A task ready to run.
pub struct Task {
    pub name: String,
    pub subtasks: Vec<Subtask>,
    pub to_item: Box<ToItem>,
    pub scoring: Scoring,
    pub sampler: Sampler,
    pub default_fewshot: usize,
    pub target_delimiter: String,
    pub fewshot_delimiter: String,
    /// Where the documents and the few-shot pool come from and how they differ from the
    /// harness's splits, for the report.
    pub note: String,
}

/// One document to score: where it is and its item with the few-shot prefix in place.
#[derive(Debug, Clone, PartialEq)]
pub struct Prepared {
    pub subtask: String,
    /// Index within its subtask.
    pub doc: usize,
    pub item: Item,
}

impl Task {
    /// Items of the first `limit` documents of every subtask (the harness's `--limit` applies
    /// to each subtask), with `k` few-shot examples drawn by a generator seeded with `seed`
    /// (one per subtask, advanced document by document as the harness does). With `rows`,
    /// only documents `rows` of each subtask count (a held-out part; `limit` then takes the
    /// first of those); documents keep their index in the report.
    pub fn prepare(
        &self,
        k: usize,
        limit: Option<usize>,
        rows: Option<&Range<usize>>,
        seed: u64,
    ) -> Result<Vec<Prepared>> {
        let mut out = Vec::new();
        for sub in &self.subtasks {
            let mut rnd = PyRandom::new(seed);
            let n = limit.unwrap_or(usize::MAX).min(sub.docs.len());
            let kept = |i: usize| rows.is_none_or(|r| r.contains(&i));
            let mut taken = 0;
            let pool: &[Doc] = sub.pool.as_deref().unwrap_or(&sub.docs);
            let same = sub.pool.is_none();
            // FirstN examples are the same for every document.
            let first_n = match self.sampler {
                Sampler::FirstN if k > 0 => {
                    Some(self.examples(pool, &(0..k.min(pool.len())).collect::<Vec<_>>())?)
                }
                _ => None,
            };
            for (i, doc) in sub.docs.iter().enumerate() {
                if taken == n {
                    break;
                }
                if !kept(i) {
                    continue;
                }
                taken += 1;
                let shots = match &first_n {
                    Some(s) => s.clone(),
                    None if k == 0 => String::new(),
                    None => {
                        let draw = rnd.sample(pool.len(), if same { k + 1 } else { k });
                        let picked: Vec<usize> = draw
                            .into_iter()
                            .filter(|&j| !(same && j == i))
                            .take(k)
                            .collect();
                        self.examples(pool, &picked)?
                    }
                };
                let prefix = format!("{}{shots}", sub.description);
                out.push(Prepared {
                    subtask: sub.name.clone(),
                    doc: i,
                    item: (self.to_item)(doc)?.with_prefix(&prefix),
                });
            }
        }
        Ok(out)
    }

    /// Documents `rows` of every subtask solved, as `(prompt, completion)` training pairs
    /// (see [`Item::solved`]); no few-shot prefix. Refuses a range that selects nothing.
    pub fn training_pairs(&self, rows: Option<&Range<usize>>) -> Result<Vec<(String, String)>> {
        let mut out = Vec::new();
        for sub in &self.subtasks {
            for (i, doc) in sub.docs.iter().enumerate() {
                if rows.is_none_or(|r| r.contains(&i)) {
                    out.push((self.to_item)(doc)?.solved(&self.target_delimiter));
                }
            }
        }
        if out.is_empty() {
            return Err(slm_core::Error::invalid(format!(
                "task `{}` has no documents in rows {rows:?}",
                self.name
            )));
        }
        Ok(out)
    }

    fn examples(&self, pool: &[Doc], picked: &[usize]) -> Result<String> {
        let mut s = String::new();
        for &j in picked {
            s += &(self.to_item)(&pool[j])?.example(&self.target_delimiter);
            s += &self.fewshot_delimiter;
        }
        Ok(s)
    }

    /// Documents over all subtasks.
    pub fn len(&self) -> usize {
        self.subtasks.iter().map(|s| s.docs.len()).sum()
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}
