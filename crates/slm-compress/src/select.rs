//! Turning a score per weight (lower = less important) into a pruning mask.
//!
//! Every score-based method (magnitude, OBD, Wanda) differs only in its score and in the
//! group within which scores are compared: a whole tensor (magnitude, OBD), each output row
//! (Wanda), every selected tensor at once (global magnitude / OBD), or each N:M group of `m`
//! consecutive inputs of a row. Ties are broken by position (lower index pruned first), like
//! a stable sort, so results are deterministic. Scores are `f64` `[rows, cols]` row-major;
//! masks are `Vec<bool>` in the same order, `true` = pruned.

use crate::pattern::Pattern;
use slm_core::select;
pub use slm_core::select::count_to_prune;
use slm_core::{Error, Result};
use std::cmp::Ordering;

/// The set of weights whose scores are compared for an unstructured pattern.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Group {
    /// `int(cols · sparsity)` pruned in each output row (Wanda).
    Row,
    /// `int(rows · cols · sparsity)` pruned in the whole tensor (magnitude, OBD).
    Tensor,
}

/// Sets `mask[i]` for the `k` smallest `scores[i]` (ties: lower index first; NaN last).
/// `idx` is scratch space, reused across calls.
fn prune_smallest(scores: &[f64], k: usize, mask: &mut [bool], idx: &mut Vec<usize>) {
    for &i in select::smallest(scores.len(), k, idx, |a, b| scores[a].total_cmp(&scores[b])) {
        mask[i] = true;
    }
}

/// The mask of a `[rows, cols]` tensor from its `scores`: for N:M the `m − n` smallest of each
/// group of `m` consecutive inputs of a row; for unstructured the smallest scores of each
/// `group` at ratio `sparsity`.
pub fn select_mask(
    scores: &[f64],
    rows: usize,
    cols: usize,
    pattern: Pattern,
    sparsity: f64,
    group: Group,
) -> Result<Vec<bool>> {
    if scores.len() != rows * cols {
        return Err(Error::invalid(format!(
            "scores have {} entries, expected {rows} x {cols}",
            scores.len()
        )));
    }
    if !(0.0..1.0).contains(&sparsity) {
        return Err(Error::invalid(format!(
            "sparsity {sparsity} is outside [0, 1)"
        )));
    }
    pattern.validate()?;
    pattern.check_width(cols, "the tensor")?;
    let mut mask = vec![false; rows * cols];
    let mut idx = Vec::new();
    match pattern {
        Pattern::NM { n, m } => {
            for (s, mk) in scores.chunks_exact(m).zip(mask.chunks_exact_mut(m)) {
                prune_smallest(s, m - n, mk, &mut idx);
            }
        }
        Pattern::Unstructured => match group {
            Group::Row => {
                let k = count_to_prune(cols, sparsity);
                if cols > 0 {
                    for (s, mk) in scores.chunks_exact(cols).zip(mask.chunks_exact_mut(cols)) {
                        prune_smallest(s, k, mk, &mut idx);
                    }
                }
            }
            Group::Tensor => {
                prune_smallest(
                    scores,
                    count_to_prune(rows * cols, sparsity),
                    &mut mask,
                    &mut idx,
                );
            }
        },
    }
    Ok(mask)
}

/// Unstructured masks over several tensors at once: the `int(total · sparsity)` smallest
/// scores of all of them (ties: earlier tensor, then lower index, first). Returns one mask
/// per score slice, in order.
pub fn global_masks(scores: &[&[f64]], sparsity: f64) -> Result<Vec<Vec<bool>>> {
    if !(0.0..1.0).contains(&sparsity) {
        return Err(Error::invalid(format!(
            "sparsity {sparsity} is outside [0, 1)"
        )));
    }
    let total: usize = scores.iter().map(|s| s.len()).sum();
    let k = count_to_prune(total, sparsity);
    let mut masks: Vec<Vec<bool>> = scores.iter().map(|s| vec![false; s.len()]).collect();
    if k == 0 {
        return Ok(masks);
    }
    // The k-th smallest value is the threshold: everything below it goes, then ties at the
    // threshold in order until k are pruned.
    let mut all: Vec<f64> = Vec::with_capacity(total);
    for s in scores {
        all.extend_from_slice(s);
    }
    let (_, kth, _) = all.select_nth_unstable_by(k - 1, |a, b| a.total_cmp(b));
    let thr = *kth;
    drop(all);
    let mut pruned = 0usize;
    for (s, mk) in scores.iter().zip(masks.iter_mut()) {
        for (v, p) in s.iter().zip(mk.iter_mut()) {
            if v.total_cmp(&thr) == Ordering::Less {
                *p = true;
                pruned += 1;
            }
        }
    }
    for (s, mk) in scores.iter().zip(masks.iter_mut()) {
        for (v, p) in s.iter().zip(mk.iter_mut()) {
            if pruned >= k {
                return Ok(masks);
            }
            if v.total_cmp(&thr) == Ordering::Equal {
                *p = true;
                pruned += 1;
            }
        }
    }
    Ok(masks)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn row_tensor_and_nm_groups() {
        // [2, 4]
        let s = [4.0, 1.0, 3.0, 2.0, 0.5, 0.6, 9.0, 8.0];
        let row = select_mask(&s, 2, 4, Pattern::Unstructured, 0.5, Group::Row).unwrap();
        assert_eq!(row, [false, true, false, true, true, true, false, false]);
        let t = select_mask(&s, 2, 4, Pattern::Unstructured, 0.5, Group::Tensor).unwrap();
        assert_eq!(t, [false, true, false, true, true, true, false, false]);
        let t = select_mask(&s, 2, 4, Pattern::Unstructured, 0.25, Group::Tensor).unwrap();
        assert_eq!(t, [false, false, false, false, true, true, false, false]);
        let nm = select_mask(&s, 2, 4, Pattern::NM { n: 1, m: 2 }, 0.0, Group::Row).unwrap();
        assert_eq!(nm, [false, true, false, true, true, false, false, true]);
    }

    #[test]
    fn ties_go_in_index_order() {
        let s = [1.0, 1.0, 1.0, 1.0];
        let m = select_mask(&s, 1, 4, Pattern::Unstructured, 0.5, Group::Row).unwrap();
        assert_eq!(m, [true, true, false, false]);
        let g = global_masks(&[&s[..2], &s[2..]], 0.75).unwrap();
        assert_eq!(g, vec![vec![true, true], vec![true, false]]);
    }

    #[test]
    fn global_takes_smallest_across_tensors() {
        let a = [5.0, 0.1, 7.0];
        let b = [0.2, 9.0, 0.3, 8.0];
        let g = global_masks(&[&a, &b], 0.5).unwrap();
        assert_eq!(
            g,
            vec![vec![false, true, false], vec![true, false, true, false]]
        );
        assert!(global_masks(&[&a], 1.0).is_err());
    }
}
