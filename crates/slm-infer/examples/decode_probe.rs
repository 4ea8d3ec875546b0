//! Times the parts of a decode step (model forward, tokenizer streaming) for a model file.
use candle_core::Tensor;
use std::time::Instant;
fn main() -> Result<(), Box<dyn std::error::Error>> {
    let spec = std::env::args().nth(1).ok_or("usage: decode_probe MODEL")?;
    let loaded = slm_model::load(&spec, None)?;
    let tok = slm_data::tokenizer::load_tokenizer(&loaded.tokenizer)?;
    let model = &loaded.model;
    let mut cache = model.new_cache();
    let ids = Tensor::new(&[[1u32, 5, 6, 7]], model.device())?;
    model.forward(&ids, Some(&mut cache))?;
    let t0 = Instant::now();
    let n = 64;
    for i in 0..n {
        let x = Tensor::new(&[[(i % 100 + 10) as u32]], model.device())?;
        let l = model.forward(&x, Some(&mut cache))?;
        let _v = l.flatten_all()?.to_vec1::<f32>()?;
    }
    let fwd = t0.elapsed().as_secs_f64() / n as f64;
    let t1 = Instant::now();
    let mut dec = slm_data::tokenizer::StreamDecoder::new(tok.as_ref());
    for i in 0..n {
        dec.push((i % 100 + 300) as u32)?;
    }
    let dt = t1.elapsed().as_secs_f64() / n as f64;
    println!(
        "forward {:.2} ms/token, stream decode {:.3} ms/token",
        fwd * 1e3,
        dt * 1e3
    );
    Ok(())
}
