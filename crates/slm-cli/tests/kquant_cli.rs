//! `slm quantize --type q4_k_m | q5_k_m | q6_k` writes what llama.cpp's own quantiser writes:
//! from the same f32 GGUF, every tensor has the type `llama-quantize` gives it and the same
//! bytes. Checked on random models whose widths fill 256-value blocks (the k-quants
//! themselves, llama.cpp's "more bits" layers, tied and untied embeddings, the Q5_0/Q5_1/Q8_0
//! and f16 fallbacks of narrower rows) and, when the shared data is there, on SmolLM2-135M
//! (hidden 576: most tensors take the fallbacks; ffn_down's 1536-wide rows the k-quants).
//! The llama.cpp side is `tools/reference/llama_quantize.py` (llama-cpp-python's
//! `llama_model_quantize`); without the reference Python the comparison skips (fails under CI).

mod common;

use candle_core::Device;
use common::{llama_quantize, run, run_ok, slm};
use slm_io::gguf::export::GgufType;
use slm_io::gguf::{read_header, tensor_bytes, GgufValue};
use std::collections::BTreeMap;
use std::path::Path;

const SMOLLM2: &str = "models/SmolLM2-135M-Instruct.Q4_1.gguf";
const MIXES: [&str; 3] = ["q4_k_m", "q5_k_m", "q6_k"];

/// A random Llama saved as an f32 GGUF (no vocabulary): `hidden` 256 so most rows fill
/// k-quant blocks.
fn random_f32_gguf(
    path: &Path,
    layers: usize,
    inter: usize,
    kv_heads: usize,
    tied: bool,
    seed: u64,
) {
    let mut c = slm_model::preset("260k").unwrap();
    c.hidden_size = 256;
    c.intermediate_size = inter;
    c.num_hidden_layers = layers;
    c.num_attention_heads = 4;
    c.num_key_value_heads = kv_heads;
    c.head_dim = 64;
    c.vocab_size = 320;
    c.tie_word_embeddings = tied;
    let m = slm_model::Llama::random(c, seed, &Device::Cpu).unwrap();
    slm_model::save_gguf(&m, "random", None, GgufType::F32, path).unwrap();
}

/// Every tensor's (GGML type name, stored bytes) and the file's metadata, as slm-io reads them.
type Tensors = BTreeMap<String, (String, Vec<u8>)>;

fn tensors(path: &Path) -> (Tensors, BTreeMap<String, GgufValue>) {
    let h = read_header(path).unwrap();
    let bytes = std::fs::read(path).unwrap();
    let out = h
        .tensors
        .iter()
        .map(|t| {
            let data = tensor_bytes(path, &bytes, &h, t).unwrap();
            (t.name.clone(), (t.type_name().to_string(), data.to_vec()))
        })
        .collect();
    (out, h.metadata)
}

/// How many tensors of `ours` have llama.cpp's type and bytes, with a line per type:
/// (identical, total, per-type summary). Panics on a missing tensor or differing metadata.
fn compare(ours: &Path, theirs: &Path) -> (usize, usize, String) {
    let ((a, ma), (b, mb)) = (tensors(ours), tensors(theirs));
    assert_eq!(
        a.keys().collect::<Vec<_>>(),
        b.keys().collect::<Vec<_>>(),
        "tensor names"
    );
    for key in ["general.file_type", "general.quantization_version"] {
        assert_eq!(
            ma.get(key).and_then(GgufValue::as_u64),
            mb.get(key).and_then(GgufValue::as_u64),
            "{key}"
        );
    }
    let mut same = 0;
    let mut per_type: BTreeMap<&str, (usize, usize)> = BTreeMap::new();
    let mut diffs = Vec::new();
    for (name, (ta, da)) in &a {
        let (tb, db) = &b[name];
        let e = per_type.entry(tb.as_str()).or_default();
        e.1 += 1;
        if ta != tb {
            diffs.push(format!("{name}: {ta} (llama.cpp {tb})"));
        } else if da != db {
            diffs.push(format!("{name}: {ta} bytes differ"));
        } else {
            same += 1;
            e.0 += 1;
        }
    }
    let summary = per_type
        .iter()
        .map(|(t, (s, n))| format!("{t} {s}/{n}"))
        .collect::<Vec<_>>()
        .join(", ");
    assert!(diffs.is_empty(), "{}: {}", ours.display(), diffs.join("; "));
    (same, a.len(), summary)
}

/// `slm quantize` and llama.cpp on the f32 file `f32`, for each k-quant mix.
fn agree_with_llama_cpp(python: &Path, f32: &Path, dir: &Path, label: &str) {
    for ty in MIXES {
        let ours = dir.join(format!("{label}-slm-{ty}.gguf"));
        let theirs = dir.join(format!("{label}-llamacpp-{ty}.gguf"));
        run_ok(
            slm()
                .args(["quantize", "--type", ty, "-m"])
                .arg(f32)
                .arg("--out")
                .arg(&ours),
        );
        llama_quantize(python, f32, &theirs, ty);
        let (same, n, summary) = compare(&ours, &theirs);
        println!("{label} {ty}: {same} of {n} tensors byte-identical ({summary})");
        assert_eq!(same, n);
    }
}

/// The types the k-quant mixes give a random model's tensors, the report's types, and the
/// refusals (no llama.cpp needed).
#[test]
fn k_mixes_choose_llama_cpps_types() {
    let tmp = tempfile::tempdir().unwrap();
    let f32 = tmp.path().join("r.gguf");
    // 8 layers: llama.cpp's use_more_bits picks layers 0, 3, 6, 7; ffn_down rows of 384
    // do not fill 256-value blocks.
    random_f32_gguf(&f32, 8, 384, 2, false, 1);
    let out = tmp.path().join("q4.gguf");
    let said = run_ok(
        slm()
            .args(["quantize", "--type", "q4_k_m", "--json", "-m"])
            .arg(&f32)
            .arg("--out")
            .arg(&out),
    );
    let report: serde_json::Value = serde_json::from_str(&said).unwrap();
    assert_eq!(report["type"], "q4_k_m");
    let (t, meta) = tensors(&out);
    let ty = |n: &str| t[n].0.as_str();
    for l in 0..8 {
        let more = [0, 3, 6, 7].contains(&l);
        assert_eq!(
            ty(&format!("blk.{l}.attn_v.weight")),
            if more { "Q6_K" } else { "Q4_K" }
        );
        // Q6_K → Q8_0 and Q4_K → Q5_0 for 384-value rows.
        assert_eq!(
            ty(&format!("blk.{l}.ffn_down.weight")),
            if more { "Q8_0" } else { "Q5_0" }
        );
        for n in ["attn_q", "attn_k", "attn_output", "ffn_gate", "ffn_up"] {
            assert_eq!(ty(&format!("blk.{l}.{n}.weight")), "Q4_K");
        }
        assert_eq!(ty(&format!("blk.{l}.attn_norm.weight")), "F32");
    }
    assert_eq!(ty("output.weight"), "Q6_K");
    assert_eq!(ty("token_embd.weight"), "Q4_K");
    assert_eq!(meta["general.file_type"].as_u64(), Some(15));
    // The report names each matrix's stored type.
    let types: BTreeMap<String, String> = report["matrices"]
        .as_array()
        .unwrap()
        .iter()
        .map(|m| {
            (
                m["name"].as_str().unwrap().to_string(),
                m["type"].as_str().unwrap().to_string(),
            )
        })
        .collect();
    assert_eq!(types["model.layers.3.self_attn.v_proj.weight"], "Q6_K");
    assert_eq!(types["model.layers.4.mlp.down_proj.weight"], "Q5_0");
    assert_eq!(types["lm_head.weight"], "Q6_K");
    assert_eq!(report["tensor_types"]["Q4_K"], 8 * 6 - 4 + 1);
    // The text report lists the mix.
    let text = run_ok(
        slm()
            .args(["quantize", "--type", "q5_k_m", "-m"])
            .arg(&f32)
            .arg("--out")
            .arg(tmp.path().join("q5.gguf")),
    );
    assert!(
        text.contains("matrix types: ") && text.contains("Q5_K") && text.contains("Q5_1"),
        "{text}"
    );

    // GPTQ is for the single types only: refused before anything is read.
    let (ok, _, err) = run(slm()
        .args(["quantize", "--type", "q4_k_m", "--gptq", "--calib"])
        .arg(&f32)
        .arg("-m")
        .arg(tmp.path().join("missing.gguf"))
        .arg("--out")
        .arg(tmp.path().join("x.gguf")));
    assert!(
        !ok && err.contains("GPTQ") && err.contains("q4_k_m"),
        "{err}"
    );
    assert!(!err.contains("panicked"), "{err}");
    let help = run_ok(slm().args(["quantize", "--help"]));
    for t in ["q4_k_m", "q5_k_m", "q6_k", "Q6_K", "Q5_0", "llama-quantize"] {
        assert!(help.contains(t), "quantize --help lacks {t}");
    }
}

/// Every tensor byte-identical to llama.cpp's, for each k-quant mix, on random models and
/// SmolLM2.
#[test]
fn k_mixes_match_llama_cpp_byte_for_byte() {
    let smollm2 = slm_core::testdata::shared_data(SMOLLM2);
    let Some(python) = slm_core::testdata::reference_python(&["llama_cpp"]) else {
        return;
    };
    let tmp = tempfile::tempdir().unwrap();
    // Untied, grouped KV, 8 layers; ffn_down rows of 768 fill k-quant blocks.
    let a = tmp.path().join("a-f32.gguf");
    random_f32_gguf(&a, 8, 768, 2, false, 11);
    agree_with_llama_cpp(&python, &a, tmp.path(), "random-a");
    // Tied embeddings, 12 layers (more bits: 0, 3, 6, 9, 10, 11), ffn_down rows of 200:
    // not a multiple of 32 either, so f16 in every mix.
    let b = tmp.path().join("b-f32.gguf");
    random_f32_gguf(&b, 12, 200, 4, true, 12);
    agree_with_llama_cpp(&python, &b, tmp.path(), "random-b");
    // SmolLM2 through slm's f32 export.
    if let Some(model) = smollm2 {
        let f32 = tmp.path().join("smollm2-f32.gguf");
        run_ok(
            slm()
                .args(["export", "gguf", "--type", "f32", "-m"])
                .arg(&model)
                .arg("--out")
                .arg(&f32),
        );
        agree_with_llama_cpp(&python, &f32, tmp.path(), "smollm2");
    }
}
