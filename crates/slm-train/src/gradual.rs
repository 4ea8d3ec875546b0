//! Gradual magnitude pruning during training, with the cubic schedule of Zhu & Gupta (2017,
//! "To prune, or not to prune"):
//!
//! ```text
//! s_t = s_f + (s_i − s_f) · (1 − (t − t₀) / (t₁ − t₀))³      for t₀ ≤ t ≤ t₁
//! ```
//!
//! Every `every` steps between `start` (t₀) and `end` (t₁), and once more at `end`, each
//! linear weight matrix of the decoder blocks is pruned to s_t by magnitude within the
//! tensor (the weights already pruned are zero, so the masks only grow); between updates
//! the trainer holds the masks, so pruned weights stay exactly zero. The schedule prunes
//! fast while the network is still redundant and slowly as it approaches the target, and
//! leaves the steps after `end` to recover at the final sparsity.

use serde::{Deserialize, Serialize};
use slm_core::select::{count_to_prune, smallest};
use slm_core::{Error, Result};

/// The schedule (see the module documentation).
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct GradualPruning {
    /// s_i: sparsity at the first update.
    pub initial: f64,
    /// s_f: the final sparsity.
    pub target: f64,
    /// t₀: the step of the first update.
    pub start: u64,
    /// t₁: the step the target is reached.
    pub end: u64,
    /// Δt: steps between updates.
    pub every: u64,
}

impl GradualPruning {
    pub fn validate(&self) -> Result<()> {
        for (k, s) in [
            ("prune_initial", self.initial),
            ("prune_sparsity", self.target),
        ] {
            if !(0.0..1.0).contains(&s) {
                return Err(Error::config(format!("`{k}` must be in [0, 1), got {s}")));
            }
        }
        if self.initial > self.target {
            return Err(Error::config(format!(
                "`prune_initial` ({}) exceeds the target `prune_sparsity` ({})",
                self.initial, self.target
            )));
        }
        if self.end < self.start {
            return Err(Error::config(format!(
                "`prune_end` ({}) is before `prune_start` ({})",
                self.end, self.start
            )));
        }
        if self.every == 0 {
            return Err(Error::config("`prune_every` must be at least 1"));
        }
        Ok(())
    }

    /// s_t: 0 before `start`, the cubic ramp, then the target.
    pub fn sparsity_at(&self, step: u64) -> f64 {
        if step < self.start {
            return 0.0;
        }
        if step >= self.end {
            return self.target;
        }
        let progress = (step - self.start) as f64 / (self.end - self.start) as f64;
        self.target + (self.initial - self.target) * (1.0 - progress).powi(3)
    }

    /// Whether the masks are recomputed after optimiser step `step` (1-based count of
    /// steps done).
    pub fn updates_at(&self, step: u64) -> bool {
        step >= self.start
            && step <= self.end
            && ((step - self.start).is_multiple_of(self.every) || step == self.end)
    }
}

/// Zeros the `int(sparsity · len)` entries of smallest magnitude (`slm_core::select`, the
/// rule one-shot pruning uses; ties broken by position, so the result is deterministic).
/// Entries already zero count towards the target. Returns the number of zeros afterwards.
pub fn prune_smallest(values: &mut [f32], sparsity: f64) -> usize {
    let k = count_to_prune(values.len(), sparsity);
    let mut idx = Vec::new();
    let order = |a: usize, b: usize| values[a].abs().total_cmp(&values[b].abs());
    let chosen = smallest(values.len(), k, &mut idx, order).to_vec();
    for i in chosen {
        values[i] = 0.0;
    }
    values.iter().filter(|v| **v == 0.0).count()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cubic_schedule_matches_the_formula() {
        let g = GradualPruning {
            initial: 0.0,
            target: 0.8,
            start: 10,
            end: 110,
            every: 10,
        };
        g.validate().unwrap();
        assert_eq!(g.sparsity_at(0), 0.0);
        assert_eq!(g.sparsity_at(10), 0.0);
        // t − t₀ = 50 of 100: 0.8 + (0 − 0.8)·0.5³ = 0.7.
        assert!((g.sparsity_at(60) - 0.7).abs() < 1e-12);
        assert_eq!(g.sparsity_at(110), 0.8);
        assert_eq!(g.sparsity_at(500), 0.8);
        for t in 10..110 {
            assert!(g.sparsity_at(t + 1) >= g.sparsity_at(t));
        }
        let updates: Vec<u64> = (0..200).filter(|&t| g.updates_at(t)).collect();
        assert_eq!(updates, vec![10, 20, 30, 40, 50, 60, 70, 80, 90, 100, 110]);
        let odd = GradualPruning { every: 30, ..g };
        let updates: Vec<u64> = (0..200).filter(|&t| odd.updates_at(t)).collect();
        assert_eq!(updates, vec![10, 40, 70, 100, 110]);
    }

    #[test]
    fn bad_schedules_are_rejected() {
        let g = GradualPruning {
            initial: 0.0,
            target: 0.5,
            start: 0,
            end: 10,
            every: 1,
        };
        assert!(GradualPruning { target: 1.0, ..g }.validate().is_err());
        assert!(GradualPruning { initial: 0.6, ..g }.validate().is_err());
        assert!(GradualPruning { start: 11, ..g }.validate().is_err());
        assert!(GradualPruning { every: 0, ..g }.validate().is_err());
    }

    #[test]
    fn prune_smallest_zeros_the_smallest_magnitudes() {
        let mut v = vec![0.5, -0.1, 0.0, 2.0, -3.0, 0.2, 0.1, -0.7];
        assert_eq!(prune_smallest(&mut v, 0.5), 4);
        // Zeroed: 0.0 (already), then |−0.1| and |0.1| (tie: lower position first), then 0.2.
        assert_eq!(v, vec![0.5, 0.0, 0.0, 2.0, -3.0, 0.0, 0.0, -0.7]);
        // Growing the sparsity keeps earlier zeros.
        assert_eq!(prune_smallest(&mut v, 0.75), 6);
        assert_eq!(v, vec![0.0, 0.0, 0.0, 2.0, -3.0, 0.0, 0.0, 0.0]);
        assert_eq!(prune_smallest(&mut v, 0.0), 6);
    }
}
