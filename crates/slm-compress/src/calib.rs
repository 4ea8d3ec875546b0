//! Calibration windows: the token sequences pruning runs through the model.
//!
//! As SparseGPT's `get_c4` / `get_wikitext2` do, each of `nsamples` windows of `seqlen`
//! tokens starts at an independent uniformly random position of the tokenised calibration
//! text (seeded, so a run is reproducible). Turning text into tokens is the caller's job.

use rand::{rngs::StdRng, Rng, SeedableRng};
use slm_core::{Error, Result};

/// `nsamples` windows of `seqlen` tokens from `tokens`, each starting at a random offset in
/// `0..=tokens.len() − seqlen` drawn from a generator seeded with `seed`.
pub fn calibration_windows(
    tokens: &[u32],
    nsamples: usize,
    seqlen: usize,
    seed: u64,
) -> Result<Vec<Vec<u32>>> {
    if nsamples == 0 || seqlen == 0 {
        return Err(Error::invalid(format!(
            "calibration needs at least one window of at least one token (got {nsamples} windows of {seqlen})"
        )));
    }
    if tokens.len() < seqlen {
        return Err(Error::invalid(format!(
            "the calibration text has {} tokens, but one window needs {seqlen}: give more text or a shorter window",
            tokens.len()
        )));
    }
    let mut rng = StdRng::seed_from_u64(seed);
    let last_start = tokens.len() - seqlen;
    Ok((0..nsamples)
        .map(|_| {
            let i = rng.gen_range(0..=last_start);
            tokens[i..i + seqlen].to_vec()
        })
        .collect())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn windows_are_seeded_slices() {
        let tokens: Vec<u32> = (0..1000).collect();
        let a = calibration_windows(&tokens, 16, 32, 7).unwrap();
        let b = calibration_windows(&tokens, 16, 32, 7).unwrap();
        let c = calibration_windows(&tokens, 16, 32, 8).unwrap();
        assert_eq!(a, b);
        assert_ne!(a, c);
        assert_eq!(a.len(), 16);
        for w in &a {
            assert_eq!(w.len(), 32);
            // Contiguous slices of the text.
            assert!(w.windows(2).all(|p| p[1] == p[0] + 1));
        }
        // Starts are spread out, not all equal.
        let starts: std::collections::BTreeSet<u32> = a.iter().map(|w| w[0]).collect();
        assert!(starts.len() > 8);
        assert_eq!(calibration_windows(&tokens, 2, 1000, 0).unwrap()[0], tokens);
    }

    #[test]
    fn short_text_says_how_short() {
        let e = calibration_windows(&[1, 2, 3], 4, 8, 0)
            .unwrap_err()
            .to_string();
        assert!(e.contains("3 tokens") && e.contains("needs 8"), "{e}");
        assert!(calibration_windows(&[1, 2, 3], 0, 2, 0).is_err());
    }
}
