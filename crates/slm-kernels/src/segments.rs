//! Packed sequences: several examples back to back in one row of `seq` tokens, described by
//! the start of each position's example.
//!
//! `starts` [batch·seq] (row-major like the token ids): `starts[r]` is the index, within
//! r's row, where the example holding position `r % seq` begins. Attention then lets
//! position p see only `starts[p]..=p` of its row, and RoPE rotates it to position
//! `p − starts[p]`, so each example is computed exactly as if it ran alone. A padding
//! position is an example of its own (`starts[p] = p`). `None` everywhere means one example
//! per row (plain causal attention, position p).
//!
//! Valid starts, per row: `starts[p] ≤ p`, and for p > 0 `starts[p]` is `starts[p−1]` (p
//! continues the example before it) or `p` (p begins a new one). So `starts[0] = 0`, the
//! values never decrease along a row, and the examples are contiguous.

use slm_core::{Error, Result};

/// Checks `starts` for `batch` rows of `seq` positions (see the module documentation).
pub fn check_starts(starts: &[u32], batch: usize, seq: usize) -> Result<()> {
    if starts.len() != batch * seq {
        return Err(Error::invalid(format!(
            "segment starts: {} values for batch {batch} × seq {seq}",
            starts.len()
        )));
    }
    if seq == 0 {
        return Ok(());
    }
    for (b, row) in starts.chunks_exact(seq).enumerate() {
        for (p, &s) in row.iter().enumerate() {
            let s = s as usize;
            if s > p {
                return Err(Error::invalid(format!(
                    "segment starts: row {b} position {p} starts at {s}, after itself"
                )));
            }
            if p > 0 && s != p && s != row[p - 1] as usize {
                return Err(Error::invalid(format!(
                    "segment starts: row {b} position {p} starts at {s}, but position {} \
                     starts at {} (an example must continue the one before it or begin at p)",
                    p - 1,
                    row[p - 1]
                )));
            }
        }
    }
    Ok(())
}

/// The starts of one row of `seq` positions holding examples of `lengths` back to back,
/// the positions after them padding (each its own example).
pub fn row_starts(lengths: &[usize], seq: usize) -> Result<Vec<u32>> {
    let used: usize = lengths.iter().sum();
    if used > seq {
        return Err(Error::invalid(format!(
            "segment starts: examples of {used} tokens do not fit a row of {seq}"
        )));
    }
    let mut starts = Vec::with_capacity(seq);
    for &len in lengths {
        let s = starts.len() as u32;
        starts.extend(std::iter::repeat_n(s, len));
    }
    while starts.len() < seq {
        starts.push(starts.len() as u32);
    }
    Ok(starts)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rows_from_lengths_are_valid() {
        let s = row_starts(&[3, 0, 2], 7).unwrap();
        assert_eq!(s, [0, 0, 0, 3, 3, 5, 6]);
        check_starts(&s, 1, 7).unwrap();
        assert!(row_starts(&[4, 4], 7).is_err());
        // Every position its own example, or one example per row.
        check_starts(&[0, 1, 2, 0, 0, 0], 2, 3).unwrap();
    }

    #[test]
    fn bad_starts_are_errors() {
        assert!(check_starts(&[0, 0], 1, 3).is_err()); // length
        assert!(check_starts(&[1, 1, 1], 1, 3).is_err()); // after itself
        assert!(check_starts(&[0, 0, 0, 0, 2, 2], 2, 3).is_err()); // row 1 position 1
        assert!(check_starts(&[0, 1, 0], 1, 3).is_err()); // goes back
        assert!(check_starts(&[0, 0, 1], 1, 3).is_err()); // neither before nor itself
    }
}
