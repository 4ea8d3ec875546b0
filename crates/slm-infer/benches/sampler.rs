//! Time of one `Sampler::sample` call over a 32000-token vocabulary (temperature 0.8,
//! top-p 0.95: `slm generate`'s defaults), for flat to peaked logits, against sorting the
//! whole vocabulary (what the top-p cut cost before it sorted only the candidates).
//!
//!   cargo bench -p slm-infer --bench sampler

use rand::{rngs::StdRng, Rng, SeedableRng};
use slm_infer::{Sampler, SamplerConfig};
use std::time::Instant;

fn median_micros(reps: usize, mut f: impl FnMut()) -> f64 {
    let mut t: Vec<f64> = (0..reps)
        .map(|_| {
            let t0 = Instant::now();
            f();
            t0.elapsed().as_secs_f64() * 1e6
        })
        .collect();
    t.sort_by(|a, b| a.total_cmp(b));
    t[reps / 2]
}

fn main() {
    let mut rng = StdRng::seed_from_u64(1);
    let v = 32000;
    // Gaussian logits of growing spread: a model's next-token logits are peaked.
    for scale in [1.0f32, 3.0, 6.0] {
        let logits: Vec<f32> = (0..v)
            .map(|_| {
                let (u, w): (f32, f32) = (rng.gen(), rng.gen());
                scale * (-2.0 * u.max(1e-9).ln()).sqrt() * (std::f32::consts::TAU * w).cos()
            })
            .collect();
        let mut s = Sampler::new(SamplerConfig {
            temperature: 0.8,
            top_p: 0.95,
            ..SamplerConfig::default()
        })
        .expect("valid settings");
        let sample = median_micros(101, || {
            std::hint::black_box(s.sample(&logits, &[]).expect("finite logits"));
        });
        let full_sort = median_micros(101, || {
            let mut order: Vec<u32> = (0..v as u32).collect();
            order.sort_unstable_by(|&a, &b| {
                logits[b as usize]
                    .total_cmp(&logits[a as usize])
                    .then(a.cmp(&b))
            });
            std::hint::black_box(order);
        });
        println!(
            "logit spread {scale}: sample {sample:7.1} µs | sorting all {v} tokens {full_sort:7.1} µs"
        );
    }
}
