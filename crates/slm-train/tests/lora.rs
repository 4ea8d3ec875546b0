//! LoRA in the engine: the adapters' gradients are the loss's (finite differences), the
//! adapted model equals its base with the adapters merged (PEFT's formula, through
//! `slm_io::peft` and `slm_model::lora::merge`), the base stays frozen through a training
//! step, dropout masks repeat for the same seed, and packed rows still equal their examples.

mod common;

use common::{config, random_tensors, Lcg};
use slm_core::LinearRole;
use slm_kernels::IGNORE_INDEX;
use slm_model::LlamaConfig;
use slm_train::engine::lora::{Lora, LoraSpec};
use slm_train::optim::{AdamW, AdamWConfig};
use slm_train::FastModel;

const SEQ: usize = 12;
const BATCH: usize = 2;

fn cfg() -> LlamaConfig {
    // GQA and an untied head.
    config(37, 32, 48, 2, 4, 2, 8, false, false)
}

fn spec(targets: &[LinearRole], dropout: f64, rslora: bool) -> LoraSpec {
    LoraSpec {
        rank: 3,
        alpha: 5.0,
        dropout,
        rslora,
        targets: targets.to_vec(),
    }
}

/// A model with adapters whose B is random (non-zero), so they change the output.
fn adapted(targets: &[LinearRole], dropout: f64, rslora: bool) -> FastModel {
    let c = cfg();
    let mut m = FastModel::new(&c, &random_tensors(&c, 3, 0.5)).unwrap();
    m.attach_lora(spec(targets, dropout, rslora), 7).unwrap();
    let mut rng = Lcg::new(11);
    let lora = m.lora_mut().unwrap();
    for (l, role) in lora.targets() {
        let (a, b) = lora.adapter(l, role).unwrap();
        let b: Vec<f32> = b.iter().map(|_| 0.3 * rng.next_f32()).collect();
        lora.set_adapter(l, role, &a, &b).unwrap();
    }
    m
}

fn batch(vocab: usize) -> (Vec<u32>, Vec<u32>) {
    let mut rng = Lcg::new(5);
    let inputs: Vec<u32> = (0..BATCH * SEQ).map(|_| rng.below(vocab)).collect();
    let targets: Vec<u32> = (0..BATCH * SEQ)
        .map(|i| {
            if i % 5 == 1 {
                IGNORE_INDEX
            } else {
                rng.below(vocab)
            }
        })
        .collect();
    (inputs, targets)
}

#[test]
fn adapter_gradients_match_finite_differences() {
    let mut m = adapted(&LinearRole::ALL, 0.0, false);
    let (x, y) = batch(37);
    m.zero_grad();
    m.forward_backward(&x, &y, BATCH, SEQ).unwrap();
    let grads = m.lora().unwrap().grads.clone();
    assert!(
        m.flat_grads().is_empty(),
        "the frozen base has no gradient buffer"
    );
    let layout = m.trainable_layout().to_vec();
    let mut checked = 0;
    for p in &layout {
        // A few entries of every A and B that are real (non-structural) parameters.
        let values = m.trainable_params()[p.range()].to_vec();
        for (i, _) in values
            .iter()
            .enumerate()
            .filter(|(_, v)| **v != 0.0)
            .step_by(17)
            .take(4)
        {
            let at = p.offset + i;
            let eps = 1e-2f32;
            let mut loss_at = |delta: f32| {
                let (_, params, _) = m.trainable_mut();
                let old = params[at];
                params[at] = old + delta;
                let l = m.forward_loss(&x, &y, BATCH, SEQ).unwrap() as f64;
                let (_, params, _) = m.trainable_mut();
                params[at] = old;
                l
            };
            let numeric = (loss_at(eps) - loss_at(-eps)) / (2.0 * eps as f64);
            let analytic = grads[at] as f64;
            let tol = 2e-3 + 2e-2 * numeric.abs().max(analytic.abs());
            assert!(
                (numeric - analytic).abs() < tol,
                "{} [{i}]: analytic {analytic:.6e}, finite differences {numeric:.6e}",
                p.name
            );
            checked += 1;
        }
    }
    assert!(checked >= 2 * layout.len(), "checked {checked} entries");
}

#[test]
fn structural_zeros_of_packed_adapters_stay_zero_through_training() {
    let mut m = adapted(&LinearRole::ALL, 0.0, false);
    let (x, y) = batch(37);
    let before: Vec<(usize, LinearRole, Vec<f32>, Vec<f32>)> = {
        let l = m.lora().unwrap();
        l.targets()
            .into_iter()
            .map(|(layer, role)| {
                let (a, b) = l.adapter(layer, role).unwrap();
                (layer, role, a, b)
            })
            .collect()
    };
    let base = m.flat_params().to_vec();
    let mut opt = AdamW::new(
        AdamWConfig {
            lr: 1e-2,
            ..AdamWConfig::default()
        },
        m.trainable_values(),
    );
    for _ in 0..3 {
        m.zero_grad();
        m.forward_backward(&x, &y, BATCH, SEQ).unwrap();
        opt.update(&mut m, 1e-2).unwrap();
    }
    assert_eq!(m.flat_params(), &base[..], "the base moved");
    let l = m.lora().unwrap();
    let real: usize = before.iter().map(|(_, _, a, b)| a.len() + b.len()).sum();
    let nonzero = l.params.iter().filter(|v| **v != 0.0).count();
    assert!(
        nonzero <= real,
        "{nonzero} non-zero values, {real} real parameters"
    );
    for (layer, role, a, b) in before {
        let (a2, b2) = l.adapter(layer, role).unwrap();
        assert_ne!(a, a2, "{role} of block {layer} did not train");
        assert_ne!(b, b2, "{role} of block {layer} did not train");
    }
}

#[test]
fn adapted_model_equals_the_merged_base() {
    for (targets, rslora) in [
        (&LinearRole::ALL[..], false),
        (&[LinearRole::Q, LinearRole::V][..], true),
        (&[LinearRole::Up, LinearRole::O][..], false),
    ] {
        let mut m = adapted(targets, 0.0, rslora);
        let (x, y) = batch(37);
        let adapted_loss = m.forward_loss(&x, &y, BATCH, SEQ).unwrap();
        let c = cfg();
        let adapter = m.lora().unwrap().to_peft(&c, None);
        // Through PEFT's files and back.
        let dir = tempfile::tempdir().unwrap();
        adapter.write(dir.path()).unwrap();
        let read = slm_io::peft::LoraAdapter::read(dir.path()).unwrap();
        let mut llama = m.to_llama().unwrap();
        let base_loss = FastModel::from_llama(&llama)
            .unwrap()
            .forward_loss(&x, &y, BATCH, SEQ)
            .unwrap();
        slm_model::lora::merge(&mut llama, &read).unwrap();
        let mut merged = FastModel::from_llama(&llama).unwrap();
        let merged_loss = merged.forward_loss(&x, &y, BATCH, SEQ).unwrap();
        assert!(
            (adapted_loss - merged_loss).abs() < 1e-5,
            "{targets:?}: adapted {adapted_loss}, merged {merged_loss}"
        );
        assert!(
            (adapted_loss - base_loss).abs() > 1e-3,
            "{targets:?}: the adapters change nothing ({adapted_loss} vs {base_loss})"
        );
        // And back into adapters: the same model.
        let again = Lora::from_peft(&c, &read).unwrap();
        for (l, role) in again.targets() {
            assert_eq!(again.adapter(l, role), m.lora().unwrap().adapter(l, role));
        }
    }
}

#[test]
fn fresh_adapters_leave_the_model_unchanged_and_dropout_repeats() {
    let c = cfg();
    let tensors = random_tensors(&c, 3, 0.5);
    let mut plain = FastModel::new(&c, &tensors).unwrap();
    let (x, y) = batch(37);
    let want = plain.forward_loss(&x, &y, BATCH, SEQ).unwrap();
    let mut m = FastModel::new(&c, &tensors).unwrap();
    m.attach_lora(spec(&LinearRole::ALL, 0.3, false), 1)
        .unwrap();
    assert_eq!(
        m.forward_loss(&x, &y, BATCH, SEQ).unwrap(),
        want,
        "B starts at zero"
    );
    let mut m = adapted(&LinearRole::ALL, 0.3, false);
    let mut grads = |seed: Option<u64>| {
        m.set_dropout_seed(seed);
        m.zero_grad();
        let l = m.forward_backward(&x, &y, BATCH, SEQ).unwrap();
        (l, m.lora().unwrap().grads.clone())
    };
    let (l1, g1) = grads(Some(9));
    let (l2, g2) = grads(Some(9));
    let (l3, _) = grads(Some(10));
    let (l4, _) = grads(None);
    assert_eq!((l1, &g1), (l2, &g2), "same seed, same masks");
    assert_ne!(l1, l3, "another seed, other masks");
    assert_ne!(l1, l4, "dropout off in evaluation");
}

#[test]
fn bad_specs_are_refused() {
    let c = cfg();
    let mut m = FastModel::new(&c, &random_tensors(&c, 3, 0.5)).unwrap();
    for bad in [
        LoraSpec {
            rank: 0,
            ..spec(&LinearRole::ALL, 0.0, false)
        },
        LoraSpec {
            dropout: 1.0,
            ..spec(&LinearRole::ALL, 0.0, false)
        },
        spec(&[], 0.0, false),
    ] {
        assert!(m.attach_lora(bad, 1).is_err());
    }
    m.attach_lora(spec(&[LinearRole::Q], 0.0, false), 1)
        .unwrap();
    assert!(m
        .attach_lora(spec(&[LinearRole::Q], 0.0, false), 1)
        .is_err());
}
