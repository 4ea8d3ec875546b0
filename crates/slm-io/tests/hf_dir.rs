//! Hugging Face directories: save -> load round trip, sharded index, truncated and missing
//! files, and cache-id resolution on a fake hub cache.

mod common;

use std::path::Path;

use candle_core::{DType, Tensor};
use common::{assert_same, Rng};
use slm_core::Error;
use slm_io::{
    hf_cache, hf_dir, load_model, save_hf_dir, write_safetensors, ModelFormat, TokenizerSource,
};

fn tiny_config() -> serde_json::Value {
    serde_json::json!({
        "architectures": ["LlamaForCausalLM"], "model_type": "llama", "hidden_size": 8,
        "intermediate_size": 16, "num_hidden_layers": 1, "num_attention_heads": 2,
        "num_key_value_heads": 1, "vocab_size": 12, "rms_norm_eps": 1e-5,
        "tie_word_embeddings": true
    })
}

fn tiny_tensors(seed: u64) -> Vec<(String, Tensor)> {
    let mut r = Rng::new(seed);
    let l = |n: &str| format!("model.layers.0.{n}");
    vec![
        ("model.embed_tokens.weight".into(), r.tensor(&[12, 8])),
        (l("input_layernorm.weight"), r.tensor(&[8])),
        (l("self_attn.q_proj.weight"), r.tensor(&[8, 8])),
        (l("self_attn.k_proj.weight"), r.tensor(&[4, 8])),
        (l("self_attn.v_proj.weight"), r.tensor(&[4, 8])),
        (l("self_attn.o_proj.weight"), r.tensor(&[8, 8])),
        (l("post_attention_layernorm.weight"), r.tensor(&[8])),
        (l("mlp.gate_proj.weight"), r.tensor(&[16, 8])),
        (l("mlp.up_proj.weight"), r.tensor(&[16, 8])),
        (l("mlp.down_proj.weight"), r.tensor(&[8, 16])),
        ("model.norm.weight".into(), r.tensor(&[8])),
    ]
}

fn spec(p: &Path) -> &str {
    p.to_str().unwrap()
}

#[test]
fn save_then_load_round_trips() {
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("model");
    let mut tensors = tiny_tensors(1);
    // One tensor kept in half precision: it is written as F16 and read back as F32.
    let half = tensors[2].1.to_dtype(DType::F16).unwrap();
    tensors[2].1 = half.clone();
    let slm = serde_json::json!({"parent": "test", "stage": "unit"});
    let gen = serde_json::json!({"bos_token_id": 1, "eos_token_id": 2});
    save_hf_dir(
        &out,
        &tiny_config(),
        &tensors,
        &[
            ("tokenizer.json", b"{\"model\":{}}".to_vec()),
            ("slm.json", serde_json::to_vec(&slm).unwrap()),
            ("generation_config.json", serde_json::to_vec(&gen).unwrap()),
        ],
    )
    .unwrap();

    let m = load_model(spec(&out), None).unwrap();
    assert_eq!(m.format, ModelFormat::HfDir);
    assert_eq!(m.source, out);
    assert_eq!(m.config, tiny_config());
    assert_eq!(m.slm_meta, Some(slm));
    assert_eq!(m.generation_config, Some(gen));
    assert_eq!(
        m.tokenizer,
        TokenizerSource::HfJson(out.join("tokenizer.json"))
    );
    assert_eq!(m.tensors.len(), tensors.len());
    for (name, t) in &tensors {
        let want = t.to_dtype(DType::F32).unwrap();
        assert_eq!(m.tensors[name].dtype(), DType::F32);
        assert_same(&m.tensors[name], &want, name);
    }
    // Nothing but the intended files (no temporaries left behind).
    let mut files: Vec<String> = std::fs::read_dir(&out)
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .collect();
    files.sort();
    assert_eq!(
        files,
        [
            "config.json",
            "generation_config.json",
            "model.safetensors",
            "slm.json",
            "tokenizer.json"
        ]
    );
}

#[test]
fn sharded_directory_loads_and_checks_the_index() {
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path();
    let tensors = tiny_tensors(2);
    let (a, b) = tensors.split_at(5);
    write_safetensors(&out.join("model-00001-of-00002.safetensors"), a).unwrap();
    write_safetensors(&out.join("model-00002-of-00002.safetensors"), b).unwrap();
    let mut map = serde_json::Map::new();
    for (n, _) in a {
        map.insert(n.clone(), "model-00001-of-00002.safetensors".into());
    }
    for (n, _) in b {
        map.insert(n.clone(), "model-00002-of-00002.safetensors".into());
    }
    let index = |map: &serde_json::Map<String, serde_json::Value>| {
        serde_json::to_vec(&serde_json::json!({"metadata": {"total_size": 0}, "weight_map": map}))
            .unwrap()
    };
    std::fs::write(out.join("model.safetensors.index.json"), index(&map)).unwrap();
    std::fs::write(
        out.join("config.json"),
        serde_json::to_vec(&tiny_config()).unwrap(),
    )
    .unwrap();

    let m = load_model(spec(out), None).unwrap();
    assert_eq!(m.tokenizer, TokenizerSource::None);
    assert_eq!(m.tensors.len(), tensors.len());
    for (name, t) in &tensors {
        assert_same(&m.tensors[name], t, name);
    }

    // The index points a tensor at the wrong shard: named, with the shard.
    map.insert(
        "model.norm.weight".into(),
        "model-00001-of-00002.safetensors".into(),
    );
    std::fs::write(out.join("model.safetensors.index.json"), index(&map)).unwrap();
    match load_model(spec(out), None) {
        Err(Error::MissingTensor { path, tensor }) => {
            assert_eq!(tensor, "model.norm.weight");
            assert!(path.ends_with("model-00001-of-00002.safetensors"));
        }
        other => panic!("expected a missing tensor, got {other:?}"),
    }
}

#[test]
fn truncated_safetensors_is_a_format_error_naming_the_file() {
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("m");
    save_hf_dir(&out, &tiny_config(), &tiny_tensors(3), &[]).unwrap();
    let st = out.join("model.safetensors");
    let bytes = std::fs::read(&st).unwrap();
    std::fs::write(&st, &bytes[..bytes.len() - 7]).unwrap();
    let err = load_model(spec(&out), None).unwrap_err();
    let msg = err.to_string();
    assert!(
        matches!(err, Error::Format { ref path, .. } if *path == st),
        "{msg}"
    );
    assert!(
        msg.contains("model.safetensors") && msg.contains("truncated"),
        "{msg}"
    );
}

#[test]
fn missing_config_or_weights_are_clear_errors() {
    let dir = tempfile::tempdir().unwrap();
    let msg = load_model(spec(dir.path()), None).unwrap_err().to_string();
    assert!(msg.contains("config.json is missing"), "{msg}");
    std::fs::write(dir.path().join("config.json"), b"{}").unwrap();
    let msg = load_model(spec(dir.path()), None).unwrap_err().to_string();
    assert!(msg.contains("no model.safetensors"), "{msg}");
    std::fs::write(dir.path().join("config.json"), b"{not json").unwrap();
    let msg = load_model(spec(dir.path()), None).unwrap_err().to_string();
    assert!(
        msg.contains("config.json") && msg.contains("invalid JSON"),
        "{msg}"
    );
    let msg = load_model("/definitely/not/here.gguf", None)
        .unwrap_err()
        .to_string();
    assert!(msg.contains("/definitely/not/here.gguf"), "{msg}");
}

#[test]
fn bad_extra_file_names_are_refused() {
    let dir = tempfile::tempdir().unwrap();
    for bad in ["../x.json", "config.json", "a/b", ""] {
        let r = save_hf_dir(
            dir.path(),
            &tiny_config(),
            &tiny_tensors(1),
            &[(bad, vec![])],
        );
        assert!(matches!(r, Err(Error::InvalidArgument(_))), "{bad}");
    }
}

#[test]
fn cache_id_resolves_in_a_fake_hub_cache() {
    let root = tempfile::tempdir().unwrap();
    let repo = root.path().join("models--tiny-org--tiny-llama");
    let snap = repo.join("snapshots").join("0123abcd");
    save_hf_dir(&snap, &tiny_config(), &tiny_tensors(4), &[]).unwrap();
    std::fs::create_dir_all(repo.join("refs")).unwrap();
    std::fs::write(repo.join("refs/main"), "0123abcd").unwrap();

    let dir = hf_cache::resolve_in("tiny-org/tiny-llama", root.path()).unwrap();
    assert_eq!(dir, snap);
    let m = hf_dir::read(&dir).unwrap();
    assert_eq!(m.config, tiny_config());
    assert_eq!(m.tensors.len(), 11);

    let msg = hf_cache::resolve_in("tiny-org/other", root.path())
        .unwrap_err()
        .to_string();
    assert!(msg.contains("models--tiny-org--other"), "{msg}");
}

#[test]
fn a_gguf_vocabulary_travels_with_the_directory() {
    // A model read from GGUF and saved as a directory (slm prune, slm export hf) keeps its
    // vocabulary as vocab.gguf.json, and loading the directory gives the same source back.
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("model");
    let vocab = slm_io::GgufVocab {
        model: "llama".into(),
        tokens: vec![
            "<unk>".into(),
            "<s>".into(),
            "</s>".into(),
            "\u{2581}a".into(),
        ],
        scores: vec![0.0, 0.0, 0.0, -1.5],
        token_types: vec![2, 3, 3, 1],
        merges: Vec::new(),
        bos_id: Some(1),
        eos_id: Some(2),
        unk_id: Some(0),
        add_bos: true,
        add_eos: false,
        pre: None,
        chat_template: None,
    };
    let source = TokenizerSource::Gguf(vocab);
    let files = source.files().unwrap();
    assert_eq!(files.len(), 1);
    assert_eq!(files[0].0, hf_dir::GGUF_VOCAB);
    save_hf_dir(&out, &tiny_config(), &tiny_tensors(2), &files).unwrap();
    let m = load_model(spec(&out), None).unwrap();
    assert_eq!(m.tokenizer, source);
    // A tokenizer.json beside it (its conversion for transformers, `slm export hf`) does not
    // replace it: vocab.gguf.json is the source exactly.
    std::fs::write(out.join("tokenizer.json"), b"{}").unwrap();
    let m = load_model(spec(&out), None).unwrap();
    assert_eq!(m.tokenizer, source);
    // A damaged vocabulary file is a format error naming it.
    std::fs::remove_file(out.join("tokenizer.json")).unwrap();
    std::fs::write(out.join(hf_dir::GGUF_VOCAB), b"{\"model\": 3}").unwrap();
    let e = load_model(spec(&out), None).unwrap_err().to_string();
    assert!(e.contains(hf_dir::GGUF_VOCAB), "{e}");
    assert!(TokenizerSource::None.files().unwrap().is_empty());
}
