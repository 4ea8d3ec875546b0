//! Training runs started from settings (`slm_distill::run`): recovery distillation holds
//! masks, hidden-state distillation resumes exactly, and a run whose settings were written
//! as one flat table (before `[train]`/`[prune]`/`[distill]`) resumes as it was.

use slm_data::prepare::{prepare, PrepareOptions};
use slm_data::tokenizer::train::{save, train_chars};
use slm_data::tokenizer::{HfTokenizer, Tokenizer};
use slm_distill::hidden_match::HiddenMatch;
use slm_distill::run::{resume, start};
use slm_distill::RunConfig;
use slm_train::engine::FastModel;
use slm_train::trainer::{read_curves, Observer, StepMetrics};
use slm_train::TrainConfig;
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

fn config(data: &Path, steps: u64) -> RunConfig {
    RunConfig {
        train: TrainConfig {
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
        },
        ..RunConfig::default()
    }
}

fn new_model(cfg: &RunConfig, vocab: usize) -> FastModel {
    let mcfg = cfg.train.model_config(vocab).unwrap();
    let llama = slm_model::Llama::random(mcfg, cfg.train.seed, &candle_core::Device::Cpu).unwrap();
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
fn recovery_with_a_teacher_distils_and_holds_masks() {
    let tmp = tempfile::tempdir().unwrap();
    let vocab = make_data(tmp.path());
    // The teacher: a briefly trained dense model, saved as a model directory.
    let cfg = config(&tmp.path().join("data"), 30);
    let teacher_dir = tmp.path().join("teacher");
    let mut t = start(&cfg, new_model(&cfg, vocab), &teacher_dir).unwrap();
    let out = t
        .run(&AtomicBool::new(false), &mut slm_train::Silent)
        .unwrap();
    t.save_model(&out, serde_json::json!({})).unwrap();
    // The student: the teacher with 80% of each linear weight zeroed (half left it so close to
    // the teacher that the divergence was noise).
    let mut student = t.model;
    for n in linear_names(&student) {
        slm_train::gradual::prune_smallest(student.param_mut(&n).unwrap(), 0.8);
    }
    let mut rc = cfg.clone();
    rc.train.steps = 8;
    rc.distill.teacher = Some(teacher_dir.display().to_string());
    rc.prune.hold_masks = true;
    rc.distill.weight = 1.0;
    let run = tmp.path().join("recover");
    let mut r = start(&rc, student, &run).unwrap();
    r.run(&AtomicBool::new(false), &mut slm_train::Silent)
        .unwrap();
    for n in linear_names(&r.model) {
        let f = zero_fraction(r.model.param(&n).unwrap());
        assert!((f - 0.8).abs() < 0.02, "{n}: {f}");
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
    bad.distill.teacher = Some("/nonexistent/teacher".into());
    assert!(start(&bad, new_model(&cfg, vocab), &tmp.path().join("x")).is_err());
}

#[test]
fn hidden_state_distillation_resumes_exactly_with_its_projection() {
    let tmp = tempfile::tempdir().unwrap();
    let vocab = make_data(tmp.path());
    // Teacher: width 48 (the student is 32), trained briefly and saved.
    let mut tc = config(&tmp.path().join("data"), 10);
    tc.train.dim = Some(48);
    tc.train.heads = Some(6);
    tc.train.kv_heads = Some(3);
    let teacher_dir = tmp.path().join("teacher");
    let mut t = start(&tc, new_model(&tc, vocab), &teacher_dir).unwrap();
    let out = t
        .run(&AtomicBool::new(false), &mut slm_train::Silent)
        .unwrap();
    t.save_model(&out, serde_json::json!({})).unwrap();

    let mut cfg = config(&tmp.path().join("data"), 12);
    cfg.distill.teacher = Some(teacher_dir.display().to_string());
    cfg.distill.weight = 0.5;
    cfg.distill.hidden.kind = Some(HiddenMatch::Cosine);
    cfg.distill.hidden.weight = 2.0;
    let a = tmp.path().join("a");
    let mut t = start(&cfg, new_model(&cfg, vocab), &a).unwrap();
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
    let mut t = start(&cfg, new_model(&cfg, vocab), &b).unwrap();
    t.run(&flag, &mut StopAt { at: 5, flag: &flag }).unwrap();
    drop(t);
    assert!(b.join("checkpoints/hidden.bin").is_file());
    let mut t = resume(&b, None).unwrap();
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
    bad.distill.teacher = None;
    bad.distill.cache = Some("x.kdc".into());
    assert!(bad
        .validate()
        .unwrap_err()
        .to_string()
        .contains("live teacher"));
}

#[test]
fn a_run_with_flat_settings_resumes_as_it_was() {
    let tmp = tempfile::tempdir().unwrap();
    let vocab = make_data(tmp.path());
    let data = tmp.path().join("data");
    let cfg = config(&data, 12);
    let a = tmp.path().join("a");
    start(&cfg, new_model(&cfg, vocab), &a)
        .unwrap()
        .run(&AtomicBool::new(false), &mut slm_train::Silent)
        .unwrap();
    // Interrupted at step 5, then made to look like a run of an older version: its
    // checkpoint holds no settings and its config.toml is one flat table.
    let b = tmp.path().join("b");
    let flag = AtomicBool::new(false);
    let mut t = start(&cfg, new_model(&cfg, vocab), &b).unwrap();
    t.run(&flag, &mut StopAt { at: 5, flag: &flag }).unwrap();
    let ckpt = b.join("checkpoints/latest.ckpt");
    let mut header = slm_train::checkpoint::load(&ckpt).unwrap().header;
    header.settings = None;
    slm_train::checkpoint::save(&ckpt, &header, &t.model, &t.opt).unwrap();
    drop(t);
    let flat = format!(
        "data = \"{}\"\npreset = \"1m\"\nlayers = 2\ndim = 32\nheads = 4\nkv_heads = 2\n\
         hidden = 64\nseq_len = 16\nbatch_size = 4\ngrad_accum = 1\nsteps = 12\nlr = 0.003\n\
         min_lr = 0.0001\nwarmup_steps = 3\nweight_decay = 0.1\nbeta1 = 0.9\nbeta2 = 0.95\n\
         eps = 1e-8\ngrad_clip = 1.0\neval_every = 5\neval_windows = 4\ncheckpoint_every = 4\n\
         seed = 1337\nhold_masks = false\nkd_loss = \"fkl\"\nkd_weight = 1.0\n\
         kd_temperature = 1.0\non_policy = 0.0\non_policy_temperature = 1.0\n\
         on_policy_top_p = 1.0\nkd_hidden_weight = 1.0\nprune_sparsity = 0.0\n\
         prune_initial = 0.0\nprune_start = 0\n",
        data.display()
    );
    std::fs::write(b.join("config.toml"), flat).unwrap();
    let mut t = resume(&b, None).unwrap();
    assert_eq!((t.step, t.cfg.steps), (5, 12));
    t.run(&AtomicBool::new(false), &mut slm_train::Silent)
        .unwrap();
    // The resumed run rewrote its settings in tables.
    let text = std::fs::read_to_string(b.join("config.toml")).unwrap();
    assert_eq!(RunConfig::from_toml(&text).unwrap(), cfg);
    assert!(
        text.contains("[distill]") && !text.contains("kd_weight"),
        "{text}"
    );
    let (full, _) = read_curves(&a).unwrap();
    let (resumed, _) = read_curves(&b).unwrap();
    assert_eq!(resumed.len(), 12);
    for ((s1, l1), (s2, l2)) in full.iter().zip(&resumed) {
        assert!((l1 - l2).abs() < 1e-6, "step {s1}/{s2}: {l1} vs {l2}");
    }
}
