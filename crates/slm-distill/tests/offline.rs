//! Offline distillation: a teacher cache with k = vocabulary trains like the live teacher
//! (the sparse loss equals the dense one up to the cache's f16 log-probs), and a cache that
//! does not match the run is refused before any work.

use slm_data::prepare::{prepare, PrepareOptions};
use slm_data::shards::Shard;
use slm_data::tokenizer::train::{save, train_chars};
use slm_data::tokenizer::{HfTokenizer, Tokenizer};
use slm_distill::cache::build_cache;
use slm_distill::run::start;
use slm_distill::{LocalTeacher, RunConfig};
use slm_train::FastModel;
use std::path::Path;
use std::sync::atomic::AtomicBool;

fn make_data(dir: &Path) -> usize {
    let text: String = (0..200)
        .map(|i| format!("a dog named {} ran {} laps.\n\n", i % 13, i % 7))
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

fn config(data: &Path, steps: u64, extra: &[String]) -> RunConfig {
    let mut sets = vec![
        format!("data=\"{}\"", data.display()),
        "preset=\"1m\"".into(),
        "layers=2".into(),
        "dim=32".into(),
        "heads=4".into(),
        "hidden=64".into(),
        "seq_len=16".into(),
        "batch_size=4".into(),
        format!("steps={steps}"),
        "warmup_steps=2".into(),
        "eval_every=0".into(),
        "eval_windows=4".into(),
        "checkpoint_every=0".into(),
    ];
    sets.extend_from_slice(extra);
    RunConfig::resolve(None, &sets).unwrap()
}

fn model(cfg: &RunConfig, vocab: usize, seed: u64) -> FastModel {
    let llama = slm_model::Llama::random(
        cfg.train.model_config(vocab).unwrap(),
        seed,
        &candle_core::Device::Cpu,
    )
    .unwrap();
    FastModel::from_llama(&llama).unwrap()
}

fn losses(run: &Path) -> Vec<(f64, f64)> {
    std::fs::read_to_string(run.join("metrics.jsonl"))
        .unwrap()
        .lines()
        .map(|l| serde_json::from_str::<serde_json::Value>(l).unwrap())
        .filter(|v| v.get("kd").is_some())
        .map(|v| (v["loss"].as_f64().unwrap(), v["kd"].as_f64().unwrap()))
        .collect()
}

#[test]
fn a_full_vocabulary_cache_trains_like_the_live_teacher() {
    let tmp = tempfile::tempdir().unwrap();
    let vocab = make_data(tmp.path());
    let data = tmp.path().join("data");
    // The teacher: a random model saved as a directory (its own weights, not the student's).
    let tcfg = config(&data, 1, &[]);
    let teacher_dir = tmp.path().join("teacher");
    let teacher_llama = slm_model::Llama::random(
        tcfg.train.model_config(vocab).unwrap(),
        99,
        &candle_core::Device::Cpu,
    )
    .unwrap();
    slm_model::save(&teacher_llama, &teacher_dir, &[]).unwrap();
    let mut teacher = LocalTeacher::new("teacher", &teacher_llama).unwrap();
    let shard = Shard::open(&data.join(slm_data::prepare::TRAIN_SHARD)).unwrap();
    let cache = tmp.path().join("teacher.kdc");
    let header = build_cache(&mut teacher, &shard, 16, vocab, &cache, &|_, _| {}).unwrap();
    assert_eq!(header.k, vocab);

    let w = "kd_weight=0.5".to_string();
    let online = config(
        &data,
        5,
        &[format!("teacher=\"{}\"", teacher_dir.display()), w.clone()],
    );
    let offline = config(&data, 5, &[format!("kd_cache=\"{}\"", cache.display()), w]);
    let mut a = start(&online, model(&online, vocab, 1), &tmp.path().join("on")).unwrap();
    a.run(&AtomicBool::new(false), &mut slm_train::Silent)
        .unwrap();
    let mut b = start(&offline, model(&offline, vocab, 1), &tmp.path().join("off")).unwrap();
    b.run(&AtomicBool::new(false), &mut slm_train::Silent)
        .unwrap();
    let (la, lb) = (
        losses(&tmp.path().join("on")),
        losses(&tmp.path().join("off")),
    );
    assert_eq!((la.len(), lb.len()), (5, 5));
    for (i, ((l1, k1), (l2, k2))) in la.iter().zip(&lb).enumerate() {
        assert!(
            (l1 - l2).abs() < 2e-3,
            "step {i}: loss {l1} online vs {l2} offline"
        );
        assert!(
            (k1 - k2).abs() < 2e-3,
            "step {i}: kd {k1} online vs {k2} offline"
        );
    }
    assert!(
        la[0].1 > 0.01,
        "teacher and student differ, so KD is positive: {:?}",
        la[0]
    );

    // A cache built for another sequence length is refused before training.
    let bad = config(
        &data,
        5,
        &[
            format!("kd_cache=\"{}\"", cache.display()),
            "seq_len=8".into(),
        ],
    );
    let e = start(&bad, model(&bad, vocab, 1), &tmp.path().join("bad"))
        .err()
        .unwrap()
        .to_string();
    assert!(e.contains("seq_len"), "{e}");
    // Offline caches are forward KL at T = 1 only.
    let mut t2 = offline.clone();
    t2.distill.temperature = 2.0;
    assert!(t2.validate().is_err());
}
