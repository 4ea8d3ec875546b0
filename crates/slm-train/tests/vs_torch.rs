//! The fast engine against PyTorch/transformers (fixtures from
//! tools/reference/torch_train_reference.py): loss and every gradient of tiny-llama on a fixed
//! batch, then 10 AdamW steps with the kernels' AdamW (decay on 2-D matrices only) reproduce
//! the recorded losses and the per-parameter sums and norms after the last step.

mod common;

use candle_core::Device;
use common::rel_max_diff;
use serde_json::Value;
use slm_train::optim::{adamw_step, AdamWConfig};
use slm_train::FastModel;
use std::path::PathBuf;

fn fixtures() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../tests/fixtures")
}

fn ids(v: &Value) -> Vec<u32> {
    v.as_array()
        .unwrap()
        .iter()
        .flat_map(|row| {
            row.as_array()
                .unwrap()
                .iter()
                .map(|x| x.as_u64().unwrap() as u32)
        })
        .collect()
}

fn f(v: &Value) -> f64 {
    v.as_f64().unwrap()
}

struct Fixture {
    json: Value,
    model: FastModel,
    inputs: Vec<u32>,
    targets: Vec<u32>,
    batch: usize,
    seq: usize,
}

fn load() -> Fixture {
    let root = fixtures();
    let dir = root.join("hf/tiny-llama");
    let loaded = slm_model::load(dir.to_str().unwrap(), None).unwrap();
    let json: Value = serde_json::from_slice(
        &std::fs::read(root.join("train/tiny_llama_train_ref.json")).unwrap(),
    )
    .unwrap();
    let (batch, seq) = (
        json["batch"].as_u64().unwrap() as usize,
        json["seq_len"].as_u64().unwrap() as usize,
    );
    let inputs = ids(&json["input_ids"]);
    let targets = ids(&json["targets"]);
    Fixture {
        model: FastModel::from_llama(&loaded.model).unwrap(),
        json,
        inputs,
        targets,
        batch,
        seq,
    }
}

#[test]
fn loss_and_gradients_match_pytorch() {
    let Fixture {
        json,
        mut model,
        inputs,
        targets,
        batch,
        seq,
    } = load();
    let loss = model
        .forward_backward(&inputs, &targets, batch, seq)
        .unwrap() as f64;
    let want = f(&json["loss"]);
    assert!(
        ((loss - want) / want).abs() < 1e-5,
        "loss {loss} vs torch {want}"
    );
    let grads = candle_core::safetensors::load(
        fixtures().join("train/tiny_llama_train_ref.safetensors"),
        &Device::Cpu,
    )
    .unwrap();
    let mut checked = 0;
    let mut worst = 0f32;
    for p in model.params() {
        let want: Vec<f32> = grads[&format!("grad.{}", p.name)]
            .flatten_all()
            .unwrap()
            .to_vec1()
            .unwrap();
        let rel = rel_max_diff(model.grad(&p.name).unwrap(), &want);
        assert!(rel < 1e-4, "{}: max |diff| / max |g| = {rel}", p.name);
        worst = worst.max(rel);
        checked += 1;
    }
    eprintln!(
        "loss {loss} vs torch {}; worst gradient max|diff|/max|g| {worst:.2e}",
        f(&json["loss"])
    );
    assert_eq!(checked, 21);
    let norm = model.grad_norm();
    let want = f(&json["grad_global_l2"]);
    assert!(
        ((norm - want) / want).abs() < 1e-5,
        "grad norm {norm} vs {want}"
    );
}

#[test]
fn ten_adamw_steps_match_pytorch() {
    let Fixture {
        json,
        mut model,
        inputs,
        targets,
        batch,
        seq,
    } = load();
    let hp = &json["adamw"];
    let base = AdamWConfig {
        lr: f(&hp["lr"]),
        beta1: f(&hp["beta1"]),
        beta2: f(&hp["beta2"]),
        eps: f(&hp["eps"]),
        weight_decay: f(&hp["weight_decay"]),
    };
    let decay: Vec<String> = json["decay_params"]
        .as_array()
        .unwrap()
        .iter()
        .map(|v| v.as_str().unwrap().to_string())
        .collect();
    let n = model.num_parameters();
    let (mut m, mut v) = (vec![0f32; n], vec![0f32; n]);
    let steps = json["steps"].as_u64().unwrap();
    let want_losses = json["losses_before_each_step"].as_array().unwrap();
    let mut worst = 0f64;
    for step in 1..=steps {
        model.zero_grad();
        let loss = model
            .forward_backward(&inputs, &targets, batch, seq)
            .unwrap() as f64;
        let want = f(&want_losses[step as usize - 1]);
        assert!(
            ((loss - want) / want).abs() < 1e-4,
            "step {step}: loss {loss} vs torch {want}"
        );
        worst = worst.max(((loss - want) / want).abs());
        for p in model.params_mut() {
            // Decay exactly on the 2-D matrices, as the fixture records.
            assert_eq!(
                p.info.is_matrix(),
                decay.contains(&p.info.name),
                "{}",
                p.info.name
            );
            let cfg = AdamWConfig {
                weight_decay: if p.info.is_matrix() {
                    base.weight_decay
                } else {
                    0.0
                },
                ..base
            };
            let r = p.info.range();
            adamw_step(p.value, p.grad, &mut m[r.clone()], &mut v[r], step, &cfg).unwrap();
        }
    }
    let last = model.forward_loss(&inputs, &targets, batch, seq).unwrap() as f64;
    let want = f(&json["loss_after_last_step"]);
    assert!(
        ((last - want) / want).abs() < 1e-4,
        "final loss {last} vs torch {want}"
    );
    eprintln!(
        "worst relative loss difference over {steps} steps {worst:.2e}; final {last} vs {want}"
    );
    let finals = json["final_params"].as_object().unwrap();
    assert_eq!(finals.len(), model.params().len());
    for p in model.params() {
        let vals = model.param(&p.name).unwrap();
        let sum: f64 = vals.iter().map(|&x| x as f64).sum();
        let l2: f64 = vals
            .iter()
            .map(|&x| (x as f64) * (x as f64))
            .sum::<f64>()
            .sqrt();
        let (ws, wl) = (f(&finals[&p.name]["sum"]), f(&finals[&p.name]["l2"]));
        assert!(
            ((l2 - wl) / wl).abs() < 1e-4,
            "{}: l2 {l2} vs torch {wl}",
            p.name
        );
        // A sum can cancel to near zero; compare it on the scale of the tensor's L1 size.
        let scale = wl * (p.len as f64).sqrt();
        assert!(
            (sum - ws).abs() < 1e-4 * scale,
            "{}: sum {sum} vs torch {ws}",
            p.name
        );
    }
}
