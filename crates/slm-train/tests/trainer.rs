//! The trainer resumes exactly, holds pruning masks, and learns.

use slm_data::prepare::{prepare, PrepareOptions};
use slm_data::tokenizer::train::{save, train_chars};
use slm_data::tokenizer::{HfTokenizer, Tokenizer};
use slm_train::engine::FastModel;
use slm_train::trainer::{read_curves, Observer, StepMetrics};
use slm_train::{TrainConfig, Trainer};
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
    TrainConfig::resolve(
        None,
        &[
            format!("data=\"{}\"", data.display()),
            "preset=\"1m\"".into(),
            "layers=2".into(),
            "dim=32".into(),
            "heads=4".into(),
            "kv_heads=2".into(),
            "hidden=64".into(),
            "seq_len=16".into(),
            "batch_size=4".into(),
            format!("steps={steps}"),
            "warmup_steps=3".into(),
            "eval_every=5".into(),
            "eval_windows=4".into(),
            "checkpoint_every=4".into(),
            "lr=3e-3".into(),
        ],
    )
    .unwrap()
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
    let mut t = Trainer::new(cfg.clone(), new_model(&cfg, vocab), &a).unwrap();
    let out = t
        .run(&AtomicBool::new(false), &mut slm_train::Silent)
        .unwrap();
    assert_eq!(out.step, 20);
    let (full, _) = read_curves(&a).unwrap();

    let b = tmp.path().join("b");
    let flag = AtomicBool::new(false);
    let mut t = Trainer::new(cfg.clone(), new_model(&cfg, vocab), &b).unwrap();
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
    let mut t = Trainer::resume(&b, None).unwrap();
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
    let mut t = Trainer::new(cfg, model, &tmp.path().join("run")).unwrap();
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
    let e = Trainer::new(cfg.clone(), new_model(&cfg, vocab), &tmp.path().join("r"))
        .err()
        .unwrap()
        .to_string();
    assert!(e.contains("fewer than one batch"), "{e}");
    let mut cfg2 = config(&tmp.path().join("nowhere"), 5);
    cfg2.batch_size = 2;
    assert!(Trainer::new(
        cfg2.clone(),
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
    let mut cfg = config(&tmp.path().join("data"), 16);
    cfg.prune_sparsity = 0.75;
    cfg.prune_start = 2;
    cfg.prune_end = Some(10);
    cfg.prune_every = Some(4);
    let schedule = cfg.gradual_pruning().unwrap();
    let run = tmp.path().join("run");
    let mut t = Trainer::new(cfg.clone(), new_model(&cfg, vocab), &run).unwrap();
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
    let mut t = Trainer::resume(&run, None).unwrap();
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

#[test]
fn recovery_with_a_teacher_distils_and_holds_masks() {
    let tmp = tempfile::tempdir().unwrap();
    let vocab = make_data(tmp.path());
    // The teacher: a briefly trained dense model, saved as a model directory.
    let cfg = config(&tmp.path().join("data"), 30);
    let teacher_dir = tmp.path().join("teacher");
    let mut t = Trainer::new(cfg.clone(), new_model(&cfg, vocab), &teacher_dir).unwrap();
    let out = t
        .run(&AtomicBool::new(false), &mut slm_train::Silent)
        .unwrap();
    t.save_model(&out, serde_json::json!({})).unwrap();
    // The student: the teacher with half of each linear weight zeroed.
    let mut student = t.model;
    for n in linear_names(&student) {
        crate_prune_half(student.param_mut(&n).unwrap());
    }
    let mut rc = cfg.clone();
    rc.steps = 8;
    rc.teacher = Some(teacher_dir.display().to_string());
    rc.hold_masks = true;
    rc.kd_weight = 1.0;
    let run = tmp.path().join("recover");
    let mut r = Trainer::new(rc, student, &run).unwrap();
    r.run(&AtomicBool::new(false), &mut slm_train::Silent)
        .unwrap();
    for n in linear_names(&r.model) {
        let f = zero_fraction(r.model.param(&n).unwrap());
        assert!((f - 0.5).abs() < 0.02, "{n}: {f}");
    }
    let lines: Vec<serde_json::Value> = std::fs::read_to_string(run.join("metrics.jsonl"))
        .unwrap()
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .filter(|v: &serde_json::Value| v.get("kd").is_some())
        .collect();
    assert_eq!(lines.len(), 8);
    let kd = |i: usize| lines[i]["kd"].as_f64().unwrap();
    let loss = |i: usize| lines[i]["loss"].as_f64().unwrap();
    // With kd_weight 1 the loss is the divergence, and recovery shrinks it.
    assert!((loss(0) - kd(0)).abs() < 1e-5);
    assert!(kd(7) < kd(0), "KD did not fall: {} → {}", kd(0), kd(7));
    // A teacher with another vocabulary is refused before any work.
    let mut bad = cfg.clone();
    bad.teacher = Some("/nonexistent/teacher".into());
    assert!(Trainer::new(bad, new_model(&cfg, vocab), &tmp.path().join("x")).is_err());
}

fn crate_prune_half(w: &mut [f32]) {
    slm_train::gradual::prune_smallest(w, 0.5);
}

#[test]
fn hidden_state_distillation_resumes_exactly_with_its_projection() {
    let tmp = tempfile::tempdir().unwrap();
    let vocab = make_data(tmp.path());
    // Teacher: width 48 (the student is 32), trained briefly and saved.
    let mut tc = config(&tmp.path().join("data"), 10);
    tc.dim = Some(48);
    tc.heads = Some(6);
    tc.kv_heads = Some(3);
    let teacher_dir = tmp.path().join("teacher");
    let mut t = Trainer::new(tc.clone(), new_model(&tc, vocab), &teacher_dir).unwrap();
    let out = t
        .run(&AtomicBool::new(false), &mut slm_train::Silent)
        .unwrap();
    t.save_model(&out, serde_json::json!({})).unwrap();

    let mut cfg = config(&tmp.path().join("data"), 12);
    cfg.teacher = Some(teacher_dir.display().to_string());
    cfg.kd_weight = 0.5;
    cfg.kd_hidden = Some("cosine".into());
    cfg.kd_hidden_weight = 2.0;
    let a = tmp.path().join("a");
    let mut t = Trainer::new(cfg.clone(), new_model(&cfg, vocab), &a).unwrap();
    t.run(&AtomicBool::new(false), &mut slm_train::Silent)
        .unwrap();
    let straight: Vec<serde_json::Value> = std::fs::read_to_string(a.join("metrics.jsonl"))
        .unwrap()
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .filter(|v: &serde_json::Value| v.get("hidden").is_some())
        .collect();
    assert_eq!(straight.len(), 12);
    let h = |v: &serde_json::Value| v["hidden"].as_f64().unwrap();
    assert!(
        h(&straight[11]) < h(&straight[0]),
        "hidden loss did not fall"
    );
    // Interrupted at step 5 (the projection is saved beside the checkpoint), resumed to 12.
    let b = tmp.path().join("b");
    let flag = AtomicBool::new(false);
    let mut t = Trainer::new(cfg.clone(), new_model(&cfg, vocab), &b).unwrap();
    t.run(&flag, &mut StopAt { at: 5, flag: &flag }).unwrap();
    drop(t);
    assert!(b.join("checkpoints/hidden.bin").is_file());
    let mut t = Trainer::resume(&b, None).unwrap();
    t.run(&AtomicBool::new(false), &mut slm_train::Silent)
        .unwrap();
    let (full, _) = read_curves(&a).unwrap();
    let (resumed, _) = read_curves(&b).unwrap();
    assert_eq!(resumed.len(), 12);
    for ((s1, l1), (s2, l2)) in full.iter().zip(&resumed) {
        assert!((l1 - l2).abs() < 1e-6, "step {s1}/{s2}: {l1} vs {l2}");
    }
    // A hidden-state loss needs the live teacher.
    let mut bad = cfg.clone();
    bad.teacher = None;
    bad.kd_cache = Some("x.kdc".into());
    assert!(bad
        .validate()
        .unwrap_err()
        .to_string()
        .contains("live teacher"));
}
