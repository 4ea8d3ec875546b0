//! Logits of tiny random checkpoints written by Hugging Face transformers
//! (tools/reference/make_hf_fixtures.py) match ours within 1e-4, and a directory we save
//! loads back to the same logits.

use candle_core::{Device, Tensor};
use std::path::{Path, PathBuf};

fn fixture(name: &str) -> PathBuf {
    PathBuf::from(concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/../../tests/fixtures/hf"
    ))
    .join(name)
}

/// Max abs difference between our logits for the fixture inputs and transformers' logits.
fn max_diff_against_reference(model: &slm_model::Llama, reference: &Path) -> f32 {
    let r: serde_json::Value = serde_json::from_slice(&std::fs::read(reference).unwrap()).unwrap();
    let ids: Vec<Vec<u32>> = serde_json::from_value(r["input_ids"].clone()).unwrap();
    let want: Vec<Vec<Vec<f32>>> = serde_json::from_value(r["logits"].clone()).unwrap();
    let input = Tensor::new(ids, &Device::Cpu).unwrap();
    let got = model
        .forward(&input, None)
        .unwrap()
        .to_vec3::<f32>()
        .unwrap();
    let mut max = 0f32;
    for (gb, wb) in got.iter().zip(&want) {
        for (gt, wt) in gb.iter().zip(wb) {
            assert_eq!(gt.len(), wt.len());
            for (g, w) in gt.iter().zip(wt) {
                max = max.max((g - w).abs());
            }
        }
    }
    max
}

fn check(name: &str) {
    let dir = fixture(name);
    let loaded = slm_model::load(dir.to_str().unwrap(), None).unwrap();
    let d = max_diff_against_reference(&loaded.model, &dir.join("logits.json"));
    assert!(d < 1e-4, "{name}: max abs diff {d}");

    // Save, load back, same logits.
    let tmp = tempfile::tempdir().unwrap();
    slm_model::save(&loaded.model, tmp.path(), &[]).unwrap();
    let again = slm_model::load(tmp.path().to_str().unwrap(), None).unwrap();
    assert_eq!(
        again.model.config.to_hf_json(),
        loaded.model.config.to_hf_json()
    );
    let d2 = max_diff_against_reference(&again.model, &dir.join("logits.json"));
    assert!(d2 < 1e-4, "{name} after save/load: {d2}");
}

#[test]
fn llama_gqa_untied_matches_transformers() {
    check("tiny-llama");
}

#[test]
fn sharded_checkpoint_matches_transformers() {
    check("tiny-llama-sharded");
}

#[test]
fn qwen2_biases_tied_matches_transformers() {
    let dir = fixture("tiny-qwen2");
    let loaded = slm_model::load(dir.to_str().unwrap(), None).unwrap();
    assert!(loaded.model.config.qkv_bias && loaded.model.config.tie_word_embeddings);
    check("tiny-qwen2");
}

#[test]
fn llama3_rope_scaling_matches_transformers() {
    check("tiny-llama-rope-llama3");
}

#[test]
fn linear_rope_scaling_matches_transformers() {
    check("tiny-llama-rope-linear");
}

#[test]
fn legacy_config_layout_reads_the_same() {
    // config.legacy.json: the same config with rope_theta/rope_scaling as pre-v5 transformers wrote.
    for name in [
        "tiny-llama",
        "tiny-llama-rope-llama3",
        "tiny-llama-rope-linear",
        "tiny-qwen2",
    ] {
        let dir = fixture(name);
        let read = |f: &str| {
            let v: serde_json::Value =
                serde_json::from_slice(&std::fs::read(dir.join(f)).unwrap()).unwrap();
            slm_model::LlamaConfig::from_hf_json(&v).unwrap()
        };
        let (new, old) = (read("config.json"), read("config.legacy.json"));
        assert_eq!(
            (new.rope_theta, new.rope_scaling.clone()),
            (old.rope_theta, old.rope_scaling.clone()),
            "{name}"
        );
    }
}
