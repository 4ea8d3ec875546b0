//! Tokenised examples into fixed-length training rows, several short examples to a row.
//!
//! A row has `seq` positions, three arrays of `seq` each:
//!
//! - `inputs[p]`: the token at position `p`;
//! - `targets[p]`: the token to predict after it, or [`IGNORE_INDEX`] where it is not trained
//!   (prompt tokens, padding);
//! - `starts[p]`: the row index where the example holding `p` begins. Attention at `p` sees
//!   only positions `starts[p]..=p`, and its RoPE position is `p - starts[p]`: examples packed
//!   in one row neither see each other nor inherit each other's positions.
//!
//! An example of `m` tokens takes `m - 1` positions: inputs `ids[..m-1]`, targets `ids[1..]`
//! where `trained[1..]` says so. Examples longer than `seq + 1` tokens are cut to their first
//! `seq + 1` (counted as truncated; the prompt is kept, the end of the answer lost); examples
//! with no trained target left are dropped (counted). Padding: input `pad_id`, target
//! [`IGNORE_INDEX`], `starts[p] = p` (a segment of its own, attending to itself only).
//!
//! [`Packing::On`] places whole examples (never split across rows) by best-fit decreasing:
//! examples by length, longest first (ties by input order), each into the row with the least
//! room that still fits it (ties: the oldest row), else a new row; within a row, examples keep
//! their input order. Deterministic, and within 11/9 of the fewest rows. [`Packing::Off`]:
//! one example per row, in input order.

use std::collections::BTreeSet;

use serde::{Deserialize, Serialize};
use slm_core::{Error, Result};
pub use slm_kernels::IGNORE_INDEX;

use super::tokenize::TokenizedExample;

/// Whether several examples share a row.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Packing {
    /// Whole examples packed by best-fit decreasing.
    #[default]
    On,
    /// One example per row.
    Off,
}

/// What packing kept, cut and dropped.
#[derive(Debug, Clone, Copy, PartialEq, Default, Serialize)]
pub struct PackStats {
    pub rows: usize,
    /// Examples placed in rows.
    pub examples: usize,
    /// Examples cut to `seq + 1` tokens.
    pub truncated: usize,
    /// Examples left out: no trained target (after truncation), or fewer than two tokens.
    pub dropped: usize,
    /// Targets in the loss.
    pub trained_tokens: usize,
    /// Positions holding example tokens / all positions (0 without rows).
    pub fill: f64,
}

/// Training rows, flat and row-major: each array is `[rows, seq]`.
#[derive(Debug, Clone, PartialEq)]
pub struct Packed {
    pub seq: usize,
    pub inputs: Vec<u32>,
    pub targets: Vec<u32>,
    pub starts: Vec<u32>,
    pub stats: PackStats,
}

/// One row's three arrays, `seq` each.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RowRef<'a> {
    pub inputs: &'a [u32],
    pub targets: &'a [u32],
    pub starts: &'a [u32],
}

impl Packed {
    pub fn rows(&self) -> usize {
        self.stats.rows
    }

    /// Row `r` (`r < rows()`).
    pub fn row(&self, r: usize) -> RowRef<'_> {
        let span = r * self.seq..(r + 1) * self.seq;
        RowRef {
            inputs: &self.inputs[span.clone()],
            targets: &self.targets[span.clone()],
            starts: &self.starts[span],
        }
    }
}

/// Packs `examples` into rows of `seq` positions (see the module documentation); `pad_id`
/// fills unused positions' inputs (e.g. the EOS id).
pub fn pack(
    examples: &[TokenizedExample],
    seq: usize,
    packing: Packing,
    pad_id: u32,
) -> Result<Packed> {
    if seq == 0 || u32::try_from(seq).is_err() {
        return Err(Error::invalid(format!(
            "a training row of {seq} positions: give a sequence length of at least 1"
        )));
    }
    let mut stats = PackStats::default();
    // (example index, positions) of the examples kept.
    let mut kept: Vec<(usize, usize)> = Vec::with_capacity(examples.len());
    for (i, ex) in examples.iter().enumerate() {
        if ex.ids.len() != ex.trained.len() {
            return Err(Error::invalid(format!(
                "example {i} has {} ids but {} loss flags",
                ex.ids.len(),
                ex.trained.len()
            )));
        }
        let m = ex.ids.len().min(seq + 1);
        if ex.ids.len() > seq + 1 {
            stats.truncated += 1;
        }
        if m < 2 || !ex.trained[1..m].iter().any(|&t| t) {
            stats.dropped += 1;
            continue;
        }
        kept.push((i, m - 1));
    }
    let rows = match packing {
        Packing::Off => kept.iter().map(|&(i, _)| vec![i]).collect(),
        Packing::On => best_fit_decreasing(&kept, seq),
    };

    let n = rows.len() * seq;
    let mut inputs = vec![pad_id; n];
    let mut targets = vec![IGNORE_INDEX; n];
    let mut starts: Vec<u32> = (0..n).map(|p| (p % seq) as u32).collect();
    let mut used = 0;
    for (r, row) in rows.iter().enumerate() {
        let mut at = 0;
        for &i in row {
            let ex = &examples[i];
            let len = ex.ids.len().min(seq + 1) - 1;
            let base = r * seq + at;
            for p in 0..len {
                inputs[base + p] = ex.ids[p];
                if ex.trained[p + 1] {
                    targets[base + p] = ex.ids[p + 1];
                    stats.trained_tokens += 1;
                }
                starts[base + p] = at as u32;
            }
            at += len;
        }
        used += at;
    }
    stats.rows = rows.len();
    stats.examples = kept.len();
    stats.fill = if n == 0 { 0.0 } else { used as f64 / n as f64 };
    Ok(Packed {
        seq,
        inputs,
        targets,
        starts,
        stats,
    })
}

/// Rows of example indices: best-fit decreasing over `(index, positions)` (see the module
/// documentation).
fn best_fit_decreasing(kept: &[(usize, usize)], seq: usize) -> Vec<Vec<usize>> {
    let mut by_len = kept.to_vec();
    by_len.sort_by_key(|&(i, len)| (std::cmp::Reverse(len), i));
    let mut rows: Vec<Vec<usize>> = Vec::new();
    // (room left, row) of rows with room.
    let mut open: BTreeSet<(usize, usize)> = BTreeSet::new();
    for (i, len) in by_len {
        let fit = open.range((len, 0)..).next().copied();
        let (room, r) = match fit {
            Some(slot) => {
                open.remove(&slot);
                slot
            }
            None => {
                rows.push(Vec::new());
                (seq, rows.len() - 1)
            }
        };
        rows[r].push(i);
        if room > len {
            open.insert((room - len, r));
        }
    }
    for row in &mut rows {
        row.sort_unstable();
    }
    rows
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;

    /// An example of `len` tokens (ids `base..`), trained from token `from` on.
    pub(crate) fn ex(base: u32, len: usize, from: usize) -> TokenizedExample {
        TokenizedExample {
            ids: (0..len as u32).map(|k| base + k).collect(),
            trained: (0..len).map(|k| k >= from.max(1)).collect(),
        }
    }

    /// Checks the row invariants (segments contiguous, starting at their first position;
    /// padding only at a row's end, one-position segments with the pad input and no target;
    /// the stats); returns the (input, target) pairs trained, row by row.
    pub(crate) fn check(p: &Packed, pad: u32) -> Vec<(u32, u32)> {
        assert_eq!(p.inputs.len(), p.stats.rows * p.seq);
        assert_eq!(p.targets.len(), p.inputs.len());
        assert_eq!(p.starts.len(), p.inputs.len());
        let mut pairs = Vec::new();
        let mut used = 0;
        for r in 0..p.rows() {
            let row = p.row(r);
            let mut q = 0;
            let mut padding = false;
            while q < p.seq {
                assert_eq!(
                    row.starts[q] as usize, q,
                    "row {r}: a segment starts at {q}"
                );
                let len = row.starts[q..]
                    .iter()
                    .take_while(|&&s| s as usize == q)
                    .count();
                let seg = q..q + len;
                let trained = row.targets[seg.clone()]
                    .iter()
                    .filter(|&&t| t != IGNORE_INDEX)
                    .count();
                if trained == 0 {
                    // Examples have a trained target: this is padding.
                    assert_eq!(len, 1);
                    assert_eq!(row.inputs[q], pad);
                    padding = true;
                } else {
                    assert!(!padding, "row {r}: an example after padding");
                    used += len;
                    for k in seg {
                        if row.targets[k] != IGNORE_INDEX {
                            pairs.push((row.inputs[k], row.targets[k]));
                        }
                    }
                }
                q += len;
            }
        }
        assert_eq!(pairs.len(), p.stats.trained_tokens);
        if p.rows() > 0 {
            assert!((p.stats.fill - used as f64 / (p.rows() * p.seq) as f64).abs() < 1e-12);
        }
        pairs
    }

    #[test]
    fn packs_whole_examples_with_segment_starts() {
        // Lengths 5, 3, 4 (positions 4, 2, 3) into rows of 6: 4+2 and 3.
        let exs = vec![ex(100, 5, 2), ex(200, 3, 1), ex(300, 4, 3)];
        let p = pack(&exs, 6, Packing::On, 0).unwrap();
        assert_eq!(p.stats.rows, 2);
        assert_eq!(p.stats.examples, 3);
        assert_eq!(p.row(0).inputs, [100, 101, 102, 103, 200, 201]);
        assert_eq!(p.row(0).starts, [0, 0, 0, 0, 4, 4]);
        let ig = IGNORE_INDEX;
        assert_eq!(p.row(0).targets, [ig, 102, 103, 104, 201, 202]);
        assert_eq!(p.row(1).inputs, [300, 301, 302, 0, 0, 0]);
        assert_eq!(p.row(1).targets, [ig, ig, 303, ig, ig, ig]);
        assert_eq!(p.row(1).starts, [0, 0, 0, 3, 4, 5]);
        assert_eq!(p.stats.trained_tokens, 3 + 2 + 1);
        assert!((p.stats.fill - 9.0 / 12.0).abs() < 1e-12);
        check(&p, 0);

        let off = pack(&exs, 6, Packing::Off, 7).unwrap();
        assert_eq!(off.rows(), 3);
        assert_eq!(off.row(1).inputs, [200, 201, 7, 7, 7, 7]);
        assert_eq!(off.row(1).starts, [0, 0, 2, 3, 4, 5]);
        let mut a = check(&off, 7);
        let mut b = check(&p, 0);
        a.sort_unstable();
        b.sort_unstable();
        assert_eq!(a, b);
    }

    #[test]
    fn truncates_and_drops() {
        let exs = vec![
            ex(100, 10, 8), // cut to 5 tokens: its trained targets (8, 9) are lost: dropped
            ex(200, 10, 2), // cut to 5 tokens: targets 202, 203, 204 kept
            ex(300, 1, 0),  // one token: nothing to predict
            ex(400, 3, 5),  // nothing trained
        ];
        let p = pack(&exs, 4, Packing::On, 0).unwrap();
        assert_eq!(p.stats.truncated, 2);
        assert_eq!(p.stats.dropped, 3);
        assert_eq!(p.stats.examples, 1);
        assert_eq!(p.row(0).inputs, [200, 201, 202, 203]);
        assert_eq!(p.row(0).targets, [IGNORE_INDEX, 202, 203, 204]);
        assert!(pack(&exs, 0, Packing::On, 0).is_err());
        let bad = vec![TokenizedExample {
            ids: vec![1, 2],
            trained: vec![false],
        }];
        assert!(pack(&bad, 4, Packing::On, 0).is_err());
        let none = pack(&[], 4, Packing::On, 0).unwrap();
        assert_eq!(none.rows(), 0);
        assert_eq!(none.stats.fill, 0.0);
    }

    #[test]
    fn every_trained_target_once_and_deterministic() {
        // Pseudo-random lengths; each example's ids are distinct across examples.
        let mut state = 5u64;
        let exs: Vec<TokenizedExample> = (0..200)
            .map(|k| {
                state = state
                    .wrapping_mul(6364136223846793005)
                    .wrapping_add(1442695040888963407);
                let len = 2 + (state >> 33) as usize % 40;
                let from = (state >> 20) as usize % len;
                ex(k * 1000, len, from)
            })
            .collect();
        let want: usize = exs
            .iter()
            .map(|e| {
                e.trained[1..e.ids.len().min(33)]
                    .iter()
                    .filter(|&&t| t)
                    .count()
            })
            .sum();
        for packing in [Packing::On, Packing::Off] {
            let p = pack(&exs, 32, packing, 1).unwrap();
            let mut pairs = check(&p, 1);
            assert_eq!(pairs.len(), want);
            // Every pair is (id, id + 1) of one example, each exactly once.
            assert!(pairs
                .iter()
                .all(|&(a, b)| b == a + 1 && a / 1000 == b / 1000));
            pairs.sort_unstable();
            pairs.dedup();
            assert_eq!(pairs.len(), want);
            assert_eq!(p.stats.examples + p.stats.dropped, exs.len());
            assert_eq!(pack(&exs, 32, packing, 1).unwrap(), p);
            if packing == Packing::Off {
                assert_eq!(p.rows(), p.stats.examples);
            } else {
                // Each row's segments are whole examples: inputs run on from each start.
                for r in 0..p.rows() {
                    let row = p.row(r);
                    for q in 1..p.seq {
                        if row.starts[q] as usize != q {
                            assert_eq!(row.inputs[q], row.inputs[q - 1] + 1);
                        }
                    }
                }
                // Best-fit decreasing: within 11/9 of the fewest rows (+ 1).
                let used = (p.stats.fill * (p.rows() * p.seq) as f64).round() as usize;
                let fewest = used.div_ceil(p.seq);
                assert!(
                    p.rows() <= fewest * 11 / 9 + 1,
                    "{} rows, {fewest} at best",
                    p.rows()
                );
                let off_rows = pack(&exs, 32, Packing::Off, 1).unwrap().rows();
                assert!(p.rows() < off_rows, "{} rows vs {off_rows}", p.rows());
            }
        }
    }
}
