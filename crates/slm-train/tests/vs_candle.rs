//! The fast engine against candle autograd through the composed model (the reference):
//! loss and every parameter's gradient on random configs (GQA/MQA/MHA, tied/untied, q/k/v
//! bias, odd sizes, sequences longer than one attention block, ignored targets). Also the
//! The candle trap (docs/ARCHITECTURE.md): the composed path must give every parameter a finite, non-zero gradient.

mod common;

use common::{batch, candle_reference, config, random_tensors, rel_max_diff};
use slm_model::LlamaConfig;
use slm_train::FastModel;

fn check(cfg: &LlamaConfig, b: usize, t: usize, ignore_every: usize, seed: u64) {
    let tensors = random_tensors(cfg, seed, 4.0);
    let (inputs, targets) = batch(cfg.vocab_size, b, t, ignore_every, seed + 1);
    let (ref_loss, ref_grads) = candle_reference(cfg, &tensors, &inputs, &targets, b, t);

    // The composed path really trains every parameter. (With one-token sequences q and k
    // get an exactly zero gradient: a softmax over one key is constant.)
    for (name, g) in &ref_grads {
        assert!(
            g.iter().all(|x| x.is_finite()),
            "{name}: non-finite candle gradient"
        );
        let qk = name.contains("q_proj") || name.contains("k_proj");
        assert!(
            t == 1 && qk || g.iter().any(|&x| x != 0.0),
            "{name}: zero candle gradient"
        );
    }

    // Both ways of saving attention state: probabilities, and log-sum-exps with the
    // probabilities recomputed in the backward.
    for budget in [slm_train::engine::DEFAULT_PROBS_BUDGET, 0] {
        let mut fast = FastModel::new(cfg, &tensors).unwrap();
        fast.set_attention_probs_budget(budget);
        let loss = fast.forward_backward(&inputs, &targets, b, t).unwrap();
        assert!(
            ((loss - ref_loss) / ref_loss).abs() < 1e-5,
            "loss {loss} vs candle {ref_loss}"
        );
        assert_eq!(ref_grads.len(), fast.params().len());
        let mut worst = 0f32;
        for (name, want) in &ref_grads {
            let got = fast
                .grad(name)
                .unwrap_or_else(|| panic!("no fast gradient for {name}"));
            let rel = rel_max_diff(got, want);
            assert!(
                rel < 1e-4,
                "{name} (budget {budget}): max |diff| / max |g| = {rel}"
            );
            worst = worst.max(rel);
        }
        eprintln!(
            "probs budget {budget}: loss {loss} vs candle {ref_loss}; \
             worst gradient max|diff|/max|g| {worst:.2e}"
        );
        let eval = fast.forward_loss(&inputs, &targets, b, t).unwrap();
        assert!(
            ((eval - loss) / loss).abs() < 1e-6,
            "forward_loss {eval} vs {loss}"
        );
    }
}

#[test]
fn gqa_untied_with_qkv_bias() {
    let cfg = config(67, 24, 40, 2, 4, 2, 6, false, true);
    check(&cfg, 2, 9, 4, 1);
}

#[test]
fn mha_tied_longer_than_one_attention_block() {
    let cfg = config(50, 16, 28, 3, 2, 2, 8, true, false);
    check(&cfg, 3, 70, 0, 2);
}

#[test]
fn mqa_tied_with_bias_and_head_dim_not_hidden_over_heads() {
    let mut cfg = config(41, 20, 36, 2, 6, 1, 4, true, true);
    cfg.rope_theta = 500.0;
    check(&cfg, 1, 13, 3, 3);
}

#[test]
fn llama3_rope_scaling_single_token_sequences_and_odd_sizes() {
    let mut cfg = config(33, 18, 22, 1, 3, 3, 6, false, false);
    cfg.rope_scaling = Some(slm_model::RopeScaling::Llama3 {
        factor: 8.0,
        low_freq_factor: 1.0,
        high_freq_factor: 4.0,
        original_max_position_embeddings: 16,
    });
    check(&cfg, 5, 1, 0, 4);
    check(&cfg, 2, 100, 7, 5);
}

#[test]
fn gradients_accumulate_and_zero() {
    let cfg = config(40, 16, 24, 2, 4, 2, 4, false, true);
    let tensors = random_tensors(&cfg, 7, 4.0);
    let (inputs, targets) = batch(cfg.vocab_size, 2, 11, 0, 8);
    let mut fast = FastModel::new(&cfg, &tensors).unwrap();
    let l1 = fast.forward_backward(&inputs, &targets, 2, 11).unwrap();
    let once = fast.flat_grads().to_vec();
    let l2 = fast.forward_backward(&inputs, &targets, 2, 11).unwrap();
    assert_eq!(l1, l2);
    let twice: Vec<f32> = once.iter().map(|g| 2.0 * g).collect();
    assert!(rel_max_diff(fast.flat_grads(), &twice) < 1e-6);
    fast.scale_grads(0.5);
    assert!(rel_max_diff(fast.flat_grads(), &once) < 1e-6);
    fast.zero_grad();
    assert!(fast.flat_grads().iter().all(|&g| g == 0.0));
    assert_eq!(fast.grad_norm(), 0.0);
}

#[test]
fn buffers_are_reused_across_sizes() {
    let cfg = config(40, 16, 24, 2, 4, 2, 4, true, false);
    let tensors = random_tensors(&cfg, 9, 4.0);
    let mut fast = FastModel::new(&cfg, &tensors).unwrap();
    let (i, t) = batch(cfg.vocab_size, 3, 20, 0, 10);
    let big = fast.forward_backward(&i, &t, 3, 20).unwrap();
    let bytes = fast.activation_bytes();
    // A smaller batch fits in the same buffers and gives the same answer as a fresh model.
    let (i2, t2) = batch(cfg.vocab_size, 2, 7, 0, 11);
    let small = fast.forward_loss(&i2, &t2, 2, 7).unwrap();
    assert_eq!(fast.activation_bytes(), bytes);
    let mut fresh = FastModel::new(&cfg, &tensors).unwrap();
    // Within 1e-6, not bit for bit: once in a full CI-like run the reused model's loss came out
    // one ulp away (3.7610967 vs 3.7610965) — a scheduling-dependent reduction order somewhere
    // in the threaded forward; stale buffers would be off by far more.
    let close = |a: f32, b: f32| (a - b).abs() <= 1e-6 * b.abs().max(1.0);
    let again = fresh.forward_loss(&i2, &t2, 2, 7).unwrap();
    assert!(close(again, small), "{again} vs {small}");
    let again = fast.forward_loss(&i, &t, 3, 20).unwrap();
    assert!(close(again, big), "{again} vs {big}");
}

#[test]
fn round_trips_through_candle_and_matches_its_logits() {
    let cfg = config(45, 16, 30, 2, 4, 1, 4, false, true);
    let tensors = random_tensors(&cfg, 12, 4.0);
    let mut fast = FastModel::new(&cfg, &tensors).unwrap();
    let back: std::collections::HashMap<_, _> = fast.to_tensors().unwrap().into_iter().collect();
    assert_eq!(back.len(), tensors.len());
    for (name, t) in &tensors {
        let a: Vec<f32> = t.flatten_all().unwrap().to_vec1().unwrap();
        let b: Vec<f32> = back[name].flatten_all().unwrap().to_vec1().unwrap();
        assert_eq!(a, b, "{name}");
        assert_eq!(t.dims(), back[name].dims(), "{name}");
    }
    let llama = fast.to_llama().unwrap();
    let order: Vec<String> = llama.tensors().into_iter().map(|(n, _)| n).collect();
    let ours: Vec<String> = fast
        .to_tensors()
        .unwrap()
        .into_iter()
        .map(|(n, _)| n)
        .collect();
    assert_eq!(order, ours, "canonical order");
    let (inputs, _) = batch(cfg.vocab_size, 2, 6, 0, 13);
    let ids = candle_core::Tensor::from_slice(&inputs, (2, 6), &candle_core::Device::Cpu).unwrap();
    let want: Vec<f32> = llama
        .forward(&ids, None)
        .unwrap()
        .flatten_all()
        .unwrap()
        .to_vec1()
        .unwrap();
    let got = fast.logits(&inputs, 2, 6).unwrap();
    assert!(rel_max_diff(&got, &want) < 1e-5);
    let again = FastModel::from_llama(&llama).unwrap();
    assert_eq!(again.flat_params(), fast.flat_params());
}

#[test]
fn params_mut_walks_every_parameter_once() {
    let cfg = config(30, 8, 12, 2, 2, 1, 4, false, true);
    let mut fast = FastModel::new(&cfg, &random_tensors(&cfg, 14, 1.0)).unwrap();
    let n = fast.num_parameters();
    assert_eq!(n, cfg.num_parameters());
    let mut seen = 0;
    let mut names = Vec::new();
    for p in fast.params_mut() {
        assert_eq!(p.value.len(), p.info.len);
        assert_eq!(p.grad.len(), p.info.len);
        p.value.fill(p.info.offset as f32);
        seen += p.info.len;
        names.push(p.info.name.clone());
    }
    assert_eq!(seen, n);
    let expected: std::collections::BTreeSet<String> = slm_model::weights::expected_shapes(&cfg)
        .into_iter()
        .map(|(n, _)| n)
        .collect();
    assert_eq!(
        names
            .iter()
            .cloned()
            .collect::<std::collections::BTreeSet<_>>(),
        expected
    );
    for p in fast.params() {
        assert!(fast
            .param(&p.name)
            .unwrap()
            .iter()
            .all(|&v| v == p.offset as f32));
        assert_eq!(p.is_matrix(), p.shape.len() == 2);
        assert!(p.role().is_some(), "{}", p.name);
    }
}

#[test]
fn bad_batches_are_errors() {
    let cfg = config(30, 8, 12, 1, 2, 1, 4, true, false);
    let mut fast = FastModel::new(&cfg, &random_tensors(&cfg, 15, 1.0)).unwrap();
    assert!(fast.forward_backward(&[1, 2, 3], &[1, 2, 3], 2, 2).is_err());
    assert!(fast
        .forward_backward(&[1, 2, 30, 4], &[1, 2, 3, 4], 2, 2)
        .is_err());
    assert!(fast
        .forward_backward(&[1, 2, 3, 4], &[1, 2, 31, 4], 2, 2)
        .is_err());
    assert!(fast
        .forward_backward(&vec![0; 129], &vec![0; 129], 1, 129)
        .is_err());
    assert!(
        fast.flat_grads().iter().all(|&g| g == 0.0),
        "a rejected batch left gradients"
    );
    let all_ignored = [u32::MAX; 4];
    assert_eq!(
        fast.forward_backward(&[1, 2, 3, 4], &all_ignored, 2, 2)
            .unwrap(),
        0.0
    );
    let mut tensors = random_tensors(&cfg, 15, 1.0);
    tensors.remove("model.norm.weight");
    assert!(FastModel::new(&cfg, &tensors).is_err());
}
