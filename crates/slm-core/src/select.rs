//! The one selection rule behind every pruning mask: how many weights a sparsity means, and
//! which are the smallest.
//!
//! One-shot pruning (`slm-compress`) and gradual pruning during training (`slm-train`) both
//! select through here, so "50% of a tensor" means the same weights everywhere: `int(count ·
//! sparsity)` of them (as the reference implementations of SparseGPT and Wanda count), the
//! smallest by the caller's key, ties broken by position (lower index first, like a stable
//! sort) so results are deterministic.

use std::cmp::Ordering;

/// The number of weights of `count` to prune at ratio `sparsity`: `int(count · sparsity)`.
pub fn count_to_prune(count: usize, sparsity: f64) -> usize {
    ((count as f64 * sparsity) as usize).min(count)
}

/// The indices of the `k` smallest of `len` entries ordered by `key_order` (ties: lower
/// index first), in no particular order. `idx` is scratch space, reused across calls.
pub fn smallest(
    len: usize,
    k: usize,
    idx: &mut Vec<usize>,
    key_order: impl Fn(usize, usize) -> Ordering,
) -> &[usize] {
    let k = k.min(len);
    idx.clear();
    if k == 0 {
        return idx;
    }
    idx.extend(0..len);
    if k < len {
        idx.select_nth_unstable_by(k - 1, |&a, &b| key_order(a, b).then(a.cmp(&b)));
    }
    &idx[..k]
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn counts_truncate() {
        assert_eq!(count_to_prune(10, 0.55), 5);
        assert_eq!(count_to_prune(8, 0.75), 6);
        assert_eq!(count_to_prune(3, 0.99), 2);
        assert_eq!(count_to_prune(4, 2.0), 4);
    }

    #[test]
    fn smallest_breaks_ties_by_position() {
        let keys = [3.0f64, 1.0, 2.0, 1.0, 0.5];
        let mut idx = Vec::new();
        let mut got = smallest(5, 3, &mut idx, |a, b| keys[a].total_cmp(&keys[b])).to_vec();
        got.sort();
        assert_eq!(got, vec![1, 3, 4]);
        let mut two = smallest(5, 2, &mut idx, |a, b| keys[a].total_cmp(&keys[b])).to_vec();
        two.sort();
        assert_eq!(two, vec![1, 4]); // 1.0 at 1 and 3 tie: position 1 first
        assert!(smallest(5, 0, &mut idx, |_, _| Ordering::Equal).is_empty());
        assert_eq!(smallest(2, 9, &mut idx, |_, _| Ordering::Equal).len(), 2);
    }
}
