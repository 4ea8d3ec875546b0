//! LoRA adapters in PEFT's layout (`slm_io::peft`): what PEFT 0.21 wrote
//! (tests/fixtures/peft/tiny-llama-lora/adapter, made by tools/reference/peft_fixture.py) is
//! read, what we write reads back exactly and carries the keys PEFT writes, and everything that
//! would change the math without slm computing it is refused by name.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use candle_core::{DType, Device, Tensor};
use serde_json::{json, Value};
use slm_core::{Error, LinearRole};
use slm_io::peft::{
    parse_tensor_name, tensor_name, BaseShapes, Factor, LoraAdapter, LoraConfig, LoraPair,
    CONFIG_FILE, PICKLE_FILE, WEIGHTS_FILE,
};
use slm_io::{read_safetensors, write_safetensors};

fn fixture() -> PathBuf {
    PathBuf::from(concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/../../tests/fixtures/peft/tiny-llama-lora/adapter"
    ))
}

/// The fixture's base: hidden 64, 2 layers, 4 heads / 2 KV heads of 16, intermediate 128.
const TINY: BaseShapes = BaseShapes {
    layers: 2,
    hidden: 64,
    q_dim: 64,
    kv_dim: 32,
    intermediate: 128,
};

fn fixture_config_json() -> Value {
    serde_json::from_slice(&std::fs::read(fixture().join(CONFIG_FILE)).unwrap()).unwrap()
}

/// Seeded values in [-0.5, 0.5) (xorshift; the test needs no statistics).
fn values(n: usize, seed: u64) -> Vec<f32> {
    let mut s = seed.wrapping_mul(0x9E37_79B9_7F4A_7C15) | 1;
    (0..n)
        .map(|_| {
            s ^= s << 13;
            s ^= s >> 7;
            s ^= s << 17;
            (s >> 40) as f32 / (1u64 << 24) as f32 - 0.5
        })
        .collect()
}

fn random_adapter(config: LoraConfig, base: &BaseShapes, seed: u64) -> LoraAdapter {
    let mut pairs = BTreeMap::new();
    for layer in 0..base.layers {
        for &role in &config.target_modules {
            let (out, inp) = base.linear(role);
            let k = seed + 100 * layer as u64 + role as u64;
            pairs.insert(
                (layer, role),
                LoraPair {
                    a: values(config.r * inp, k),
                    b: values(out * config.r, k + 50),
                    in_features: inp,
                    out_features: out,
                },
            );
        }
    }
    LoraAdapter { config, pairs }
}

/// A copy of the fixture adapter whose config is the fixture's with `edit` applied.
fn with_config(dir: &Path, edit: impl FnOnce(&mut serde_json::Map<String, Value>)) {
    let mut v = fixture_config_json();
    edit(v.as_object_mut().unwrap());
    std::fs::create_dir_all(dir).unwrap();
    std::fs::write(
        dir.join(CONFIG_FILE),
        serde_json::to_vec_pretty(&v).unwrap(),
    )
    .unwrap();
    std::fs::copy(fixture().join(WEIGHTS_FILE), dir.join(WEIGHTS_FILE)).unwrap();
}

/// A copy of the fixture adapter with its tensors replaced by `edit(tensors)`.
fn with_tensors(dir: &Path, edit: impl FnOnce(&mut Vec<(String, Tensor)>)) {
    let mut tensors: Vec<(String, Tensor)> = read_safetensors(&fixture().join(WEIGHTS_FILE))
        .unwrap()
        .into_iter()
        .collect();
    tensors.sort_by(|a, b| a.0.cmp(&b.0));
    edit(&mut tensors);
    std::fs::create_dir_all(dir).unwrap();
    std::fs::copy(fixture().join(CONFIG_FILE), dir.join(CONFIG_FILE)).unwrap();
    write_safetensors(&dir.join(WEIGHTS_FILE), &tensors).unwrap();
}

fn err_text(e: Error) -> String {
    e.to_string()
}

#[test]
fn reads_the_adapter_peft_wrote() {
    let a = LoraAdapter::read(&fixture()).unwrap();
    assert_eq!(a.config.r, 4);
    assert_eq!(a.config.lora_alpha, 8.0);
    assert_eq!(a.config.lora_dropout, 0.0);
    assert!(!a.config.use_rslora);
    assert_eq!(a.config.scaling(), 2.0);
    assert_eq!(a.config.target_modules, LinearRole::ALL.to_vec());
    assert_eq!(a.config.base_model_name_or_path, None);
    assert_eq!(a.pairs.len(), 2 * 7);
    a.check_against(&TINY).unwrap();
    // Values as the file holds them, under PEFT's names.
    let raw = read_safetensors(&fixture().join(WEIGHTS_FILE)).unwrap();
    assert_eq!(raw.len(), 28);
    for (&(layer, role), p) in &a.pairs {
        let (out, inp) = TINY.linear(role);
        assert_eq!((p.out_features, p.in_features, p.rank()), (out, inp, 4));
        let want_a = raw[&tensor_name(layer, role, Factor::A)]
            .flatten_all()
            .unwrap()
            .to_vec1::<f32>()
            .unwrap();
        let want_b = raw[&tensor_name(layer, role, Factor::B)]
            .flatten_all()
            .unwrap()
            .to_vec1::<f32>()
            .unwrap();
        assert_eq!(p.a, want_a);
        assert_eq!(p.b, want_b);
        assert!(
            p.b.iter().any(|v| *v != 0.0),
            "the fixture sets lora_B non-zero"
        );
    }
}

#[test]
fn tensor_names_are_pefts() {
    assert_eq!(
        tensor_name(0, LinearRole::Q, Factor::A),
        "base_model.model.model.layers.0.self_attn.q_proj.lora_A.weight"
    );
    assert_eq!(
        tensor_name(11, LinearRole::Down, Factor::B),
        "base_model.model.model.layers.11.mlp.down_proj.lora_B.weight"
    );
    for layer in [0, 3, 27] {
        for role in LinearRole::ALL {
            for f in [Factor::A, Factor::B] {
                assert_eq!(
                    parse_tensor_name(&tensor_name(layer, role, f)),
                    Some((layer, role, f))
                );
            }
        }
    }
    for bad in [
        "base_model.model.model.layers.0.mlp.q_proj.lora_A.weight",
        "base_model.model.model.layers.0.self_attn.gate_proj.lora_A.weight",
        "base_model.model.model.layers.x.self_attn.q_proj.lora_A.weight",
        "base_model.model.model.layers.0.self_attn.q_proj.lora_A.default.weight",
        "base_model.model.model.layers.0.self_attn.q_proj.lora_magnitude_vector",
        "base_model.model.model.embed_tokens.lora_embedding_A",
        "model.layers.0.self_attn.q_proj.lora_A.weight",
        "base_model.model.lm_head.lora_A.weight",
    ] {
        assert_eq!(parse_tensor_name(bad), None, "{bad}");
    }
}

#[test]
fn write_then_read_is_exact() {
    let dir = tempfile::tempdir().unwrap();
    let mut config = LoraConfig::new(8, 16.0, &[LinearRole::V, LinearRole::Q, LinearRole::Down]);
    config.lora_dropout = 0.05;
    config.use_rslora = true;
    config.base_model_name_or_path = Some("HuggingFaceTB/SmolLM2-135M".into());
    let adapter = random_adapter(config, &TINY, 7);
    adapter.write(dir.path()).unwrap();
    let back = LoraAdapter::read(dir.path()).unwrap();
    assert_eq!(back, adapter);
    assert_eq!(
        back.config.target_modules,
        [LinearRole::Q, LinearRole::V, LinearRole::Down]
    );
    assert_eq!(back.config.scaling(), (16.0 / 8f64.sqrt()) as f32);
    // f32 tensors under PEFT's names, and nothing else.
    let raw = read_safetensors(&dir.path().join(WEIGHTS_FILE)).unwrap();
    assert_eq!(raw.len(), 2 * 3 * 2);
    let q_a = &raw[&tensor_name(1, LinearRole::Q, Factor::A)];
    assert_eq!(q_a.dims(), [8, 64]);
    assert_eq!(q_a.dtype(), DType::F32);
    assert_eq!(
        raw[&tensor_name(0, LinearRole::Down, Factor::B)].dims(),
        [64, 8]
    );
}

/// What we write is PEFT's own config: reading the fixture and writing it back gives the
/// file PEFT wrote, key for key, less `peft_version` (PEFT fills that in on load).
#[test]
fn written_config_is_the_one_peft_writes() {
    let mut theirs = fixture_config_json();
    theirs.as_object_mut().unwrap().remove("peft_version");
    let a = LoraAdapter::read(&fixture()).unwrap();
    assert_eq!(a.config.to_json(), theirs);
    // A non-integral alpha is written as a float, an integral one as an integer (PEFT's int).
    let mut c = a.config.clone();
    c.lora_alpha = 12.5;
    assert_eq!(c.to_json()["lora_alpha"], json!(12.5));
    assert_eq!(a.config.to_json()["lora_alpha"], json!(8));
}

#[test]
fn harmless_keys_are_accepted() {
    let cases: Vec<(&str, Value)> = vec![
        ("layers_pattern", json!("layers")),
        ("exclude_modules", json!(["lm_head"])),
        ("init_lora_weights", json!("gaussian")),
        ("init_lora_weights", json!(false)),
        ("init_lora_weights", json!("eva")),
        ("eva_config", json!({"rho": 2.0})),
        ("revision", json!("main")),
        ("megatron_config", json!({"x": 1})),
        ("velora_config", json!({"rank": 1})),
        ("loftq_config", json!({"loftq_bits": 4})),
        ("inference_mode", json!(false)),
        ("task_type", Value::Null),
        ("a_key_from_a_future_peft", json!([1, 2, 3])),
        ("base_model_name_or_path", json!("org/base")),
    ];
    let tmp = tempfile::tempdir().unwrap();
    for (i, (key, value)) in cases.into_iter().enumerate() {
        let dir = tmp.path().join(i.to_string());
        with_config(&dir, |m| {
            m.insert(key.to_string(), value.clone());
        });
        let a = LoraAdapter::read(&dir)
            .unwrap_or_else(|e| panic!("{key} = {value} should be accepted: {e}"));
        assert_eq!(a.pairs.len(), 14);
    }
    let dir = tmp.path().join("rslora");
    with_config(&dir, |m| {
        m.insert("use_rslora".into(), json!(true));
    });
    assert_eq!(LoraAdapter::read(&dir).unwrap().config.scaling(), 4.0);
}

#[test]
fn options_that_change_the_math_are_refused_by_name() {
    let cases: Vec<(&str, Value)> = vec![
        ("use_dora", json!(true)),
        ("rank_pattern", json!({"q_proj": 8})),
        ("alpha_pattern", json!({"down_proj": 32})),
        ("fan_in_fan_out", json!(true)),
        ("modules_to_save", json!(["lm_head"])),
        ("layers_to_transform", json!([0])),
        ("peft_type", json!("IA3")),
        ("lora_bias", json!(true)),
        ("target_parameters", json!(["mlp.experts.down_proj"])),
        ("bias", json!("all")),
        ("bias", json!("lora_only")),
        ("task_type", json!("SEQ_CLS")),
        ("layer_replication", json!([[0, 1], [0, 2]])),
        ("trainable_token_indices", json!([1, 2])),
        ("alora_invocation_tokens", json!([5, 6])),
        ("use_qalora", json!(true)),
        ("kasa_config", json!({})),
        ("use_bdlora", json!({"nblocks": 2})),
        ("arrow_config", json!({"top_k": 3})),
        ("monteclora_config", json!({"n": 4})),
        ("init_lora_weights", json!("pissa")),
        ("init_lora_weights", json!("pissa_niter_4")),
        ("init_lora_weights", json!("olora")),
        ("init_lora_weights", json!("corda")),
        ("init_lora_weights", json!("loftq")),
        ("init_lora_weights", json!("lora_ga")),
    ];
    let tmp = tempfile::tempdir().unwrap();
    for (i, (key, value)) in cases.into_iter().enumerate() {
        let dir = tmp.path().join(i.to_string());
        with_config(&dir, |m| {
            m.insert(key.to_string(), value.clone());
        });
        match LoraAdapter::read(&dir) {
            Err(Error::Unsupported(msg)) => {
                assert!(
                    msg.contains(key),
                    "{key} = {value}: message does not name it: {msg}"
                );
                assert!(msg.contains(CONFIG_FILE), "{msg}");
            }
            other => panic!("{key} = {value}: expected a refusal, got {other:?}"),
        }
    }
    let dir = tmp.path().join("no-type");
    with_config(&dir, |m| {
        m.remove("peft_type");
    });
    let e = err_text(LoraAdapter::read(&dir).unwrap_err());
    assert!(e.contains("peft_type"), "{e}");
}

#[test]
fn bad_configs_are_format_errors() {
    let cases: Vec<(&str, Value, &str)> = vec![
        ("target_modules", json!("all-linear"), "all-linear"),
        (
            "target_modules",
            json!(".*(q|v)_proj"),
            "list of module names",
        ),
        ("target_modules", json!(["q_proj", "lm_head"]), "lm_head"),
        ("target_modules", json!([]), "empty"),
        ("r", json!(0), "r is 0"),
        ("r", json!("four"), "not a PEFT LoRA config"),
        ("lora_alpha", Value::Null, "not a PEFT LoRA config"),
    ];
    let tmp = tempfile::tempdir().unwrap();
    for (i, (key, value, want)) in cases.into_iter().enumerate() {
        let dir = tmp.path().join(i.to_string());
        with_config(&dir, |m| {
            m.insert(key.to_string(), value.clone());
        });
        match LoraAdapter::read(&dir) {
            Err(Error::Format { path, msg }) => {
                assert_eq!(path, dir.join(CONFIG_FILE));
                assert!(msg.contains(want), "{key} = {value}: {msg}");
            }
            other => panic!("{key} = {value}: expected a format error, got {other:?}"),
        }
    }
}

#[test]
fn only_safetensors_weights_are_read() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::copy(fixture().join(CONFIG_FILE), dir.path().join(CONFIG_FILE)).unwrap();
    std::fs::write(dir.path().join(PICKLE_FILE), b"\x80\x02pickle").unwrap();
    match LoraAdapter::read(dir.path()) {
        Err(Error::Unsupported(msg)) => {
            assert!(
                msg.contains(PICKLE_FILE) && msg.contains(WEIGHTS_FILE),
                "{msg}"
            )
        }
        other => panic!("expected a refusal, got {other:?}"),
    }
    std::fs::remove_file(dir.path().join(PICKLE_FILE)).unwrap();
    assert!(matches!(
        LoraAdapter::read(dir.path()),
        Err(Error::Io { .. })
    ));
    assert!(matches!(
        LoraAdapter::read(&dir.path().join("nowhere")),
        Err(Error::Io { .. })
    ));
}

#[test]
fn bad_tensors_are_refused_by_name() {
    let tmp = tempfile::tempdir().unwrap();
    let q_a = tensor_name(0, LinearRole::Q, Factor::A);
    let q_b = tensor_name(0, LinearRole::Q, Factor::B);
    let expect = |dir: &Path, want: &[&str]| match LoraAdapter::read(dir) {
        Err(Error::Format { path, msg }) => {
            assert_eq!(path, dir.join(WEIGHTS_FILE));
            for w in want {
                assert!(msg.contains(w), "`{w}` not in: {msg}");
            }
        }
        other => panic!("expected a format error, got {other:?}"),
    };

    let d = tmp.path().join("extra");
    let head = "base_model.model.lm_head.lora_A.weight";
    with_tensors(&d, |t| {
        t.push((
            head.into(),
            Tensor::zeros((4, 64), DType::F32, &Device::Cpu).unwrap(),
        ))
    });
    expect(&d, &[head, "not the lora_A or lora_B"]);

    let d = tmp.path().join("dora");
    let mag = "base_model.model.model.layers.0.self_attn.q_proj.lora_magnitude_vector";
    with_tensors(&d, |t| {
        t.push((
            mag.into(),
            Tensor::zeros(64, DType::F32, &Device::Cpu).unwrap(),
        ))
    });
    expect(&d, &[mag]);

    let d = tmp.path().join("a-alone");
    with_tensors(&d, |t| t.retain(|(n, _)| n != &q_b));
    expect(&d, &[&q_a, &q_b, "no partner"]);

    let d = tmp.path().join("b-alone");
    with_tensors(&d, |t| t.retain(|(n, _)| n != &q_a));
    expect(&d, &[&q_a, &q_b, "no partner"]);

    let d = tmp.path().join("rank");
    with_tensors(&d, |t| {
        for (n, v) in t.iter_mut() {
            if n == &q_a {
                *v = Tensor::zeros((8, 64), DType::F32, &Device::Cpu).unwrap();
            }
        }
    });
    expect(&d, &[&q_a, "[8, 64]", "rank 8", "r = 4"]);

    let d = tmp.path().join("vector");
    with_tensors(&d, |t| {
        for (n, v) in t.iter_mut() {
            if n == &q_b {
                *v = Tensor::zeros(256, DType::F32, &Device::Cpu).unwrap();
            }
        }
    });
    expect(&d, &[&q_b, "matrix"]);

    let d = tmp.path().join("not-targeted");
    with_tensors(&d, |_| {});
    let mut v = fixture_config_json();
    v["target_modules"] = json!(["q_proj", "v_proj"]);
    std::fs::write(d.join(CONFIG_FILE), serde_json::to_vec(&v).unwrap()).unwrap();
    expect(&d, &["down_proj", "target_modules"]);

    let d = tmp.path().join("empty");
    with_tensors(&d, |t| t.clear());
    expect(&d, &["no LoRA tensors"]);
}

#[test]
fn half_precision_factors_are_widened() {
    let tmp = tempfile::tempdir().unwrap();
    for dtype in [DType::F16, DType::BF16] {
        let d = tmp.path().join(format!("{dtype:?}"));
        let mut want = Vec::new();
        with_tensors(&d, |t| {
            for (_, v) in t.iter_mut() {
                *v = v.to_dtype(dtype).unwrap();
            }
            want = t
                .iter()
                .map(|(n, v)| {
                    let vals = v.to_dtype(DType::F32).unwrap().flatten_all().unwrap();
                    (n.clone(), vals.to_vec1::<f32>().unwrap())
                })
                .collect();
        });
        let a = LoraAdapter::read(&d).unwrap();
        for (name, vals) in want {
            let (layer, role, f) = parse_tensor_name(&name).unwrap();
            let p = &a.pairs[&(layer, role)];
            let got = match f {
                Factor::A => &p.a,
                Factor::B => &p.b,
            };
            assert_eq!(got, &vals, "{dtype:?} {name}");
        }
    }
}

#[test]
fn an_adapter_for_another_base_is_refused_naming_tensor_and_shapes() {
    let a = LoraAdapter::read(&fixture()).unwrap();
    let one_layer = BaseShapes { layers: 1, ..TINY };
    let e = err_text(a.check_against(&one_layer).unwrap_err());
    assert!(
        e.contains(&tensor_name(1, LinearRole::Q, Factor::A))
            && e.contains("layer 1")
            && e.contains("1 layers"),
        "{e}"
    );
    let narrower = BaseShapes {
        intermediate: 96,
        ..TINY
    };
    let e = err_text(a.check_against(&narrower).unwrap_err());
    assert!(
        e.contains(&tensor_name(0, LinearRole::Gate, Factor::B))
            && e.contains("[128, 4]")
            && e.contains("[96, 4]")
            && e.contains("[96, 64]"),
        "{e}"
    );
    let wider = BaseShapes { hidden: 96, ..TINY };
    let e = err_text(a.check_against(&wider).unwrap_err());
    assert!(
        e.contains(&tensor_name(0, LinearRole::Q, Factor::A))
            && e.contains("[4, 64]")
            && e.contains("[4, 96]"),
        "{e}"
    );
}

#[test]
fn inconsistent_pairs_are_not_written() {
    let dir = tempfile::tempdir().unwrap();
    let mut a = random_adapter(LoraConfig::new(2, 4.0, &[LinearRole::Q]), &TINY, 3);
    a.pairs.get_mut(&(0, LinearRole::Q)).unwrap().b.pop();
    let e = err_text(a.write(dir.path()).unwrap_err());
    assert!(e.contains(&tensor_name(0, LinearRole::Q, Factor::B)), "{e}");
    let mut a = random_adapter(LoraConfig::new(2, 4.0, &[LinearRole::Q]), &TINY, 3);
    a.config.target_modules = vec![LinearRole::K];
    let e = err_text(a.write(dir.path()).unwrap_err());
    assert!(e.contains("q_proj") && e.contains("target_modules"), "{e}");
    assert!(!dir.path().join(CONFIG_FILE).exists());
}
