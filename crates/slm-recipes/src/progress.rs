//! What a long-running pipeline shows and how it stops: progress bars, the training
//! observer, and the Ctrl-C flag the trainer polls between steps.

use indicatif::{ProgressBar, ProgressStyle};
use slm_train::trainer::{Observer, StepMetrics};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, OnceLock};

/// A progress bar "what [bar] pos/len unit [elapsed < eta]"; set its length when known.
pub fn progress_bar(what: &str, unit: &str) -> ProgressBar {
    let b = ProgressBar::new(0);
    b.set_style(
        ProgressStyle::with_template(&format!(
            "{what} {{bar:30}} {{pos}}/{{len}} {unit} [{{elapsed}} < {{eta}}]"
        ))
        .unwrap_or_else(|_| ProgressStyle::default_bar()),
    );
    b
}

/// A `(done, total)` callback that moves `bar`.
pub fn bar_callback(bar: &ProgressBar) -> impl Fn(usize, usize) + '_ {
    move |done, total| {
        bar.set_length(total as u64);
        bar.set_position(done as u64);
    }
}

/// Progress bar with loss, tokens/s and ETA.
pub struct BarObserver {
    bar: ProgressBar,
    pub last_val: Option<f64>,
}

impl Default for BarObserver {
    fn default() -> Self {
        Self::new()
    }
}

impl BarObserver {
    pub fn new() -> Self {
        let bar = ProgressBar::new(0);
        bar.set_style(
            ProgressStyle::with_template(
                "train {bar:30} {pos}/{len} steps  {msg}  [{elapsed} < {eta}]",
            )
            .unwrap_or_else(|_| ProgressStyle::default_bar()),
        );
        Self {
            bar,
            last_val: None,
        }
    }
    pub fn finish(&self) {
        self.bar.finish_and_clear();
    }
}

impl Observer for BarObserver {
    fn on_start(&mut self, start: u64, total: u64) {
        self.bar.set_length(total);
        self.bar.set_position(start);
    }
    fn on_step(&mut self, m: &StepMetrics) {
        self.bar.set_position(m.step);
        let val = self
            .last_val
            .map(|v| format!(" val {v:.3}"))
            .unwrap_or_default();
        self.bar.set_message(format!(
            "loss {:.3}{val}  {:.0} tok/s  lr {:.1e}",
            m.loss, m.tokens_per_sec, m.lr
        ));
    }
    fn on_eval(&mut self, _step: u64, v: f64) {
        self.last_val = Some(v);
    }
    fn on_message(&mut self, msg: &str) {
        self.bar.println(msg);
    }
}

/// The process's stop flag, set by Ctrl-C (the trainer checkpoints and returns). The handler
/// is installed once; every call returns the same flag.
pub fn ctrlc_flag() -> Arc<AtomicBool> {
    static FLAG: OnceLock<Arc<AtomicBool>> = OnceLock::new();
    FLAG.get_or_init(|| {
        let flag = Arc::new(AtomicBool::new(false));
        let f = flag.clone();
        // A second Ctrl-C exits at once.
        let _ = ctrlc::set_handler(move || {
            if f.swap(true, Ordering::SeqCst) {
                std::process::exit(130);
            }
            eprintln!(
                "\nstopping after this step: writing a checkpoint (Ctrl-C again to quit now)"
            );
        });
        flag
    })
    .clone()
}
