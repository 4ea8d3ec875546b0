//! What `GET /metrics` reports, in Prometheus' text format: requests by route and status,
//! prompt and generated tokens, queue depth, active sequences, and histograms of request
//! latency, time to first token, time between tokens and batch size.

use std::collections::BTreeMap;
use std::fmt::Write;
use std::sync::atomic::{AtomicI64, AtomicU64, Ordering};
use std::sync::Mutex;

/// A histogram with fixed upper bounds (cumulative counts written at render time).
#[derive(Debug)]
pub struct Histogram {
    bounds: Vec<f64>,
    /// counts[i]: observations ≤ bounds[i] and > bounds[i-1]; the last is +Inf.
    counts: Vec<AtomicU64>,
    /// Sum of observations in micro-units (µs for seconds).
    sum_micros: AtomicU64,
}

impl Histogram {
    pub fn new(bounds: &[f64]) -> Self {
        Self {
            bounds: bounds.to_vec(),
            counts: (0..=bounds.len()).map(|_| AtomicU64::new(0)).collect(),
            sum_micros: AtomicU64::new(0),
        }
    }

    pub fn observe(&self, v: f64) {
        let i = self
            .bounds
            .iter()
            .position(|&b| v <= b)
            .unwrap_or(self.bounds.len());
        self.counts[i].fetch_add(1, Ordering::Relaxed);
        self.sum_micros
            .fetch_add((v.max(0.0) * 1e6) as u64, Ordering::Relaxed);
    }

    pub fn count(&self) -> u64 {
        self.counts.iter().map(|c| c.load(Ordering::Relaxed)).sum()
    }

    fn render(&self, out: &mut String, name: &str, help: &str) {
        let _ = writeln!(out, "# HELP {name} {help}\n# TYPE {name} histogram");
        let mut cum = 0;
        for (b, c) in self.bounds.iter().zip(&self.counts) {
            cum += c.load(Ordering::Relaxed);
            let _ = writeln!(out, "{name}_bucket{{le=\"{b}\"}} {cum}");
        }
        let total = self.count();
        let _ = writeln!(out, "{name}_bucket{{le=\"+Inf\"}} {total}");
        let sum = self.sum_micros.load(Ordering::Relaxed) as f64 / 1e6;
        let _ = writeln!(out, "{name}_sum {sum}\n{name}_count {total}");
    }
}

const LATENCY: &[f64] = &[
    0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0, 120.0,
];
const GAPS: &[f64] = &[0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0];
const BATCH: &[f64] = &[1.0, 2.0, 4.0, 8.0, 16.0, 32.0, 64.0, 128.0];

/// The server's counters, shared by the HTTP side and the engine thread.
#[derive(Debug)]
pub struct Metrics {
    /// (route, status) → requests answered.
    requests: Mutex<BTreeMap<(String, u16), u64>>,
    pub prompt_tokens: AtomicU64,
    pub completion_tokens: AtomicU64,
    /// Requests accepted and not yet given a slot.
    pub queue_depth: AtomicI64,
    /// Sequences holding a slot (prefilling or decoding).
    pub active: AtomicI64,
    /// Requests ended because their client went away.
    pub cancelled: AtomicU64,
    /// Requests refused because the queue was full.
    pub rejected_full: AtomicU64,
    pub request_seconds: Histogram,
    pub first_token_seconds: Histogram,
    pub inter_token_seconds: Histogram,
    pub batch_size: Histogram,
}

impl Default for Metrics {
    fn default() -> Self {
        Self {
            requests: Mutex::new(BTreeMap::new()),
            prompt_tokens: AtomicU64::new(0),
            completion_tokens: AtomicU64::new(0),
            queue_depth: AtomicI64::new(0),
            active: AtomicI64::new(0),
            cancelled: AtomicU64::new(0),
            rejected_full: AtomicU64::new(0),
            request_seconds: Histogram::new(LATENCY),
            first_token_seconds: Histogram::new(LATENCY),
            inter_token_seconds: Histogram::new(GAPS),
            batch_size: Histogram::new(BATCH),
        }
    }
}

impl Metrics {
    pub fn count_request(&self, route: &str, status: u16) {
        let mut m = self.requests.lock().unwrap_or_else(|e| e.into_inner());
        *m.entry((route.to_string(), status)).or_default() += 1;
    }

    /// The Prometheus text exposition of every metric.
    pub fn render(&self) -> String {
        let mut out = String::new();
        out.push_str(
            "# HELP slm_requests_total Requests answered, by route and HTTP status.\n\
             # TYPE slm_requests_total counter\n",
        );
        for ((route, status), n) in self
            .requests
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .iter()
        {
            let _ = writeln!(
                out,
                "slm_requests_total{{route=\"{route}\",status=\"{status}\"}} {n}"
            );
        }
        let counters: [(&str, &str, u64); 4] = [
            (
                "slm_prompt_tokens_total",
                "Prompt tokens prefilled.",
                self.prompt_tokens.load(Ordering::Relaxed),
            ),
            (
                "slm_completion_tokens_total",
                "Tokens generated.",
                self.completion_tokens.load(Ordering::Relaxed),
            ),
            (
                "slm_cancelled_total",
                "Requests ended because the client went away.",
                self.cancelled.load(Ordering::Relaxed),
            ),
            (
                "slm_rejected_queue_full_total",
                "Requests refused with 429 because the queue was full.",
                self.rejected_full.load(Ordering::Relaxed),
            ),
        ];
        for (name, help, v) in counters {
            let _ = writeln!(
                out,
                "# HELP {name} {help}\n# TYPE {name} counter\n{name} {v}"
            );
        }
        let gauges: [(&str, &str, i64); 2] = [
            (
                "slm_queue_depth",
                "Requests waiting for a slot.",
                self.queue_depth.load(Ordering::Relaxed),
            ),
            (
                "slm_active_sequences",
                "Sequences prefilling or decoding.",
                self.active.load(Ordering::Relaxed),
            ),
        ];
        for (name, help, v) in gauges {
            let _ = writeln!(out, "# HELP {name} {help}\n# TYPE {name} gauge\n{name} {v}");
        }
        self.request_seconds.render(
            &mut out,
            "slm_request_duration_seconds",
            "Time from a request's arrival to its last byte.",
        );
        self.first_token_seconds.render(
            &mut out,
            "slm_time_to_first_token_seconds",
            "Time from a request's arrival to its first generated token.",
        );
        self.inter_token_seconds.render(
            &mut out,
            "slm_inter_token_seconds",
            "Time between consecutive tokens of a sequence.",
        );
        self.batch_size.render(
            &mut out,
            "slm_batch_size",
            "Sequences decoded together per step.",
        );
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn histogram_buckets_are_cumulative() {
        let h = Histogram::new(&[1.0, 2.0]);
        for v in [0.5, 1.5, 1.7, 9.0] {
            h.observe(v);
        }
        let mut s = String::new();
        h.render(&mut s, "x", "help");
        assert!(s.contains("x_bucket{le=\"1\"} 1\n"), "{s}");
        assert!(s.contains("x_bucket{le=\"2\"} 3\n"), "{s}");
        assert!(s.contains("x_bucket{le=\"+Inf\"} 4\n"), "{s}");
        assert!(
            s.contains("x_sum 12.7\n") && s.contains("x_count 4\n"),
            "{s}"
        );
    }

    #[test]
    fn render_has_every_family() {
        let m = Metrics::default();
        m.count_request("/v1/chat/completions", 200);
        m.count_request("/v1/chat/completions", 200);
        let text = m.render();
        assert!(
            text.contains("slm_requests_total{route=\"/v1/chat/completions\",status=\"200\"} 2")
        );
        for family in [
            "slm_prompt_tokens_total",
            "slm_queue_depth",
            "slm_time_to_first_token_seconds_bucket",
            "slm_batch_size_count",
        ] {
            assert!(text.contains(family), "{family} missing");
        }
    }
}
