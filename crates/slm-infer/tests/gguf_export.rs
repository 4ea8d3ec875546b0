//! `slm_io::gguf::export` round trips: a model written as GGUF reads back (through the loader
//! and the decode engine) as the same model, and quantised matrices as exactly their blocks.

use candle_core::{DType, Tensor};
use slm_infer::decode::{Decoder, WeightType};
use slm_io::gguf::export::{write_model, GgufType};
use slm_io::GgufVocab;
use slm_kernels::quant::{
    quantize_q4_0, quantize_q4_1, quantize_q8_0, BlockQ4_0, BlockQ4_1, BlockQ8_0, QK,
};
use slm_model::Llama;
use std::collections::HashMap;
use std::path::Path;

fn values(t: &Tensor) -> Vec<f32> {
    t.to_dtype(DType::F32)
        .unwrap()
        .flatten_all()
        .unwrap()
        .to_vec1()
        .unwrap()
}

fn export_gguf(m: &Llama, vocab: Option<&GgufVocab>, ty: GgufType, path: &Path) -> usize {
    let tensors: HashMap<String, Tensor> = m.tensors().into_iter().collect();
    write_model(&m.config.to_hf_json(), &tensors, "test", vocab, ty, path)
        .unwrap()
        .tensors
}

fn model(tied: bool) -> Llama {
    tiny_llama(64, tied, 32, 11)
}

fn vocab() -> GgufVocab {
    GgufVocab {
        model: "llama".into(),
        tokens: (0..64).map(|i| format!("t{i}")).collect(),
        scores: (0..64).map(|i| -(i as f32)).collect(),
        token_types: vec![1; 64],
        merges: vec![],
        bos_id: Some(1),
        eos_id: Some(2),
        unk_id: Some(0),
        add_bos: true,
        add_eos: false,
        pre: None,
        chat_template: None,
    }
}

/// Greedy logits of a short sequence through the decode engine.
fn logits(m: &Llama) -> Vec<f32> {
    let dec = Decoder::new(m, WeightType::F32).unwrap();
    let mut s = dec.new_state();
    dec.prefill(&mut s, &[1, 5, 9, 33, 2, 60], 0)
        .unwrap()
        .to_vec()
}

#[test]
fn f32_export_reads_back_to_the_same_model_and_vocabulary() {
    for tied in [true, false] {
        let m = model(tied);
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("m.gguf");
        let v = vocab();
        let written = export_gguf(&m, Some(&v), GgufType::F32, &path);
        assert_eq!(written, 2 + 9 * 2 + usize::from(!tied));
        let loaded = slm_model::load(&path.display().to_string(), None).unwrap();
        match &loaded.tokenizer {
            slm_io::TokenizerSource::Gguf(back) => assert_eq!(back, &v),
            other => panic!("vocabulary lost: {other:?}"),
        }
        let back = loaded.model;
        assert_eq!(back.config.tie_word_embeddings, tied);
        let (a, b) = (logits(&m), logits(&back));
        let worst = a
            .iter()
            .zip(&b)
            .map(|(x, y)| (x - y).abs())
            .fold(0f32, f32::max);
        assert!(worst < 1e-5, "tied {tied}: logits differ by {worst}");
    }
}

#[test]
fn quantised_exports_read_back_as_their_blocks() {
    use slm_kernels::quant::{dequantize_q4_0, dequantize_q4_1, dequantize_q8_0};
    let m = model(false);
    let orig: HashMap<String, Tensor> = m.tensors().into_iter().collect();
    let dir = tempfile::tempdir().unwrap();
    for ty in [
        GgufType::Q8_0,
        GgufType::Q4_0,
        GgufType::Q4_1,
        GgufType::F16,
    ] {
        let path = dir.path().join(format!("{ty:?}.gguf"));
        export_gguf(&m, None, ty, &path);
        let back = slm_io::gguf::read(&path).unwrap().tensors;
        // Every matrix reads back as exactly what our quantiser makes of it (q/k rows go
        // through the RoPE permutation and back), norms exactly.
        for name in [
            "model.layers.0.mlp.gate_proj.weight",
            "model.layers.1.self_attn.q_proj.weight",
            "model.layers.1.self_attn.k_proj.weight",
            "lm_head.weight",
            "model.embed_tokens.weight",
            "model.layers.0.input_layernorm.weight",
        ] {
            let w = values(&orig[name]);
            let is_norm = name.ends_with("layernorm.weight");
            let want: Vec<f32> = match ty {
                _ if is_norm => w.clone(),
                GgufType::Q8_0 => {
                    let mut b = vec![BlockQ8_0::default(); w.len() / QK];
                    quantize_q8_0(&w, &mut b).unwrap();
                    let mut out = vec![0f32; w.len()];
                    dequantize_q8_0(&b, &mut out).unwrap();
                    out
                }
                GgufType::Q4_0 => {
                    let mut b = vec![BlockQ4_0::default(); w.len() / QK];
                    quantize_q4_0(&w, &mut b).unwrap();
                    let mut out = vec![0f32; w.len()];
                    dequantize_q4_0(&b, &mut out).unwrap();
                    out
                }
                GgufType::Q4_1 => {
                    let mut b = vec![BlockQ4_1::default(); w.len() / QK];
                    quantize_q4_1(&w, &mut b).unwrap();
                    let mut out = vec![0f32; w.len()];
                    dequantize_q4_1(&b, &mut out).unwrap();
                    out
                }
                _ => w.iter().map(|&x| half::f16::from_f32(x).to_f32()).collect(),
            };
            let got = values(&back[name]);
            let worst = got
                .iter()
                .zip(&want)
                .map(|(x, y)| (x - y).abs())
                .fold(0f32, f32::max);
            assert!(worst < 1e-6, "{ty:?} {name}: {worst}");
        }
    }
    assert!(GgufType::parse("q5_k").is_err());
}

/// A tiny random Llama: 2 layers, width 64, 4 query / 2 kv heads of 16, feed-forward 96.
fn tiny_llama(vocab: usize, tied: bool, context: usize, seed: u64) -> Llama {
    let mut c = slm_model::preset("260k").unwrap();
    c.vocab_size = vocab;
    c.hidden_size = 64;
    c.num_hidden_layers = 2;
    c.num_attention_heads = 4;
    c.num_key_value_heads = 2;
    c.head_dim = 16;
    c.intermediate_size = 96;
    c.tie_word_embeddings = tied;
    c.max_position_embeddings = context;
    Llama::random(c, seed, &candle_core::Device::Cpu).unwrap()
}
