//! Wall time of `prune` on a random model of a preset (default 15m) with calibration windows
//! of random tokens (default 128 × 256), per method:
//!
//!     cargo run --release -p slm-compress --example prune_timing -- [preset] [windows] [seqlen] [methods,...] [batch]
//!
//! Methods: magnitude, wanda, sparsegpt, obd-layerwise (default: wanda,sparsegpt).

use candle_core::Device;
use slm_compress::{calibration_windows, prune, Method, Pattern, PruneConfig};
use slm_model::{preset, Llama};
use std::time::Instant;

fn main() -> slm_core::Result<()> {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let name = args.first().map_or("15m", |s| s.as_str());
    let nsamples: usize = args.get(1).and_then(|s| s.parse().ok()).unwrap_or(128);
    let seqlen: usize = args.get(2).and_then(|s| s.parse().ok()).unwrap_or(256);
    let methods = args.get(3).map_or("wanda,sparsegpt", |s| s.as_str());
    let batch: usize = args.get(4).and_then(|s| s.parse().ok()).unwrap_or(8);
    let cfg = preset(name)?;
    let base = Llama::random(cfg.clone(), 0, &Device::Cpu)?;
    let text: Vec<u32> = (0..200_000u64)
        .map(|i| ((i * 2_654_435_761) % cfg.vocab_size as u64) as u32)
        .collect();
    let calib = calibration_windows(&text, nsamples, seqlen, 0)?;
    for m in methods.split(',') {
        let method = match m {
            "magnitude" => Method::Magnitude { global: false },
            "wanda" => Method::Wanda,
            "sparsegpt" => Method::sparsegpt(),
            "obd-layerwise" => Method::ObdLayerwise,
            other => return Err(slm_core::Error::invalid(format!("unknown method {other}"))),
        };
        for pattern in [Pattern::Unstructured, Pattern::NM { n: 2, m: 4 }] {
            let mut model = base.clone();
            let mut c = PruneConfig::new(method.clone(), 0.5, pattern);
            c.batch_size = batch;
            let t = Instant::now();
            let r = prune(&mut model, &calib, &c, &mut |_, _, _| {})?;
            let prune_s: f64 = r.tensors.iter().map(|t| t.seconds).sum();
            println!(
                "{name} {m:>13} {pattern:>12}: {:.2} s wall, {:.2} s block forward passes, {:.2} s per-tensor pruning (summed over threads), sparsity {:.4}, total error {:.4e}",
                t.elapsed().as_secs_f64(),
                r.forward_seconds,
                prune_s,
                r.overall_sparsity(),
                r.total_recon_error().unwrap_or(f64::NAN)
            );
        }
    }
    Ok(())
}
