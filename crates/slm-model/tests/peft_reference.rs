//! LoRA merging (`slm_model::lora`) against PEFT.
//!
//! * An adapter PEFT 0.21 wrote (tests/fixtures/peft/tiny-llama-lora, made by
//!   tools/reference/peft_fixture.py), merged into its base, gives PEFT's logits within 1e-4 —
//!   also when the base went through GGUF, whose q/k rows are stored interleaved: loaders hand
//!   us Hugging Face row order, PEFT's order.
//! * The merge is W + scaling·B·A, projection by projection; unmerge takes it out; an adapter
//!   for another base is refused before any weight changes.
//! * With the reference Python (`slm_core::testdata::reference_python`): the fixture script run
//!   afresh gives an adapter we merge to its logits, and PEFT itself reads an adapter we wrote
//!   (tools/reference/check_peft_adapter.py) and computes our merged logits.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::Command;

use candle_core::{Device, Tensor};
use slm_core::LinearRole;
use slm_io::peft::{LoraAdapter, LoraConfig, LoraPair};
use slm_model::lora::{base_shapes, delta, merge, unmerge};
use slm_model::Llama;

const TOL: f32 = 1e-4;

fn repo() -> PathBuf {
    PathBuf::from(concat!(env!("CARGO_MANIFEST_DIR"), "/../.."))
}

fn fixture() -> PathBuf {
    repo().join("tests/fixtures/peft/tiny-llama-lora")
}

fn load(dir: &Path) -> Llama {
    slm_model::load(dir.to_str().unwrap(), None).unwrap().model
}

struct Reference {
    ids: Vec<Vec<u32>>,
    base: Vec<Vec<Vec<f32>>>,
    peft: Vec<Vec<Vec<f32>>>,
    merged: Vec<Vec<Vec<f32>>>,
}

fn reference(dir: &Path) -> Reference {
    let v: serde_json::Value =
        serde_json::from_slice(&std::fs::read(dir.join("logits.json")).unwrap()).unwrap();
    let get = |k: &str| -> Vec<Vec<Vec<f32>>> { serde_json::from_value(v[k].clone()).unwrap() };
    Reference {
        ids: serde_json::from_value(v["input_ids"].clone()).unwrap(),
        base: get("base_logits"),
        peft: get("peft_logits"),
        merged: get("merged_logits"),
    }
}

fn logits(model: &Llama, ids: &[Vec<u32>]) -> Vec<Vec<Vec<f32>>> {
    let input = Tensor::new(ids.to_vec(), &Device::Cpu).unwrap();
    model
        .forward(&input, None)
        .unwrap()
        .to_vec3::<f32>()
        .unwrap()
}

fn max_diff(a: &[Vec<Vec<f32>>], b: &[Vec<Vec<f32>>]) -> f32 {
    assert_eq!(a.len(), b.len());
    let mut m = 0f32;
    for (x, y) in a.iter().flatten().zip(b.iter().flatten()) {
        assert_eq!(x.len(), y.len());
        for (p, q) in x.iter().zip(y) {
            m = m.max((p - q).abs());
        }
    }
    m
}

/// Base logits as transformers computed them, merged logits as PEFT computed them.
fn check_merge_matches_peft(dir: &Path, base: Llama) {
    let r = reference(dir);
    let d = max_diff(&logits(&base, &r.ids), &r.base);
    assert!(d < TOL, "base logits differ from transformers' by {d}");
    let adapter = LoraAdapter::read(&dir.join("adapter")).unwrap();
    let mut model = base;
    merge(&mut model, &adapter).unwrap();
    let ours = logits(&model, &r.ids);
    let d_peft = max_diff(&ours, &r.peft);
    let d_merged = max_diff(&ours, &r.merged);
    let moved = max_diff(&r.peft, &r.base);
    assert!(moved > 0.1, "the adapter moves the logits by only {moved}");
    assert!(
        d_peft < TOL,
        "merged logits differ from the PeftModel's by {d_peft}"
    );
    assert!(
        d_merged < TOL,
        "merged logits differ from merge_and_unload's by {d_merged}"
    );
}

#[test]
fn peft_written_adapter_merges_to_peft_logits() {
    let dir = fixture();
    check_merge_matches_peft(&dir, load(&dir.join("base")));
}

/// A GGUF stores q/k rows interleaved (Meta's RoPE layout); the loader permutes them back, so
/// PEFT's q_proj/k_proj deltas (Hugging Face rows) merge unchanged into a GGUF-sourced base.
#[test]
fn gguf_sourced_base_merges_in_hf_row_order() {
    let dir = fixture();
    let base = load(&dir.join("base"));
    let tmp = tempfile::tempdir().unwrap();
    let gguf = tmp.path().join("base.gguf");
    slm_model::save_gguf(
        &base,
        "tiny",
        None,
        slm_io::gguf::export::GgufType::F32,
        &gguf,
    )
    .unwrap();
    let from_gguf = slm_model::load(gguf.to_str().unwrap(), None).unwrap();
    assert_eq!(from_gguf.format, slm_io::ModelFormat::Gguf);
    check_merge_matches_peft(&dir, from_gguf.model.clone());

    // The row order matters: q/k deltas in GGUF's interleaved order give other logits.
    let mut adapter = LoraAdapter::read(&dir.join("adapter")).unwrap();
    let cfg = &from_gguf.model.config;
    for ((_, role), p) in adapter.pairs.iter_mut() {
        let heads = match role {
            LinearRole::Q => cfg.num_attention_heads,
            LinearRole::K => cfg.num_key_value_heads,
            _ => continue,
        };
        let b = Tensor::from_vec(p.b.clone(), (p.out_features, p.rank()), &Device::Cpu).unwrap();
        let b = slm_io::permute::hf_to_meta(&b, heads).unwrap();
        p.b = b.flatten_all().unwrap().to_vec1::<f32>().unwrap();
    }
    let mut model = from_gguf.model;
    merge(&mut model, &adapter).unwrap();
    let r = reference(&dir);
    let d = max_diff(&logits(&model, &r.ids), &r.peft);
    assert!(
        d > 1e-2,
        "q/k deltas in interleaved row order should not match PEFT (diff {d})"
    );
}

/// Seeded values in [-0.5, 0.5).
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

/// A random adapter for `model` on `targets`, B scaled by `b_scale`.
fn random_adapter(model: &Llama, config: LoraConfig, b_scale: f32, seed: u64) -> LoraAdapter {
    let shapes = base_shapes(&model.config);
    let mut pairs = BTreeMap::new();
    for layer in 0..shapes.layers {
        for &role in &config.target_modules {
            let (out, inp) = shapes.linear(role);
            let k = seed + 100 * layer as u64 + role as u64;
            pairs.insert(
                (layer, role),
                LoraPair {
                    a: values(config.r * inp, k),
                    b: values(out * config.r, k + 50)
                        .into_iter()
                        .map(|v| v * b_scale)
                        .collect(),
                    in_features: inp,
                    out_features: out,
                },
            );
        }
    }
    LoraAdapter { config, pairs }
}

fn weights(model: &Llama) -> BTreeMap<String, Vec<f32>> {
    model
        .tensors()
        .into_iter()
        .map(|(n, t)| (n, t.flatten_all().unwrap().to_vec1::<f32>().unwrap()))
        .collect()
}

/// W' = W + scaling · Σ_k B[o,k]·A[k,i], in f64, for every adapted projection; every other
/// tensor (biases included) unchanged; unmerge gives W back.
fn check_formula(dir: &Path, targets: &[LinearRole], rslora: bool) {
    let mut model = load(dir);
    let mut config = LoraConfig::new(3, 6.0, targets);
    config.use_rslora = rslora;
    let adapter = random_adapter(&model, config, 0.2, 11);
    let s = adapter.config.scaling() as f64;
    let want_s = if rslora { 6.0 / 3f64.sqrt() } else { 2.0 };
    assert!((s - want_s).abs() < 1e-6);
    let before = weights(&model);
    merge(&mut model, &adapter).unwrap();
    let after = weights(&model);
    let mut changed = 0;
    for (name, w) in &before {
        let pair = adapter
            .pairs
            .iter()
            .find(|((l, role), _)| *name == format!("{}.weight", role.hf_prefix(*l)));
        let Some((_, p)) = pair else {
            assert_eq!(&after[name], w, "{name} changed without an adapter");
            continue;
        };
        changed += 1;
        let (out, inp, r) = (p.out_features, p.in_features, p.rank());
        for o in 0..out {
            for i in 0..inp {
                let d: f64 = (0..r)
                    .map(|k| p.b[o * r + k] as f64 * p.a[k * inp + i] as f64)
                    .sum();
                let want = w[o * inp + i] as f64 + s * d;
                let got = after[name][o * inp + i] as f64;
                assert!(
                    (got - want).abs() < 1e-5,
                    "{name}[{o}, {i}]: {got} vs {want}"
                );
            }
        }
        let dl = delta(p, s as f32).unwrap();
        for (k, v) in dl.iter().enumerate() {
            assert!((w[k] + v - after[name][k]).abs() < 1e-6);
        }
    }
    assert_eq!(changed, adapter.pairs.len());
    unmerge(&mut model, &adapter).unwrap();
    for (name, w) in weights(&model) {
        let d = w
            .iter()
            .zip(&before[&name])
            .fold(0f32, |m, (a, b)| m.max((a - b).abs()));
        assert!(d < 1e-5, "{name} after unmerge differs by {d}");
    }
}

#[test]
fn merge_equals_the_explicit_formula() {
    let tied = fixture().join("base");
    check_formula(&tied, &LinearRole::ALL, false);
    check_formula(
        &tied,
        &[LinearRole::Q, LinearRole::V, LinearRole::Down],
        true,
    );
    // Qwen2: q/k/v biases stay as they are.
    let qwen = repo().join("tests/fixtures/hf/tiny-qwen2");
    check_formula(
        &qwen,
        &[LinearRole::Q, LinearRole::K, LinearRole::Up],
        false,
    );
}

#[test]
fn an_adapter_for_another_base_is_refused_before_any_change() {
    let dir = fixture();
    let adapter = LoraAdapter::read(&dir.join("adapter")).unwrap();
    // tiny-llama: hidden 32, intermediate 56 — the fixture adapter is for hidden 64.
    let mut other = load(&repo().join("tests/fixtures/hf/tiny-llama"));
    let before = weights(&other);
    let e = merge(&mut other, &adapter).unwrap_err().to_string();
    assert!(
        e.contains("base_model.model.model.layers.0.")
            && e.contains("[4, 64]")
            && e.contains("[4, 32]"),
        "{e}"
    );
    assert_eq!(weights(&other), before);
}

// ---- with the reference Python (torch, transformers, peft) ----

fn python() -> Option<PathBuf> {
    slm_core::testdata::reference_python(&["torch", "transformers", "safetensors", "peft"])
}

fn run(cmd: &mut Command) -> (bool, String) {
    let out = cmd.output().unwrap();
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    (out.status.success(), text)
}

/// peft_fixture.py run now (with whatever PEFT the reference Python has) writes an adapter
/// we read and merge to its logits.
#[test]
fn peft_fixture_script_output_merges_to_its_logits() {
    let Some(py) = python() else { return };
    let tmp = tempfile::tempdir().unwrap();
    let (ok, text) = run(Command::new(&py)
        .arg(repo().join("tools/reference/peft_fixture.py"))
        .arg(tmp.path()));
    assert!(ok, "peft_fixture.py failed:\n{text}");
    check_merge_matches_peft(tmp.path(), load(&tmp.path().join("base")));
}

/// PEFT reads an adapter we wrote (random factors, rsLoRA, four targets) onto the fixture's
/// base and computes our merged logits, through the PeftModel and after merge_and_unload;
/// logits off by 1e-2 are caught.
#[test]
fn peft_reads_our_adapter() {
    let Some(py) = python() else { return };
    let dir = fixture();
    let base = dir.join("base");
    let mut model = load(&base);
    let mut config = LoraConfig::new(
        6,
        12.0,
        &[
            LinearRole::K,
            LinearRole::O,
            LinearRole::Gate,
            LinearRole::Down,
        ],
    );
    config.use_rslora = true;
    config.base_model_name_or_path = Some("tiny-llama-lora/base".into());
    let adapter = random_adapter(&model, config, 0.2, 5);
    let tmp = tempfile::tempdir().unwrap();
    let adapter_dir = tmp.path().join("adapter");
    adapter.write(&adapter_dir).unwrap();
    let ids = reference(&dir).ids;
    let before = logits(&model, &ids);
    merge(&mut model, &adapter).unwrap();
    let ours = logits(&model, &ids);
    assert!(
        max_diff(&ours, &before) > 0.1,
        "the random adapter must move the logits"
    );

    let ids_json = tmp.path().join("ids.json");
    std::fs::write(&ids_json, serde_json::to_vec(&ids).unwrap()).unwrap();
    let check = |logits: &[Vec<Vec<f32>>]| {
        let path = tmp.path().join("logits.json");
        let v = serde_json::json!({ "logits": logits });
        std::fs::write(&path, serde_json::to_vec(&v).unwrap()).unwrap();
        run(Command::new(&py)
            .arg(repo().join("tools/reference/check_peft_adapter.py"))
            .arg(&base)
            .arg(&adapter_dir)
            .arg(&ids_json)
            .arg(&path))
    };
    let (ok, report) = check(&ours);
    assert!(ok && report.contains("\"ok\": true"), "{report}");
    assert!(report.contains("\"lora_tensors\": 16"), "{report}");

    let mut off = ours.clone();
    off[1][3][7] += 1e-2;
    let (ok, report) = check(&off);
    assert!(!ok && report.contains("\"ok\": false"), "{report}");
}
