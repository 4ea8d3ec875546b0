//! Quality filters for teacher-written text: length in words, repetition, teacher perplexity.
//!
//! - `words`: words in the training text (whitespace-separated).
//! - `repetition`: the share of word 3-grams that repeat an earlier 3-gram of the same text
//!   (0 = none repeats; a model stuck in a loop approaches 1). Natural children's stories sit
//!   around 0.0–0.1 ("once upon a time", "she said").
//! - `teacher_ppl`: exp of the teacher's mean negative log-likelihood of the tokens it
//!   generated, at temperature 1 and given the prompt. Very low: degenerate, repetitive text;
//!   very high: text the teacher itself finds unlikely (sampling noise, broken words).

use serde::{Deserialize, Serialize};
use slm_core::{Error, Result};
use std::collections::HashSet;

/// The word n-gram length of the repetition score.
pub const REPETITION_NGRAM: usize = 3;

/// Scores of one sample, written with it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Scores {
    /// Teacher perplexity of the generated tokens; `None` when none were generated.
    pub teacher_ppl: Option<f64>,
    pub repetition: f64,
    pub words: usize,
    /// Estimated Jaccard similarity with the kept sample it duplicates (rejected duplicates).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub similarity: Option<f64>,
}

/// Bounds a kept sample must meet.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct FilterConfig {
    pub min_words: usize,
    /// `None`: no upper bound.
    pub max_words: Option<usize>,
    /// Reject when `repetition` is above this (1.0: off).
    pub max_repetition: f64,
    pub min_teacher_ppl: Option<f64>,
    pub max_teacher_ppl: Option<f64>,
    /// Reject samples cut off at the token limit (no end-of-text from the teacher).
    pub require_end: bool,
}

impl Default for FilterConfig {
    fn default() -> Self {
        Self {
            min_words: 20,
            max_words: None,
            max_repetition: 0.3,
            min_teacher_ppl: None,
            max_teacher_ppl: None,
            require_end: false,
        }
    }
}

impl FilterConfig {
    pub fn validate(&self) -> Result<()> {
        if let Some(max) = self.max_words {
            if max < self.min_words {
                return Err(Error::invalid(format!(
                    "--max-words {max} is below --min-words {}",
                    self.min_words
                )));
            }
        }
        if !(0.0..=1.0).contains(&self.max_repetition) {
            return Err(Error::invalid(format!(
                "--max-repetition must be in [0, 1], got {}",
                self.max_repetition
            )));
        }
        if let (Some(lo), Some(hi)) = (self.min_teacher_ppl, self.max_teacher_ppl) {
            if lo > hi {
                return Err(Error::invalid(format!(
                    "--min-teacher-ppl {lo} is above --max-teacher-ppl {hi}"
                )));
            }
        }
        for (name, v) in [
            ("--min-teacher-ppl", self.min_teacher_ppl),
            ("--max-teacher-ppl", self.max_teacher_ppl),
        ] {
            if let Some(v) = v {
                if !(v.is_finite() && v >= 1.0) {
                    return Err(Error::invalid(format!(
                        "{name} must be a number ≥ 1 (a perplexity), got {v}"
                    )));
                }
            }
        }
        Ok(())
    }
}

/// Why a sample was not kept.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Reject {
    /// The teacher ended at once: no tokens.
    Empty,
    TooShort,
    TooLong,
    Repetitive,
    LowPpl,
    HighPpl,
    Truncated,
    Duplicate,
    NearDuplicate,
}

impl Reject {
    pub fn name(self) -> &'static str {
        match self {
            Reject::Empty => "empty",
            Reject::TooShort => "too_short",
            Reject::TooLong => "too_long",
            Reject::Repetitive => "repetitive",
            Reject::LowPpl => "low_ppl",
            Reject::HighPpl => "high_ppl",
            Reject::Truncated => "truncated",
            Reject::Duplicate => "duplicate",
            Reject::NearDuplicate => "near_duplicate",
        }
    }
}

/// The share of word n-grams that repeat an earlier n-gram of the same text.
pub fn repetition_ratio(text: &str, n: usize) -> f64 {
    let w: Vec<&str> = text.split_whitespace().collect();
    if w.len() < n || n == 0 {
        return 0.0;
    }
    let grams: Vec<String> = w.windows(n).map(|g| g.join(" ").to_lowercase()).collect();
    let distinct: HashSet<&String> = grams.iter().collect();
    (grams.len() - distinct.len()) as f64 / grams.len() as f64
}

/// Scores `text` (the training text); `nll` is the teacher's mean NLL of the generated
/// tokens, `None` when none were generated.
pub fn score(text: &str, nll: Option<f64>) -> Scores {
    Scores {
        teacher_ppl: nll.map(f64::exp),
        repetition: repetition_ratio(text, REPETITION_NGRAM),
        words: text.split_whitespace().count(),
        similarity: None,
    }
}

/// The first filter a sample fails, in a fixed order; `ended` says whether the teacher
/// stopped by itself (end-of-text or a stop string) rather than at the token limit.
pub fn check(
    cfg: &FilterConfig,
    s: &Scores,
    generated_tokens: usize,
    ended: bool,
) -> Option<Reject> {
    if generated_tokens == 0 {
        return Some(Reject::Empty);
    }
    if s.words < cfg.min_words {
        return Some(Reject::TooShort);
    }
    if cfg.max_words.is_some_and(|m| s.words > m) {
        return Some(Reject::TooLong);
    }
    if s.repetition > cfg.max_repetition {
        return Some(Reject::Repetitive);
    }
    if let Some(ppl) = s.teacher_ppl {
        if cfg.min_teacher_ppl.is_some_and(|lo| ppl < lo) {
            return Some(Reject::LowPpl);
        }
        if cfg.max_teacher_ppl.is_some_and(|hi| ppl > hi) {
            return Some(Reject::HighPpl);
        }
    }
    if cfg.require_end && !ended {
        return Some(Reject::Truncated);
    }
    None
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn repetition_of_loops_and_prose() {
        assert_eq!(repetition_ratio("a b c d e f", 3), 0.0);
        let looped = "and they played ".repeat(10);
        assert!(repetition_ratio(&looped, 3) > 0.8);
        assert_eq!(repetition_ratio("too short", 3), 0.0);
    }
}
