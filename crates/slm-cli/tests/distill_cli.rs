//! `slm distill cache` and `slm distill train` through the binary, with the real stories260K
//! as teacher: online and offline runs finish and leave a student; a data folder with
//! another tokenizer is refused with a message naming the first differing token.

use std::path::PathBuf;
use std::process::Command;

fn slm() -> Command {
    let mut c = Command::new(env!("CARGO_BIN_EXE_slm"));
    c.env("RAYON_NUM_THREADS", "2");
    c
}

/// `../shared/data/<rel>`, or `None` with a skip message (a failure under CI=true).
fn shared(rel: &str) -> Option<PathBuf> {
    slm_core::testdata::shared_data(rel)
}

fn run(c: &mut Command) -> (bool, String) {
    let out = c.output().unwrap();
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    (out.status.success(), text)
}

#[test]
fn distil_stories260k_online_and_offline() {
    let (Some(model), Some(tok), Some(text)) = (
        shared("llama2c/stories260K.bin"),
        shared("llama2c/tok512.bin"),
        shared("tinystories/tinystories_train_head197k.txt"),
    ) else {
        println!("skipping: ../shared/data not found");
        return;
    };
    let tmp = tempfile::tempdir().unwrap();
    let data = tmp.path().join("data");
    let (ok, out) = run(slm()
        .args(["data", "prepare"])
        .arg(&text)
        .arg("--tokenizer")
        .arg(&tok)
        .arg("--out")
        .arg(&data));
    assert!(ok, "{out}");
    let cache = tmp.path().join("k8.kdc");
    let (ok, out) = run(slm()
        .args(["distill", "cache", "--teacher"])
        .arg(&model)
        .arg("--teacher-tokenizer")
        .arg(&tok)
        .arg("--data")
        .arg(&data)
        .args(["--k", "8", "--seq-len", "64", "--out"])
        .arg(&cache));
    assert!(ok && out.contains("36 bytes/token"), "{out}");
    let small = [
        "--set",
        "layers=2",
        "--set",
        "seq_len=64",
        "--set",
        "batch_size=4",
        "--set",
        "steps=4",
        "--set",
        "eval_windows=4",
    ];
    let (ok, out) = run(slm()
        .args(["distill", "train", "--cache"])
        .arg(&cache)
        .args(["--student-preset", "260k", "--data"])
        .arg(&data)
        .arg("--out")
        .arg(tmp.path().join("offline"))
        .args(small));
    assert!(ok && out.contains("done: 4 steps"), "{out}");
    let (ok, out) = run(slm()
        .args(["distill", "train", "--teacher"])
        .arg(&model)
        .arg("--teacher-tokenizer")
        .arg(&tok)
        .args([
            "--student-preset",
            "260k",
            "--loss",
            "rkl",
            "--temperature",
            "2",
            "--data",
        ])
        .arg(&data)
        .arg("--out")
        .arg(tmp.path().join("online"))
        .args(small));
    assert!(ok && out.contains("done: 4 steps"), "{out}");
    assert!(tmp.path().join("online/model.safetensors").is_file());
    // Hidden-state loss with a narrower student (width 32 vs the teacher's 64: projected).
    let (ok, out) = run(slm()
        .args(["distill", "train", "--teacher"])
        .arg(&model)
        .arg("--teacher-tokenizer")
        .arg(&tok)
        .args([
            "--student-preset",
            "260k",
            "--hidden",
            "cosine",
            "--hidden-weight",
            "2",
        ])
        .args([
            "--set",
            "dim=32",
            "--set",
            "heads=4",
            "--set",
            "kv_heads=2",
            "--data",
        ])
        .arg(&data)
        .arg("--out")
        .arg(tmp.path().join("hidden"))
        .args(small));
    assert!(ok && out.contains("done: 4 steps"), "{out}");
    let metrics = std::fs::read_to_string(tmp.path().join("hidden/metrics.jsonl")).unwrap();
    assert!(metrics.contains("\"hidden\""), "{metrics}");
    // ... which an offline cache cannot give.
    let (ok, out) = run(slm()
        .args(["distill", "train", "--cache"])
        .arg(&cache)
        .args(["--student-preset", "260k", "--hidden", "mse", "--data"])
        .arg(&data)
        .arg("--out")
        .arg(tmp.path().join("bad-hidden"))
        .args(small));
    assert!(!ok && out.contains("live teacher"), "{out}");
    // An offline cache cannot change the loss or temperature.
    let (ok, out) = run(slm()
        .args(["distill", "train", "--cache"])
        .arg(&cache)
        .args(["--student-preset", "260k", "--loss", "rkl", "--data"])
        .arg(&data)
        .arg("--out")
        .arg(tmp.path().join("bad"))
        .args(small));
    assert!(!ok && out.contains("live teacher"), "{out}");

    // Another tokenizer: a character vocabulary trained on the same text.
    let chars = tmp.path().join("chars.json");
    let (ok, out) = run(slm()
        .args(["tokenizer", "train"])
        .arg(&text)
        .args(["--kind", "char", "--out"])
        .arg(&chars));
    assert!(ok, "{out}");
    let cdata = tmp.path().join("cdata");
    let (ok, out) = run(slm()
        .args(["data", "prepare"])
        .arg(&text)
        .arg("--tokenizer")
        .arg(&chars)
        .arg("--out")
        .arg(&cdata));
    assert!(ok, "{out}");
    let (ok, out) = run(slm()
        .args(["distill", "train", "--teacher"])
        .arg(&model)
        .arg("--teacher-tokenizer")
        .arg(&tok)
        .args(["--student-preset", "260k", "--data"])
        .arg(&cdata)
        .arg("--out")
        .arg(tmp.path().join("mismatch")));
    assert!(!ok && out.contains("first at id"), "{out}");
    assert!(!out.contains("panicked"), "{out}");
}
