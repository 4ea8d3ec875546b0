//! `slm prune --structured` end to end on the real SmolLM2 (shared data): the smaller dense
//! model is refused when its shape breaks the architecture, is written with its kept units,
//! and every command treats it as any other model — eval, generate, bench, distill train,
//! export to GGUF and HF (round trips with the same logits), and, when the reference tools
//! are installed, llama.cpp and transformers compute the same logits from it as we do.

use candle_core::{Device, Tensor};
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

fn run_err(c: &mut Command) -> String {
    let (ok, out, err) = run(c);
    assert!(!ok, "{c:?} should fail:\n{out}");
    assert!(!err.contains("panicked"), "{err}");
    err
}

const IDS: [u32; 11] = [1, 504, 3458, 282, 260, 1345, 30, 198, 2683, 314, 3458];

fn logits(path: &Path) -> (Vec<f32>, usize) {
    let loaded = slm_model::load(path.to_str().unwrap(), None).unwrap();
    let x = Tensor::new(&IDS[..], &Device::Cpu)
        .unwrap()
        .unsqueeze(0)
        .unwrap();
    let v = loaded.model.config.vocab_size;
    let l = loaded.model.forward(&x, None).unwrap();
    (l.flatten_all().unwrap().to_vec1().unwrap(), v)
}

fn max_diff(a: &[f32], b: &[f32]) -> f32 {
    assert_eq!(a.len(), b.len());
    a.iter()
        .zip(b)
        .map(|(x, y)| (x - y).abs())
        .fold(0.0, f32::max)
}

#[test]
fn structured_pruning_of_smollm2_through_the_binary() {
    let Some(model) = slm_core::testdata::shared_data(SMOLLM2) else {
        return;
    };
    let Some(calib) = slm_core::testdata::shared_data("tinystories/tinystories_train_head197k.txt")
    else {
        return;
    };
    let model = model.display().to_string();
    let tmp = tempfile::tempdir().unwrap();
    let calib_args = |c: &mut Command| {
        c.arg("--calib").arg(&calib).args([
            "--nsamples",
            "4",
            "--seqlen",
            "128",
            "--score-samples",
            "2",
        ]);
    };
    // Refused with the reason, before any work.
    for (args, why) in [
        (vec!["--heads", "7"], "split evenly"),
        (vec!["--heads", "8", "--kv-heads", "2"], "keep at most 6"),
        (vec!["--layers", "40"], "only removes"),
        (vec!["--target-params", "200M"], "not smaller"),
    ] {
        let mut c = slm();
        c.args(["prune", "-m", &model, "--structured"]).args(&args);
        calib_args(&mut c);
        let e = run_err(c.arg("-o").arg(tmp.path().join("bad")));
        assert!(e.contains(why), "{args:?}: {e}");
    }
    let e = run_err(slm().args(["prune", "-m", &model, "--layers", "3"]));
    assert!(e.contains("--structured"), "{e}");
    let e = run_err(slm().args([
        "prune",
        "-m",
        &model,
        "--structured",
        "--layers",
        "3",
        "-o",
        "x",
    ]));
    assert!(e.contains("--calib"), "{e}");

    // Every kind of unit at once: 8 layers, hidden 512, 6 of 9 heads in 2 of 3 groups, MLP 768.
    let out = tmp.path().join("small");
    let mut c = slm();
    c.args([
        "prune",
        "-m",
        &model,
        "--structured",
        "--layers",
        "8",
        "--hidden",
        "512",
    ])
    .args([
        "--heads",
        "4",
        "--kv-heads",
        "2",
        "--mlp",
        "768",
        "--layer-metric",
        "loss",
    ]);
    calib_args(&mut c);
    let said = run_ok(c.arg("-o").arg(&out));
    assert!(
        said.contains("8 layers, hidden 512, 4 heads / 2 KV, MLP 768"),
        "{said}"
    );
    let cfg: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(out.join("config.json")).unwrap()).unwrap();
    assert_eq!(cfg["num_hidden_layers"], 8);
    assert_eq!(cfg["hidden_size"], 512);
    assert_eq!(cfg["num_attention_heads"], 4);
    assert_eq!(cfg["num_key_value_heads"], 2);
    assert_eq!(cfg["intermediate_size"], 768);
    assert_eq!(cfg["head_dim"], 64);
    let meta: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(out.join("slm.json")).unwrap()).unwrap();
    assert_eq!(meta["method"], "structured");
    assert_eq!(meta["kept"]["layers"].as_array().unwrap().len(), 8);
    assert!(out.join("importance/layers.png").exists());
    let imp: serde_json::Value = serde_json::from_str(
        &std::fs::read_to_string(out.join("importance/importance.json")).unwrap(),
    )
    .unwrap();
    assert_eq!(imp["loss_increase"].as_array().unwrap().len(), 30);

    // Any command takes it.
    let text = tmp.path().join("t.txt");
    std::fs::write(&text, &std::fs::read_to_string(&calib).unwrap()[..6000]).unwrap();
    let ppl: serde_json::Value = serde_json::from_str(&run_ok(
        slm()
            .args(["eval", "--json", "--ctx", "256", "-m"])
            .arg(&out)
            .arg("--ppl")
            .arg(&text),
    ))
    .unwrap();
    let p = ppl["ppl"].as_f64().unwrap();
    assert!(p.is_finite() && p > 1.0, "{ppl}");
    let said = run_ok(
        slm()
            .args([
                "generate",
                "--max-tokens",
                "8",
                "-t",
                "0",
                "--prompt",
                "Once upon a time",
                "-m",
            ])
            .arg(&out),
    );
    assert!(!said.trim().is_empty());
    let bench: serde_json::Value = serde_json::from_str(&run_ok(
        slm()
            .args([
                "bench",
                "--json",
                "--prompt-tokens",
                "16",
                "--gen-tokens",
                "8",
                "--reps",
                "1",
                "--type",
                "q8_0",
                "-m",
            ])
            .arg(&out),
    ))
    .unwrap();
    assert!(bench.to_string().contains("decode"), "{bench}");
    let data = tmp.path().join("data");
    run_ok(
        slm()
            .args(["data", "prepare"])
            .arg(&text)
            .args(["--tokenizer", &model, "--out"])
            .arg(&data),
    );
    let rec = tmp.path().join("rec");
    run_ok(
        slm()
            .args(["distill", "train", "--teacher", &model, "--student"])
            .arg(&out)
            .arg("--data")
            .arg(&data)
            .args([
                "--set",
                "steps=2",
                "--set",
                "batch_size=1",
                "--set",
                "seq_len=32",
            ])
            .args(["--set", "eval_every=0", "--set", "checkpoint_every=0", "-o"])
            .arg(&rec),
    );
    let rec_cfg: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(rec.join("config.json")).unwrap()).unwrap();
    assert_eq!(rec_cfg["hidden_size"], 512);

    // GGUF and HF round trips keep the logits.
    let (ours, vocab) = logits(&out);
    let gguf = tmp.path().join("small.gguf");
    run_ok(
        slm()
            .args(["export", "gguf", "--type", "f32", "-m"])
            .arg(&out)
            .arg("--out")
            .arg(&gguf),
    );
    let (back, _) = logits(&gguf);
    assert!(
        max_diff(&ours, &back) < 1e-4,
        "gguf: {}",
        max_diff(&ours, &back)
    );
    let hf = tmp.path().join("small-hf");
    run_ok(
        slm()
            .args(["export", "hf", "-m"])
            .arg(&gguf)
            .arg("--out")
            .arg(&hf),
    );
    let (back, _) = logits(&hf);
    assert!(
        max_diff(&ours, &back) < 1e-4,
        "hf: {}",
        max_diff(&ours, &back)
    );

    // A parameter target: the candidates and the choice are said.
    let mut c = slm();
    c.args([
        "prune",
        "-m",
        &model,
        "--structured",
        "--target-params",
        "0.3",
    ]);
    calib_args(&mut c);
    let said = run_ok(c.arg("-o").arg(tmp.path().join("target")));
    assert!(said.contains("chose `") && said.contains("depth"), "{said}");

    // The peers read the pruned model as we do.
    let root = PathBuf::from(concat!(env!("CARGO_MANIFEST_DIR"), "/../.."));
    // llama.cpp: logits at every position (a greedy comparison is fragile on a model this
    // damaged: its top two logits are often within rounding of each other).
    if let Some(python) = slm_core::testdata::reference_python(&["llama_cpp"]) {
        let raw = tmp.path().join("llamacpp.f32");
        let ids = IDS.iter().map(u32::to_string).collect::<Vec<_>>().join(",");
        let out = Command::new(&python)
            .arg(root.join("tools/reference/llamacpp_logits.py"))
            .arg(&gguf)
            .arg(&raw)
            .args(["--tokens", &ids])
            .output()
            .unwrap();
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
        let theirs: Vec<f32> = std::fs::read(&raw)
            .unwrap()
            .chunks_exact(4)
            .map(|b| f32::from_le_bytes([b[0], b[1], b[2], b[3]]))
            .collect();
        let d = max_diff(&ours, &theirs);
        assert!(
            d < 1e-3,
            "llama.cpp vs slm on the pruned GGUF: max |Δ logit| {d}"
        );
    }
    if let Some(python) = slm_core::testdata::reference_python(&["torch", "transformers"]) {
        let ids = tmp.path().join("ids.json");
        std::fs::write(&ids, serde_json::to_string(&[IDS.to_vec()]).unwrap()).unwrap();
        let got = tmp.path().join("logits.json");
        let st = Command::new(&python)
            .arg(root.join("tools/reference/hf_logits.py"))
            .arg(&out)
            .arg(&ids)
            .arg(&got)
            .status()
            .unwrap();
        assert!(st.success());
        let v: serde_json::Value =
            serde_json::from_str(&std::fs::read_to_string(&got).unwrap()).unwrap();
        let theirs: Vec<f32> = v["logits"][0]
            .as_array()
            .unwrap()
            .iter()
            .flat_map(|row| {
                row.as_array()
                    .unwrap()
                    .iter()
                    .map(|x| x.as_f64().unwrap() as f32)
            })
            .collect();
        assert_eq!(theirs.len(), IDS.len() * vocab);
        let d = max_diff(&ours, &theirs);
        assert!(
            d < 1e-3,
            "transformers vs slm on the pruned model: max |Δ logit| {d}"
        );
    }
}

/// The shipped `minitron` recipe (prune → distil → evaluate), with its budget cut to seconds:
/// the structured stage writes the smaller model and the report names the chosen shape.
#[test]
fn the_minitron_recipe_runs_with_a_small_budget() {
    let Some(model) = slm_core::testdata::shared_data(SMOLLM2) else {
        return;
    };
    let shared = model
        .parent()
        .unwrap()
        .parent()
        .unwrap()
        .display()
        .to_string();
    let root = PathBuf::from(concat!(env!("CARGO_MANIFEST_DIR"), "/../.."));
    let mut src =
        std::fs::read_to_string(root.join("crates/slm-recipes/recipes/minitron.toml")).unwrap();
    for (from, to) in [
        ("../shared/data", shared.as_str()),
        ("steps = 48", "steps = 2"),
        ("batch_size = 4", "batch_size = 1"),
        ("seq_len = 256", "seq_len = 32"),
        ("nsamples = 16", "nsamples = 4"),
        ("seqlen = 512", "seqlen = 128"),
        ("score_samples = 8", "score_samples = 2"),
        ("eval_every = 12", "eval_every = 0"),
        ("checkpoint_every = 12", "checkpoint_every = 0"),
        ("max_tokens = 40", "max_tokens = 4"),
    ] {
        assert!(src.contains(from), "the recipe no longer has `{from}`");
        src = src.replace(from, to);
    }
    let tmp = tempfile::tempdir().unwrap();
    let recipe = tmp.path().join("minitron.toml");
    std::fs::write(&recipe, src).unwrap();
    let out = tmp.path().join("run");
    run_ok(slm().arg("run").arg(&recipe).arg("--out").arg(&out));
    let cfg: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(out.join("recovered/config.json")).unwrap())
            .unwrap();
    let pruned: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(out.join("pruned/config.json")).unwrap())
            .unwrap();
    assert_eq!(cfg["num_hidden_layers"], pruned["num_hidden_layers"]);
    assert_eq!(cfg["intermediate_size"], pruned["intermediate_size"]);
    let report = std::fs::read_to_string(out.join("report.md")).unwrap();
    assert!(
        report.contains("chosen") && report.contains("non-embedding"),
        "{report}"
    );
}
