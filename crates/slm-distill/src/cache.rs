//! `slm distill cache`: runs a teacher once over every training window of a token shard and
//! stores its top-k log-probabilities per position (format: `slm_data::kd_cache`), so
//! offline distillation trains without the teacher in memory or on the clock.

use crate::teacher::Teacher;
use rayon::prelude::*;
use slm_core::{Error, Result};
use slm_data::batches::BatchStream;
use slm_data::kd_cache::{KdCacheHeader, KdCacheWriter};
use slm_data::shards::Shard;
use std::path::Path;

/// Windows the teacher scores per forward pass.
const WINDOWS_PER_PASS: usize = 8;

/// The top-k of one row of logits: ids best first, their log-probabilities, and the mass of
/// the rest (computed from the rest itself, not as 1 − Σ, so a tiny tail stays accurate).
pub fn top_k_row(logits: &[f32], k: usize, ids: &mut [u32], logp: &mut [f32]) -> f32 {
    let m = logits.iter().fold(f32::NEG_INFINITY, |a, &b| a.max(b));
    let sum: f64 = logits.iter().map(|&x| ((x - m) as f64).exp()).sum();
    let lse = m as f64 + sum.ln();
    let mut order: Vec<u32> = (0..logits.len() as u32).collect();
    let by_logit = |a: &u32, b: &u32| {
        logits[*b as usize]
            .total_cmp(&logits[*a as usize])
            .then(a.cmp(b))
    };
    if k < order.len() {
        order.select_nth_unstable_by(k - 1, by_logit);
    }
    let top = &mut order[..k];
    top.sort_by(by_logit);
    for ((id, lp), &i) in ids.iter_mut().zip(logp.iter_mut()).zip(top.iter()) {
        *id = i;
        *lp = (logits[i as usize] as f64 - lse) as f32;
    }
    let rest: f64 = order[k..]
        .iter()
        .map(|&i| (logits[i as usize] as f64 - lse).exp())
        .sum();
    rest as f32
}

/// Scores every window of `shard` at `seq_len` with `teacher` and writes the cache to `out`.
/// `progress(done, total)` is called after each pass. Returns the header written.
pub fn build_cache(
    teacher: &mut dyn Teacher,
    shard: &Shard,
    seq_len: usize,
    k: usize,
    out: &Path,
    progress: &dyn Fn(usize, usize),
) -> Result<KdCacheHeader> {
    let vocab = teacher.vocab_size();
    if seq_len > teacher.context() {
        return Err(Error::invalid(format!(
            "seq_len {seq_len} exceeds the teacher's context {}",
            teacher.context()
        )));
    }
    let windows = BatchStream::window_count(shard, seq_len);
    if windows == 0 {
        return Err(Error::invalid(format!(
            "{} holds {} tokens: not one window of {} tokens",
            shard.path().display(),
            shard.len(),
            seq_len + 1
        )));
    }
    if let Some(bad) = (0..shard.len()).find_map(|i| shard.get(i).filter(|&t| t as usize >= vocab))
    {
        return Err(Error::invalid(format!(
            "{} holds token id {bad}, outside the teacher's vocabulary of {vocab}: was it \
             prepared with the teacher's tokenizer?",
            shard.path().display()
        )));
    }
    let header = KdCacheHeader {
        k,
        vocab_size: vocab,
        seq_len,
        windows,
        shard_tokens: shard.len(),
        teacher: teacher.name().to_string(),
    };
    let mut writer = KdCacheWriter::create(out, header.clone())?;
    let mut window = vec![0u32; seq_len + 1];
    let mut inputs = Vec::with_capacity(WINDOWS_PER_PASS * seq_len);
    for w0 in (0..windows).step_by(WINDOWS_PER_PASS) {
        let w1 = (w0 + WINDOWS_PER_PASS).min(windows);
        let b = w1 - w0;
        inputs.clear();
        for w in w0..w1 {
            shard.read_into(w * (seq_len + 1), &mut window)?;
            inputs.extend_from_slice(&window[..seq_len]);
        }
        let logits = teacher.logits(&inputs, b, seq_len)?; // [b·seq, vocab]
        let rows = b * seq_len;
        let mut ids = vec![0u32; rows * k];
        let mut logp = vec![0f32; rows * k];
        let mut tail = vec![0f32; rows];
        ids.par_chunks_mut(k)
            .zip(logp.par_chunks_mut(k))
            .zip(tail.par_iter_mut())
            .zip(logits.par_chunks(vocab))
            .for_each(|(((i, l), t), row)| *t = top_k_row(row, k, i, l));
        for w in 0..b {
            let (a, z) = (w * seq_len, (w + 1) * seq_len);
            writer.write_window(&ids[a * k..z * k], &logp[a * k..z * k], &tail[a..z])?;
        }
        progress(w1, windows);
    }
    writer.finish()?;
    Ok(header)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn top_k_row_is_sorted_exact_and_accounts_for_all_mass() {
        let logits = [0.5f32, 3.0, -1.0, 3.0, 2.0, -7.0];
        let (mut ids, mut lp) = ([0u32; 3], [0f32; 3]);
        let tail = top_k_row(&logits, 3, &mut ids, &mut lp);
        assert_eq!(ids, [1, 3, 4]); // ties by lower id first
        let z: f64 = logits.iter().map(|&x| (x as f64).exp()).sum();
        for (&i, &l) in ids.iter().zip(&lp) {
            assert!((l as f64 - ((logits[i as usize] as f64).exp() / z).ln()).abs() < 1e-6);
        }
        let listed: f64 = lp.iter().map(|&l| (l as f64).exp()).sum();
        assert!((listed + tail as f64 - 1.0).abs() < 1e-6);
        let tail_all = top_k_row(&logits, 6, &mut [0; 6], &mut [0.0; 6]);
        assert_eq!(tail_all, 0.0);
    }
}

/// Filler entries (ids not otherwise listed) get this log-probability: e^-60 ≈ 0.
const ABSENT_LOGP: f32 = -60.0;

/// A token stream and its cache windows made from a remote teacher's samples: each sample's
/// tokens then `separator`, all concatenated. The distribution predicting a sample's token j
/// is the teacher's top-k at j (in the student's ids, best first, at most `k`, the rest of
/// the mass as the tail); the separator, which the teacher never scored, is a hard label
/// (all mass on it). Window w covers tokens w·(seq+1) .. (w+1)·(seq+1), as `BatchStream`
/// draws them, and position t of it holds the distribution predicting token t + 1.
pub struct SampleCache {
    pub tokens: Vec<u32>,
    /// [windows · seq_len · k]
    pub ids: Vec<u32>,
    pub logp: Vec<f32>,
    /// [windows · seq_len]
    pub tail: Vec<f32>,
    pub windows: usize,
}

/// Builds [`SampleCache`] from samples' top-k (`(sampled ids, alternatives per token,
/// their log-probabilities)`).
pub fn cache_from_samples(
    samples: &[crate::generate::remote::TopK],
    separator: u32,
    vocab_size: usize,
    seq_len: usize,
    k: usize,
) -> Result<SampleCache> {
    if k == 0 || seq_len == 0 || k > vocab_size {
        return Err(Error::invalid(format!(
            "k {k} and seq_len {seq_len} must be ≥ 1 (and k ≤ the vocabulary {vocab_size})"
        )));
    }
    // Per token: the distribution that predicts it (None: a hard label).
    let mut tokens = Vec::new();
    let mut dist: Vec<Option<(&[u32], &[f32])>> = Vec::new();
    for s in samples {
        if s.ids.len() != s.top_ids.len() || s.ids.len() != s.top_logprobs.len() {
            return Err(Error::invalid(format!(
                "a sample has {} tokens but {} / {} top-k rows",
                s.ids.len(),
                s.top_ids.len(),
                s.top_logprobs.len()
            )));
        }
        for j in 0..s.ids.len() {
            tokens.push(s.ids[j]);
            dist.push(Some((&s.top_ids[j], &s.top_logprobs[j])));
        }
        tokens.push(separator);
        dist.push(None);
    }
    if let Some(bad) = tokens.iter().find(|&&t| t as usize >= vocab_size) {
        return Err(Error::invalid(format!(
            "token {bad} is outside the student's vocabulary of {vocab_size}"
        )));
    }
    let windows = tokens.len() / (seq_len + 1);
    let mut ids = vec![0u32; windows * seq_len * k];
    let mut logp = vec![ABSENT_LOGP; windows * seq_len * k];
    let mut tail = vec![0f32; windows * seq_len];
    for w in 0..windows {
        for t in 0..seq_len {
            let target = w * (seq_len + 1) + t + 1;
            let row = (w * seq_len + t) * k;
            let (ri, rl) = (&mut ids[row..row + k], &mut logp[row..row + k]);
            let listed = match dist[target] {
                Some((top, lps)) => {
                    let n = top.len().min(k);
                    ri[..n].copy_from_slice(&top[..n]);
                    rl[..n].copy_from_slice(&lps[..n]);
                    let mass: f64 = lps[..n].iter().map(|&l| (l as f64).exp()).sum();
                    tail[w * seq_len + t] = (1.0 - mass).max(0.0) as f32;
                    n
                }
                None => {
                    ri[0] = tokens[target];
                    rl[0] = 0.0;
                    1
                }
            };
            // Fill the unused slots with ids not listed, at ~zero probability.
            let mut next = 0u32;
            for slot in listed..k {
                while ri[..slot].contains(&next) {
                    next += 1;
                }
                ri[slot] = next;
                next += 1;
            }
        }
    }
    Ok(SampleCache {
        tokens,
        ids,
        logp,
        tail,
        windows,
    })
}

#[cfg(test)]
mod sample_cache_tests {
    use super::*;
    use crate::generate::remote::TopK;

    #[test]
    fn windows_line_up_with_the_tokens_they_predict() {
        let s = TopK {
            ids: vec![5, 6, 7],
            top_ids: vec![vec![5, 9], vec![8, 6], vec![7]],
            top_logprobs: vec![vec![-0.1, -2.5], vec![-0.7, -0.9], vec![-0.05]],
        };
        // Stream: 5 6 7 |0 5 6 7 |0 → with seq 3: windows [5 6 7 0] [5 6 7 0].
        let c = cache_from_samples(&[s.clone(), s], 0, 10, 3, 2).unwrap();
        assert_eq!(c.windows, 2);
        assert_eq!(c.tokens, vec![5, 6, 7, 0, 5, 6, 7, 0]);
        // Position 0 predicts token 6: the teacher's row for it.
        assert_eq!(
            (&c.ids[0..2], &c.logp[0..2]),
            (&[8, 6][..], &[-0.7, -0.9][..])
        );
        let mass = (-0.7f64).exp() + (-0.9f64).exp();
        assert!((c.tail[0] as f64 - (1.0 - mass).max(0.0)).abs() < 1e-6);
        // Position 1 predicts 7: one alternative listed, one filler at ~0 mass.
        assert_eq!(c.ids[2], 7);
        assert_eq!(c.logp[3], ABSENT_LOGP);
        assert_ne!(c.ids[3], 7);
        // Position 2 predicts the separator: a hard label.
        assert_eq!((c.ids[4], c.logp[4], c.tail[2]), (0, 0.0, 0.0));
        // The second window starts at the second sample's first token.
        assert_eq!(&c.ids[6..8], &[8, 6]);
        assert!(cache_from_samples(&[], 0, 10, 0, 2).is_err());
    }
}
