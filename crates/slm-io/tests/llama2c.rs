//! llama2.c checkpoints: the real stories260K (shapes, config, tokenizer, and logits against
//! the float64 reference, which checks the q/k RoPE permutation end to end), v1 against v0 for
//! the same random weights, and truncation.

mod common;

use candle_core::{DType, Device, Tensor, D};
use common::{assert_same, shared_data, Llama2cWeights};
use slm_io::permute::meta_to_hf;
use slm_io::{load_model, LoadedModel, ModelFormat, TokenizerSource};

#[test]
fn stories260k_loads() {
    let Some(data) = shared_data() else { return };
    let path = data.join("llama2c/stories260K.bin");
    let m = load_model(path.to_str().unwrap(), None).unwrap();
    assert_eq!(m.format, ModelFormat::Llama2c);
    let c = &m.config;
    assert_eq!(c["model_type"], "llama");
    assert_eq!(c["hidden_size"], 64);
    assert_eq!(c["intermediate_size"], 172);
    assert_eq!(c["num_hidden_layers"], 5);
    assert_eq!(c["num_attention_heads"], 8);
    assert_eq!(c["num_key_value_heads"], 4);
    assert_eq!(c["vocab_size"], 512);
    assert_eq!(c["max_position_embeddings"], 512);
    assert_eq!(c["tie_word_embeddings"], true);
    assert_eq!(
        m.tokenizer,
        TokenizerSource::Llama2c(data.join("llama2c/tok512.bin"))
    );
    // embed + final norm + 9 per layer; no lm_head (tied).
    assert_eq!(m.tensors.len(), 2 + 5 * 9);
    let shape = |n: &str| m.tensors[n].dims().to_vec();
    assert_eq!(shape("model.embed_tokens.weight"), [512, 64]);
    assert_eq!(shape("model.norm.weight"), [64]);
    assert_eq!(shape("model.layers.4.self_attn.q_proj.weight"), [64, 64]);
    assert_eq!(shape("model.layers.4.self_attn.k_proj.weight"), [32, 64]);
    assert_eq!(shape("model.layers.0.self_attn.v_proj.weight"), [32, 64]);
    assert_eq!(shape("model.layers.0.mlp.gate_proj.weight"), [172, 64]);
    assert_eq!(shape("model.layers.0.mlp.down_proj.weight"), [64, 172]);
    assert_eq!(
        shape("model.layers.0.post_attention_layernorm.weight"),
        [64]
    );
    assert!(m.tensors.values().all(|t| t.dtype() == DType::F32));
    assert!(!m.tensors.contains_key("lm_head.weight"));
}

/// RMSNorm over the last dimension, eps 1e-5.
fn rms(x: &Tensor, w: &Tensor) -> Tensor {
    let ms = x.sqr().unwrap().mean_keepdim(D::Minus1).unwrap();
    x.broadcast_div(&(ms + 1e-5).unwrap().sqrt().unwrap())
        .unwrap()
        .broadcast_mul(w)
        .unwrap()
}

/// HF rotate_half: [x1, x2] -> [-x2, x1] over the last dimension.
fn rotate_half(x: &Tensor) -> Tensor {
    let hd = x.dim(D::Minus1).unwrap();
    let x1 = x.narrow(D::Minus1, 0, hd / 2).unwrap();
    let x2 = x.narrow(D::Minus1, hd / 2, hd / 2).unwrap();
    Tensor::cat(&[&x2.neg().unwrap(), &x1], D::Minus1).unwrap()
}

/// A plain Hugging Face Llama forward over `tokens`, returning logits `[T, vocab]`.
fn hf_llama_logits(m: &LoadedModel, tokens: &[u32]) -> Tensor {
    let cpu = &Device::Cpu;
    let c = &m.config;
    let get = |k: &str| c[k].as_u64().unwrap() as usize;
    let (d, n_layers, nh, nkv) = (
        get("hidden_size"),
        get("num_hidden_layers"),
        get("num_attention_heads"),
        get("num_key_value_heads"),
    );
    let hd = d / nh;
    let t_len = tokens.len();
    let w = |n: &str| m.tensors[n].clone();
    let lw = |l: usize, n: &str| w(&format!("model.layers.{l}.{n}"));
    let linear = |x: &Tensor, wt: &Tensor| x.matmul(&wt.t().unwrap()).unwrap();

    // cos/sin [T, hd]: angle(p, i) = p * theta^(-2i/hd), duplicated for the two halves.
    let mut ang = Vec::with_capacity(t_len * hd);
    for p in 0..t_len {
        for _half in 0..2 {
            for i in 0..hd / 2 {
                ang.push(p as f32 * 10000f32.powf(-2.0 * i as f32 / hd as f32));
            }
        }
    }
    let ang = Tensor::from_vec(ang, (t_len, hd), cpu).unwrap();
    let (cos, sin) = (ang.cos().unwrap(), ang.sin().unwrap());
    let rope = |x: &Tensor| {
        // x: [heads, T, hd]
        (x.broadcast_mul(&cos).unwrap() + rotate_half(x).broadcast_mul(&sin).unwrap()).unwrap()
    };
    // causal mask [T, T]: 0 on and below the diagonal, -inf above
    let mask: Vec<f32> = (0..t_len * t_len)
        .map(|k| {
            if k % t_len > k / t_len {
                f32::NEG_INFINITY
            } else {
                0.0
            }
        })
        .collect();
    let mask = Tensor::from_vec(mask, (t_len, t_len), cpu).unwrap();
    // kv head of each query head
    let kv_of: Vec<u32> = (0..nh).map(|h| (h / (nh / nkv)) as u32).collect();
    let kv_of = Tensor::new(kv_of.as_slice(), cpu).unwrap();

    let ids = Tensor::new(tokens, cpu).unwrap();
    let mut x = w("model.embed_tokens.weight")
        .index_select(&ids, 0)
        .unwrap(); // [T, D]
    for l in 0..n_layers {
        let h = rms(&x, &lw(l, "input_layernorm.weight"));
        let heads = |y: Tensor, n: usize| {
            // [T, n*hd] -> [T, n, hd] -> [n, T, hd]
            y.reshape((t_len, n, hd))
                .unwrap()
                .transpose(0, 1)
                .unwrap()
                .contiguous()
                .unwrap()
        };
        let q = rope(&heads(linear(&h, &lw(l, "self_attn.q_proj.weight")), nh));
        let k = rope(&heads(linear(&h, &lw(l, "self_attn.k_proj.weight")), nkv));
        let v = heads(linear(&h, &lw(l, "self_attn.v_proj.weight")), nkv);
        let k = k.index_select(&kv_of, 0).unwrap(); // [nh, T, hd]
        let v = v.index_select(&kv_of, 0).unwrap();
        let att = (q.matmul(&k.t().unwrap()).unwrap() / (hd as f64).sqrt()).unwrap();
        let att = att.broadcast_add(&mask).unwrap();
        let att = att
            .broadcast_sub(&att.max_keepdim(D::Minus1).unwrap())
            .unwrap()
            .exp()
            .unwrap();
        let att = att
            .broadcast_div(&att.sum_keepdim(D::Minus1).unwrap())
            .unwrap();
        // [nh, T, hd] -> [T, nh, hd] -> [T, D]
        let o = att
            .matmul(&v)
            .unwrap()
            .transpose(0, 1)
            .unwrap()
            .reshape((t_len, d))
            .unwrap();
        x = (x + linear(&o, &lw(l, "self_attn.o_proj.weight"))).unwrap();
        let h = rms(&x, &lw(l, "post_attention_layernorm.weight"));
        let g = linear(&h, &lw(l, "mlp.gate_proj.weight")).silu().unwrap();
        let u = linear(&h, &lw(l, "mlp.up_proj.weight"));
        x = (x + linear(&(g * u).unwrap(), &lw(l, "mlp.down_proj.weight"))).unwrap();
    }
    let x = rms(&x, &w("model.norm.weight"));
    let head = m
        .tensors
        .get("lm_head.weight")
        .cloned()
        .unwrap_or_else(|| w("model.embed_tokens.weight"));
    linear(&x, &head)
}

/// The converted weights, run with HF's rotate_half RoPE, reproduce llama2.c's own output
/// (float64 reference): this fails if q/k were not permuted, or permuted the wrong way.
#[test]
fn stories260k_matches_llama2c_reference_logits() {
    let Some(data) = shared_data() else { return };
    let m = load_model(data.join("llama2c/stories260K.bin").to_str().unwrap(), None).unwrap();
    let text =
        std::fs::read_to_string(data.join("llama2c/stories260K_greedy_reference.json")).unwrap();
    let reference: serde_json::Value = serde_json::from_str(&text).unwrap();
    let ids = |v: &serde_json::Value| -> Vec<u32> {
        v.as_array()
            .unwrap()
            .iter()
            .map(|x| x.as_u64().unwrap() as u32)
            .collect()
    };

    // Top-5 logits after the prompt.
    let prompt = ids(&reference["prompt_tokens"]);
    let logits = hf_llama_logits(&m, &prompt);
    let last = logits
        .get(prompt.len() - 1)
        .unwrap()
        .to_vec1::<f32>()
        .unwrap();
    let mut order: Vec<usize> = (0..last.len()).collect();
    order.sort_by(|&a, &b| last[b].total_cmp(&last[a]));
    for (k, want) in reference["last_position_logits_top5"]
        .as_array()
        .unwrap()
        .iter()
        .enumerate()
    {
        let (id, val) = (
            want[0].as_u64().unwrap() as usize,
            want[1].as_f64().unwrap() as f32,
        );
        assert_eq!(order[k], id, "rank {k}");
        assert!(
            (last[id] - val).abs() < 1e-3,
            "logit of {id}: {} vs {val}",
            last[id]
        );
    }

    // Teacher-forced: every greedy token is the argmax after its prefix.
    let greedy = ids(&reference["greedy_tokens"]);
    let logits = hf_llama_logits(&m, &greedy[..greedy.len() - 1]);
    let argmax = logits.argmax(D::Minus1).unwrap().to_vec1::<u32>().unwrap();
    assert_eq!(argmax, greedy[1..].to_vec());
}

#[test]
fn v1_and_v0_of_the_same_weights_agree() {
    let dir = tempfile::tempdir().unwrap();
    let p = [16, 24, 2, 4, 2, 10, 8];
    for shared in [true, false] {
        let w = Llama2cWeights::random(p, shared, 7 + shared as u64);
        let v0 = dir.path().join(format!("v0_{shared}.bin"));
        let v1 = dir.path().join(format!("v1_{shared}.bin"));
        std::fs::write(&v0, w.v0_bytes()).unwrap();
        std::fs::write(&v1, w.v1_bytes()).unwrap();
        let a = load_model(v0.to_str().unwrap(), None).unwrap();
        let b = load_model(v1.to_str().unwrap(), None).unwrap();
        assert_eq!(a.config, b.config);
        assert_eq!(a.config["tie_word_embeddings"], shared);
        assert_eq!(a.tensors.len(), 2 + 2 * 9 + (!shared) as usize);
        let mut names: Vec<_> = a.tensors.keys().collect();
        names.sort();
        for n in names {
            assert_same(&a.tensors[n], &b.tensors[n], n);
        }
        // And both equal the source weights, q/k permuted.
        let t = |v: &[f32], s: &[usize]| Tensor::from_vec(v.to_vec(), s, &Device::Cpu).unwrap();
        assert_same(
            &a.tensors["model.embed_tokens.weight"],
            &t(&w.emb, &[10, 16]),
            "emb",
        );
        let q = meta_to_hf(&t(&w.wq[1], &[16, 16]), 4).unwrap();
        assert_same(
            &b.tensors["model.layers.1.self_attn.q_proj.weight"],
            &q,
            "q",
        );
        let k = meta_to_hf(&t(&w.wk[0], &[8, 16]), 2).unwrap();
        assert_same(
            &b.tensors["model.layers.0.self_attn.k_proj.weight"],
            &k,
            "k",
        );
        assert_same(
            &b.tensors["model.layers.1.mlp.down_proj.weight"],
            &t(&w.w2[1], &[16, 24]),
            "w2",
        );
        if let Some(cls) = &w.wcls {
            assert_same(&a.tensors["lm_head.weight"], &t(cls, &[10, 16]), "wcls");
        }
        assert_eq!(a.tokenizer, TokenizerSource::None);
    }
}

#[test]
fn truncated_checkpoint_is_a_format_error() {
    let dir = tempfile::tempdir().unwrap();
    let w = Llama2cWeights::random([16, 24, 2, 4, 2, 10, 8], true, 1);
    for (name, bytes) in [("v0.bin", w.v0_bytes()), ("v1.bin", w.v1_bytes())] {
        let p = dir.path().join(name);
        std::fs::write(&p, &bytes[..bytes.len() - 10]).unwrap();
        let err = load_model(p.to_str().unwrap(), None).unwrap_err();
        let msg = err.to_string();
        assert!(matches!(err, slm_core::Error::Format { .. }), "{msg}");
        assert!(
            msg.contains(&format!(
                "truncated: expected {} bytes, found {}",
                bytes.len(),
                bytes.len() - 10
            )),
            "{msg}"
        );
        assert!(msg.contains(name), "{msg}");
    }
}

#[test]
fn tokenizer_override_and_unknown_files() {
    let dir = tempfile::tempdir().unwrap();
    let w = Llama2cWeights::random([16, 24, 2, 4, 2, 10, 8], true, 3);
    let p = dir.path().join("m.bin");
    std::fs::write(&p, w.v0_bytes()).unwrap();
    let tok = dir.path().join("my.tokenizer.json");
    std::fs::write(&tok, "{}").unwrap();
    let m = load_model(p.to_str().unwrap(), Some(&tok)).unwrap();
    assert_eq!(m.tokenizer, TokenizerSource::HfJson(tok.clone()));
    let missing = dir.path().join("nope.bin");
    assert!(load_model(p.to_str().unwrap(), Some(&missing)).is_err());

    let junk = dir.path().join("junk.dat");
    std::fs::write(&junk, [0u8; 40]).unwrap();
    let msg = load_model(junk.to_str().unwrap(), None)
        .unwrap_err()
        .to_string();
    assert!(
        msg.contains("not a GGUF file") && msg.contains("junk.dat"),
        "{msg}"
    );
}
