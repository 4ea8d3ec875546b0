//! The engine's distillation step: with no teacher weight it is the plain cross-entropy
//! step, its gradient matches finite differences of its own loss, and a student that equals
//! its teacher gets no pull from the teacher term.

mod common;

use slm_kernels::distill::{DistillSpec, KdLoss};
use slm_kernels::IGNORE_INDEX;
use slm_model::Llama;
use slm_train::FastModel;

fn model(seed: u64) -> FastModel {
    let cfg = common::config(37, 16, 24, 2, 4, 2, 4, false, false);
    let llama = Llama::random(cfg, seed, &candle_core::Device::Cpu).unwrap();
    FastModel::from_llama(&llama).unwrap()
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

#[test]
fn zero_teacher_weight_is_the_cross_entropy_step() {
    let (b, t) = (2, 9);
    let (inputs, targets) = batch(b, t);
    let mut teacher = model(2);
    let soft = teacher.logits(&inputs, b, t).unwrap();
    let (mut a, mut c) = (model(1), model(1));
    let ce = a.forward_backward(&inputs, &targets, b, t).unwrap();
    let spec = DistillSpec {
        loss: KdLoss::ForwardKl,
        temperature: 2.0,
        kd_weight: 0.0,
    };
    let l = c
        .forward_backward_distill(&inputs, &targets, &soft, &spec, b, t)
        .unwrap();
    assert!(
        (l.ce - ce).abs() < 1e-5 && (l.total - ce).abs() < 1e-5,
        "{l:?} vs {ce}"
    );
    assert!(l.kd > 0.0, "different models must diverge: {l:?}");
    let worst = a
        .flat_grads()
        .iter()
        .zip(c.flat_grads())
        .map(|(x, y)| (x - y).abs())
        .fold(0f32, f32::max);
    assert!(worst < 1e-5, "gradients differ by {worst}");
}

#[test]
fn distillation_gradient_matches_finite_differences() {
    let (b, t) = (2, 7);
    let (inputs, targets) = batch(b, t);
    let soft = model(5).logits(&inputs, b, t).unwrap();
    for loss in [KdLoss::ForwardKl, KdLoss::ReverseKl] {
        let spec = DistillSpec {
            loss,
            temperature: 1.5,
            kd_weight: 0.8,
        };
        let mut m = model(3);
        m.forward_backward_distill(&inputs, &targets, &soft, &spec, b, t)
            .unwrap();
        let names: Vec<String> = m.params().iter().map(|p| p.name.clone()).collect();
        for name in names {
            let g = m.grad(&name).unwrap().to_vec();
            // Largest-gradient entry of each parameter, where the difference is clearest.
            let (i, &gi) = g
                .iter()
                .enumerate()
                .max_by(|a, b| a.1.abs().total_cmp(&b.1.abs()))
                .unwrap();
            let h = 1e-2f32;
            let at = |delta: f32| {
                let mut probe = model(3);
                probe.param_mut(&name).unwrap()[i] += delta;
                probe
                    .forward_loss_distill(&inputs, &targets, &soft, &spec, b, t)
                    .unwrap()
                    .total as f64
            };
            let fd = (at(h) - at(-h)) / (2.0 * h as f64);
            assert!(
                (fd - gi as f64).abs() < 2e-3 + 2e-2 * fd.abs(),
                "{loss:?} {name}[{i}]: finite difference {fd} vs gradient {gi}"
            );
        }
    }
}

#[test]
fn a_student_equal_to_its_teacher_feels_no_teacher_gradient() {
    let (b, t) = (1, 12);
    let (inputs, targets) = batch(b, t);
    let mut m = model(4);
    let soft = m.logits(&inputs, b, t).unwrap();
    let spec = DistillSpec {
        loss: KdLoss::ForwardKl,
        temperature: 1.0,
        kd_weight: 1.0,
    };
    let l = m
        .forward_backward_distill(&inputs, &targets, &soft, &spec, b, t)
        .unwrap();
    assert!(l.kd.abs() < 1e-5, "{l:?}");
    assert!(m.grad_norm() < 1e-4, "grad norm {}", m.grad_norm());
    // Wrongly sized teacher logits are an error, not a panic.
    assert!(m
        .forward_backward_distill(&inputs, &targets, &soft[1..], &spec, b, t)
        .is_err());
}
