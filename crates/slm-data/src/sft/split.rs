//! A seeded, deterministic train/eval split of examples.
//!
//! `round(n · fraction)` examples (at least 1 when `fraction > 0` and there are at least two
//! examples, and never all of them) are held out, chosen by the splitmix shuffle of
//! `crate::batches` from the seed; both parts keep the input order.

use slm_core::{Error, Result};

use crate::batches::shuffled;

/// Splits `items` into `(train, eval)`; `fraction` in `[0, 1)`.
pub fn split_eval<T>(items: Vec<T>, fraction: f64, seed: u64) -> Result<(Vec<T>, Vec<T>)> {
    if !(0.0..1.0).contains(&fraction) {
        return Err(Error::invalid(format!(
            "an evaluation fraction of {fraction}: give a share in [0, 1)"
        )));
    }
    let n = items.len();
    let n_eval = if fraction == 0.0 || n < 2 {
        0
    } else {
        ((n as f64 * fraction).round() as usize).clamp(1, n - 1)
    };
    let mut held = vec![false; n];
    for &i in &shuffled(n, seed, 0)[..n_eval] {
        held[i as usize] = true;
    }
    let mut train = Vec::with_capacity(n - n_eval);
    let mut eval = Vec::with_capacity(n_eval);
    for (item, h) in items.into_iter().zip(held) {
        if h {
            eval.push(item);
        } else {
            train.push(item);
        }
    }
    Ok((train, eval))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn seeded_sizes_and_order() {
        let items: Vec<u32> = (0..100).collect();
        let (train, eval) = split_eval(items.clone(), 0.1, 7).unwrap();
        assert_eq!((train.len(), eval.len()), (90, 10));
        assert!(eval.windows(2).all(|w| w[0] < w[1]));
        assert!(train.windows(2).all(|w| w[0] < w[1]));
        let mut all: Vec<u32> = train.iter().chain(&eval).copied().collect();
        all.sort_unstable();
        assert_eq!(all, items);
        assert_eq!(
            split_eval(items.clone(), 0.1, 7).unwrap(),
            (train, eval.clone())
        );
        assert_ne!(split_eval(items.clone(), 0.1, 8).unwrap().1, eval);

        assert_eq!(split_eval(vec![1, 2], 0.01, 0).unwrap().1.len(), 1);
        assert_eq!(split_eval(vec![1, 2], 0.9, 0).unwrap().1.len(), 1);
        assert_eq!(split_eval(vec![1], 0.5, 0).unwrap(), (vec![1], vec![]));
        assert_eq!(split_eval(items.clone(), 0.0, 0).unwrap().1.len(), 0);
        assert!(split_eval(items.clone(), 1.0, 0).is_err());
        assert!(split_eval(items, f64::NAN, 0).is_err());
    }
}
