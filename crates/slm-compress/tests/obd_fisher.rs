//! OBD with the empirical Fisher on a tiny 1-layer Llama: squared gradients of the real
//! cross-entropy loss (candle autograd) accumulated over a few batches give saliencies
//! ½·F·w², and `prune` removes exactly the smallest saliencies of each tensor (or of all
//! tensors, global).

mod common;

use candle_core::{Device, Tensor, Var, D};
use common::tiny_config;
use slm_compress::{obd_saliency, prune, FisherDiag, Method, Pattern, PruneConfig};
use slm_core::LinearRole;
use slm_model::Llama;
use std::collections::HashMap;
use std::path::Path;

fn vec(t: &Tensor) -> Vec<f32> {
    t.flatten_all().unwrap().to_vec1::<f32>().unwrap()
}

/// The model, with each linear weight's squared gradients summed over `batches` batches
/// (mean cross-entropy of next-token prediction), returned as (sum of g², batches) and as
/// a `FisherDiag`.
fn fisher_of(
    model: &Llama,
    batches: usize,
) -> (HashMap<(usize, LinearRole), Vec<f64>>, FisherDiag) {
    let cfg = model.config.clone();
    let vars: HashMap<String, Var> = model
        .tensors()
        .into_iter()
        .map(|(n, t)| (n, Var::from_tensor(&t).unwrap()))
        .collect();
    let trainable = Llama::from_tensors(
        cfg.clone(),
        vars.iter()
            .map(|(n, v)| (n.clone(), v.as_tensor().clone()))
            .collect(),
        Path::new("<vars>"),
    )
    .unwrap();
    let mut fisher = FisherDiag::new();
    let mut direct: HashMap<(usize, LinearRole), Vec<f64>> = HashMap::new();
    let (b, t) = (3usize, 10usize);
    for k in 0..batches {
        let ids: Vec<u32> = (0..b * (t + 1))
            .map(|i| ((i * 17 + k * 29 + i * i * 3) % cfg.vocab_size) as u32)
            .collect();
        let ids = Tensor::from_vec(ids, (b, t + 1), &Device::Cpu).unwrap();
        let inputs = ids.narrow(1, 0, t).unwrap();
        let targets = ids.narrow(1, 1, t).unwrap().contiguous().unwrap();
        let logits = trainable.forward(&inputs, None).unwrap(); // [b, t, v]
        let logp = candle_nn::ops::log_softmax(&logits, D::Minus1).unwrap();
        let picked = logp.gather(&targets.unsqueeze(2).unwrap(), 2).unwrap(); // [b, t, 1]
        let loss = picked.mean_all().unwrap().neg().unwrap();
        let grads = loss.backward().unwrap();
        for l in 0..cfg.num_hidden_layers {
            for role in LinearRole::ALL {
                let v = &vars[&format!("{}.weight", role.hf_prefix(l))];
                let g = grads
                    .get(v.as_tensor())
                    .expect("every linear gets a gradient");
                fisher.add_grad(l, role, g).unwrap();
                let gv = vec(g);
                assert!(gv.iter().any(|&x| x != 0.0) && gv.iter().all(|x| x.is_finite()));
                let e = direct
                    .entry((l, role))
                    .or_insert_with(|| vec![0.0; gv.len()]);
                for (s, &x) in e.iter_mut().zip(&gv) {
                    *s += (x as f64) * (x as f64);
                }
            }
        }
    }
    for v in direct.values_mut() {
        for s in v.iter_mut() {
            *s /= batches as f64;
        }
    }
    (direct, fisher)
}

fn one_layer_model() -> Llama {
    let mut cfg = tiny_config();
    cfg.num_hidden_layers = 1;
    Llama::random(cfg, 21, &Device::Cpu).unwrap()
}

#[test]
fn saliency_is_half_fisher_times_w_squared() {
    let model = one_layer_model();
    let (direct, fisher) = fisher_of(&model, 3);
    for role in LinearRole::ALL {
        assert_eq!(fisher.batches(0, role), 3);
        let w = vec(model.layers[0].linear(role).weight());
        let s = obd_saliency(&w, &fisher.get(0, role).unwrap()).unwrap();
        let f = &direct[&(0, role)];
        for ((&sv, &fv), &wv) in s.iter().zip(f).zip(&w) {
            let want = 0.5 * fv * (wv as f64) * (wv as f64);
            assert!(
                (sv - want).abs() <= 1e-6 * want.abs() + 1e-30,
                "{role}: {sv} vs {want}"
            );
        }
    }
}

/// The k smallest of `s` (ties by index), as a set of indices.
fn smallest(s: &[(f64, usize)], k: usize) -> std::collections::BTreeSet<usize> {
    let mut v = s.to_vec();
    v.sort_by(|a, b| a.0.total_cmp(&b.0).then(a.1.cmp(&b.1)));
    v[..k].iter().map(|p| p.1).collect()
}

#[test]
fn pruned_set_is_the_smallest_saliencies() {
    let model = one_layer_model();
    let (direct, fisher) = fisher_of(&model, 4);
    for global in [false, true] {
        let mut m = model.clone();
        let cfg = PruneConfig::new(
            Method::Obd {
                fisher: fisher.clone(),
                global,
            },
            0.4,
            Pattern::Unstructured,
        );
        let report = prune(&mut m, &[], &cfg, &mut |_, _, _| {}).unwrap();
        assert_eq!(report.method, if global { "obd-global" } else { "obd" });
        // Saliencies from the directly computed Fisher, numbered across all tensors.
        let mut all: Vec<(f64, usize)> = Vec::new();
        let mut pruned_all = std::collections::BTreeSet::new();
        let mut offset = 0;
        for role in LinearRole::ALL {
            let w = vec(model.layers[0].linear(role).weight());
            let wn = vec(m.layers[0].linear(role).weight());
            let f = &direct[&(0, role)];
            let s: Vec<(f64, usize)> = w
                .iter()
                .zip(f)
                .enumerate()
                .map(|(i, (&wv, &fv))| (0.5 * fv * (wv as f64).powi(2), i))
                .collect();
            let pruned: std::collections::BTreeSet<usize> = wn
                .iter()
                .enumerate()
                .filter(|(_, &x)| x == 0.0)
                .map(|(i, _)| i)
                .collect();
            if !global {
                assert_eq!(pruned, smallest(&s, w.len() * 4 / 10), "{role}");
            }
            all.extend(s.iter().map(|&(v, i)| (v, offset + i)));
            pruned_all.extend(pruned.iter().map(|i| offset + i));
            offset += w.len();
        }
        if global {
            assert_eq!(pruned_all, smallest(&all, offset * 4 / 10));
        }
    }
}

#[test]
fn fisher_obd_with_nm_and_calibration_errors() {
    let model = one_layer_model();
    let (_, fisher) = fisher_of(&model, 2);
    let mut m = model.clone();
    let cfg = PruneConfig::new(
        Method::Obd {
            fisher,
            global: true,
        },
        0.0,
        Pattern::NM { n: 2, m: 4 },
    );
    let calib = common::windows(4, 12, 64, 3);
    let report = prune(&mut m, &calib, &cfg, &mut |_, _, _| {}).unwrap();
    for t in &report.tensors {
        assert_eq!(t.zeros * 2, t.shape[0] * t.shape[1]);
        assert!(t.recon_error.unwrap() > 0.0);
    }
    assert_eq!(report.calib_tokens, 48);
}
