//! The learning-rate schedule: linear warmup, then cosine decay to a floor.

/// Learning rate for optimiser step `step` (0-based) of `total`.
pub fn learning_rate(step: u64, total: u64, warmup: u64, peak: f64, floor: f64) -> f64 {
    if warmup > 0 && step < warmup {
        return peak * (step + 1) as f64 / warmup as f64;
    }
    let span = total.saturating_sub(warmup).max(1) as f64;
    let progress = ((step - warmup.min(step)) as f64 / span).min(1.0);
    floor + 0.5 * (peak - floor) * (1.0 + (std::f64::consts::PI * progress).cos())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn warmup_then_cosine_to_floor() {
        let lr = |s| learning_rate(s, 110, 10, 1e-3, 1e-4);
        assert!((lr(0) - 1e-4).abs() < 1e-12);
        assert!((lr(9) - 1e-3).abs() < 1e-12);
        assert!((lr(10) - 1e-3).abs() < 1e-12);
        assert!((lr(60) - 5.5e-4).abs() < 1e-12);
        assert!((lr(110) - 1e-4).abs() < 1e-12);
        assert!((lr(500) - 1e-4).abs() < 1e-12);
        for s in 10..110 {
            assert!(lr(s + 1) <= lr(s));
        }
    }
}
