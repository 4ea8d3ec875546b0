//! Optional per-phase timing of the flat-buffer passes (forward in `slm-model`, backward in
//! `slm-train`), for finding what limits speed.
//!
//! Off unless the environment variable `SLM_ENGINE_PROFILE` is set when the first pass
//! runs; then every phase (`fwd.qkv`, `bwd.attn`, `head.ce`, ...) accumulates wall time and
//! call counts, and [`report`] returns the table sorted by time. The check when off is one
//! relaxed atomic load per phase.

use std::sync::atomic::{AtomicU8, Ordering};
use std::sync::Mutex;
use std::time::Instant;

/// 0 = not decided yet, 1 = off, 2 = on.
static STATE: AtomicU8 = AtomicU8::new(0);
static TABLE: Mutex<Vec<(&'static str, f64, u64)>> = Mutex::new(Vec::new());

fn enabled() -> bool {
    match STATE.load(Ordering::Relaxed) {
        1 => false,
        2 => true,
        _ => {
            let on = std::env::var_os("SLM_ENGINE_PROFILE").is_some();
            STATE.store(if on { 2 } else { 1 }, Ordering::Relaxed);
            on
        }
    }
}

/// Runs `f`, charging its wall time to `phase` when profiling is on.
#[inline]
pub fn time<R>(phase: &'static str, f: impl FnOnce() -> R) -> R {
    if !enabled() {
        return f();
    }
    let t0 = Instant::now();
    let r = f();
    let dt = t0.elapsed().as_secs_f64();
    if let Ok(mut t) = TABLE.lock() {
        match t.iter_mut().find(|e| e.0 == phase) {
            Some(e) => {
                e.1 += dt;
                e.2 += 1;
            }
            None => t.push((phase, dt, 1)),
        }
    }
    r
}

/// The accumulated (phase, seconds, calls), slowest first, and clears the table. Empty when
/// profiling is off.
pub fn report() -> Vec<(&'static str, f64, u64)> {
    let mut t = match TABLE.lock() {
        Ok(mut t) => std::mem::take(&mut *t),
        Err(_) => Vec::new(),
    };
    t.sort_by(|a, b| b.1.total_cmp(&a.1));
    t
}
