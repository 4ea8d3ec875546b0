//! Renders a sample loss chart: `cargo run -p slm-report --example loss_chart [OUT.png]`
//! (default `/tmp/slm_chart_example.png`).

use std::path::PathBuf;

use slm_report::LineChart;

fn main() -> Result<(), slm_core::Error> {
    let out = std::env::args()
        .nth(1)
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from("/tmp/slm_chart_example.png"));

    let mut chart = LineChart::new("Training loss (15m teacher)", "step", "loss");
    // A noisy decaying training loss, logged every 10 steps (xorshift noise, no dependencies).
    let mut state = 0x9e37_79b9_7f4a_7c15_u64;
    let train = (0..=300).map(move |i| {
        state ^= state << 13;
        state ^= state >> 7;
        state ^= state << 17;
        let noise = (state >> 11) as f64 / (1u64 << 53) as f64 - 0.5;
        let step = i as f64 * 10.0;
        (step, 1.9 + 8.5 / (1.0 + step / 150.0) + 0.25 * noise)
    });
    chart.add("train", train);
    // Validation loss every 250 steps: a short series, so it gets markers.
    let val = (0..=12).map(|i| {
        let step = i as f64 * 250.0;
        (step, 2.1 + 8.3 / (1.0 + step / 160.0))
    });
    chart.add("validation", val);
    chart.render_png(&out)?;
    println!("wrote {}", out.display());
    Ok(())
}
