//! What `slm bench` measures besides the generation loop itself: the machine's memory
//! bandwidth (a STREAM-style triad) and the weight bytes a decode step must read.
//!
//! At batch 1 every weight is read once per generated token, so
//! `weight_bytes_per_token × tokens/s` is the bandwidth a decoder achieves, and
//! `bandwidth ÷ weight_bytes_per_token` its ceiling.

use crate::decode::{BatchScratch, Decoder, KvType};
use crate::sampler::argmax;
use rayon::prelude::*;
use slm_core::Result;
use slm_model::Llama;
use std::time::Instant;

/// GB/s of `reps` STREAM triads `a = b + s·c` over three f32 arrays of `bytes_per_array`
/// bytes each, split across the current rayon pool; 3 arrays' bytes counted per pass (two
/// reads, one write; STREAM's convention). The arrays should be far larger than the caches.
pub fn stream_triad(bytes_per_array: usize, reps: usize) -> Vec<f64> {
    let n = (bytes_per_array / 4).max(1024);
    let b = vec![1.0f32; n];
    let c = vec![2.0f32; n];
    let mut a = vec![0.0f32; n];
    let chunk = (n / (8 * rayon::current_num_threads().max(1))).max(4096);
    let pass = |a: &mut [f32], s: f32| {
        a.par_chunks_mut(chunk)
            .zip(b.par_chunks(chunk).zip(c.par_chunks(chunk)))
            .for_each(|(a, (b, c))| {
                for ((x, &y), &z) in a.iter_mut().zip(b).zip(c) {
                    *x = y + s * z;
                }
            });
    };
    pass(&mut a, 3.0); // touch every page once before timing
    (0..reps)
        .map(|r| {
            let t0 = Instant::now();
            pass(&mut a, 3.0 + r as f32);
            let secs = t0.elapsed().as_secs_f64().max(1e-9);
            std::hint::black_box(&a);
            (3 * n * 4) as f64 / secs / 1e9
        })
        .collect()
}

/// Bytes of weights one decode step reads: every tensor except the embedding table (one row
/// per token), plus the embedding again as the output head when the two are tied.
pub fn weight_bytes_per_token(model: &Llama) -> usize {
    let mut bytes = 0;
    for (name, t) in model.tensors() {
        let size = t.elem_count() * t.dtype().size_in_bytes();
        if name == "model.embed_tokens.weight" {
            if model.config.tie_word_embeddings {
                bytes += size;
            }
            continue;
        }
        bytes += size;
    }
    bytes
}

/// Peak resident memory of this process in bytes (Linux `VmHWM`), when the OS reports it.
pub fn peak_memory_bytes() -> Option<u64> {
    let status = std::fs::read_to_string("/proc/self/status").ok()?;
    let line = status.lines().find(|l| l.starts_with("VmHWM:"))?;
    let kb: u64 = line.split_whitespace().nth(1)?.parse().ok()?;
    Some(kb * 1024)
}

/// Prefill and greedy-decode speed of the decode engine, tokens/s: `prompt` in chunks, then
/// `gen` tokens each fed back (positions after the prompt; `gen` must fit the context).
pub fn time_greedy(dec: &Decoder, prompt: &[u32], gen: usize, kv: KvType) -> Result<(f64, f64)> {
    let mut state = dec.new_state_with(kv);
    let t0 = Instant::now();
    let mut next = argmax(dec.prefill(&mut state, prompt, 0)?);
    let prefill = prompt.len() as f64 / t0.elapsed().as_secs_f64().max(1e-9);
    let t1 = Instant::now();
    for i in 0..gen {
        next = argmax(dec.forward(&mut state, next, prompt.len() + i)?);
    }
    std::hint::black_box(next);
    Ok((prefill, gen as f64 / t1.elapsed().as_secs_f64().max(1e-9)))
}

/// Batched greedy-decode speed, tokens/s summed over `batch` sequences: each sequence is
/// prefilled with `prompt` rotated by its index (untimed), then `gen` steps run for all of
/// them at once through [`Decoder::forward_batch`].
pub fn time_greedy_batch(
    dec: &Decoder,
    prompt: &[u32],
    gen: usize,
    batch: usize,
    kv: KvType,
) -> Result<f64> {
    let mut states: Vec<_> = (0..batch).map(|_| dec.new_state_with(kv)).collect();
    let mut next = Vec::with_capacity(batch);
    for (b, s) in states.iter_mut().enumerate() {
        let mut p = prompt.to_vec();
        p.rotate_left(b % prompt.len().max(1));
        next.push(argmax(dec.prefill(s, &p, 0)?));
    }
    let mut scratch = BatchScratch::default();
    let mut positions = vec![prompt.len(); batch];
    let t0 = Instant::now();
    for _ in 0..gen {
        dec.forward_batch(&mut scratch, &mut states, &next, &positions)?;
        for ((t, s), p) in next.iter_mut().zip(&states).zip(positions.iter_mut()) {
            *t = argmax(s.logits());
            *p += 1;
        }
    }
    std::hint::black_box(&next);
    Ok((batch * gen) as f64 / t0.elapsed().as_secs_f64().max(1e-9))
}

/// Median of `xs` (NaN when empty).
pub fn median(mut xs: Vec<f64>) -> f64 {
    if xs.is_empty() {
        return f64::NAN;
    }
    xs.sort_by(|a, b| a.total_cmp(b));
    let n = xs.len();
    if n % 2 == 1 {
        xs[n / 2]
    } else {
        0.5 * (xs[n / 2 - 1] + xs[n / 2])
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn triad_reports_positive_bandwidth() {
        let r = stream_triad(1 << 20, 3);
        assert_eq!(r.len(), 3);
        assert!(r.iter().all(|&g| g.is_finite() && g > 0.0), "{r:?}");
    }

    #[test]
    fn weight_bytes_count_the_tied_head_once() {
        let mut cfg = slm_model::preset("260k").unwrap();
        let llama = Llama::random(cfg.clone(), 1, &candle_core::Device::Cpu).unwrap();
        let all = 4 * llama.num_parameters();
        // Tied: everything is read (the table serves as the head).
        assert_eq!(weight_bytes_per_token(&llama), all);
        cfg.tie_word_embeddings = false;
        let untied = Llama::random(cfg.clone(), 1, &candle_core::Device::Cpu).unwrap();
        let embed = 4 * cfg.vocab_size * cfg.hidden_size;
        assert_eq!(
            weight_bytes_per_token(&untied),
            4 * untied.num_parameters() - embed
        );
        assert_eq!(median(vec![3.0, 1.0, 2.0]), 2.0);
        assert_eq!(median(vec![4.0, 1.0, 2.0, 3.0]), 2.5);
    }
}
