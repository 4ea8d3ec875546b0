//! Exact and near-duplicate removal: MinHash signatures over word n-grams, with
//! locality-sensitive hashing (LSH) so that each new text is compared only with the kept
//! texts that share a band of its signature.
//!
//! - Exact duplicates: the same text after lower-casing and collapsing whitespace (compared by
//!   a 64-bit hash of that normal form).
//! - Near duplicates: estimated Jaccard similarity of the word n-gram sets (the share of
//!   signature entries that agree) at or above the threshold. The LSH bands and rows are
//!   chosen for the threshold as `datasketch` does (least false-positive plus false-negative
//!   area); every candidate is then checked against the full signature, so a text is flagged
//!   only when its estimated similarity reaches the threshold. A pair just above the threshold
//!   may, rarely, share no band and pass unflagged.
//!
//! Written here rather than taken from a crate: it is about a hundred lines, and the hashes
//! must stay the same across versions and platforms, because a resumed run rebuilds the
//! signatures of the texts already kept and must reach the same decisions.

use slm_core::{Error, Result};
use std::collections::HashMap;

/// The Mersenne prime 2^61 − 1, modulus of the permutations.
const P61: u64 = (1 << 61) - 1;

/// SplitMix64's finaliser: a fixed, well-mixed 64-bit hash of a 64-bit value.
pub fn mix64(mut z: u64) -> u64 {
    z = z.wrapping_add(0x9E37_79B9_7F4A_7C15);
    z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
    z ^ (z >> 31)
}

/// A stable 64-bit hash of bytes (FNV-1a, then mixed).
pub fn stable_hash(bytes: &[u8]) -> u64 {
    let mut h: u64 = 0xcbf2_9ce4_8422_2325;
    for &b in bytes {
        h ^= b as u64;
        h = h.wrapping_mul(0x0000_0100_0000_01b3);
    }
    mix64(h)
}

/// Lower-cased words: runs of letters, digits and apostrophes.
pub fn words(text: &str) -> Vec<String> {
    text.split(|c: char| !(c.is_alphanumeric() || c == '\''))
        .filter(|w| !w.is_empty())
        .map(|w| w.to_lowercase())
        .collect()
}

/// Hashes of the word n-grams of `text` (a text shorter than n words is one n-gram).
pub fn shingles(text: &str, n: usize) -> Vec<u64> {
    let w = words(text);
    if w.is_empty() {
        return Vec::new();
    }
    let n = n.max(1).min(w.len());
    w.windows(n)
        .map(|g| stable_hash(g.join(" ").as_bytes()))
        .collect()
}

/// The exact-duplicate key: lower-cased text with whitespace collapsed.
pub fn exact_key(text: &str) -> u64 {
    let norm = text
        .split_whitespace()
        .map(|w| w.to_lowercase())
        .collect::<Vec<_>>()
        .join(" ");
    stable_hash(norm.as_bytes())
}

/// MinHash with `num_perm` permutations `(a·x + b) mod (2^61 − 1)` from a fixed seed.
#[derive(Debug, Clone)]
pub struct MinHasher {
    pub ngram: usize,
    a: Vec<u64>,
    b: Vec<u64>,
}

impl MinHasher {
    pub fn new(num_perm: usize, ngram: usize) -> Self {
        let mut s = 0x5EED_u64;
        let mut next = || {
            s = s.wrapping_add(1);
            mix64(s)
        };
        let mut a = Vec::with_capacity(num_perm);
        let mut b = Vec::with_capacity(num_perm);
        for _ in 0..num_perm {
            a.push(next() % (P61 - 1) + 1);
            b.push(next() % P61);
        }
        Self { ngram, a, b }
    }

    pub fn num_perm(&self) -> usize {
        self.a.len()
    }

    /// The signature of `text`: per permutation, the least permuted shingle hash.
    pub fn signature(&self, text: &str) -> Vec<u64> {
        let sh: Vec<u64> = shingles(text, self.ngram)
            .into_iter()
            .map(|x| x % P61)
            .collect();
        self.a
            .iter()
            .zip(&self.b)
            .map(|(&a, &b)| {
                sh.iter()
                    .map(|&x| ((a as u128 * x as u128 + b as u128) % P61 as u128) as u64)
                    .min()
                    .unwrap_or(u64::MAX)
            })
            .collect()
    }
}

/// Estimated Jaccard similarity: the share of signature entries that agree.
pub fn similarity(a: &[u64], b: &[u64]) -> f64 {
    if a.is_empty() || a.len() != b.len() {
        return 0.0;
    }
    a.iter().zip(b).filter(|(x, y)| x == y).count() as f64 / a.len() as f64
}

/// LSH bands and rows per band (bands · rows ≤ num_perm) for `threshold`: the pair that
/// minimises the area of false positives below the threshold plus false negatives above it.
pub fn lsh_params(threshold: f64, num_perm: usize) -> (usize, usize) {
    fn area(f: impl Fn(f64) -> f64, lo: f64, hi: f64) -> f64 {
        let steps = 200;
        let h = (hi - lo) / steps as f64;
        (0..steps).map(|i| f(lo + (i as f64 + 0.5) * h) * h).sum()
    }
    let mut best = (1, num_perm.max(1));
    let mut best_err = f64::INFINITY;
    for b in 1..=num_perm.max(1) {
        for r in 1..=num_perm / b {
            let p = |s: f64| 1.0 - (1.0 - s.powi(r as i32)).powi(b as i32);
            let fp = area(p, 0.0, threshold);
            let fneg = area(|s| 1.0 - p(s), threshold, 1.0);
            let err = 0.5 * fp + 0.5 * fneg;
            if err < best_err {
                best_err = err;
                best = (b, r);
            }
        }
    }
    best
}

/// What a text is, against the kept texts.
#[derive(Debug, Clone, PartialEq)]
pub enum DupCheck {
    Unique,
    /// Same normalised text as kept sample `of`.
    Exact {
        of: u64,
    },
    /// Estimated Jaccard `similarity` ≥ threshold with kept sample `of` (the most similar).
    Near {
        of: u64,
        similarity: f64,
    },
}

/// A text's keys, computed once and kept if the text is kept.
#[derive(Debug, Clone)]
pub struct Keys {
    exact: u64,
    signature: Vec<u64>,
}

/// The kept texts' signatures, indexed by LSH band.
#[derive(Debug)]
pub struct Deduper {
    hasher: MinHasher,
    threshold: f64,
    rows: usize,
    exact: HashMap<u64, u64>,
    /// Per band: band hash → positions in `kept`.
    buckets: Vec<HashMap<u64, Vec<u32>>>,
    kept: Vec<(u64, Vec<u64>)>,
}

impl Deduper {
    /// `threshold` in (0, 1]; `ngram` ≥ 1; `num_perm` ≥ 1.
    pub fn new(threshold: f64, ngram: usize, num_perm: usize) -> Result<Self> {
        if !(threshold > 0.0 && threshold <= 1.0) {
            return Err(Error::invalid(format!(
                "the near-duplicate threshold must be in (0, 1], got {threshold}"
            )));
        }
        if ngram == 0 || num_perm == 0 || num_perm > 4096 {
            return Err(Error::invalid(format!(
                "MinHash needs n-gram ≥ 1 and 1 ≤ permutations ≤ 4096, got {ngram} and \
                 {num_perm}"
            )));
        }
        let (bands, rows) = lsh_params(threshold, num_perm);
        Ok(Self {
            hasher: MinHasher::new(num_perm, ngram),
            threshold,
            rows,
            exact: HashMap::new(),
            buckets: vec![HashMap::new(); bands],
            kept: Vec::new(),
        })
    }

    /// Number of kept texts.
    pub fn len(&self) -> usize {
        self.kept.len()
    }

    pub fn is_empty(&self) -> bool {
        self.kept.is_empty()
    }

    pub fn keys(&self, text: &str) -> Keys {
        Keys {
            exact: exact_key(text),
            signature: self.hasher.signature(text),
        }
    }

    fn band_hash(&self, sig: &[u64], band: usize) -> u64 {
        let mut h = band as u64;
        for &v in &sig[band * self.rows..(band + 1) * self.rows] {
            h = mix64(h ^ v);
        }
        h
    }

    /// Checks `keys` against the kept texts.
    pub fn check(&self, keys: &Keys) -> DupCheck {
        if let Some(&of) = self.exact.get(&keys.exact) {
            return DupCheck::Exact { of };
        }
        let mut best: Option<(f64, usize)> = None;
        let mut seen = std::collections::HashSet::new();
        for (band, bucket) in self.buckets.iter().enumerate() {
            let Some(cands) = bucket.get(&self.band_hash(&keys.signature, band)) else {
                continue;
            };
            for &c in cands {
                if !seen.insert(c) {
                    continue;
                }
                let s = similarity(&keys.signature, &self.kept[c as usize].1);
                // Ties go to the earliest kept text, so the answer does not depend on order.
                let better = match best {
                    None => true,
                    Some((bs, bc)) => s > bs || (s == bs && (c as usize) < bc),
                };
                if s >= self.threshold && better {
                    best = Some((s, c as usize));
                }
            }
        }
        match best {
            Some((similarity, c)) => DupCheck::Near {
                of: self.kept[c].0,
                similarity,
            },
            None => DupCheck::Unique,
        }
    }

    /// Records a kept text (`id`: its sample index).
    pub fn insert(&mut self, id: u64, keys: Keys) {
        let pos = self.kept.len() as u32;
        self.exact.entry(keys.exact).or_insert(id);
        for band in 0..self.buckets.len() {
            let h = self.band_hash(&keys.signature, band);
            self.buckets[band].entry(h).or_default().push(pos);
        }
        self.kept.push((id, keys.signature));
    }

    /// Checks `text` and records it when unique; returns the check.
    pub fn check_and_insert(&mut self, id: u64, text: &str) -> DupCheck {
        let keys = self.keys(text);
        let c = self.check(&keys);
        if c == DupCheck::Unique {
            self.insert(id, keys);
        }
        c
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn signature_estimates_jaccard() {
        let h = MinHasher::new(256, 1);
        let a = "a b c d e f g h i j";
        let b = "a b c d e f g h x y"; // 8 shared of 12 distinct words: J = 2/3
        let s = similarity(&h.signature(a), &h.signature(b));
        assert!((s - 2.0 / 3.0).abs() < 0.1, "{s}");
        assert_eq!(similarity(&h.signature(a), &h.signature(a)), 1.0);
    }

    #[test]
    fn lsh_params_fit_the_threshold() {
        let (b, r) = lsh_params(0.8, 128);
        assert!(b * r <= 128);
        let t = (1.0 / b as f64).powf(1.0 / r as f64);
        assert!((0.6..0.9).contains(&t), "b {b} r {r} t {t}");
    }
}
