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
