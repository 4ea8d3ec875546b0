//! Choosing the next token from logits: greedy, temperature, top-k, top-p and a repetition
//! penalty, with a seeded random generator so runs repeat.
//!
//! The order of operations follows Hugging Face `generate`: repetition penalty on the raw
//! logits, then temperature, then top-k, then top-p, then a draw.

use rand::{rngs::StdRng, Rng, SeedableRng};
use slm_core::{Error, Result};

#[derive(Debug, Clone, PartialEq)]
pub struct SamplerConfig {
    /// 0 means greedy (argmax).
    pub temperature: f32,
    /// Keep only the k most likely tokens (0 = off).
    pub top_k: usize,
    /// Keep the smallest set of tokens whose probability reaches p (1.0 = off).
    pub top_p: f32,
    /// CTRL-style penalty for tokens already in the sequence (1.0 = off).
    pub repetition_penalty: f32,
    pub seed: u64,
}

impl Default for SamplerConfig {
    fn default() -> Self {
        Self {
            temperature: 0.8,
            top_k: 0,
            top_p: 0.95,
            repetition_penalty: 1.0,
            seed: 42,
        }
    }
}

impl SamplerConfig {
    pub fn greedy() -> Self {
        Self {
            temperature: 0.0,
            top_k: 0,
            top_p: 1.0,
            repetition_penalty: 1.0,
            seed: 0,
        }
    }

    pub fn validate(&self) -> Result<()> {
        if !(self.temperature >= 0.0 && self.temperature.is_finite()) {
            return Err(Error::invalid(format!(
                "temperature must be ≥ 0, got {}",
                self.temperature
            )));
        }
        if !(self.top_p > 0.0 && self.top_p <= 1.0) {
            return Err(Error::invalid(format!(
                "top-p must be in (0, 1], got {}",
                self.top_p
            )));
        }
        if !(self.repetition_penalty > 0.0 && self.repetition_penalty.is_finite()) {
            return Err(Error::invalid(format!(
                "repetition penalty must be > 0, got {}",
                self.repetition_penalty
            )));
        }
        Ok(())
    }
}

pub struct Sampler {
    config: SamplerConfig,
    rng: StdRng,
    /// Scratch buffers reused across calls (no allocation per token after the first).
    scratch: Vec<f32>,
    order: Vec<u32>,
}

impl Sampler {
    pub fn new(config: SamplerConfig) -> Result<Self> {
        config.validate()?;
        let rng = StdRng::seed_from_u64(config.seed);
        Ok(Self {
            config,
            rng,
            scratch: Vec::new(),
            order: Vec::new(),
        })
    }

    pub fn config(&self) -> &SamplerConfig {
        &self.config
    }

    /// Picks the next token from `logits` (one row, length = vocabulary) given the tokens
    /// of the sequence so far.
    pub fn sample(&mut self, logits: &[f32], history: &[u32]) -> Result<u32> {
        if logits.is_empty() {
            return Err(Error::invalid("empty logits"));
        }
        let cfg = &self.config;
        let x = &mut self.scratch;
        x.clear();
        x.extend_from_slice(logits);
        if cfg.repetition_penalty != 1.0 {
            for &t in history {
                if let Some(l) = x.get_mut(t as usize) {
                    *l = if *l > 0.0 {
                        *l / cfg.repetition_penalty
                    } else {
                        *l * cfg.repetition_penalty
                    };
                }
            }
        }
        if cfg.temperature == 0.0 {
            return Ok(argmax(x));
        }
        // Softmax with temperature, in place.
        let max = x.iter().copied().fold(f32::NEG_INFINITY, f32::max);
        if !max.is_finite() {
            return Err(Error::msg("logits are not finite (NaN or all -inf)"));
        }
        let mut sum = 0.0f32;
        for v in x.iter_mut() {
            *v = ((*v - max) / cfg.temperature).exp();
            sum += *v;
        }
        x.iter_mut().for_each(|v| *v /= sum);

        // Candidates in descending probability when top-k or top-p cut the tail.
        let keep = nucleus(x, cfg.top_k, cfg.top_p, &mut self.order);
        let order = &self.order;
        let total: f32 = order[..keep].iter().map(|&t| x[t as usize]).sum();
        let mut r = self.rng.gen::<f32>() * total;
        for &t in &order[..keep] {
            r -= x[t as usize];
            if r <= 0.0 {
                return Ok(t);
            }
        }
        Ok(order[keep - 1])
    }
}

/// Orders `order` so that its first `keep` entries (returned) are the tokens top-k / top-p
/// keep from the probabilities `p`, in descending probability (lower index first on ties);
/// all tokens, unordered, when neither cuts.
///
/// Only what can be kept is sorted, not the whole vocabulary: top-k selects its k first; top-p
/// sorts the tokens of probability ≥ (1 − top_p)/V, which hold the nucleus (those below hold
/// less than V · (1 − top_p)/V = 1 − top_p of the mass, so the rest sums past top_p first),
/// and falls back to sorting everything if rounding ever says otherwise. The result is the
/// full sort's, token for token (test).
fn nucleus(p: &[f32], top_k: usize, top_p: f32, order: &mut Vec<u32>) -> usize {
    let desc = |a: &u32, b: &u32| p[*b as usize].total_cmp(&p[*a as usize]).then(a.cmp(b));
    let cut_k = |keep: usize| if top_k > 0 { keep.min(top_k) } else { keep };
    order.clear();
    let v = p.len();
    if top_p < 1.0 {
        let floor = (1.0 - top_p) / v as f32;
        order.extend((0..v as u32).filter(|&t| p[t as usize] >= floor));
        order.sort_unstable_by(desc);
        if let Some(keep) = prefix_reaching(p, order, top_p) {
            return cut_k(keep);
        }
        order.clear();
        order.extend(0..v as u32);
        order.sort_unstable_by(desc);
        return cut_k(prefix_reaching(p, order, top_p).unwrap_or(v));
    }
    order.extend(0..v as u32);
    if top_k > 0 && top_k < v {
        order.select_nth_unstable_by(top_k - 1, desc);
        order[..top_k].sort_unstable_by(desc);
        return top_k;
    }
    if top_k > 0 {
        order.sort_unstable_by(desc);
    }
    v
}

/// The length of the shortest prefix of `order` whose probabilities sum to `top_p`, if any.
fn prefix_reaching(p: &[f32], order: &[u32], top_p: f32) -> Option<usize> {
    let mut cum = 0.0;
    for (i, &t) in order.iter().enumerate() {
        cum += p[t as usize];
        if cum >= top_p {
            return Some(i + 1);
        }
    }
    None
}

/// Index of the largest value (the lowest index on ties).
pub fn argmax(x: &[f32]) -> u32 {
    let mut best = 0;
    for (i, &v) in x.iter().enumerate() {
        if v > x[best] {
            best = i;
        }
    }
    best as u32
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The cut as it was first written: sort the whole vocabulary, then cut.
    fn nucleus_by_full_sort(p: &[f32], top_k: usize, top_p: f32) -> Vec<u32> {
        let mut order: Vec<u32> = (0..p.len() as u32).collect();
        let mut keep = p.len();
        if top_k > 0 || top_p < 1.0 {
            order
                .sort_unstable_by(|&a, &b| p[b as usize].total_cmp(&p[a as usize]).then(a.cmp(&b)));
            if top_k > 0 {
                keep = keep.min(top_k);
            }
            if top_p < 1.0 {
                let mut cum = 0.0;
                for (i, &t) in order.iter().take(keep).enumerate() {
                    cum += p[t as usize];
                    if cum >= top_p {
                        keep = i + 1;
                        break;
                    }
                }
            }
        }
        order.truncate(keep);
        order
    }

    #[test]
    fn the_partial_sort_keeps_what_the_full_sort_keeps() {
        let mut rng = StdRng::seed_from_u64(9);
        let mut order = Vec::new();
        for case in 0..500 {
            let v = [2usize, 7, 64, 512, 3000][case % 5];
            // Peaked and flat distributions, with ties.
            let scale = [0.1f32, 1.0, 4.0, 12.0][case % 4];
            let mut p: Vec<f32> = (0..v)
                .map(|_| ((rng.gen::<f32>() * 8.0).round() / 8.0 * scale).exp())
                .collect();
            let sum: f32 = p.iter().sum();
            p.iter_mut().for_each(|x| *x /= sum);
            let top_k = [0usize, 1, 5, 40, 10_000][(case / 25) % 5];
            let top_p = [1.0f32, 0.95, 0.5, 0.9, 0.999][(case / 5) % 5];
            let keep = nucleus(&p, top_k, top_p, &mut order);
            let want = nucleus_by_full_sort(&p, top_k, top_p);
            assert_eq!(keep, want.len(), "case {case}: v {v}, k {top_k}, p {top_p}");
            if top_k > 0 || top_p < 1.0 {
                assert_eq!(&order[..keep], want.as_slice(), "case {case}");
            } else {
                assert_eq!(keep, v);
            }
        }
    }

    #[test]
    fn greedy_takes_argmax_and_penalty_can_change_it() {
        let mut s = Sampler::new(SamplerConfig::greedy()).unwrap();
        assert_eq!(s.sample(&[0.1, 2.0, 1.9, -1.0], &[]).unwrap(), 1);
        let mut s = Sampler::new(SamplerConfig {
            repetition_penalty: 1.2,
            ..SamplerConfig::greedy()
        })
        .unwrap();
        assert_eq!(s.sample(&[0.1, 2.0, 1.9, -1.0], &[1]).unwrap(), 2);
    }

    #[test]
    fn top_k_one_is_greedy_and_seed_repeats() {
        let logits: Vec<f32> = (0..50).map(|i| ((i * 7919) % 13) as f32 * 0.3).collect();
        let best = argmax(&logits);
        let mut s = Sampler::new(SamplerConfig {
            temperature: 1.5,
            top_k: 1,
            ..Default::default()
        })
        .unwrap();
        for _ in 0..20 {
            assert_eq!(s.sample(&logits, &[]).unwrap(), best);
        }
        let draw = |seed| {
            let mut s = Sampler::new(SamplerConfig {
                temperature: 1.0,
                seed,
                ..Default::default()
            })
            .unwrap();
            (0..30)
                .map(|_| s.sample(&logits, &[]).unwrap())
                .collect::<Vec<_>>()
        };
        assert_eq!(draw(7), draw(7));
        assert_ne!(draw(7), draw(8));
    }

    #[test]
    fn top_p_keeps_only_the_nucleus() {
        // probabilities ≈ [0.6, 0.3, 0.1]: top-p 0.5 keeps only the first token.
        let logits = [0.6f32.ln(), 0.3f32.ln(), 0.1f32.ln()];
        let mut s = Sampler::new(SamplerConfig {
            temperature: 1.0,
            top_p: 0.5,
            ..Default::default()
        })
        .unwrap();
        for _ in 0..50 {
            assert_eq!(s.sample(&logits, &[]).unwrap(), 0);
        }
        let mut s = Sampler::new(SamplerConfig {
            temperature: 1.0,
            top_p: 0.85,
            ..Default::default()
        })
        .unwrap();
        let draws: Vec<u32> = (0..400).map(|_| s.sample(&logits, &[]).unwrap()).collect();
        assert!(draws.contains(&1) && !draws.contains(&2));
    }

    #[test]
    fn sampling_follows_the_distribution() {
        let logits = [0.0f32, (3.0f32).ln()]; // p = [0.25, 0.75]
        let mut s = Sampler::new(SamplerConfig {
            temperature: 1.0,
            top_p: 1.0,
            ..Default::default()
        })
        .unwrap();
        let ones = (0..4000)
            .filter(|_| s.sample(&logits, &[]).unwrap() == 1)
            .count();
        let share = ones as f64 / 4000.0;
        assert!((share - 0.75).abs() < 0.03, "{share}");
    }

    #[test]
    fn bad_settings_are_rejected() {
        assert!(Sampler::new(SamplerConfig {
            temperature: -1.0,
            ..Default::default()
        })
        .is_err());
        assert!(Sampler::new(SamplerConfig {
            top_p: 0.0,
            ..Default::default()
        })
        .is_err());
        assert!(Sampler::new(SamplerConfig {
            repetition_penalty: 0.0,
            ..Default::default()
        })
        .is_err());
    }
}
