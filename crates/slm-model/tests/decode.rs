//! The KV-cache path gives the full-forward logits, and hooks see what they should.

use candle_core::{Device, Tensor};
use slm_model::hooks::Recorder;
use slm_model::{preset, HookPoint, Llama, LlamaConfig};

fn tiny_gqa() -> LlamaConfig {
    let mut c = preset("260k").unwrap();
    c.num_hidden_layers = 2;
    c.vocab_size = 97;
    c.tie_word_embeddings = false;
    c.max_position_embeddings = 64;
    c
}

fn max_abs_diff(a: &Tensor, b: &Tensor) -> f32 {
    (a - b)
        .unwrap()
        .abs()
        .unwrap()
        .flatten_all()
        .unwrap()
        .max(0)
        .unwrap()
        .to_scalar()
        .unwrap()
}

#[test]
fn kv_cache_decoding_matches_full_forward() {
    let dev = Device::Cpu;
    for (cfg, seed) in [(tiny_gqa(), 1u64), (preset("260k").unwrap(), 2)] {
        let model = Llama::random(cfg.clone(), seed, &dev).unwrap();
        for prompt_len in [1usize, 3, 8, 20] {
            let total = prompt_len + 6;
            let ids: Vec<u32> = (0..total)
                .map(|i| ((i * 37 + 11) % cfg.vocab_size) as u32)
                .collect();
            let all = Tensor::new(ids.as_slice(), &dev)
                .unwrap()
                .unsqueeze(0)
                .unwrap();
            let full = model.forward(&all, None).unwrap(); // [1, total, v]

            let mut cache = model.new_cache();
            let prompt = all.narrow(1, 0, prompt_len).unwrap();
            let first = model.forward(&prompt, Some(&mut cache)).unwrap();
            let d = max_abs_diff(&first, &full.narrow(1, 0, prompt_len).unwrap());
            assert!(d < 1e-4, "prefill diff {d} at prompt {prompt_len}");
            for pos in prompt_len..total {
                let step = model
                    .forward(&all.narrow(1, pos, 1).unwrap(), Some(&mut cache))
                    .unwrap();
                let d = max_abs_diff(&step, &full.narrow(1, pos, 1).unwrap());
                assert!(
                    d < 1e-4,
                    "decode diff {d} at position {pos} (prompt {prompt_len})"
                );
            }
            assert_eq!(cache.len(), total);
        }
    }
}

#[test]
fn batched_forward_equals_single_rows() {
    let dev = Device::Cpu;
    let cfg = tiny_gqa();
    let model = Llama::random(cfg, 3, &dev).unwrap();
    let rows = [[1u32, 5, 9, 2, 44, 3], [7, 7, 7, 8, 90, 1]];
    let batch = Tensor::new(&rows, &dev).unwrap();
    let both = model.forward(&batch, None).unwrap();
    for (i, row) in rows.iter().enumerate() {
        let one = model
            .forward(&Tensor::new(row, &dev).unwrap().unsqueeze(0).unwrap(), None)
            .unwrap();
        assert!(max_abs_diff(&one, &both.narrow(0, i, 1).unwrap()) < 1e-5);
    }
}

#[test]
fn hooks_see_block_and_linear_inputs() {
    let dev = Device::Cpu;
    let cfg = tiny_gqa();
    let model = Llama::random(cfg.clone(), 4, &dev).unwrap();
    let ids = Tensor::new(&[[1u32, 2, 3, 4]], &dev).unwrap();
    let mut rec = Recorder::default();
    model
        .forward_with_hooks(&ids, None, Some(&mut rec))
        .unwrap();
    let blocks: Vec<_> = rec
        .seen
        .iter()
        .filter(|(p, _)| matches!(p, HookPoint::BlockInput(_)))
        .collect();
    assert_eq!(blocks.len(), cfg.num_hidden_layers);
    // 7 linears per block, plus the final hidden state.
    assert_eq!(rec.seen.len(), cfg.num_hidden_layers * 8 + 1);
    for (p, x) in &rec.seen {
        if let HookPoint::LinearInput { layer, role } = p {
            let lin = model.layers[*layer].linear(*role);
            assert_eq!(x.dims(), &[1, 4, lin.in_features()], "{p:?}");
        }
    }
    // The block input of layer 0 is the embedding of the ids.
    let emb = model.embed(&ids).unwrap();
    assert_eq!(max_abs_diff(&rec.seen[0].1, &emb), 0.0);
}

#[test]
fn tied_and_untied_heads_both_work() {
    let dev = Device::Cpu;
    let mut cfg = tiny_gqa();
    cfg.tie_word_embeddings = true;
    let model = Llama::random(cfg.clone(), 5, &dev).unwrap();
    assert!(model.lm_head.is_none());
    assert!(!model.tensors().iter().any(|(n, _)| n == "lm_head.weight"));
    assert_eq!(model.num_parameters(), cfg.num_parameters());
    let logits = model
        .forward(&Tensor::new(&[[3u32, 4]], &dev).unwrap(), None)
        .unwrap();
    assert_eq!(logits.dims(), &[1, 2, cfg.vocab_size]);
}

#[test]
fn wrong_shape_and_missing_tensor_are_named() {
    let dev = Device::Cpu;
    let cfg = tiny_gqa();
    let mut t = slm_model::llama::random_tensors(&cfg, 1, &dev).unwrap();
    t.insert(
        "model.layers.1.mlp.up_proj.weight".into(),
        Tensor::zeros((3, 4), candle_core::DType::F32, &dev).unwrap(),
    );
    let e = Llama::from_tensors(
        cfg.clone(),
        t.clone(),
        std::path::Path::new("m.safetensors"),
    )
    .unwrap_err()
    .to_string();
    assert!(
        e.contains("model.layers.1.mlp.up_proj.weight")
            && e.contains("[3, 4]")
            && e.contains("[172, 64]"),
        "{e}"
    );
    t.remove("model.norm.weight");
    t.insert(
        "model.layers.1.mlp.up_proj.weight".into(),
        Tensor::zeros((172, 64), candle_core::DType::F32, &dev).unwrap(),
    );
    let e = Llama::from_tensors(cfg, t, std::path::Path::new("m.safetensors"))
        .unwrap_err()
        .to_string();
    assert!(
        e.contains("model.norm.weight") && e.contains("missing"),
        "{e}"
    );
}
