//! Agreement with a teacher: how closely a student's next-token distributions follow the
//! teacher's on the same text (the distillation issue's evaluation).
//!
//! Over the scored positions of the perplexity windows ([`crate::PplOptions`]), both models
//! see the same tokens and we report
//! - **top-1 agreement**: the share of positions where the argmax tokens are equal;
//! - **KL(teacher ‖ student)** in nats per token, `Σ p_t (log p_t − log p_s)` in f64, the
//!   forward KL that distillation minimises;
//! - both perplexities on those positions.

use crate::ppl::{plan_windows, PplOptions};
use slm_core::{Error, Result};
use slm_data::tokenizer::Tokenizer;
use slm_model::Llama;

#[derive(Debug, Clone, PartialEq, serde::Serialize)]
pub struct AgreementReport {
    /// Positions compared.
    pub tokens: usize,
    /// Share of positions where student and teacher put their highest logit on one token.
    pub top1_agreement: f64,
    /// Mean KL(teacher ‖ student), nats per token.
    pub kl_to_teacher: f64,
    pub student_ppl: f64,
    pub teacher_ppl: f64,
}

/// log-softmax of one row in f64.
fn log_softmax(row: &[f32], out: &mut [f64]) {
    let max = row.iter().copied().fold(f32::NEG_INFINITY, f32::max) as f64;
    let lse = row
        .iter()
        .map(|&x| (x as f64 - max).exp())
        .sum::<f64>()
        .ln()
        + max;
    for (o, &x) in out.iter_mut().zip(row) {
        *o = x as f64 - lse;
    }
}

fn argmax(row: &[f32]) -> usize {
    row.iter()
        .enumerate()
        .fold((0, f32::NEG_INFINITY), |best, (i, &x)| {
            if x > best.1 {
                (i, x)
            } else {
                best
            }
        })
        .0
}

/// Compares `student` with `teacher` on `text` (tokenised with the shared `tokenizer`);
/// `progress(done, total)` after each window.
pub fn teacher_agreement(
    student: &Llama,
    teacher: &Llama,
    tokenizer: &dyn Tokenizer,
    text: &str,
    opts: &PplOptions,
    progress: &mut dyn FnMut(usize, usize),
) -> Result<AgreementReport> {
    let v = student.config.vocab_size;
    if teacher.config.vocab_size != v {
        return Err(Error::invalid(format!(
            "the teacher has a vocabulary of {} tokens, the student {v}: agreement needs one vocabulary",
            teacher.config.vocab_size
        )));
    }
    let ctx_limit = student
        .config
        .max_position_embeddings
        .min(teacher.config.max_position_embeddings);
    let (windows, _) = plan_windows(ctx_limit, tokenizer, text, opts)?;
    let mut s_fast = slm_model::FlatModel::from_llama(student)?;
    let mut t_fast = slm_model::FlatModel::from_llama(teacher)?;
    let (mut agree, mut count) = (0usize, 0usize);
    let (mut kl, mut s_nll, mut t_nll) = (0.0f64, 0.0f64, 0.0f64);
    let (mut lp_s, mut lp_t) = (vec![0f64; v], vec![0f64; v]);
    for (wi, w) in windows.iter().enumerate() {
        if w.tokens.len() < 2 {
            continue;
        }
        let n = w.tokens.len();
        let s_logits = s_fast.logits(&w.tokens, 1, n)?; // [n, v]
        let t_logits = t_fast.logits(&w.tokens, 1, n)?; // [n, v]
        for i in w.score_from.max(1)..n {
            let (s_row, t_row) = (&s_logits[(i - 1) * v..i * v], &t_logits[(i - 1) * v..i * v]);
            agree += usize::from(argmax(s_row) == argmax(t_row));
            log_softmax(s_row, &mut lp_s);
            log_softmax(t_row, &mut lp_t);
            kl += lp_t
                .iter()
                .zip(&lp_s)
                .map(|(&t, &s)| t.exp() * (t - s))
                .sum::<f64>();
            // NLLs from the log-softmaxes already computed for the KL.
            let target = w.tokens[i] as usize;
            let (Some(&ls), Some(&lt)) = (lp_s.get(target), lp_t.get(target)) else {
                return Err(Error::invalid(format!(
                    "token {target} outside the vocabulary of {v}"
                )));
            };
            s_nll -= ls;
            t_nll -= lt;
            count += 1;
        }
        progress(wi + 1, windows.len());
    }
    let c = count.max(1) as f64;
    Ok(AgreementReport {
        tokens: count,
        top1_agreement: agree as f64 / c,
        kl_to_teacher: kl / c,
        student_ppl: (s_nll / c).exp(),
        teacher_ppl: (t_nll / c).exp(),
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use slm_data::tokenizer::train::{save, train_chars};
    use slm_data::tokenizer::HfTokenizer;

    fn model(seed: u64) -> Llama {
        let mut c = slm_model::preset("260k").unwrap();
        c.vocab_size = 40;
        c.num_hidden_layers = 2;
        c.max_position_embeddings = 64;
        // Untied: with tied embeddings two random models both predict the current token.
        c.tie_word_embeddings = false;
        Llama::random(c, seed, &candle_core::Device::Cpu).unwrap()
    }

    #[test]
    fn a_model_agrees_with_itself_and_not_with_another() {
        let text = "the cat sat on the mat. the dog ran to the park and back again.";
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("tokenizer.json");
        save(&train_chars([text].iter(), &[]).unwrap(), &path).unwrap();
        let tok = HfTokenizer::from_file(&path).unwrap();
        let opts = PplOptions {
            add_bos: false,
            ..Default::default()
        };
        let (a, b) = (model(1), model(2));
        let same = teacher_agreement(&a, &a, &tok, text, &opts, &mut |_, _| {}).unwrap();
        assert_eq!(same.top1_agreement, 1.0);
        assert!(same.kl_to_teacher.abs() < 1e-9, "{same:?}");
        assert!((same.student_ppl - same.teacher_ppl).abs() < 1e-9);
        let ppl = crate::perplexity(&a, &tok, text, &opts, &mut |_, _| {}).unwrap();
        assert!((same.student_ppl - ppl.ppl).abs() < 1e-6 * ppl.ppl);
        let other = teacher_agreement(&b, &a, &tok, text, &opts, &mut |_, _| {}).unwrap();
        assert!(other.kl_to_teacher > 1e-4, "{other:?}");
        assert!(other.top1_agreement < 1.0);
        assert_eq!(other.tokens, same.tokens);
    }
}
