//! Times candle matmul shapes used by batch-1 decoding.
use candle_core::{Device, Tensor};
use std::time::Instant;
fn time(label: &str, f: impl Fn() -> candle_core::Result<Tensor>) -> candle_core::Result<()> {
    f()?;
    let t0 = Instant::now();
    for _ in 0..50 {
        f()?;
    }
    println!("{label}: {:.3} ms", t0.elapsed().as_secs_f64() * 1e3 / 50.0);
    Ok(())
}
fn main() -> candle_core::Result<()> {
    let d = Device::Cpu;
    let w = Tensor::randn(0f32, 1.0, (32000, 288), &d)?;
    let wt = w.t()?.contiguous()?;
    let x = Tensor::randn(0f32, 1.0, (1, 288), &d)?;
    time("x @ w.t() (strided)", || x.matmul(&w.t()?))?;
    time("x @ wt (contiguous)", || x.matmul(&wt))?;
    let w2 = Tensor::randn(0f32, 1.0, (768, 288), &d)?;
    time("x @ w2.t() 768x288", || x.matmul(&w2.t()?))?;
    let x8 = Tensor::randn(0f32, 1.0, (8, 288), &d)?;
    time("x8 @ w.t()", || x8.matmul(&w.t()?))?;
    Ok(())
}
