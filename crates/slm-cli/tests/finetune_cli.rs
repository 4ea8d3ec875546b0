//! `slm finetune` end to end on the real SmolLM2 (shared data): a LoRA run writes a PEFT
//! adapter that `--adapter` applies exactly as the merged model, that PEFT itself applies to
//! our base export with the same logits, and a full run writes a model; bad input is refused
//! before any training, and `--out` is never overwritten without `--force`.

use std::path::{Path, PathBuf};
use std::process::Command;

const SMOLLM2: &str = "models/SmolLM2-135M-Instruct.Q4_1.gguf";

fn slm() -> Command {
    let mut c = Command::new(env!("CARGO_BIN_EXE_slm"));
    c.env("RAYON_NUM_THREADS", "2");
    c
}

/// (success, stdout, stderr)
fn run(c: &mut Command) -> (bool, String, String) {
    let out = c.output().unwrap();
    (
        out.status.success(),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

fn run_ok(c: &mut Command) -> String {
    let (ok, out, err) = run(c);
    assert!(ok, "{c:?} failed:\n{out}\n{err}");
    out
}

/// A small chat set: 24 ShareGPT conversations.
fn chat_data(dir: &Path) -> PathBuf {
    let p = dir.join("chats.jsonl");
    let mut text = String::new();
    for k in 0..24 {
        text.push_str(&format!(
            "{{\"conversations\": [{{\"from\": \"human\", \"value\": \"What is {k} plus {k}?\"}}, \
             {{\"from\": \"gpt\", \"value\": \"{k} plus {k} is {}.\"}}]}}\n",
            2 * k
        ));
    }
    std::fs::write(&p, text).unwrap();
    p
}

fn greedy(model_args: &[&str]) -> String {
    run_ok(slm().arg("generate").args(model_args).args([
        "--chat",
        "-p",
        "What is 7 plus 7?",
        "-n",
        "12",
        "-t",
        "0",
    ]))
}

#[test]
fn lora_adapter_is_pefts_and_applies_as_merged() {
    let Some(model) = slm_core::testdata::shared_data(SMOLLM2) else {
        return;
    };
    let model = model.display().to_string();
    let tmp = tempfile::tempdir().unwrap();
    let data = chat_data(tmp.path());
    let out = tmp.path().join("lora");
    let log = run_ok(
        slm()
            .args(["finetune", "-m", &model, "--data"])
            .arg(&data)
            .arg("--out")
            .arg(&out)
            .args(["--lora-rank", "4", "--lr", "2e-3", "--seq-len", "128"])
            .args([
                "--micro-batch",
                "2",
                "--batch-tokens",
                "256",
                "--steps",
                "6",
            ])
            .arg("--merge"),
    );
    assert!(log.contains("ShareGPT, 24 rows"), "{log}");
    assert!(log.contains("LoRA rank 4 on 210 linears"), "{log}");
    for f in [
        "adapter_config.json",
        "adapter_model.safetensors",
        "report.md",
        "merged/model.safetensors",
    ] {
        assert!(out.join(f).is_file(), "{f} missing:\n{log}");
    }
    // The adapter at load equals the merged model, and it changed the model.
    let merged = out.join("merged").display().to_string();
    let with_adapter = greedy(&["-m", &model, "--adapter", out.to_str().unwrap()]);
    assert_eq!(with_adapter, greedy(&["-m", &merged]));
    // Refusals: an existing --out, a file of no known format, an adapter for another base.
    let (ok, _, err) = run(slm()
        .args(["finetune", "-m", &model, "--data"])
        .arg(&data)
        .arg("--out")
        .arg(&out)
        .args(["--lora-rank", "4"]));
    assert!(!ok && err.contains("--force"), "{err}");
    let bad = tmp.path().join("bad.jsonl");
    std::fs::write(&bad, "{\"question\": \"q\", \"answer\": \"a\"}\n").unwrap();
    let (ok, _, err) = run(slm()
        .args(["finetune", "-m", &model, "--data"])
        .arg(&bad)
        .arg("--out")
        .arg(tmp.path().join("bad")));
    assert!(!ok && err.contains("bad.jsonl:1"), "{err}");
    assert!(!tmp.path().join("bad").join("checkpoints").exists());
    let stories = slm_core::testdata::shared_data("llama2c/stories260K.bin").unwrap();
    let (ok, _, err) = run(slm()
        .args(["generate", "-m"])
        .arg(&stories)
        .arg("--tokenizer")
        .arg(slm_core::testdata::shared_data("llama2c/tok512.bin").unwrap())
        .arg("--adapter")
        .arg(&out)
        .args(["-p", "a", "-n", "2"]));
    assert!(!ok && err.contains("adapter"), "{err}");

    // PEFT applies our adapter to our base export as slm does (the merged model's logits).
    let Some(python) = slm_core::testdata::reference_python(&["transformers", "torch", "peft"])
    else {
        return;
    };
    let root = PathBuf::from(concat!(env!("CARGO_MANIFEST_DIR"), "/../.."));
    let base = tmp.path().join("base-hf");
    run_ok(
        slm()
            .args(["export", "hf", "-m", &model, "--out"])
            .arg(&base),
    );
    let ids = tmp.path().join("ids.json");
    std::fs::write(
        &ids,
        "[[1, 504, 3458, 282, 260, 1345, 30, 198, 2683, 314, 3458]]",
    )
    .unwrap();
    let logits = tmp.path().join("logits.json");
    let st = Command::new(&python)
        .arg(root.join("tools/reference/hf_logits.py"))
        .arg(&merged)
        .arg(&ids)
        .arg(&logits)
        .status()
        .unwrap();
    assert!(st.success());
    let check = Command::new(&python)
        .arg(root.join("tools/reference/check_peft_adapter.py"))
        .arg(&base)
        .arg(&out)
        .arg(&ids)
        .arg(&logits)
        .output()
        .unwrap();
    assert!(
        check.status.success(),
        "{}{}",
        String::from_utf8_lossy(&check.stdout),
        String::from_utf8_lossy(&check.stderr)
    );
}

#[test]
fn full_finetune_writes_a_model_and_resumes() {
    let Some(model) = slm_core::testdata::shared_data(SMOLLM2) else {
        return;
    };
    let model = model.display().to_string();
    let tmp = tempfile::tempdir().unwrap();
    let data = chat_data(tmp.path());
    let out = tmp.path().join("full");
    let args = |steps: &str| {
        let mut c = slm();
        c.args(["finetune", "-m", &model, "--data"])
            .arg(&data)
            .arg("--out")
            .arg(&out)
            .args([
                "--seq-len",
                "128",
                "--micro-batch",
                "2",
                "--batch-tokens",
                "256",
            ])
            .args(["--steps", steps, "--eval-fraction", "0.2"]);
        c
    };
    let log = run_ok(&mut args("2"));
    assert!(
        log.contains("full fine-tune of 134515008 parameters"),
        "{log}"
    );
    assert!(out.join("model.safetensors").is_file() && out.join("tokenizer.json").is_file());
    let metrics = std::fs::read_to_string(out.join("metrics.jsonl")).unwrap();
    assert!(metrics.contains("val_loss"), "{metrics}");
    // Continue to 3 steps from the checkpoint; other settings with --resume are refused.
    let log = run_ok(
        slm()
            .args(["finetune", "--resume"])
            .arg(&out)
            .args(["--steps", "3"]),
    );
    assert!(log.contains("done: 3 steps"), "{log}");
    let (ok, _, err) = run(slm()
        .args(["finetune", "--lora-rank", "4", "--resume"])
        .arg(&out));
    assert!(!ok && err.contains("only --steps"), "{err}");
}

/// QLoRA: `--base-type q4_0` trains adapters on a base held as Q4_0 blocks (the log says
/// so), records it in the run's settings, writes a PEFT adapter and the merged model, and
/// resumes from its checkpoint onto the same quantised base (`--base-type` with --resume
/// is refused: the run's own settings decide).
#[test]
fn qlora_trains_on_a_quantised_base_and_resumes() {
    let Some(model) = slm_core::testdata::shared_data(SMOLLM2) else {
        return;
    };
    let model = model.display().to_string();
    let tmp = tempfile::tempdir().unwrap();
    let data = chat_data(tmp.path());
    let out = tmp.path().join("qlora");
    let args = |steps: &str| -> Vec<String> {
        [
            "--base-type",
            "q4_0",
            "--lora-rank",
            "4",
            "--lr",
            "2e-3",
            "--seq-len",
            "128",
            "--micro-batch",
            "2",
            "--batch-tokens",
            "256",
            "--steps",
            steps,
            "--checkpoint-every",
            "1",
            "--eval-fraction",
            "0.2",
        ]
        .map(String::from)
        .to_vec()
    };
    let log = run_ok(
        slm()
            .args(["finetune", "-m", &model, "--data"])
            .arg(&data)
            .arg("--out")
            .arg(&out)
            .args(args("2"))
            .arg("--merge"),
    );
    assert!(
        log.contains("base frozen with its block linears as Q4_0 blocks"),
        "{log}"
    );
    for f in [
        "adapter_config.json",
        "adapter_model.safetensors",
        "merged/model.safetensors",
    ] {
        assert!(out.join(f).is_file(), "{f} missing:\n{log}");
    }
    let config = std::fs::read_to_string(out.join("config.toml")).unwrap();
    assert!(config.contains("base_type = \"q4_0\""), "{config}");
    // The merged model loads and generates.
    let merged = out.join("merged").display().to_string();
    assert!(!greedy(&["-m", &merged]).is_empty());
    let log = run_ok(
        slm()
            .args(["finetune", "--resume"])
            .arg(&out)
            .args(["--steps", "3"]),
    );
    assert!(log.contains("done: 3 steps"), "{log}");
    assert!(
        log.contains("as Q4_0 blocks"),
        "resumed onto the quantised base:\n{log}"
    );
    let (ok, _, err) = run(slm()
        .args(["finetune", "--resume"])
        .arg(&out)
        .args(["--base-type", "q8_0"]));
    assert!(!ok && err.contains("only --steps"), "{err}");
}
