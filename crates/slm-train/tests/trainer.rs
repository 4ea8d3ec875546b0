//! The trainer resumes exactly, holds pruning masks, prunes gradually, and learns.
//! (Runs with a teacher: slm-distill's tests.)

use slm_data::prepare::{prepare, PrepareOptions};
use slm_data::tokenizer::train::{save, train_chars};
use slm_data::tokenizer::{HfTokenizer, Tokenizer};
use slm_train::engine::FastModel;
use slm_train::trainer::{read_curves, Observer, StepMetrics};
use slm_train::{PruneConfig, Setup, TrainConfig, Trainer};
use std::path::Path;
use std::sync::atomic::{AtomicBool, Ordering};

fn make_data(dir: &Path) -> usize {
    let text: String = (0..300)
        .map(|i| {
            format!(
                "the cat number {} sat on the mat and saw {} birds.\n\n",
                i % 17,
                i % 5
            )
        })
        .collect();
    std::fs::write(dir.join("in.txt"), &text).unwrap();
    let tk = train_chars([text.as_str()].iter(), &["<|endoftext|>".into()]).unwrap();
    let data = dir.join("data");
    std::fs::create_dir_all(&data).unwrap();
    save(&tk, &data.join("tokenizer.json")).unwrap();
    let tok = HfTokenizer::from_file(data.join("tokenizer.json")).unwrap();
    prepare(
        &[dir.join("in.txt")],
        &tok,
        &data,
        &PrepareOptions::default(),
        &|_, _| {},
    )
    .unwrap();
    tok.vocab_size()
}

fn config(data: &Path, steps: u64) -> TrainConfig {
    TrainConfig {
        data: data.display().to_string(),
        preset: "1m".into(),
        layers: Some(2),
        dim: Some(32),
        heads: Some(4),
        kv_heads: Some(2),
        hidden: Some(64),
        seq_len: 16,
        batch_size: 4,
        steps,
        warmup_steps: 3,
        eval_every: 5,
        eval_windows: 4,
        checkpoint_every: 4,
        lr: 3e-3,
        ..TrainConfig::default()
    }
}

/// Plain training with `cfg`, nothing pruned.
fn plain(cfg: &TrainConfig) -> Setup {
    Setup::plain(cfg.clone(), PruneConfig::default()).unwrap()
}

fn new_model(cfg: &TrainConfig, vocab: usize) -> FastModel {
    let mcfg = cfg.model_config(vocab).unwrap();
    let llama = slm_model::Llama::random(mcfg, cfg.seed, &candle_core::Device::Cpu).unwrap();
    FastModel::from_llama(&llama).unwrap()
}

/// Sets the stop flag after `at` steps (what Ctrl-C does).
struct StopAt<'a> {
    at: u64,
    flag: &'a AtomicBool,
}
impl Observer for StopAt<'_> {
    fn on_step(&mut self, m: &StepMetrics) {
        if m.step == self.at {
            self.flag.store(true, Ordering::SeqCst);
        }
    }
}

#[test]
fn ten_steps_resume_ten_steps_equals_twenty_steps() {
    let tmp = tempfile::tempdir().unwrap();
    let vocab = make_data(tmp.path());
    let cfg = config(&tmp.path().join("data"), 20);

    let a = tmp.path().join("a");
    let mut t = Trainer::new(plain(&cfg), new_model(&cfg, vocab), &a).unwrap();
    let out = t
        .run(&AtomicBool::new(false), &mut slm_train::Silent)
        .unwrap();
    assert_eq!(out.step, 20);
    let (full, _) = read_curves(&a).unwrap();

    let b = tmp.path().join("b");
    let flag = AtomicBool::new(false);
    let mut t = Trainer::new(plain(&cfg), new_model(&cfg, vocab), &b).unwrap();
    let out = t
        .run(
            &flag,
            &mut StopAt {
                at: 10,
                flag: &flag,
            },
        )
        .unwrap();
    assert!(out.interrupted);
    assert_eq!(out.step, 10);
    drop(t);
    // The checkpoint hands back the settings the run was started with.
    let mut t = Trainer::resume(&b, |settings, _| {
        assert_eq!(settings, plain(&cfg).settings);
        Ok(plain(&cfg))
    })
    .unwrap();
    assert_eq!(t.step, 10);
    t.run(&AtomicBool::new(false), &mut slm_train::Silent)
        .unwrap();
    let (resumed, _) = read_curves(&b).unwrap();
    assert_eq!(full.len(), 20);
    assert_eq!(resumed.len(), 20);
    for ((s1, l1), (s2, l2)) in full.iter().zip(&resumed) {
        assert_eq!(s1, s2);
        assert!((l1 - l2).abs() < 1e-6, "step {s1}: {l1} vs {l2}");
    }
    // The loss went down.
    assert!(full[19].1 < full[0].1 - 0.5, "{:?}", (full[0], full[19]));
}

#[test]
fn masks_keep_pruned_weights_at_zero() {
    let tmp = tempfile::tempdir().unwrap();
    let vocab = make_data(tmp.path());
    let cfg = config(&tmp.path().join("data"), 6);
    let mut model = new_model(&cfg, vocab);
    // Zero every other weight of every linear layer.
    let names: Vec<String> = model
        .params()
        .iter()
        .filter(|p| p.name.contains("_proj.weight"))
        .map(|p| p.name.clone())
        .collect();
    for n in &names {
        for (i, w) in model.param_mut(n).unwrap().iter_mut().enumerate() {
            if i % 2 == 0 {
                *w = 0.0;
            }
        }
    }
    let mut t = Trainer::new(plain(&cfg), model, &tmp.path().join("run")).unwrap();
    t.hold_masks().unwrap();
    t.run(&AtomicBool::new(false), &mut slm_train::Silent)
        .unwrap();
    for n in &names {
        let w = t.model.param(n).unwrap();
        assert!(w.iter().step_by(2).all(|&x| x == 0.0), "{n} lost its mask");
        assert!(
            w.iter().skip(1).step_by(2).any(|&x| x != 0.0),
            "{n} kept nothing"
        );
    }
}

#[test]
fn bad_data_fails_before_work() {
    let tmp = tempfile::tempdir().unwrap();
    let vocab = make_data(tmp.path());
    let mut cfg = config(&tmp.path().join("data"), 5);
    cfg.batch_size = 100_000;
    let e = Trainer::new(plain(&cfg), new_model(&cfg, vocab), &tmp.path().join("r"))
        .err()
        .unwrap()
        .to_string();
    assert!(e.contains("fewer than one batch"), "{e}");
    let mut cfg2 = config(&tmp.path().join("nowhere"), 5);
    cfg2.batch_size = 2;
    assert!(Trainer::new(
        plain(&cfg2),
        new_model(&cfg2, vocab),
        &tmp.path().join("r2")
    )
    .is_err());
}

fn linear_names(model: &FastModel) -> Vec<String> {
    model
        .params()
        .iter()
        .filter(|p| p.name.contains("_proj.weight"))
        .map(|p| p.name.clone())
        .collect()
}

fn zero_fraction(w: &[f32]) -> f64 {
    w.iter().filter(|&&x| x == 0.0).count() as f64 / w.len() as f64
}

#[test]
fn gradual_pruning_follows_the_cubic_schedule_and_holds_its_masks() {
    let tmp = tempfile::tempdir().unwrap();
    let vocab = make_data(tmp.path());
    let cfg = config(&tmp.path().join("data"), 16);
    let prune = PruneConfig {
        sparsity: 0.75,
        start: 2,
        end: Some(10),
        every: Some(4),
        ..PruneConfig::default()
    };
    let schedule = prune.schedule(cfg.steps).unwrap();
    let setup = || Setup::plain(cfg.clone(), prune.clone());
    let run = tmp.path().join("run");
    let mut t = Trainer::new(setup().unwrap(), new_model(&cfg, vocab), &run).unwrap();
    // Stop right after the update at step 6 and check the sparsity is s_6 exactly.
    let flag = AtomicBool::new(false);
    t.run(&flag, &mut StopAt { at: 6, flag: &flag }).unwrap();
    let s6 = schedule.sparsity_at(6);
    assert!(s6 > 0.3 && s6 < 0.75, "{s6}");
    for n in linear_names(&t.model) {
        let f = zero_fraction(t.model.param(&n).unwrap());
        assert!(
            (f - s6).abs() < 0.01,
            "{n}: {f} zeros at step 6, schedule says {s6}"
        );
    }
    let zeros_at_6: Vec<Vec<bool>> = linear_names(&t.model)
        .iter()
        .map(|n| {
            t.model
                .param(n)
                .unwrap()
                .iter()
                .map(|&x| x == 0.0)
                .collect()
        })
        .collect();
    drop(t);
    // Resume to the end: the target is reached and earlier zeros stayed zero.
    let mut t = Trainer::resume(&run, |_, _| setup()).unwrap();
    t.run(&AtomicBool::new(false), &mut slm_train::Silent)
        .unwrap();
    for (n, before) in linear_names(&t.model).iter().zip(&zeros_at_6) {
        let w = t.model.param(n).unwrap();
        assert!(
            (zero_fraction(w) - 0.75).abs() < 0.01,
            "{n}: {}",
            zero_fraction(w)
        );
        assert!(
            w.iter().zip(before).all(|(&x, &z)| !z || x == 0.0),
            "{n}: a weight pruned at step 6 came back"
        );
    }
    let metrics = std::fs::read_to_string(run.join("metrics.jsonl")).unwrap();
    assert_eq!(
        metrics.matches("pruned_to").count(),
        3,
        "updates at 2, 6, 10"
    );
}
