//! slm-report: charts for run reports, rendered to PNG with no fonts or system libraries.
//!
//! Training writes `report.md` and `plots/loss.png`; compression and evaluation add curves
//! such as perplexity against sparsity. This crate draws those line charts itself: a small
//! RGB canvas, a built-in 5×7 bitmap font (fresh machines and CI have no fonts to rely on),
//! "nice" axis ticks, and PNG encoding through the `png` crate, written atomically.
//! `plotters` was not used because its text needs a font backend (system fonts or bundled
//! TrueType files); the charts here need only lines, markers, rectangles and ASCII text.
//!
//! ```no_run
//! use slm_report::LineChart;
//! let mut chart = LineChart::new("Training loss", "step", "loss");
//! chart.add("train", (0..100).map(|s| (s as f64, 5.0 / (1.0 + s as f64 / 10.0))));
//! chart.render_png(std::path::Path::new("runs/x/plots/loss.png"))?;
//! # Ok::<(), slm_core::Error>(())
//! ```
//!
//! Modules: [`chart`] (data model, layout, legend), [`canvas`] (pixels and drawing),
//! [`font`] (the bitmap font), [`ticks`] (tick placement and number labels), [`png_out`]
//! (encoding and the atomic write).

pub mod canvas;
pub mod chart;
pub mod font;
pub mod png_out;
pub mod ticks;

pub use canvas::Rgb;
pub use chart::{LineChart, Markers, Series, PALETTE};
