//! Where calibration time goes: the fast block forward alone, with column norms, and with
//! full Gram accumulation, over 128 windows of the model's context.
//!
//! ```text
//! cargo run --release -p slm-compress --example calib_timing -- MODEL [windows]
//! ```
use slm_compress::capture::{InputSlot, LayerCapture};
use slm_compress::fast_block::{embed, FastBlock, RopeTables};
use std::time::Instant;

fn main() -> slm_core::Result<()> {
    let mut args = std::env::args().skip(1);
    let path = args.next().expect("MODEL");
    let windows: usize = args.next().map_or(128, |s| s.parse().expect("windows"));
    let model = slm_model::load(&path, None)?.model;
    let cfg = model.config.clone();
    let t = cfg.max_position_embeddings;
    let (b, v) = (8usize, cfg.vocab_size as u64);
    let rope = RopeTables::new(&cfg);
    for mode in ["forward", "norms", "gram"] {
        let t0 = Instant::now();
        let mut capture_s = 0.0;
        for w0 in (0..windows).step_by(b) {
            let ids: Vec<u32> = (0..b * t)
                .map(|i| ((i as u64 * 2654435761 + w0 as u64) % v) as u32)
                .collect();
            let mut x = embed(&model, &ids)?;
            for l in 0..cfg.num_hidden_layers {
                let block = FastBlock::from_model(&model, l)?;
                let mut cap = LayerCapture::new(&cfg, l, &InputSlot::ALL, mode == "gram");
                let mut out = vec![0f32; x.len()];
                block.forward(&x, b, t, &rope, &mut out, &mut |s, xs, rows| {
                    if mode == "forward" {
                        return Ok(());
                    }
                    let tc = Instant::now();
                    let r = cap.add(s, xs, rows, b);
                    capture_s += tc.elapsed().as_secs_f64();
                    r
                })?;
                x = out;
            }
        }
        println!(
            "{mode:<8} {:.2} s (capture {:.2} s) for {windows} × {t} tokens",
            t0.elapsed().as_secs_f64(),
            capture_s
        );
    }
    Ok(())
}
