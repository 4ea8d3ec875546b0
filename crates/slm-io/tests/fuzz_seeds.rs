//! Writes the seed inputs of the `gguf`, `safetensors` and `llama2c` fuzz targets
//! (`fuzz/seeds/<target>/`, docs/FUZZING.md) with our own writers. Ignored by default:
//! `SLM_FUZZ_SEEDS=$PWD/fuzz/seeds cargo test -p slm-io --test fuzz_seeds -- --ignored`.

use std::path::{Path, PathBuf};

use candle_core::{DType, Device, Tensor};
use slm_io::gguf::writer::{self, MetaValue, TensorOut, GGML_F16, GGML_F32, GGML_Q8_0};

fn out_dir(target: &str) -> Option<PathBuf> {
    let root = std::env::var_os("SLM_FUZZ_SEEDS")?;
    let dir = Path::new(&root).join(target);
    std::fs::create_dir_all(&dir).unwrap();
    Some(dir)
}

fn f32_bytes(n: usize, seed: f32) -> Vec<u8> {
    (0..n)
        .flat_map(|i| ((i as f32 * 0.37 + seed).sin() * 0.1).to_le_bytes())
        .collect()
}

fn f16_bytes(n: usize) -> Vec<u8> {
    (0..n)
        .flat_map(|i| half::f16::from_f32((i as f32 * 0.11).cos()).to_le_bytes())
        .collect()
}

/// A one-layer llama (hidden 8, 2 heads, 1 kv head, ffn 16, vocab 8) with a vocabulary.
fn tiny_gguf(path: &Path, arch: &str, tokenizer: &str, ty: u32) {
    let (h, kv, ffn, v) = (8u64, 4u64, 16u64, 8u64);
    let tokens: Vec<String> = ["<unk>", "<s>", "</s>", "▁a", "a", "b", "▁", "ab"]
        .iter()
        .map(|s| s.to_string())
        .collect();
    let a = |k: &str| format!("{arch}.{k}");
    let mut md = vec![
        (
            "general.architecture".to_string(),
            MetaValue::Str(arch.into()),
        ),
        (a("embedding_length"), MetaValue::U32(h as u32)),
        (a("block_count"), MetaValue::U32(1)),
        (a("feed_forward_length"), MetaValue::U32(ffn as u32)),
        (a("attention.head_count"), MetaValue::U32(2)),
        (a("attention.head_count_kv"), MetaValue::U32(1)),
        (a("context_length"), MetaValue::U32(64)),
        (a("attention.layer_norm_rms_epsilon"), MetaValue::F32(1e-5)),
        (
            "tokenizer.ggml.model".into(),
            MetaValue::Str(tokenizer.into()),
        ),
        ("tokenizer.ggml.tokens".into(), MetaValue::StrArray(tokens)),
        (
            "tokenizer.ggml.scores".into(),
            MetaValue::F32Array((0..v).map(|i| -(i as f32)).collect()),
        ),
        (
            "tokenizer.ggml.token_type".into(),
            MetaValue::I32Array(vec![2, 3, 3, 1, 1, 1, 1, 1]),
        ),
        ("tokenizer.ggml.bos_token_id".into(), MetaValue::U32(1)),
        ("tokenizer.ggml.eos_token_id".into(), MetaValue::U32(2)),
        (
            "tokenizer.chat_template".into(),
            MetaValue::Str("{% for m in messages %}{{ m.content }}{% endfor %}".into()),
        ),
    ];
    if tokenizer == "gpt2" {
        md.push((
            "tokenizer.ggml.merges".into(),
            MetaValue::StrArray(vec!["a b".into()]),
        ));
        md.push(("tokenizer.ggml.pre".into(), MetaValue::Str("smollm".into())));
    }
    let t = |name: &str, dims: Vec<u64>, seed: f32| {
        let n: u64 = dims.iter().product();
        let (ggml_type, data) = if ty == GGML_F16 && dims.len() == 2 {
            (GGML_F16, f16_bytes(n as usize))
        } else {
            (GGML_F32, f32_bytes(n as usize, seed))
        };
        TensorOut {
            name: name.into(),
            dims,
            ggml_type,
            data,
        }
    };
    let tensors = vec![
        t("token_embd.weight", vec![h, v], 0.0),
        t("blk.0.attn_norm.weight", vec![h], 1.0),
        t("blk.0.attn_q.weight", vec![h, h], 2.0),
        t("blk.0.attn_k.weight", vec![h, kv], 3.0),
        t("blk.0.attn_v.weight", vec![h, kv], 4.0),
        t("blk.0.attn_output.weight", vec![h, h], 5.0),
        t("blk.0.ffn_norm.weight", vec![h], 6.0),
        t("blk.0.ffn_gate.weight", vec![h, ffn], 7.0),
        t("blk.0.ffn_up.weight", vec![h, ffn], 8.0),
        t("blk.0.ffn_down.weight", vec![ffn, h], 9.0),
        t("output_norm.weight", vec![h], 10.0),
    ];
    writer::write(path, &md, &tensors).unwrap();
}

#[test]
#[ignore = "writes fuzz seeds; set SLM_FUZZ_SEEDS"]
fn write_fuzz_seeds() {
    if let Some(dir) = out_dir("gguf") {
        tiny_gguf(&dir.join("llama_f32.gguf"), "llama", "llama", GGML_F32);
        tiny_gguf(&dir.join("qwen2_f16_gpt2.gguf"), "qwen2", "gpt2", GGML_F16);
        // One Q8_0 block: the dequantisation path.
        let q = TensorOut {
            name: "q".into(),
            dims: vec![32],
            ggml_type: GGML_Q8_0,
            data: (0..34u8).collect(),
        };
        writer::write(&dir.join("q8_0.gguf"), &[], &[q]).unwrap();
    }
    if let Some(dir) = out_dir("safetensors") {
        let dev = &Device::Cpu;
        let a = Tensor::arange(0f32, 6.0, dev)
            .unwrap()
            .reshape((2, 3))
            .unwrap();
        let tensors = vec![
            ("a".to_string(), a.clone()),
            ("b".to_string(), a.to_dtype(DType::F16).unwrap()),
            ("c".to_string(), a.to_dtype(DType::BF16).unwrap()),
            ("d".to_string(), a.to_dtype(DType::U8).unwrap()),
            ("e".to_string(), a.to_dtype(DType::I64).unwrap()),
        ];
        slm_io::write_safetensors(&dir.join("tiny.safetensors"), &tensors).unwrap();
    }
    if let Some(dir) = out_dir("llama2c") {
        // dim 8, hidden 16, 1 layer, 2 heads, 1 kv head, vocab 8, seq 4.
        let p = [8i32, 16, 1, 2, 1, 8, 4];
        let h = slm_io::llama2c::Llama2cHeader {
            version: 0,
            dim: 8,
            hidden_dim: 16,
            n_layers: 1,
            n_heads: 2,
            n_kv_heads: 1,
            vocab_size: 8,
            seq_len: 4,
            shared_classifier: true,
        };
        let mut v0: Vec<u8> = p.iter().flat_map(|x| x.to_le_bytes()).collect();
        let floats = (h.file_bytes().unwrap() as usize - v0.len()) / 4;
        v0.extend(f32_bytes(floats, 0.5));
        std::fs::write(dir.join("v0_shared.bin"), &v0).unwrap();

        let h1 = slm_io::llama2c::Llama2cHeader {
            version: 1,
            shared_classifier: false,
            ..h
        };
        let mut v1 = slm_io::llama2c::MAGIC.to_le_bytes().to_vec();
        v1.extend_from_slice(&1i32.to_le_bytes());
        v1.extend(p.iter().flat_map(|x| x.to_le_bytes()));
        v1.push(0);
        v1.resize(slm_io::llama2c::V1_HEADER_BYTES, 0);
        let floats = (h1.file_bytes().unwrap() as usize - v1.len()) / 4;
        v1.extend(f32_bytes(floats, 1.5));
        std::fs::write(dir.join("v1_unshared.bin"), &v1).unwrap();
    }
}
