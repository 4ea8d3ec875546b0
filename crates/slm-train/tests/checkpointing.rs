//! Activation checkpointing: a step that keeps only each block's input and recomputes the
//! rest in the backward gives the same loss and gradients, bit for bit, as the step that
//! keeps everything — full training, LoRA (with dropout), LoRA on a quantised base, packed
//! rows, attention probabilities or log-sum-exps — and holds less activation memory.

mod common;

use common::{batch, config, random_tensors};
use slm_core::LinearRole;
use slm_kernels::quant::BlockKind;
use slm_kernels::segments::row_starts;
use slm_train::engine::lora::LoraSpec;
use slm_train::FastModel;

const SEQ: usize = 24;
const BATCH: usize = 2;

fn spec(dropout: f64) -> LoraSpec {
    LoraSpec {
        rank: 4,
        alpha: 8.0,
        dropout,
        rslora: false,
        targets: LinearRole::ALL.to_vec(),
    }
}

/// Loss, base gradients and adapter gradients of one step.
fn step(
    m: &mut FastModel,
    x: &[u32],
    y: &[u32],
    starts: Option<&[u32]>,
) -> (f32, Vec<f32>, Vec<f32>) {
    m.zero_grad();
    let loss = m.forward_backward_packed(x, y, starts, BATCH, SEQ).unwrap();
    let lora = m.lora().map(|l| l.grads.clone()).unwrap_or_default();
    (loss, m.flat_grads().to_vec(), lora)
}

#[test]
fn checkpointed_steps_equal_plain_steps_bit_for_bit() {
    // hidden 64, inter 96, heads·head_dim 64: quantisable; GQA, biases, untied head.
    let c = config(53, 64, 96, 3, 4, 2, 16, false, true);
    let tensors = random_tensors(&c, 4, 0.5);
    let (x, y) = batch(c.vocab_size, BATCH, SEQ, 5, 8);
    let mut starts = row_starts(&[7, 11, 6], SEQ).unwrap();
    starts.extend(row_starts(&[SEQ], SEQ).unwrap());
    let build = |mode: &str| -> FastModel {
        match mode {
            "full" => FastModel::new(&c, &tensors).unwrap(),
            "lora" => {
                let mut m = FastModel::new(&c, &tensors).unwrap();
                m.attach_lora(spec(0.1), 2).unwrap();
                m.set_dropout_seed(Some(99));
                m
            }
            _ => {
                FastModel::with_quantized_base(&c, &tensors, BlockKind::Q4_0, spec(0.0), 2).unwrap()
            }
        }
    };
    for mode in ["full", "lora", "qlora"] {
        for packed in [false, true] {
            for probs_budget in [usize::MAX, 0] {
                let st = packed.then_some(&starts[..]);
                let mut plain = build(mode);
                let mut ckpt = build(mode);
                ckpt.set_activation_checkpointing(true);
                for m in [&mut plain, &mut ckpt] {
                    m.set_attention_probs_budget(probs_budget);
                    if let Some(l) = m.lora_mut() {
                        // Non-zero B, so the adapters take part in the forward.
                        for (layer, role) in l.targets() {
                            let (a, b) = l.adapter(layer, role).unwrap();
                            let b: Vec<f32> = (0..b.len()).map(|i| 0.01 * (i % 7) as f32).collect();
                            l.set_adapter(layer, role, &a, &b).unwrap();
                        }
                    }
                }
                let what = format!("{mode}, packed {packed}, probs budget {probs_budget}");
                let a = step(&mut plain, &x, &y, st);
                let b = step(&mut ckpt, &x, &y, st);
                assert_eq!(a.0, b.0, "{what}: loss");
                assert_eq!(a.1, b.1, "{what}: base gradients");
                assert_eq!(a.2, b.2, "{what}: adapter gradients");
                assert!(
                    a.1.iter().chain(&a.2).any(|&g| g != 0.0),
                    "{what}: no gradient"
                );
                assert!(
                    ckpt.activation_bytes() < plain.activation_bytes(),
                    "{what}: {} bytes checkpointed, {} plain",
                    ckpt.activation_bytes(),
                    plain.activation_bytes()
                );
                // The evaluation loss is the same path without the backward.
                let ea = plain.forward_loss_packed(&x, &y, st, BATCH, SEQ).unwrap();
                let eb = ckpt.forward_loss_packed(&x, &y, st, BATCH, SEQ).unwrap();
                assert_eq!(ea, eb, "{what}: evaluation loss");
            }
        }
    }
}
