//! Where calibration time goes: the fast block forward alone, with column norms, and with
//! full Gram accumulation, over 128 windows of the model's context.
//!
//! ```text
//! cargo run --release -p slm-compress --example calib_timing -- MODEL [windows]
//! ```
use slm_compress::capture::{InputSlot, LayerCapture};
use slm_model::flat::layout::tensor_values;
use slm_model::flat::{BlockParams, BlockScratch};
use slm_model::rope::RopeTables;
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
    let table = tensor_values(&model.embed_tokens)?;
    let mut scratch = BlockScratch::default();
    for mode in ["forward", "norms", "gram"] {
        let t0 = Instant::now();
        let mut capture_s = 0.0;
        for w0 in (0..windows).step_by(b) {
            let ids: Vec<u32> = (0..b * t)
                .map(|i| ((i as u64 * 2654435761 + w0 as u64) % v) as u32)
                .collect();
            let mut x = vec![0f32; ids.len() * cfg.hidden_size];
            slm_kernels::embedding::embedding_fwd(&mut x, &table, &ids, cfg.hidden_size)?;
            for l in 0..cfg.num_hidden_layers {
                let block = BlockParams::from_llama(&model, l)?;
                let mut cap = LayerCapture::new(&cfg, l, &InputSlot::ALL, mode == "gram");
                let mut out = vec![0f32; x.len()];
                let mut on_input = |s, xs: &[f32], rows| {
                    if mode == "forward" {
                        return Ok(());
                    }
                    let tc = Instant::now();
                    let r = cap.add(s, xs, rows, b);
                    capture_s += tc.elapsed().as_secs_f64();
                    r
                };
                let w = block.weights();
                scratch.run(&cfg, &w, &rope, &x, b, t, &mut out, Some(&mut on_input))?;
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
