//! Where `slm eval` spends its time: the fast forward vs the f64 scoring, per window.
//!
//! ```text
//! cargo run -p slm-eval --example ppl_timing -- MODEL [windows]
//! ```
use std::time::Instant;

fn main() -> slm_core::Result<()> {
    let mut args = std::env::args().skip(1);
    let path = args.next().expect("MODEL");
    let n: usize = args.next().map_or(32, |s| s.parse().expect("windows"));
    let model = slm_model::load(&path, None)?.model;
    let t = model.config.max_position_embeddings;
    let v = model.config.vocab_size;
    let t0 = Instant::now();
    let mut fast = slm_model::FlatModel::from_llama(&model)?;
    println!("from_llama {:.3} s", t0.elapsed().as_secs_f64());
    let (mut fwd, mut score) = (0.0, 0.0);
    for w in 0..n {
        let ids: Vec<u32> = (0..t).map(|i| ((i * 31 + w * 7) % v) as u32).collect();
        let a = Instant::now();
        let logits = fast.logits(&ids, 1, t)?;
        fwd += a.elapsed().as_secs_f64();
        let b = Instant::now();
        let mut s = 0.0;
        for i in 1..t {
            s += slm_eval::ppl::nll_of(&logits[(i - 1) * v..i * v], ids[i])?;
        }
        score += b.elapsed().as_secs_f64();
        std::hint::black_box(s);
    }
    println!("{n} windows × {t}: forward {fwd:.3} s, scoring {score:.3} s");
    // With SLM_ENGINE_PROFILE set: the engine's time per phase.
    for (phase, secs, calls) in slm_core::profile::report() {
        println!("  {phase:<16} {secs:8.3} s {calls:6} calls");
    }
    Ok(())
}
