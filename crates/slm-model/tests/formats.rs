//! Models read from GGUF and llama2.c files run, and give the same logits after being
//! written as Hugging Face safetensors and read back.

use candle_core::{Device, Tensor};
use std::path::PathBuf;

fn shared(rel: &str) -> Option<PathBuf> {
    slm_core::testdata::shared_data(rel)
}

fn logits(model: &slm_model::Llama, ids: &[u32]) -> Vec<f32> {
    let input = Tensor::new(ids, &Device::Cpu)
        .unwrap()
        .unsqueeze(0)
        .unwrap();
    model
        .forward(&input, None)
        .unwrap()
        .flatten_all()
        .unwrap()
        .to_vec1()
        .unwrap()
}

fn round_trip_equal(spec: &str, ids: &[u32]) {
    let a = slm_model::load(spec, None).unwrap();
    let la = logits(&a.model, ids);
    assert!(la.iter().all(|x| x.is_finite()));
    let dir = tempfile::tempdir().unwrap();
    slm_model::save(&a.model, dir.path(), &[]).unwrap();
    let b = slm_model::load(dir.path().to_str().unwrap(), None).unwrap();
    assert_eq!(
        la,
        logits(&b.model, ids),
        "{spec}: logits differ after safetensors round trip"
    );
}

#[test]
fn gguf_tiny_random_runs_and_round_trips_through_safetensors() {
    let Some(p) = shared("gguf/llama-2-tiny-random.gguf") else {
        return;
    };
    let loaded = slm_model::load(p.to_str().unwrap(), None).unwrap();
    assert_eq!(loaded.model.config.vocab_size, 32000);
    assert_eq!(loaded.model.config.hidden_size, 8);
    round_trip_equal(p.to_str().unwrap(), &[1, 15043, 3186, 29991]);
}

#[test]
fn llama2c_stories260k_round_trips_through_safetensors() {
    let Some(p) = shared("llama2c/stories260K.bin") else {
        return;
    };
    round_trip_equal(p.to_str().unwrap(), &[1, 403, 407, 261, 378]);
}

#[test]
fn bad_inputs_give_named_errors() {
    let dir = tempfile::tempdir().unwrap();
    // A config with a missing field.
    let fixture = PathBuf::from(concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/../../tests/fixtures/hf/tiny-llama"
    ));
    let mut cfg: serde_json::Value =
        serde_json::from_slice(&std::fs::read(fixture.join("config.json")).unwrap()).unwrap();
    cfg.as_object_mut().unwrap().remove("intermediate_size");
    std::fs::write(
        dir.path().join("config.json"),
        serde_json::to_vec(&cfg).unwrap(),
    )
    .unwrap();
    std::fs::copy(
        fixture.join("model.safetensors"),
        dir.path().join("model.safetensors"),
    )
    .unwrap();
    let e = slm_model::load(dir.path().to_str().unwrap(), None)
        .err()
        .unwrap()
        .to_string();
    assert!(e.contains("intermediate_size"), "{e}");

    // A config whose sizes disagree with the weights: the first mismatched tensor, both shapes.
    cfg["intermediate_size"] = 64.into();
    std::fs::write(
        dir.path().join("config.json"),
        serde_json::to_vec(&cfg).unwrap(),
    )
    .unwrap();
    let e = slm_model::load(dir.path().to_str().unwrap(), None)
        .err()
        .unwrap()
        .to_string();
    assert!(
        e.contains("mlp.gate_proj.weight") && e.contains("[56, 32]") && e.contains("[64, 32]"),
        "{e}"
    );

    // A truncated safetensors file.
    cfg["intermediate_size"] = 56.into();
    std::fs::write(
        dir.path().join("config.json"),
        serde_json::to_vec(&cfg).unwrap(),
    )
    .unwrap();
    let bytes = std::fs::read(fixture.join("model.safetensors")).unwrap();
    std::fs::write(
        dir.path().join("model.safetensors"),
        &bytes[..bytes.len() / 2],
    )
    .unwrap();
    let e = slm_model::load(dir.path().to_str().unwrap(), None)
        .err()
        .unwrap()
        .to_string();
    assert!(e.contains("model.safetensors"), "{e}");
}
