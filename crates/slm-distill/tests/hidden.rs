//! Hidden-state distillation through the engine: the gradient of (logit loss + hidden-state
//! loss) matches finite differences for every student parameter and for the learned
//! projection, a student equal to its teacher feels no hidden-state pull, and training
//! lowers the loss.

use slm_distill::hidden::{default_pairs, HiddenDistill};
use slm_distill::hidden_match::HiddenMatch;
use slm_distill::{LocalTeacher, Teacher};
use slm_kernels::distill::{DistillSpec, KdLoss};
use slm_kernels::IGNORE_INDEX;
use slm_model::{Llama, LlamaConfig};
use slm_train::optim::AdamWConfig;
use slm_train::FastModel;

/// A small config from the 260k preset with the given sizes.
#[allow(clippy::too_many_arguments)]
fn config(
    vocab: usize,
    hidden: usize,
    inter: usize,
    layers: usize,
    heads: usize,
    kv_heads: usize,
    head_dim: usize,
    tied: bool,
    qkv_bias: bool,
) -> LlamaConfig {
    let mut c = slm_model::preset("260k").unwrap();
    c.vocab_size = vocab;
    c.hidden_size = hidden;
    c.intermediate_size = inter;
    c.num_hidden_layers = layers;
    c.num_attention_heads = heads;
    c.num_key_value_heads = kv_heads;
    c.head_dim = head_dim;
    c.tie_word_embeddings = tied;
    c.qkv_bias = qkv_bias;
    c.max_position_embeddings = 128;
    c.validate().unwrap();
    c
}

/// Student: width 16, 2 blocks. Teacher: width 24, 3 blocks (so a projection is learned).
fn student(seed: u64) -> FastModel {
    let cfg = config(37, 16, 24, 2, 4, 2, 4, false, false);
    FastModel::from_llama(&Llama::random(cfg, seed, &candle_core::Device::Cpu).unwrap()).unwrap()
}

fn teacher() -> LocalTeacher {
    let cfg = config(37, 24, 32, 3, 4, 2, 6, false, false);
    LocalTeacher::new(
        "teacher",
        &Llama::random(cfg, 9, &candle_core::Device::Cpu).unwrap(),
    )
    .unwrap()
}

fn batch(b: usize, t: usize) -> (Vec<u32>, Vec<u32>) {
    let inputs: Vec<u32> = (0..b * t).map(|i| ((i * 13 + 5) % 37) as u32).collect();
    let targets: Vec<u32> = (0..b * t)
        .map(|i| {
            if i % 5 == 2 {
                IGNORE_INDEX
            } else {
                ((i * 7 + 3) % 37) as u32
            }
        })
        .collect();
    (inputs, targets)
}

fn hidden_loss(kind: HiddenMatch, teacher: &dyn Teacher, rows: usize) -> HiddenDistill {
    let pairs = default_pairs(2, 3);
    let mut h = HiddenDistill::new(kind, 0.7, &pairs, (2, 16), (3, 24), 4).unwrap();
    h.set_teacher(teacher, rows).unwrap();
    h
}

#[test]
fn hidden_state_gradient_matches_finite_differences() {
    let (b, t) = (2, 7);
    let (inputs, targets) = batch(b, t);
    let mut teach = teacher();
    let soft = teach.logits(&inputs, b, t).unwrap();
    let spec = DistillSpec {
        loss: KdLoss::ForwardKl,
        temperature: 1.0,
        kd_weight: 0.5,
    };
    for kind in [HiddenMatch::Cosine, HiddenMatch::Mse] {
        let mut h = hidden_loss(kind, &teach, b * t);
        let mut m = student(3);
        let l = m
            .forward_backward_hidden(&inputs, &targets, Some((&soft, &spec)), &mut h, true, b, t)
            .unwrap();
        assert!(l.hidden > 0.0, "{kind}: {l:?}");
        assert!((l.total - (0.5 * l.ce + 0.5 * l.kd + l.hidden)).abs() < 1e-5);
        let total_at = |probe: &mut FastModel, h: &mut HiddenDistill| {
            probe
                .forward_backward_hidden(&inputs, &targets, Some((&soft, &spec)), h, false, b, t)
                .unwrap()
                .total as f64
        };
        let names: Vec<String> = m.params().iter().map(|p| p.name.clone()).collect();
        let hh = 1e-2f32;
        for name in names {
            let g = m.grad(&name).unwrap().to_vec();
            let (i, &gi) = g
                .iter()
                .enumerate()
                .max_by(|a, b| a.1.abs().total_cmp(&b.1.abs()))
                .unwrap();
            let at = |delta: f32| {
                let mut probe = student(3);
                probe.param_mut(&name).unwrap()[i] += delta;
                let mut h2 = hidden_loss(kind, &teach, b * t);
                total_at(&mut probe, &mut h2)
            };
            let fd = (at(hh) - at(-hh)) / (2.0 * hh as f64);
            assert!(
                (fd - gi as f64).abs() < 2e-3 + 2e-2 * fd.abs(),
                "{kind} {name}[{i}]: finite difference {fd} vs gradient {gi}"
            );
        }
        // The projection's gradient.
        let proj = h.projection().unwrap();
        for i in [0usize, 101, proj.values.len() - 1] {
            let gi = proj.grads[i];
            let at = |delta: f32| {
                let mut h2 = hidden_loss(kind, &teach, b * t);
                h2.projection_mut().unwrap().values[i] += delta;
                total_at(&mut student(3), &mut h2)
            };
            let fd = (at(hh) - at(-hh)) / (2.0 * hh as f64);
            assert!(
                (fd - gi as f64).abs() < 1e-3 + 2e-2 * fd.abs(),
                "{kind} projection[{i}]: finite difference {fd} vs gradient {gi}"
            );
        }
    }
}

#[test]
fn equal_student_and_teacher_feel_no_hidden_pull() {
    let (b, t) = (1, 6);
    let (inputs, targets) = batch(b, t);
    let cfg = config(37, 16, 24, 2, 4, 2, 4, false, false);
    let mut teach = LocalTeacher::new(
        "same",
        &Llama::random(cfg, 5, &candle_core::Device::Cpu).unwrap(),
    )
    .unwrap();
    teach.logits(&inputs, b, t).unwrap();
    for kind in [HiddenMatch::Cosine, HiddenMatch::Mse] {
        // Same width: no projection; identical models: zero loss, and the gradient is the
        // plain cross-entropy gradient.
        let mut h =
            HiddenDistill::new(kind, 1.0, &default_pairs(2, 2), (2, 16), (2, 16), 0).unwrap();
        assert!(h.projection().is_none());
        h.set_teacher(&teach, b * t).unwrap();
        let mut m = student(5);
        let l = m
            .forward_backward_hidden(&inputs, &targets, None, &mut h, true, b, t)
            .unwrap();
        assert!(l.hidden.abs() < 1e-6, "{kind}: {l:?}");
        let mut plain = student(5);
        plain.forward_backward(&inputs, &targets, b, t).unwrap();
        let worst = m
            .flat_grads()
            .iter()
            .zip(plain.flat_grads())
            .map(|(x, y)| (x - y).abs())
            .fold(0f32, f32::max);
        assert!(worst < 1e-4, "{kind}: gradients differ by {worst}");
    }
}

#[test]
fn training_the_student_and_projection_lowers_the_hidden_loss() {
    let (b, t) = (2, 8);
    let (inputs, targets) = batch(b, t);
    let mut teach = teacher();
    teach.logits(&inputs, b, t).unwrap();
    let mut h = hidden_loss(HiddenMatch::Cosine, &teach, b * t);
    let mut m = student(3);
    let mut opt = slm_train::optim::AdamW::new(AdamWConfig::default(), m.num_parameters());
    let first = m
        .forward_backward_hidden(&inputs, &targets, None, &mut h, false, b, t)
        .unwrap()
        .hidden;
    for _ in 0..30 {
        m.zero_grad();
        h.zero_grad();
        m.forward_backward_hidden(&inputs, &targets, None, &mut h, true, b, t)
            .unwrap();
        opt.update(&mut m, 1e-2).unwrap();
        h.step(&AdamWConfig::default(), 1e-2).unwrap();
    }
    let last = m
        .forward_backward_hidden(&inputs, &targets, None, &mut h, false, b, t)
        .unwrap()
        .hidden;
    assert!(last < 0.5 * first, "hidden loss {first} -> {last}");
}

#[test]
fn bad_layer_maps_are_refused() {
    let (b, t) = (1, 4);
    let (inputs, _) = batch(b, t);
    let teach = {
        let mut m = teacher();
        m.logits(&inputs, b, t).unwrap();
        m
    };
    // Student block 5 does not exist.
    assert!(HiddenDistill::new(HiddenMatch::Mse, 1.0, &[(5, 0)], (2, 16), (3, 24), 0).is_err());
    // Teacher states set for another batch size.
    let mut h = hidden_loss(HiddenMatch::Mse, &teach, b * t);
    let (inputs2, targets2) = batch(2, t);
    let err = student(1)
        .forward_backward_hidden(&inputs2, &targets2, None, &mut h, true, 2, t)
        .unwrap_err();
    assert!(err.to_string().contains("set_teacher"), "{err}");
}
