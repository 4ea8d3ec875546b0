//! On-policy distillation (GKD, Agarwal et al. 2024): with probability λ a training
//! micro-batch is replaced by the student's own continuations, which the teacher then scores,
//! so the student learns on the sequences it actually produces instead of only on data.
//!
//! For each window of the batch, the first `prompt` tokens are kept and the student samples
//! the rest (on the decode engine, all windows stepped together so each matrix is read once per
//! step, at `temperature`); the loss covers only the sampled tokens (the targets of prompt
//! positions are ignored). Whether a micro-batch is replaced and every
//! sample's seed come from (seed, step, micro-batch, row), so resumed runs repeat exactly.
//! [`crate::Distillation`] calls [`OnPolicy::apply`] on every micro-batch.

use slm_core::Result;
use slm_infer::decode::{BatchScratch, Decoder, RunState, WeightType};
use slm_infer::{Sampler, SamplerConfig};
use slm_kernels::IGNORE_INDEX;
use slm_train::FastModel;

/// The on-policy settings (from `[distill.on_policy]`, `crate::OnPolicyConfig`).
#[derive(Debug, Clone, Copy)]
pub struct OnPolicy {
    /// λ: the probability that a micro-batch is replaced.
    pub lambda: f64,
    /// Tokens of each window kept as the prompt.
    pub prompt: usize,
    pub temperature: f32,
    /// Nucleus cut of the student's samples (1: the whole distribution, as GKD samples).
    pub top_p: f32,
    pub seed: u64,
}

/// SplitMix64 of a few words: the per-decision randomness.
fn mix(words: &[u64]) -> u64 {
    let mut z = 0x9E37_79B9_7F4A_7C15u64;
    for &w in words {
        z = z.wrapping_add(w).wrapping_add(0x9E37_79B9_7F4A_7C15);
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^= z >> 31;
    }
    z
}

impl OnPolicy {
    /// The student's sampler: its distribution at `temperature`, cut at `top_p` (1: none),
    /// no top-k, no repetition penalty.
    fn sampler(&self, seed: u64) -> SamplerConfig {
        SamplerConfig {
            temperature: self.temperature,
            top_k: 0,
            top_p: self.top_p,
            repetition_penalty: 1.0,
            seed,
        }
    }

    /// Whether micro-batch `micro` of step `step` is replaced.
    pub fn replaces(&self, step: u64, micro: usize) -> bool {
        let u = (mix(&[self.seed, step, micro as u64, 1]) >> 11) as f64 / (1u64 << 53) as f64;
        u < self.lambda
    }

    /// Rewrites `inputs`/`targets` ([batch, seq]) in place with the student's continuations
    /// when this micro-batch is drawn; returns whether it was.
    pub fn apply(
        &self,
        student: &FastModel,
        step: u64,
        micro: usize,
        inputs: &mut [u32],
        targets: &mut [u32],
        seq: usize,
    ) -> Result<bool> {
        if !self.replaces(step, micro) {
            return Ok(false);
        }
        let llama = student.to_llama()?;
        let engine = Decoder::new(&llama, WeightType::F32)?;
        let p = self.prompt.min(seq).max(1);
        let rows = inputs.len() / seq;
        // Every window: its prompt, its own KV cache and sampler (seeded per row).
        let mut states: Vec<RunState> = (0..rows).map(|_| engine.new_state()).collect();
        let mut samplers = (0..rows)
            .map(|row| {
                Sampler::new(self.sampler(mix(&[self.seed, step, micro as u64, row as u64, 2])))
            })
            .collect::<Result<Vec<_>>>()?;
        // The whole sequences: prompt (p tokens) then seq + 1 − p sampled ones, [rows][seq + 1].
        let mut seqs: Vec<Vec<u32>> = inputs.chunks_exact(seq).map(|x| x[..p].to_vec()).collect();
        for (st, tokens) in states.iter_mut().zip(&seqs) {
            engine.prefill(st, tokens, 0)?;
        }
        let mut scratch = BatchScratch::default();
        let (mut next, mut positions) = (vec![0u32; rows], vec![0usize; rows]);
        loop {
            for ((st, sampler), (tokens, t)) in states
                .iter()
                .zip(samplers.iter_mut())
                .zip(seqs.iter_mut().zip(next.iter_mut()))
            {
                *t = sampler.sample(st.logits(), tokens)?;
                tokens.push(*t);
            }
            let len = seqs[0].len(); // all rows advance together
            if len > seq {
                break;
            }
            positions.fill(len - 1);
            engine.forward_batch(&mut scratch, &mut states, &next, &positions)?;
        }
        for ((x, y), tokens) in inputs
            .chunks_exact_mut(seq)
            .zip(targets.chunks_exact_mut(seq))
            .zip(&seqs)
        {
            x.copy_from_slice(&tokens[..seq]);
            for (i, yi) in y.iter_mut().enumerate() {
                // Position i predicts tokens[i + 1]; only sampled tokens (index ≥ p) count.
                *yi = if i + 1 >= p {
                    tokens[i + 1]
                } else {
                    IGNORE_INDEX
                };
            }
        }
        Ok(true)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn draws_follow_lambda_and_samples_continue_the_prompt() {
        let p = OnPolicy {
            lambda: 0.3,
            prompt: 4,
            temperature: 1.0,
            top_p: 1.0,
            seed: 7,
        };
        let drawn = (0..2000).filter(|&s| p.replaces(s, 0)).count();
        assert!((500..700).contains(&drawn), "{drawn} of 2000 at λ = 0.3");
        let never = OnPolicy { lambda: 0.0, ..p };
        assert!((0..200).all(|s| !never.replaces(s, 1)));

        let mut cfg = slm_model::preset("260k").unwrap();
        cfg.vocab_size = 40;
        cfg.max_position_embeddings = 32;
        let llama = slm_model::Llama::random(cfg, 1, &candle_core::Device::Cpu).unwrap();
        let student = FastModel::from_llama(&llama).unwrap();
        let always = OnPolicy { lambda: 1.0, ..p };
        let (b, seq) = (2, 10);
        let orig: Vec<u32> = (0..b * seq).map(|i| (i % 40) as u32).collect();
        let (mut x, mut y) = (orig.clone(), orig.clone());
        assert!(always.apply(&student, 3, 0, &mut x, &mut y, seq).unwrap());
        for r in 0..b {
            let (xr, yr) = (&x[r * seq..(r + 1) * seq], &y[r * seq..(r + 1) * seq]);
            assert_eq!(&xr[..4], &orig[r * seq..r * seq + 4], "the prompt is kept");
            assert!(
                yr[..3].iter().all(|&t| t == IGNORE_INDEX),
                "prompt targets ignored"
            );
            // Targets are the inputs shifted by one over the sampled part.
            assert_eq!(&yr[3..seq - 1], &xr[4..]);
        }
        // Deterministic in (seed, step, micro, row).
        let (mut x2, mut y2) = (orig.clone(), orig.clone());
        always.apply(&student, 3, 0, &mut x2, &mut y2, seq).unwrap();
        assert_eq!((x.clone(), y.clone()), (x2, y2));
        let (mut x3, mut y3) = (orig.clone(), orig.clone());
        always.apply(&student, 4, 0, &mut x3, &mut y3, seq).unwrap();
        assert_ne!(x, x3, "another step samples other continuations");
        // Rows stepped together sample what each row sampled alone would.
        let engine = Decoder::new(&llama, WeightType::F32).unwrap();
        for r in 0..b {
            let mut state = engine.new_state();
            let mut sampler = Sampler::new(p.sampler(mix(&[p.seed, 3, 0, r as u64, 2]))).unwrap();
            let mut tokens = orig[r * seq..r * seq + 4].to_vec();
            let mut logits = engine.prefill(&mut state, &tokens, 0).unwrap().to_vec();
            while tokens.len() < seq {
                let t = sampler.sample(&logits, &tokens).unwrap();
                tokens.push(t);
                logits = engine
                    .forward(&mut state, t, tokens.len() - 1)
                    .unwrap()
                    .to_vec();
            }
            assert_eq!(&x[r * seq..(r + 1) * seq], tokens.as_slice(), "row {r}");
        }
    }
}
