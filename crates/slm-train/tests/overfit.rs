//! Training end to end: the engine plus the kernels' AdamW memorise one small batch.

mod common;

use common::{batch, config, random_tensors};
use slm_train::optim::{adamw_step, AdamWConfig};
use slm_train::FastModel;

#[test]
fn overfits_one_batch() {
    let cfg = config(64, 32, 64, 2, 4, 2, 8, true, false);
    let mut model = FastModel::new(&cfg, &random_tensors(&cfg, 21, 1.0)).unwrap();
    let (b, t) = (2, 24);
    let (inputs, targets) = batch(cfg.vocab_size, b, t, 0, 22);
    let hp = AdamWConfig {
        lr: 1e-2,
        beta1: 0.9,
        beta2: 0.95,
        eps: 1e-8,
        weight_decay: 0.0,
    };
    let n = model.num_parameters();
    let (mut m, mut v) = (vec![0f32; n], vec![0f32; n]);
    let mut losses = Vec::new();
    for step in 1..=200u64 {
        model.zero_grad();
        losses.push(model.forward_backward(&inputs, &targets, b, t).unwrap());
        let (_, params, grads) = model.flat_mut();
        adamw_step(params, grads, &mut m, &mut v, step, &hp).unwrap();
    }
    let last = model.forward_loss(&inputs, &targets, b, t).unwrap();
    eprintln!("loss {:.3} -> {:.3} -> {:.4}", losses[0], losses[100], last);
    assert!(
        losses[0] > 3.5,
        "random init should be near ln(64) = 4.16, got {}",
        losses[0]
    );
    assert!(last < 0.1, "after 200 steps the loss is {last}");
}
