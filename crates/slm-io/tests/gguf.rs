//! GGUF: the real tiny-random Llama 2 file (config, vocabulary, and tensors cross-checked with
//! candle's independent reader), a hand-written llama round trip in F32/F16/Q8_0 with q/k
//! permutation, qwen2 (no permutation, biases), unknown type ids and truncation.

mod common;

use candle_core::quantized::{gguf_file, GgmlDType, QTensor};
use candle_core::{DType, Device, Tensor};
use common::{assert_close, assert_same, GgufBuilder, Rng};
use slm_core::Error;
use slm_io::permute::{hf_to_meta, meta_to_hf};
use slm_io::{gguf, load_model, ModelFormat, TokenizerSource};

#[test]
fn tiny_random_llama2_loads() {
    let Some(data) = common::shared_data() else {
        return;
    };
    let path = data.join("gguf/llama-2-tiny-random.gguf");
    let m = load_model(path.to_str().unwrap(), None).unwrap();
    assert_eq!(m.format, ModelFormat::Gguf);
    let c = &m.config;
    assert_eq!(c["model_type"], "llama");
    assert_eq!(c["architectures"][0], "LlamaForCausalLM");
    assert_eq!(c["hidden_size"], 8);
    assert_eq!(c["num_hidden_layers"], 1);
    assert_eq!(c["num_attention_heads"], 2);
    assert_eq!(c["num_key_value_heads"], 2);
    assert_eq!(c["intermediate_size"], 32);
    assert_eq!(c["max_position_embeddings"], 4096);
    assert_eq!(c["vocab_size"], 32000);
    assert_eq!(c["rms_norm_eps"], 1e-5);
    assert_eq!(c["rope_theta"], 10000.0);
    assert_eq!(c["tie_word_embeddings"], false);
    assert_eq!(c["bos_token_id"], 1);
    assert!(c.get("head_dim").is_none() && c.get("rope_scaling").is_none());

    let TokenizerSource::Gguf(v) = &m.tokenizer else {
        panic!("no vocabulary: {:?}", m.tokenizer)
    };
    assert_eq!(v.model, "llama");
    assert_eq!(v.tokens.len(), 32000);
    assert_eq!(v.scores.len(), 32000);
    assert_eq!(v.token_types.len(), 32000);
    assert_eq!(&v.tokens[..3], ["<unk>", "<s>", "</s>"]);
    assert_eq!(
        (v.bos_id, v.eos_id, v.unk_id, v.add_bos),
        (Some(1), Some(2), Some(0), true)
    );
    assert!(v.merges.is_empty());

    assert_eq!(m.tensors.len(), 12);
    let shape = |n: &str| m.tensors[n].dims().to_vec();
    assert_eq!(shape("model.embed_tokens.weight"), [32000, 8]);
    assert_eq!(shape("lm_head.weight"), [32000, 8]);
    assert_eq!(shape("model.layers.0.mlp.gate_proj.weight"), [32, 8]);
    assert_eq!(shape("model.layers.0.mlp.down_proj.weight"), [8, 32]);
    assert!(m.tensors.values().all(|t| t.dtype() == DType::F32));

    // Cross-check the F16 decoding and the permutation against candle's own GGUF reader.
    let mut f = std::fs::File::open(&path).unwrap();
    let content = gguf_file::Content::read(&mut f).unwrap();
    let mut theirs = |n: &str| {
        content
            .tensor(&mut f, n, &Device::Cpu)
            .unwrap()
            .dequantize(&Device::Cpu)
            .unwrap()
    };
    assert_same(
        &m.tensors["model.embed_tokens.weight"],
        &theirs("token_embd.weight"),
        "embed",
    );
    assert_same(
        &m.tensors["model.layers.0.mlp.down_proj.weight"],
        &theirs("blk.0.ffn_down.weight"),
        "down",
    );
    let q = meta_to_hf(&theirs("blk.0.attn_q.weight"), 2).unwrap();
    assert_same(
        &m.tensors["model.layers.0.self_attn.q_proj.weight"],
        &q,
        "q",
    );

    // The header alone is readable too.
    let h = gguf::read_header(&path).unwrap();
    assert_eq!(h.version, 3);
    assert_eq!(h.tensors.len(), 12);
    assert_eq!(h.tensors[0].type_name(), "F16");
}

/// HF-layout weights of a tiny model: hidden 32, 4 heads of 8, 2 kv heads, ffn 64, vocab 40.
fn tiny_hf(layers: usize, bias: bool, seed: u64) -> Vec<(String, Tensor)> {
    let mut r = Rng::new(seed);
    let mut v = vec![
        ("model.embed_tokens.weight".to_string(), r.tensor(&[40, 32])),
        ("model.norm.weight".to_string(), r.tensor(&[32])),
        ("lm_head.weight".to_string(), r.tensor(&[40, 32])),
    ];
    for l in 0..layers {
        let n = |s: &str| format!("model.layers.{l}.{s}");
        v.push((n("input_layernorm.weight"), r.tensor(&[32])));
        v.push((n("self_attn.q_proj.weight"), r.tensor(&[32, 32])));
        v.push((n("self_attn.k_proj.weight"), r.tensor(&[16, 32])));
        v.push((n("self_attn.v_proj.weight"), r.tensor(&[16, 32])));
        v.push((n("self_attn.o_proj.weight"), r.tensor(&[32, 32])));
        v.push((n("post_attention_layernorm.weight"), r.tensor(&[32])));
        v.push((n("mlp.gate_proj.weight"), r.tensor(&[64, 32])));
        v.push((n("mlp.up_proj.weight"), r.tensor(&[64, 32])));
        v.push((n("mlp.down_proj.weight"), r.tensor(&[32, 64])));
        if bias {
            v.push((n("self_attn.q_proj.bias"), r.tensor(&[32])));
            v.push((n("self_attn.k_proj.bias"), r.tensor(&[16])));
            v.push((n("self_attn.v_proj.bias"), r.tensor(&[16])));
        }
    }
    v
}

fn gguf_name(hf: &str) -> String {
    let map = [
        ("model.embed_tokens.weight", "token_embd.weight"),
        ("model.norm.weight", "output_norm.weight"),
        ("lm_head.weight", "output.weight"),
    ];
    if let Some((_, g)) = map.iter().find(|(h, _)| *h == hf) {
        return g.to_string();
    }
    let rest = hf.strip_prefix("model.layers.").unwrap();
    let (l, rest) = rest.split_once('.').unwrap();
    let suffix = [
        ("input_layernorm.", "attn_norm."),
        ("self_attn.q_proj.", "attn_q."),
        ("self_attn.k_proj.", "attn_k."),
        ("self_attn.v_proj.", "attn_v."),
        ("self_attn.o_proj.", "attn_output."),
        ("post_attention_layernorm.", "ffn_norm."),
        ("mlp.gate_proj.", "ffn_gate."),
        ("mlp.up_proj.", "ffn_up."),
        ("mlp.down_proj.", "ffn_down."),
    ]
    .iter()
    .find_map(|(h, g)| rest.strip_prefix(h).map(|kind| format!("{g}{kind}")))
    .unwrap();
    format!("blk.{l}.{suffix}")
}

fn metadata(b: &mut GgufBuilder, arch: &str, layers: u32) {
    let k = |s: &str| format!("{arch}.{s}");
    b.str("general.architecture", arch)
        .u32(&k("context_length"), 128)
        .u32(&k("embedding_length"), 32)
        .u32(&k("block_count"), layers)
        .u32(&k("feed_forward_length"), 64)
        .u32(&k("attention.head_count"), 4)
        .u32(&k("attention.head_count_kv"), 2)
        .f32(&k("attention.layer_norm_rms_epsilon"), 1e-6)
        .f32(&k("rope.freq_base"), 500000.0);
}

fn quantized(t: &Tensor, dt: GgmlDType) -> (QTensor, Vec<u8>) {
    let q = QTensor::quantize(t, dt).unwrap();
    let bytes = q.data().unwrap().to_vec();
    (q, bytes)
}

#[test]
fn llama_round_trip_f32_f16_q8_0_with_permutation() {
    let hf = tiny_hf(2, false, 11);
    let mut b = GgufBuilder::new();
    metadata(&mut b, "llama", 2);
    b.str("llama.rope.scaling.type", "linear")
        .f32("llama.rope.scaling.factor", 4.0);
    let tokens: Vec<String> = (0..40).map(|i| format!("t{i}")).collect();
    b.str("tokenizer.ggml.model", "gpt2")
        .strs("tokenizer.ggml.tokens", &tokens)
        .strs("tokenizer.ggml.merges", &["t t".to_string()])
        .u32("tokenizer.ggml.eos_token_id", 3);
    // What the reader must return for each tensor.
    let mut expected = Vec::new();
    for (name, t) in &hf {
        // llama.cpp's converter: HF -> interleaved layout for q (4 heads) and k (2 heads).
        let stored = if name.contains("q_proj") {
            hf_to_meta(t, 4).unwrap()
        } else if name.contains("k_proj") {
            hf_to_meta(t, 2).unwrap()
        } else {
            t.clone()
        };
        let g = gguf_name(name);
        if name.contains("q_proj") || name.contains("up_proj") {
            let (q, bytes) = quantized(&stored, GgmlDType::Q8_0);
            b.tensor(&g, stored.dims(), 8, bytes);
            // Q8_0 blocks run along rows, so permuting rows commutes with (de)quantisation.
            let deq = q.dequantize(&Device::Cpu).unwrap();
            let deq = if name.contains("q_proj") {
                meta_to_hf(&deq, 4).unwrap()
            } else {
                deq
            };
            expected.push((name.clone(), deq));
        } else if name.contains("v_proj") {
            let h = stored.to_dtype(DType::F16).unwrap();
            let bytes: Vec<u8> = h
                .flatten_all()
                .unwrap()
                .to_vec1::<half::f16>()
                .unwrap()
                .iter()
                .flat_map(|x| x.to_bits().to_le_bytes())
                .collect();
            b.tensor(&g, stored.dims(), 1, bytes);
            expected.push((name.clone(), h.to_dtype(DType::F32).unwrap()));
        } else {
            b.f32_tensor(&g, &stored);
            expected.push((name.clone(), t.clone()));
        }
    }
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("tiny.gguf");
    std::fs::write(&path, b.build()).unwrap();

    let m = load_model(path.to_str().unwrap(), None).unwrap();
    let c = &m.config;
    assert_eq!(c["num_key_value_heads"], 2);
    assert_eq!(c["vocab_size"], 40);
    assert_eq!(c["rms_norm_eps"], 1e-6);
    assert_eq!(c["rope_theta"], 500000.0);
    assert_eq!(c["tie_word_embeddings"], false);
    assert_eq!(c["eos_token_id"], 3);
    assert_eq!(
        c["rope_scaling"],
        serde_json::json!({"type": "linear", "factor": 4.0})
    );
    let TokenizerSource::Gguf(v) = &m.tokenizer else {
        panic!()
    };
    assert_eq!(
        (v.model.as_str(), v.tokens.len(), v.merges.len(), v.add_bos),
        ("gpt2", 40, 1, false)
    );
    assert!(v.scores.is_empty() && v.token_types.is_empty());
    assert_eq!(m.tensors.len(), expected.len());
    for (name, want) in &expected {
        assert_same(&m.tensors[name], want, name);
    }
    // Q8_0 really is close to the original, and F32 tensors are exact.
    let q = "model.layers.1.self_attn.q_proj.weight";
    assert_close(
        &m.tensors[q],
        &hf.iter().find(|(n, _)| n == q).unwrap().1,
        0.01,
        q,
    );
}

#[test]
fn qwen2_is_not_permuted_and_keeps_biases() {
    let hf = tiny_hf(1, true, 5);
    let mut b = GgufBuilder::new();
    metadata(&mut b, "qwen2", 1);
    for (name, t) in &hf {
        if name != "lm_head.weight" {
            b.f32_tensor(&gguf_name(name), t);
        }
    }
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("q.gguf");
    std::fs::write(&path, b.build()).unwrap();
    let m = gguf::read(&path).unwrap();
    assert_eq!(m.config["model_type"], "qwen2");
    assert_eq!(m.config["tie_word_embeddings"], true);
    assert_eq!(m.tokenizer, TokenizerSource::None);
    assert_eq!(m.tensors.len(), hf.len() - 1);
    for (name, t) in hf.iter().filter(|(n, _)| n != "lm_head.weight") {
        assert_same(&m.tensors[name], t, name);
    }
}

/// A minimal valid llama GGUF with F32 tensors.
fn small_llama_gguf() -> GgufBuilder {
    let mut b = GgufBuilder::new();
    metadata(&mut b, "llama", 1);
    for (name, t) in tiny_hf(1, false, 9) {
        b.f32_tensor(&gguf_name(&name), &t);
    }
    b
}

#[test]
fn unknown_type_id_names_the_tensor() {
    let mut b = small_llama_gguf();
    b.tensor("blk.0.mystery.weight", &[4, 32], 99, vec![0u8; 128]);
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("bad.gguf");
    std::fs::write(&path, b.build()).unwrap();
    let err = load_model(path.to_str().unwrap(), None).unwrap_err();
    let msg = err.to_string();
    assert!(matches!(err, Error::Format { .. }), "{msg}");
    assert!(
        msg.contains("blk.0.mystery.weight") && msg.contains("99") && msg.contains("bad.gguf"),
        "{msg}"
    );

    // A known but undecodable type (IQ2_XXS) is "unsupported", also naming the tensor.
    let mut b = GgufBuilder::new();
    metadata(&mut b, "llama", 1);
    for (name, t) in tiny_hf(1, false, 9) {
        if name.contains("up_proj") {
            b.tensor(&gguf_name(&name), &[64, 32], 16, vec![0u8; 528]);
        } else {
            b.f32_tensor(&gguf_name(&name), &t);
        }
    }
    std::fs::write(&path, b.build()).unwrap();
    let err = load_model(path.to_str().unwrap(), None).unwrap_err();
    let msg = err.to_string();
    assert!(matches!(err, Error::Unsupported(_)), "{msg}");
    assert!(
        msg.contains("blk.0.ffn_up.weight") && msg.contains("IQ2_XXS"),
        "{msg}"
    );
}

#[test]
fn every_truncation_is_a_format_error() {
    let bytes = small_llama_gguf().build();
    let dir = tempfile::tempdir().unwrap();
    let full = dir.path().join("full.gguf");
    std::fs::write(&full, &bytes).unwrap();
    assert!(gguf::read(&full).is_ok());
    let path = dir.path().join("cut.gguf");
    for cut in (0..bytes.len()).step_by(13).chain([bytes.len() - 1]) {
        std::fs::write(&path, &bytes[..cut]).unwrap();
        match gguf::read(&path) {
            Err(Error::Format { path: p, msg }) => {
                assert_eq!(p, path);
                assert!(
                    msg.contains("truncated") || msg.contains("magic"),
                    "cut {cut}: {msg}"
                );
            }
            other => panic!("cut at {cut}: expected a format error, got {other:?}"),
        }
    }
}

#[test]
fn missing_and_misshapen_tensors_are_reported() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("m.gguf");
    let mut b = GgufBuilder::new();
    metadata(&mut b, "llama", 1);
    for (name, t) in tiny_hf(1, false, 9) {
        if !name.contains("ffn_down") && !name.contains("down_proj") {
            b.f32_tensor(&gguf_name(&name), &t);
        }
    }
    std::fs::write(&path, b.build()).unwrap();
    match gguf::read(&path) {
        Err(Error::MissingTensor { tensor, .. }) => assert_eq!(tensor, "blk.0.ffn_down.weight"),
        other => panic!("{other:?}"),
    }

    let mut b = GgufBuilder::new();
    metadata(&mut b, "llama", 1);
    for (name, t) in tiny_hf(1, false, 9) {
        let t = if name.contains("down_proj") {
            t.t().unwrap().contiguous().unwrap()
        } else {
            t
        };
        b.f32_tensor(&gguf_name(&name), &t);
    }
    std::fs::write(&path, b.build()).unwrap();
    match gguf::read(&path) {
        Err(Error::ShapeMismatch {
            tensor,
            expected,
            found,
            ..
        }) => {
            assert_eq!(tensor, "blk.0.ffn_down.weight");
            assert_eq!((expected, found), (vec![32, 64], vec![64, 32]));
        }
        other => panic!("{other:?}"),
    }
}

/// A GGUF export keeps the whole vocabulary: model, pre-tokenizer type, tokens, merges, token
/// types, special ids, add BOS/EOS and the chat template read back unchanged.
#[test]
fn export_keeps_pre_merges_types_and_template() {
    let tensors: std::collections::HashMap<String, Tensor> =
        tiny_hf(1, false, 3).into_iter().collect();
    let config = serde_json::json!({
        "model_type": "llama", "vocab_size": 40, "hidden_size": 32, "intermediate_size": 64,
        "num_hidden_layers": 1, "num_attention_heads": 4, "num_key_value_heads": 2,
        "max_position_embeddings": 64, "rms_norm_eps": 1e-5, "tie_word_embeddings": false,
    });
    let mut tokens: Vec<String> = vec![
        "<|endoftext|>".into(),
        "<|im_start|>".into(),
        "<|im_end|>".into(),
    ];
    tokens.extend((0..37).map(|i| format!("t{i}")));
    let mut token_types = vec![3, 3, 3];
    token_types.extend([1; 37]);
    token_types[10] = 4;
    let vocab = slm_io::GgufVocab {
        model: "gpt2".into(),
        tokens,
        scores: vec![],
        token_types,
        merges: vec!["t 1".into(), "t 2".into()],
        bos_id: Some(1),
        eos_id: Some(2),
        unk_id: None,
        add_bos: false,
        add_eos: true,
        pre: Some("smollm".into()),
        chat_template: Some(
            "{% for m in messages %}<|im_start|>{{ m.content }}{% endfor %}".into(),
        ),
    };
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("v.gguf");
    slm_io::gguf::export::write_model(
        &config,
        &tensors,
        "v",
        Some(&vocab),
        slm_io::gguf::export::GgufType::F32,
        &path,
    )
    .unwrap();
    let h = gguf::read_header(&path).unwrap();
    let back = gguf::vocab(&path, &h).unwrap().unwrap();
    assert_eq!(back, vocab);
}
