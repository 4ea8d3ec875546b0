//! QLoRA: a base whose block linears are held as Q8_0/Q4_0 blocks trains its adapters exactly
//! as the f32 engine does on the dequantised base (loss, adapter gradients, the steps that
//! follow), the quantised blocks stay bit-identical through training, the weights take the
//! memory the block format says, and the dequantised export is what the passes used.

mod common;

use common::{config, random_tensors, Lcg};
use slm_core::LinearRole;
use slm_kernels::quant::BlockKind;
use slm_kernels::IGNORE_INDEX;
use slm_model::LlamaConfig;
use slm_train::engine::lora::LoraSpec;
use slm_train::optim::{AdamW, AdamWConfig};
use slm_train::FastModel;
use std::collections::HashMap;

const SEQ: usize = 10;
const BATCH: usize = 2;

fn cfg() -> LlamaConfig {
    // Every linear's input width a multiple of 32 (hidden 64, heads·head_dim 64, inter 96);
    // GQA, q|k|v biases and an untied head, so norms, biases and the head stay f32 beside
    // the quantised linears.
    config(41, 64, 96, 2, 4, 2, 16, false, true)
}

fn spec() -> LoraSpec {
    LoraSpec {
        rank: 4,
        alpha: 8.0,
        dropout: 0.0,
        rslora: false,
        targets: LinearRole::ALL.to_vec(),
    }
}

fn batch(vocab: usize) -> (Vec<u32>, Vec<u32>) {
    let mut rng = Lcg::new(9);
    let inputs: Vec<u32> = (0..BATCH * SEQ).map(|_| rng.below(vocab)).collect();
    let targets: Vec<u32> = (0..BATCH * SEQ)
        .map(|i| {
            if i % 4 == 0 {
                IGNORE_INDEX
            } else {
                rng.below(vocab)
            }
        })
        .collect();
    (inputs, targets)
}

/// Gives every adapter a random B so the adapters change the output.
fn randomise_b(m: &mut FastModel) {
    let mut rng = Lcg::new(13);
    let lora = m.lora_mut().unwrap();
    for (l, role) in lora.targets() {
        let (a, b) = lora.adapter(l, role).unwrap();
        let b: Vec<f32> = b.iter().map(|_| 0.3 * rng.next_f32()).collect();
        lora.set_adapter(l, role, &a, &b).unwrap();
    }
}

fn max_abs_diff(a: &[f32], b: &[f32]) -> f32 {
    assert_eq!(a.len(), b.len());
    a.iter()
        .zip(b)
        .map(|(x, y)| (x - y).abs())
        .fold(0.0, f32::max)
}

#[test]
fn quantized_base_trains_as_the_f32_engine_on_its_dequantised_weights() {
    let c = cfg();
    let tensors = random_tensors(&c, 5, 0.5);
    let (x, y) = batch(c.vocab_size);
    for kind in [BlockKind::Q8_0, BlockKind::Q4_0] {
        let mut q = FastModel::with_quantized_base(&c, &tensors, kind, spec(), 3).unwrap();
        randomise_b(&mut q);
        assert_eq!(q.base_kind(), Some(kind));
        // The f32 twin: the dequantised base (what the quantised model exports), same adapters.
        let dequantised: HashMap<_, _> = q.to_tensors().unwrap().into_iter().collect();
        let mut f = FastModel::new(&c, &dequantised).unwrap();
        f.attach_lora(spec(), 3).unwrap();
        f.trainable_mut().1.copy_from_slice(q.trainable_params());
        assert_eq!(q.num_parameters(), f.num_parameters());
        // Quantisation changed the linears (so the twin is not just the original model).
        let original = tensors["model.layers.1.mlp.down_proj.weight"]
            .flatten_all()
            .unwrap()
            .to_vec1::<f32>()
            .unwrap();
        let exported = dequantised["model.layers.1.mlp.down_proj.weight"]
            .flatten_all()
            .unwrap()
            .to_vec1::<f32>()
            .unwrap();
        let err = max_abs_diff(&original, &exported);
        assert!(err > 0.0 && err < 0.1, "{kind:?}: quantisation error {err}");

        let frozen_before = q.to_tensors().unwrap();
        let mut opt_q = AdamW::new(AdamWConfig::default(), q.trainable_values());
        let mut opt_f = AdamW::new(AdamWConfig::default(), f.trainable_values());
        for step in 0..3 {
            q.zero_grad();
            f.zero_grad();
            let lq = q.forward_backward(&x, &y, BATCH, SEQ).unwrap();
            let lf = f.forward_backward(&x, &y, BATCH, SEQ).unwrap();
            assert_eq!(lq, lf, "{kind:?} step {step}: loss");
            let gq = &q.lora().unwrap().grads;
            let gf = &f.lora().unwrap().grads;
            assert!(gq.iter().any(|&g| g != 0.0));
            assert_eq!(gq, gf, "{kind:?} step {step}: adapter gradients");
            opt_q.update(&mut q, 1e-2).unwrap();
            opt_f.update(&mut f, 1e-2).unwrap();
        }
        assert_eq!(q.trainable_params(), f.trainable_params());
        // The base, quantised blocks included, is exactly what it was.
        for ((name, a), (_, b)) in frozen_before.iter().zip(q.to_tensors().unwrap()) {
            let (a, b) = (
                a.flatten_all().unwrap().to_vec1::<f32>().unwrap(),
                b.flatten_all().unwrap().to_vec1::<f32>().unwrap(),
            );
            assert_eq!(a, b, "{kind:?}: {name} moved");
        }
        assert_eq!(q.base_kind(), Some(kind), "the base stays quantised");
        // The evaluation loss agrees too.
        let eq = q.forward_loss(&x, &y, BATCH, SEQ).unwrap();
        let ef = f.forward_loss(&x, &y, BATCH, SEQ).unwrap();
        assert_eq!(eq, ef, "{kind:?}: evaluation loss");
    }
}

#[test]
fn quantized_base_takes_the_memory_of_its_blocks() {
    let c = cfg();
    let tensors = random_tensors(&c, 5, 0.5);
    let f32_model = FastModel::new(&c, &tensors).unwrap();
    let linears: usize = c.num_hidden_layers
        * (c.hidden_size * (c.q_dim() + 2 * c.kv_dim())
            + c.q_dim() * c.hidden_size
            + 3 * c.hidden_size * c.intermediate_size);
    let rest = 4 * (f32_model.num_parameters() - linears);
    assert_eq!(f32_model.weight_bytes(), rest + 4 * linears);
    // Q8_0: 34 bytes per 32 weights; Q4_0: 18.
    for (kind, per_block) in [(BlockKind::Q8_0, 34), (BlockKind::Q4_0, 18)] {
        let q = FastModel::with_quantized_base(&c, &tensors, kind, spec(), 1).unwrap();
        assert_eq!(
            q.weight_bytes(),
            rest + linears / 32 * per_block,
            "{kind:?}"
        );
        assert!(q.flat_grads().is_empty(), "no gradient buffer for the base");
    }
}

#[test]
fn a_base_that_cannot_be_blocked_is_refused() {
    // hidden 48: rows of 48 values do not divide into 32-value blocks.
    let c = config(41, 48, 64, 1, 4, 2, 12, true, false);
    let err =
        FastModel::with_quantized_base(&c, &random_tensors(&c, 1, 0.5), BlockKind::Q4_0, spec(), 1)
            .unwrap_err()
            .to_string();
    assert!(
        err.contains("multiple of 32") && err.contains("hidden_size"),
        "{err}"
    );
}
