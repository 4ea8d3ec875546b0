//! Sparsity patterns: which sets of weights may be zeroed.
//!
//! `Unstructured` lets any weight go. `NM { n, m }` keeps at most `n` non-zeros in every group
//! of `m` consecutive inputs of each output row (2:4 keeps 2 of every 4), the layout that
//! sparse tensor cores and N:M CPU kernels read; the groups start at input 0, so `m` must
//! divide the layer's input width. This is the convention of the Wanda paper and NVIDIA; the
//! official SparseGPT code's `prunen` is the number *pruned* per group (m − n), the same
//! number for 2:4 and 4:8.

use serde::{Deserialize, Serialize};
use slm_core::{Error, Result};
use std::fmt;

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum Pattern {
    /// Any weight may be pruned; the sparsity is the configured ratio.
    Unstructured,
    /// At most `n` non-zeros in every `m` consecutive inputs of a row (1 ≤ n < m); the
    /// sparsity is exactly 1 − n/m.
    NM { n: usize, m: usize },
}

impl Pattern {
    /// Parses `unstructured` or `N:M` (`2:4`, `4:8`).
    pub fn parse(s: &str) -> Result<Self> {
        let s = s.trim();
        if s.eq_ignore_ascii_case("unstructured") {
            return Ok(Pattern::Unstructured);
        }
        let bad = || {
            Error::invalid(format!(
                "pattern `{s}`: expected `unstructured` or N:M such as 2:4 or 4:8"
            ))
        };
        let (n, m) = s.split_once(':').ok_or_else(bad)?;
        let n: usize = n.trim().parse().map_err(|_| bad())?;
        let m: usize = m.trim().parse().map_err(|_| bad())?;
        let p = Pattern::NM { n, m };
        p.validate()?;
        Ok(p)
    }

    /// Checks 1 ≤ n < m for N:M.
    pub fn validate(&self) -> Result<()> {
        match *self {
            Pattern::Unstructured => Ok(()),
            Pattern::NM { n, m } => {
                if n == 0 || n >= m {
                    Err(Error::invalid(format!(
                        "pattern {n}:{m}: N:M keeps N of every M weights and needs 1 ≤ N < M"
                    )))
                } else {
                    Ok(())
                }
            }
        }
    }

    /// Checks that the groups tile an input width of `cols` (`m` divides it); `name` is the
    /// tensor named in the error.
    pub fn check_width(&self, cols: usize, name: &str) -> Result<()> {
        match *self {
            Pattern::NM { n, m } if m == 0 || !cols.is_multiple_of(m) => Err(Error::invalid(format!(
                "pattern {n}:{m} needs the input width to be a multiple of {m}, but `{name}` has {cols} inputs"
            ))),
            _ => Ok(()),
        }
    }

    /// The fraction of weights this pattern zeroes given the configured `sparsity`.
    pub fn effective_sparsity(&self, sparsity: f64) -> f64 {
        match *self {
            Pattern::Unstructured => sparsity,
            Pattern::NM { n, m } => 1.0 - n as f64 / m as f64,
        }
    }
}

impl fmt::Display for Pattern {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Pattern::Unstructured => f.write_str("unstructured"),
            Pattern::NM { n, m } => write!(f, "{n}:{m}"),
        }
    }
}

/// True when `mask` (`[rows, cols]` row-major, `true` = pruned) prunes exactly `m − n` of
/// every group of `m` consecutive inputs of every row.
pub fn check_nm(mask: &[bool], rows: usize, cols: usize, n: usize, m: usize) -> bool {
    if m == 0 || n >= m || !cols.is_multiple_of(m) || mask.len() != rows * cols {
        return false;
    }
    mask.chunks_exact(m)
        .all(|g| g.iter().filter(|&&p| p).count() == m - n)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_and_validates() {
        assert_eq!(Pattern::parse("2:4").unwrap(), Pattern::NM { n: 2, m: 4 });
        assert_eq!(Pattern::parse(" 4:8 ").unwrap(), Pattern::NM { n: 4, m: 8 });
        assert_eq!(
            Pattern::parse("Unstructured").unwrap(),
            Pattern::Unstructured
        );
        for bad in ["4:4", "0:4", "5:4", "2-4", "a:b", ""] {
            assert!(Pattern::parse(bad).is_err(), "{bad}");
        }
        assert_eq!(Pattern::NM { n: 2, m: 4 }.to_string(), "2:4");
        assert_eq!(Pattern::NM { n: 1, m: 4 }.effective_sparsity(0.1), 0.75);
        let e = Pattern::NM { n: 2, m: 8 }
            .check_width(20, "model.layers.0.mlp.down_proj.weight")
            .unwrap_err()
            .to_string();
        assert!(e.contains("down_proj") && e.contains("20"), "{e}");
    }

    #[test]
    fn nm_check() {
        let mask = [true, false, true, false, false, true, true, false];
        assert!(check_nm(&mask, 2, 4, 2, 4));
        assert!(check_nm(&mask, 1, 8, 4, 8));
        assert!(!check_nm(&mask, 1, 8, 2, 8));
    }
}
