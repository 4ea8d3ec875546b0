//! Axis ticks and their labels: where the tick marks go and how their numbers are written.
//!
//! Linear axes get "nice" ticks: every multiple of a step that is 1, 2 or 5 × 10^k, the
//! smallest such step that keeps the count within a limit. Logarithmic axes get powers of ten
//! (every one, or every 2nd, 3rd, 5th... when many decades are shown), then 1-2-5 per decade
//! when the range is short, then linear nice ticks when it is shorter than a decade.
//! Labels are compact: `0`, `0.25`, `500`, `1.5k`, `2M`, `0.001`, `2e-5`.

/// Multipliers of a power of ten that make a nice step, in increasing order.
const NICE: [u32; 3] = [1, 2, 5];

/// Ticks at every multiple of a nice step (1, 2 or 5 × 10^k) inside `[lo, hi]`.
///
/// The step is the smallest nice step that gives at most `max_ticks` ticks. Returns an empty
/// vector when the range is not finite, `lo > hi`, or `max_ticks` is 0. Tick values are
/// computed as integer × 10^k so that they print cleanly (0.3, not 0.30000000000000004).
pub fn nice_ticks(lo: f64, hi: f64, max_ticks: usize) -> Vec<f64> {
    if !lo.is_finite() || !hi.is_finite() || lo > hi || max_ticks == 0 {
        return Vec::new();
    }
    if lo == hi {
        return vec![lo];
    }
    let span = hi - lo;
    // Start one decade below the rough step and walk up through 1, 2, 5 × 10^k.
    let mut exp = (span / max_ticks as f64).log10().floor() as i32 - 1;
    loop {
        for m in NICE {
            let step = Step { mantissa: m, exp };
            let Some((first, last)) = step.index_range(lo, hi) else {
                continue; // too fine a step to count in integers: try a coarser one
            };
            if last < first {
                // No multiple inside the range: nothing smaller-or-equal fits either.
                return Vec::new();
            }
            if (last - first + 1) as usize <= max_ticks {
                return (first..=last).map(|i| step.value(i)).collect();
            }
        }
        exp += 1;
        if exp > 320 {
            return Vec::new();
        }
    }
}

/// Ticks for a logarithmic axis covering the positive values `[lo, hi]`.
///
/// Powers of ten when at least four fit (thinned to every 2nd, 3rd, 5th, 10th... decade when
/// there are too many); else 1-2-5 in each decade when that gives 3 to `max_ticks` ticks; else
/// the powers of ten if there are two or three; else linear nice ticks (ranges shorter than a
/// decade). Empty when `lo <= 0`.
pub fn log_ticks(lo: f64, hi: f64, max_ticks: usize) -> Vec<f64> {
    if !lo.is_finite() || lo <= 0.0 || !hi.is_finite() || lo > hi || max_ticks == 0 {
        return Vec::new();
    }
    let first_decade = (lo.log10() - 1e-9).floor() as i32;
    let last_decade = (hi.log10() + 1e-9).ceil() as i32;
    let inside = |v: &f64| *v >= lo * (1.0 - 1e-9) && *v <= hi * (1.0 + 1e-9);

    // Powers of ten, every `stride`-th decade: the densest that fits.
    let mut powers = Vec::new();
    for stride in [1, 2, 3, 5, 10, 20, 50, 100] {
        powers = (first_decade..=last_decade)
            .filter(|k| k.rem_euclid(stride) == 0)
            .map(pow10)
            .filter(inside)
            .collect();
        if powers.len() <= max_ticks {
            break;
        }
    }
    if powers.len() >= 4 && powers.len() <= max_ticks {
        return powers;
    }
    // 1, 2 and 5 in each decade.
    let one_two_five: Vec<f64> = (first_decade..=last_decade)
        .flat_map(|k| {
            NICE.iter().map(move |m| {
                Step {
                    mantissa: *m,
                    exp: k,
                }
                .value(1)
            })
        })
        .filter(inside)
        .collect();
    if one_two_five.len() >= 3 && one_two_five.len() <= max_ticks {
        return one_two_five;
    }
    if powers.len() >= 2 && powers.len() <= max_ticks {
        return powers;
    }
    nice_ticks(lo, hi, max_ticks)
}

/// A tick step `mantissa × 10^exp`.
#[derive(Clone, Copy)]
struct Step {
    mantissa: u32,
    exp: i32,
}

impl Step {
    fn size(self) -> f64 {
        self.mantissa as f64 * pow10(self.exp)
    }

    /// The first and last integers `i` with `i × step` inside `[lo, hi]` (with a little slack
    /// for rounding); `last < first` when there is none. `None` when the indices are too
    /// large to be exact (the step is far finer than the values).
    fn index_range(self, lo: f64, hi: f64) -> Option<(i64, i64)> {
        let s = self.size();
        let first = (lo / s - 1e-9).ceil();
        let last = (hi / s + 1e-9).floor();
        let exact = |v: f64| v.is_finite() && v.abs() <= 1e15;
        if exact(first) && exact(last) {
            Some((first as i64, last as i64))
        } else {
            None
        }
    }

    /// `i × step`, computed so that the result is the double nearest the exact decimal value.
    fn value(self, i: i64) -> f64 {
        let n = i as f64 * self.mantissa as f64;
        if self.exp >= 0 {
            n * pow10(self.exp)
        } else {
            n / pow10(-self.exp)
        }
    }
}

/// 10^k as the double nearest the exact value (for |k| up to 22, where 10^|k| is exact).
fn pow10(k: i32) -> f64 {
    if k >= 0 {
        10f64.powi(k)
    } else {
        1.0 / 10f64.powi(-k)
    }
}

/// Writes `v` compactly for a tick label or a legend.
///
/// Six significant digits at most, trailing zeros dropped; thousands and up get a suffix
/// (`1.5k`, `2M`, `3B`, `1T`); magnitudes below 0.001 or from 10^15 are written as `2e-5`.
pub fn format_compact(v: f64) -> String {
    if !v.is_finite() {
        return format!("{v}");
    }
    if v == 0.0 {
        return "0".to_string();
    }
    let sign = if v < 0.0 { "-" } else { "" };
    let a = round_significant(v.abs(), 6);
    if !(1e-3..1e15).contains(&a) {
        return format!("{sign}{}", scientific(a));
    }
    const SUFFIXES: [(f64, &str); 4] = [(1e12, "T"), (1e9, "B"), (1e6, "M"), (1e3, "k")];
    for (unit, suffix) in SUFFIXES {
        if a >= unit {
            return format!("{sign}{}{suffix}", decimal(round_significant(a / unit, 6)));
        }
    }
    format!("{sign}{}", decimal(a))
}

/// `a` rounded to `digits` significant decimal digits.
fn round_significant(a: f64, digits: usize) -> f64 {
    format!("{:.*e}", digits.saturating_sub(1), a)
        .parse()
        .unwrap_or(a)
}

/// A positive number in plain decimal notation, trailing zeros dropped.
fn decimal(a: f64) -> String {
    let magnitude = a.log10().floor() as i32;
    let decimals = (5 - magnitude).clamp(0, 12) as usize;
    strip_zeros(format!("{a:.decimals$}"))
}

/// A positive number as `m e k` with at most six significant digits: `2e-5`, `1.5e-7`.
fn scientific(a: f64) -> String {
    let s = format!("{a:.5e}");
    match s.split_once('e') {
        Some((mantissa, exp)) => format!("{}e{exp}", strip_zeros(mantissa.to_string())),
        None => s,
    }
}

/// Drops trailing zeros after a decimal point, and the point itself if nothing follows it.
fn strip_zeros(s: String) -> String {
    if s.contains('.') {
        s.trim_end_matches('0').trim_end_matches('.').to_string()
    } else {
        s
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn nice_ticks_unit_range() {
        assert_eq!(nice_ticks(0.0, 1.0, 6), vec![0.0, 0.2, 0.4, 0.6, 0.8, 1.0]);
        assert_eq!(nice_ticks(0.0, 1.0, 11).len(), 11);
        assert_eq!(nice_ticks(0.0, 1.0, 3), vec![0.0, 0.5, 1.0]);
    }

    #[test]
    fn nice_ticks_use_1_2_5_steps() {
        for (lo, hi, max) in [
            (0.0, 1000.0, 6),
            (-3.7, 12.2, 7),
            (1.9, 2.6, 8),
            (0.0013, 0.0089, 5),
            (-1e6, 3e7, 6),
            (2.31, 2.32, 5),
        ] {
            let t = nice_ticks(lo, hi, max);
            assert!(t.len() >= 2 && t.len() <= max, "{lo}..{hi}: {t:?}");
            assert!(
                t.iter().all(|v| *v >= lo - 1e-12 && *v <= hi + 1e-12),
                "{t:?}"
            );
            let step = t[1] - t[0];
            let mantissa = step / 10f64.powf(step.log10().floor());
            assert!(
                [1.0, 2.0, 5.0, 10.0]
                    .iter()
                    .any(|m| (mantissa - m).abs() < 1e-6),
                "{lo}..{hi}: step {step}"
            );
            for w in t.windows(2) {
                assert!(((w[1] - w[0]) - step).abs() < step * 1e-6);
            }
        }
    }

    #[test]
    fn nice_ticks_are_clean_decimals() {
        let t = nice_ticks(0.0, 1.0, 11);
        assert_eq!(t[3], 0.3);
        assert_eq!(t[7], 0.7);
        assert_eq!(
            nice_ticks(1.95, 2.6, 8),
            vec![2.0, 2.1, 2.2, 2.3, 2.4, 2.5, 2.6]
        );
    }

    #[test]
    fn nice_ticks_step_1000_for_steps() {
        assert_eq!(
            nice_ticks(-50.0, 5050.0, 7),
            vec![0.0, 1000.0, 2000.0, 3000.0, 4000.0, 5000.0]
        );
    }

    #[test]
    fn nice_ticks_degenerate_input() {
        assert!(nice_ticks(1.0, 0.0, 5).is_empty());
        assert!(nice_ticks(f64::NAN, 1.0, 5).is_empty());
        assert!(nice_ticks(0.0, f64::INFINITY, 5).is_empty());
        assert!(nice_ticks(0.0, 1.0, 0).is_empty());
        assert_eq!(nice_ticks(3.0, 3.0, 5), vec![3.0]);
    }

    #[test]
    fn nice_ticks_tiny_span_far_from_zero() {
        let (lo, hi) = (1.0, 1.0 + 1e-13);
        let t = nice_ticks(lo, hi, 5);
        assert!(
            t.len() <= 5 && t.iter().all(|v| *v >= lo && *v <= hi),
            "{t:?}"
        );
        let t = nice_ticks(1e20, 1e20 + 1e6, 5);
        assert!(t.iter().all(|v| *v >= 1e20 && *v <= 1e20 + 1e6), "{t:?}");
    }

    #[test]
    fn log_ticks_powers_of_ten() {
        assert_eq!(log_ticks(0.005, 20.0, 8), vec![0.01, 0.1, 1.0, 10.0]);
        let wide = log_ticks(1e-9, 1e9, 6);
        assert!(wide.len() >= 3 && wide.len() <= 6, "{wide:?}");
        assert!(wide.contains(&1.0), "{wide:?}");
    }

    #[test]
    fn log_ticks_two_or_three_decades_use_1_2_5() {
        assert_eq!(
            log_ticks(11.0, 3000.0, 8),
            vec![20.0, 50.0, 100.0, 200.0, 500.0, 1000.0, 2000.0]
        );
        // Too many for 1-2-5: back to powers of ten.
        assert_eq!(log_ticks(11.0, 3000.0, 4), vec![100.0, 1000.0]);
    }

    #[test]
    fn log_ticks_short_ranges() {
        assert_eq!(log_ticks(1.5, 12.0, 8), vec![2.0, 5.0, 10.0]);
        // Less than a decade: linear nice ticks.
        let t = log_ticks(2.2, 4.8, 6);
        assert!(
            t.len() >= 2 && t.iter().all(|v| (2.2..=4.8).contains(v)),
            "{t:?}"
        );
        assert!(log_ticks(0.0, 1.0, 5).is_empty());
        assert!(log_ticks(-1.0, 1.0, 5).is_empty());
    }

    #[test]
    fn compact_labels() {
        let cases = [
            (0.0, "0"),
            (-0.0, "0"),
            (1.0, "1"),
            (2.5, "2.5"),
            (0.3, "0.3"),
            (-4.0, "-4"),
            (500.0, "500"),
            (1000.0, "1k"),
            (1500.0, "1.5k"),
            (12_345.0, "12.345k"),
            (2_000_000.0, "2M"),
            (3.5e9, "3.5B"),
            (1e12, "1T"),
            (0.001, "0.001"),
            (0.0015, "0.0015"),
            (2e-5, "2e-5"),
            (1.5e-7, "1.5e-7"),
            (-2e-5, "-2e-5"),
            (2e16, "2e16"),
            (0.1 + 0.2, "0.3"),
            (999_999.9, "1M"),
        ];
        for (v, want) in cases {
            assert_eq!(format_compact(v), want, "{v}");
        }
        assert_eq!(format_compact(f64::NAN), "NaN");
    }
}
