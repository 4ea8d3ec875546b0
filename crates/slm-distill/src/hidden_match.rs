//! Hidden-state matching losses for distillation (DistillKit's hidden-state loss): how far
//! the student's (projected) hidden states `y` [n, d] are from the teacher's `t` [n, d],
//! row by row, with the gradient ∂loss/∂y.
//!
//! - **Cosine**: `mean over rows of (1 − cos(y_r, t_r))`. Scale-free, so it matches the
//!   directions of residual streams whose norms differ between models. For a row,
//!   `∂/∂y = −(t/(|y||t|) − cos · y/|y|²) / n`. A zero row (|y| or |t| below 1e-12) counts
//!   as cosine 0 with zero gradient.
//! - **MSE**: `mean over all n·d elements of (y − t)²`, gradient `2(y − t)/(n·d)`.
//!
//! [`hidden_match_fwd_bwd`] returns the loss times `scale` and writes `scale · ∂loss/∂y`
//! (overwriting `dy`); rows run in parallel. [`hidden_match_naive`] is the f64 loop twin.

use rayon::prelude::*;
use serde::{Deserialize, Serialize};
use slm_core::{Error, Result};
use std::fmt;

/// Fails naming `what` unless a buffer of `len` elements matches a shape of `needed`.
fn check_len(what: &str, len: usize, needed: usize) -> Result<()> {
    if len != needed {
        return Err(Error::invalid(format!(
            "{what}: buffer holds {len} elements, the shape needs {needed}"
        )));
    }
    Ok(())
}

/// Which distance between hidden states (`cosine` or `mse` in settings files).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "lowercase", try_from = "String")]
pub enum HiddenMatch {
    /// 1 − cosine similarity, averaged over rows.
    #[default]
    Cosine,
    /// Mean squared error over elements.
    Mse,
}

impl HiddenMatch {
    /// Parses `cosine` or `mse`.
    pub fn parse(s: &str) -> Result<Self> {
        match s.trim().to_ascii_lowercase().as_str() {
            "cosine" | "cos" => Ok(Self::Cosine),
            "mse" => Ok(Self::Mse),
            other => Err(Error::invalid(format!(
                "unknown hidden-state loss `{other}`: use `cosine` or `mse`"
            ))),
        }
    }
}

impl TryFrom<String> for HiddenMatch {
    type Error = Error;
    fn try_from(s: String) -> Result<Self> {
        Self::parse(&s)
    }
}

impl fmt::Display for HiddenMatch {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Self::Cosine => "cosine",
            Self::Mse => "mse",
        })
    }
}

/// Norms below this count as zero.
const TINY: f64 = 1e-12;

/// Loss of one row and (when `dy` is given) its gradient times `g` (the row's share).
fn row(kind: HiddenMatch, y: &[f32], t: &[f32], dy: Option<&mut [f32]>, g: f64) -> f64 {
    match kind {
        HiddenMatch::Mse => {
            let mut sum = 0.0f64;
            match dy {
                Some(dy) => {
                    for ((d, &a), &b) in dy.iter_mut().zip(y).zip(t) {
                        let e = a as f64 - b as f64;
                        sum += e * e;
                        *d = (2.0 * e * g) as f32;
                    }
                }
                None => {
                    for (&a, &b) in y.iter().zip(t) {
                        let e = a as f64 - b as f64;
                        sum += e * e;
                    }
                }
            }
            sum
        }
        HiddenMatch::Cosine => {
            let (mut yy, mut tt, mut yt) = (0.0f64, 0.0f64, 0.0f64);
            for (&a, &b) in y.iter().zip(t) {
                let (a, b) = (a as f64, b as f64);
                yy += a * a;
                tt += b * b;
                yt += a * b;
            }
            let (ny, nt) = (yy.sqrt(), tt.sqrt());
            if ny < TINY || nt < TINY {
                if let Some(dy) = dy {
                    dy.fill(0.0);
                }
                return 1.0;
            }
            let cos = yt / (ny * nt);
            if let Some(dy) = dy {
                let (a, b) = (1.0 / (ny * nt), cos / yy);
                for ((d, &yv), &tv) in dy.iter_mut().zip(y).zip(t) {
                    *d = (-g * (a * tv as f64 - b * yv as f64)) as f32;
                }
            }
            1.0 - cos
        }
    }
}

/// The per-row normaliser: rows for cosine, elements for MSE.
fn denominator(kind: HiddenMatch, n: usize, d: usize) -> f64 {
    match kind {
        HiddenMatch::Cosine => n as f64,
        HiddenMatch::Mse => (n * d) as f64,
    }
}

/// `scale · loss(y, t)` over `n` rows of width `d`; writes `scale · ∂loss/∂y` into `dy`
/// when given (see the module documentation).
pub fn hidden_match_fwd_bwd(
    kind: HiddenMatch,
    y: &[f32],
    t: &[f32],
    dy: Option<&mut [f32]>,
    n: usize,
    d: usize,
    scale: f32,
) -> Result<f64> {
    check_len("hidden_match y", y.len(), n * d)?;
    check_len("hidden_match t", t.len(), n * d)?;
    if n == 0 || d == 0 {
        return Ok(0.0);
    }
    let g = scale as f64 / denominator(kind, n, d);
    let sum: f64 = match dy {
        Some(dy) => {
            check_len("hidden_match dy", dy.len(), n * d)?;
            dy.par_chunks_mut(d)
                .zip(y.par_chunks(d).zip(t.par_chunks(d)))
                .map(|(dy, (y, t))| row(kind, y, t, Some(dy), g))
                .sum()
        }
        None => y
            .par_chunks(d)
            .zip(t.par_chunks(d))
            .map(|(y, t)| row(kind, y, t, None, g))
            .sum(),
    };
    Ok(sum * g)
}

/// Plain f64 twin of [`hidden_match_fwd_bwd`] (loss and gradient), for tests.
pub fn hidden_match_naive(
    kind: HiddenMatch,
    y: &[f32],
    t: &[f32],
    n: usize,
    d: usize,
    scale: f64,
) -> (f64, Vec<f64>) {
    let mut loss = 0.0;
    let mut grad = vec![0.0; n * d];
    for r in 0..n {
        let (yr, tr) = (&y[r * d..(r + 1) * d], &t[r * d..(r + 1) * d]);
        match kind {
            HiddenMatch::Mse => {
                for j in 0..d {
                    let e = yr[j] as f64 - tr[j] as f64;
                    loss += e * e / (n * d) as f64;
                    grad[r * d + j] = 2.0 * e / (n * d) as f64;
                }
            }
            HiddenMatch::Cosine => {
                let dot: f64 = (0..d).map(|j| yr[j] as f64 * tr[j] as f64).sum();
                let ny: f64 = (0..d).map(|j| (yr[j] as f64).powi(2)).sum::<f64>().sqrt();
                let nt: f64 = (0..d).map(|j| (tr[j] as f64).powi(2)).sum::<f64>().sqrt();
                let cos = dot / (ny * nt);
                loss += (1.0 - cos) / n as f64;
                for j in 0..d {
                    let dcos = tr[j] as f64 / (ny * nt) - cos * yr[j] as f64 / (ny * ny);
                    grad[r * d + j] = -dcos / n as f64;
                }
            }
        }
    }
    (loss * scale, grad.into_iter().map(|g| g * scale).collect())
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Deterministic values in [-1, 1) from a 64-bit LCG.
    fn rand_vec(n: usize, seed: u64) -> Vec<f32> {
        let mut s = seed
            .wrapping_mul(6364136223846793005)
            .wrapping_add(1442695040888963407);
        (0..n)
            .map(|_| {
                s = s
                    .wrapping_mul(6364136223846793005)
                    .wrapping_add(1442695040888963407);
                ((s >> 40) as f32 / (1u64 << 24) as f32) * 2.0 - 1.0
            })
            .collect()
    }

    fn loss(kind: HiddenMatch, y: &[f32], t: &[f32], n: usize, d: usize) -> f64 {
        hidden_match_fwd_bwd(kind, y, t, None, n, d, 1.0).unwrap()
    }

    #[test]
    fn closed_form_values() {
        // Equal states: both losses 0. Opposite: cosine 2. Orthogonal: cosine 1.
        let y = [1.0f32, 2.0, -3.0, 0.5];
        for kind in [HiddenMatch::Cosine, HiddenMatch::Mse] {
            assert!(loss(kind, &y, &y, 2, 2).abs() < 1e-12);
        }
        let neg: Vec<f32> = y.iter().map(|v| -2.0 * v).collect();
        assert!((loss(HiddenMatch::Cosine, &y, &neg, 2, 2) - 2.0).abs() < 1e-9);
        let (a, b) = ([1.0f32, 0.0], [0.0f32, 3.0]);
        assert!((loss(HiddenMatch::Cosine, &a, &b, 1, 2) - 1.0).abs() < 1e-12);
        // MSE of [1,0] vs [0,3]: (1 + 9)/2 = 5.
        assert!((loss(HiddenMatch::Mse, &a, &b, 1, 2) - 5.0).abs() < 1e-12);
        // Cosine ignores scale, MSE does not.
        let y2: Vec<f32> = y.iter().map(|v| 3.0 * v).collect();
        assert!(loss(HiddenMatch::Cosine, &y2, &y, 2, 2).abs() < 1e-9);
        assert!(loss(HiddenMatch::Mse, &y2, &y, 2, 2) > 1.0);
    }

    #[test]
    fn matches_naive_and_finite_differences() {
        let (n, d) = (5, 7);
        let y = rand_vec(n * d, 1);
        let t = rand_vec(n * d, 2);
        for kind in [HiddenMatch::Cosine, HiddenMatch::Mse] {
            let mut dy = vec![0f32; n * d];
            let l = hidden_match_fwd_bwd(kind, &y, &t, Some(&mut dy), n, d, 0.7).unwrap();
            let (ln, gn) = hidden_match_naive(kind, &y, &t, n, d, 0.7);
            assert!(
                (l - ln).abs() < 1e-7 * ln.abs().max(1.0),
                "{kind}: {l} vs {ln}"
            );
            for (a, b) in dy.iter().zip(&gn) {
                assert!((*a as f64 - b).abs() < 1e-6, "{kind}: {a} vs {b}");
            }
            let h = 1e-3f32;
            for i in [0, 3, 17, n * d - 1] {
                let (mut p, mut m) = (y.clone(), y.clone());
                p[i] += h;
                m[i] -= h;
                let fd = (hidden_match_fwd_bwd(kind, &p, &t, None, n, d, 0.7).unwrap()
                    - hidden_match_fwd_bwd(kind, &m, &t, None, n, d, 0.7).unwrap())
                    / (2.0 * h as f64);
                assert!(
                    (fd - dy[i] as f64).abs() < 1e-4,
                    "{kind} element {i}: fd {fd} vs analytic {}",
                    dy[i]
                );
            }
        }
    }

    #[test]
    fn zero_rows_and_bad_lengths() {
        let y = [0.0f32; 4];
        let t = [1.0f32, 2.0, 3.0, 4.0];
        let mut dy = [9.0f32; 4];
        let l =
            hidden_match_fwd_bwd(HiddenMatch::Cosine, &y, &t, Some(&mut dy), 2, 2, 1.0).unwrap();
        assert!((l - 1.0).abs() < 1e-12);
        assert!(dy.iter().all(|&g| g == 0.0));
        assert!(hidden_match_fwd_bwd(HiddenMatch::Mse, &y, &t[..3], None, 2, 2, 1.0).is_err());
        assert!(HiddenMatch::parse("l1").is_err());
        assert_eq!(HiddenMatch::parse("MSE").unwrap(), HiddenMatch::Mse);
    }
}
