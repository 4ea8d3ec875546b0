//! The `slm` binary end to end: help texts, the quickstart pipeline, generation and evaluation
//! of a real model, and clear errors.

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

/// `-m stories260K.bin --tokenizer tok512.bin` from the shared llama2.c folder `dir`.
fn stories260k(dir: &std::path::Path) -> [std::ffi::OsString; 4] {
    [
        "-m".into(),
        dir.join("stories260K.bin").into(),
        "--tokenizer".into(),
        dir.join("tok512.bin").into(),
    ]
}

fn run_ok(c: &mut Command) -> String {
    let out = c.output().unwrap();
    assert!(
        out.status.success(),
        "failed: {:?}\nstdout: {}\nstderr: {}",
        c,
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8(out.stdout).unwrap()
}

#[test]
fn every_subcommand_has_help() {
    let top = run_ok(slm().arg("--help"));
    for cmd in [
        "quickstart",
        "run",
        "generate",
        "chat",
        "eval",
        "inspect",
        "export",
        "train",
        "data",
        "tokenizer",
        "bench",
        "prune",
        "distill",
    ] {
        assert!(top.contains(cmd), "top-level help lacks {cmd}");
    }
    for args in [
        vec!["quickstart", "--help"],
        vec!["run", "--help"],
        vec!["generate", "--help"],
        vec!["chat", "--help"],
        vec!["eval", "--help"],
        vec!["inspect", "--help"],
        vec!["export", "hf", "--help"],
        vec!["train", "--help"],
        vec!["data", "prepare", "--help"],
        vec!["tokenizer", "train", "--help"],
        vec!["bench", "train", "--help"],
        vec!["prune", "--help"],
        vec!["prune", "sweep", "--help"],
        vec!["distill", "generate", "--help"],
        vec!["distill", "cache", "--help"],
        vec!["distill", "train", "--help"],
    ] {
        let h = run_ok(slm().args(&args));
        assert!(h.contains("Usage") && h.len() > 200, "{args:?}: {h}");
    }
}

#[test]
fn quickstart_tiny_runs_end_to_end() {
    let tmp = tempfile::tempdir().unwrap();
    let out = run_ok(
        slm()
            .args(["quickstart", "--tiny", "--out"])
            .arg(tmp.path()),
    );
    assert!(out.contains("validation loss"), "{out}");
    let model = tmp.path().join("model");
    for f in [
        "config.json",
        "model.safetensors",
        "tokenizer.json",
        "slm.json",
        "report.md",
        "metrics.jsonl",
        "config.toml",
        "plots/loss.png",
        "checkpoints/latest.ckpt",
    ] {
        assert!(model.join(f).is_file(), "missing {f}");
    }
    assert!(out.contains("50% Wanda"), "{out}");
    let pruned = run_ok(
        slm()
            .args(["inspect", "--json", "-m"])
            .arg(tmp.path().join("model-wanda50")),
    );
    let v: serde_json::Value = serde_json::from_str(&pruned).unwrap();
    let s = v["roles"]["linear.q"]["sparsity"].as_f64().unwrap();
    assert!((s - 0.5).abs() < 0.01, "{s}");
    // The distilled student: half as wide, a third of the parameters or fewer, and the
    // side-by-side table printed.
    assert!(
        out.contains("[4/5] student (distill)")
            && out.contains("student: ")
            && out.contains("% of `model`'s parameters"),
        "{out}"
    );
    // One report at the run root with every stage and the training plots.
    let report = std::fs::read_to_string(tmp.path().join("report.md")).unwrap();
    for want in [
        "## data (prepare)",
        "## model (train)",
        "## model-wanda50 (prune)",
        "## student (distill)",
        "## eval (evaluate)",
        "![model/plots/loss.png]",
    ] {
        assert!(report.contains(want), "report.md lacks {want}:\n{report}");
    }
    let param_count = |dir: &std::path::Path| -> u64 {
        let i = run_ok(slm().args(["inspect", "--json"]).arg(dir));
        let v: serde_json::Value = serde_json::from_str(&i).unwrap();
        v["parameters"].as_u64().unwrap()
    };
    let (tp, sp) = (
        param_count(&model),
        param_count(&tmp.path().join("student")),
    );
    assert!(sp * 2 < tp, "student {sp} vs teacher {tp} parameters");
    let metrics = std::fs::read_to_string(tmp.path().join("student/metrics.jsonl")).unwrap();
    assert!(
        metrics.contains("\"kd\""),
        "the student was not distilled: {metrics}"
    );
    // The trained model is an ordinary model directory for the other commands.
    let g = run_ok(
        slm()
            .args(["generate", "-n", "5", "-t", "0", "--prompt", "Once", "-m"])
            .arg(&model),
    );
    assert!(g.starts_with("Once"));
    let i = run_ok(slm().args(["inspect", "--json"]).arg(&model));
    let v: serde_json::Value = serde_json::from_str(&i).unwrap();
    assert!(v["parameters"].as_u64().unwrap() > 10_000);
}

#[test]
fn stories260k_generate_and_eval_through_the_binary() {
    let Some(dir) = shared("llama2c") else { return };
    let r: serde_json::Value = serde_json::from_slice(
        &std::fs::read(dir.join("stories260K_greedy_reference.json")).unwrap(),
    )
    .unwrap();
    let text = run_ok(
        slm()
            .args([
                "generate",
                "-t",
                "0",
                "-n",
                "60",
                "--prompt",
                "Once upon a time",
                "-m",
            ])
            .arg(dir.join("stories260K.bin")),
    );
    let want = r["greedy_text"].as_str().unwrap();
    let got = text.trim_end_matches('\n');
    assert!(want.starts_with(got) && got.len() > 150, "got {got:?}");

    let sample = dir.join("../tinystories/tinystories_sample_cs336.txt");
    let j = run_ok(
        slm()
            .args(["eval", "--json", "--doc-separator", "<|endoftext|>", "-m"])
            .arg(dir.join("stories260K.bin"))
            .arg("--ppl")
            .arg(&sample),
    );
    let v: serde_json::Value = serde_json::from_str(&j).unwrap();
    let ppl = v["ppl"].as_f64().unwrap();
    assert!((ppl - 3.5482).abs() < 0.01, "{ppl}");
}

#[test]
fn bad_input_gives_a_message_not_a_panic() {
    let out = slm()
        .args(["generate", "-m", "/no/such/model"])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(1));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("error") && err.contains("/no/such/model") && !err.contains("panicked"),
        "{err}"
    );
    let out = slm()
        .args([
            "train",
            "--out",
            "/tmp/x",
            "--set",
            "bogus_key=1",
            "--data",
            "/tmp",
        ])
        .output()
        .unwrap();
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success() && err.contains("bogus_key"), "{err}");
}

#[test]
fn bench_reports_decode_speed_and_bandwidth_as_json() {
    let Some(dir) = shared("llama2c") else { return };
    let out = run_ok(
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
            ])
            .arg("--model")
            .arg(dir.join("stories260K.bin"))
            .arg("--tokenizer")
            .arg(dir.join("tok512.bin")),
    );
    let v: serde_json::Value = serde_json::from_str(out.trim()).unwrap();
    for key in [
        "prefill_tok_s",
        "decode_tok_s",
        "achieved_gb_s",
        "bandwidth_gb_s",
    ] {
        let x = v[key].as_f64().unwrap_or(-1.0);
        assert!(x.is_finite() && x > 0.0, "{key}: {out}");
    }
    // Which kernels ran: one of each family's names (stories260K's heads are 8 wide, so
    // decode attention runs AVX2 or the generic loop, never the 16-lane kernel).
    let kernel = |family: &str| v["kernels"][family].as_str().unwrap_or("").to_string();
    assert!(
        ["avx512-vnni", "avx2", "neon", "scalar"].contains(&kernel("quantised").as_str()),
        "{out}"
    );
    assert!(
        ["avx2", "generic"].contains(&kernel("attention").as_str()),
        "{out}"
    );
    // stories260K: 260,032 f32 parameters, the tied embedding doubling as the head, plus the
    // token's embedding row (64 values).
    assert_eq!(
        v["weight_bytes_per_token"].as_u64(),
        Some(4 * 260_032 + 4 * 64)
    );
    // A 70%-pruned copy decodes from sparse storage (fewer bytes per token), batched too;
    // `--sparse off` keeps it dense.
    let tmp = tempfile::tempdir().unwrap();
    let pruned = tmp.path().join("pruned");
    run_ok(
        slm()
            .args([
                "prune",
                "--method",
                "magnitude",
                "--sparsity",
                "0.7",
                "--model",
            ])
            .arg(dir.join("stories260K.bin"))
            .arg("--tokenizer")
            .arg(dir.join("tok512.bin"))
            .arg("--out")
            .arg(&pruned),
    );
    let bench = |extra: &[&str]| -> serde_json::Value {
        let out = run_ok(
            slm()
                .args([
                    "bench",
                    "--json",
                    "--prompt-tokens",
                    "16",
                    "--gen-tokens",
                    "8",
                ])
                .args(["--reps", "1", "--model"])
                .arg(&pruned)
                .args(extra),
        );
        serde_json::from_str(out.trim()).unwrap()
    };
    let (sparse, dense) = (bench(&["--batch", "3"]), bench(&["--sparse", "off"]));
    assert_eq!(sparse["batch"].as_u64(), Some(3));
    assert!(sparse["decode_tok_s"].as_f64().unwrap() > 0.0);
    assert!(
        sparse["storage"]
            .as_str()
            .unwrap()
            .contains("f32 ×1, offsets ×20"),
        "{sparse}"
    );
    assert_eq!(dense["storage"].as_str(), Some("f32 ×21"), "{dense}");
    let bytes = |v: &serde_json::Value| v["weight_bytes_per_token"].as_f64().unwrap();
    assert!(bytes(&sparse) < 0.75 * bytes(&dense), "{sparse} vs {dense}");
    let bw = run_ok(slm().args(["bench", "--bandwidth", "--json", "--reps", "5"]));
    let v: serde_json::Value = serde_json::from_str(bw.trim()).unwrap();
    assert!(v["bandwidth_gb_s"].as_f64().unwrap() > 0.0, "{bw}");
    // Nothing to measure is an error, not a panic.
    let out = slm().arg("bench").output().unwrap();
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("--model"));
    // Bad counts are refused before the model loads (a missing file is not even opened).
    let out = slm()
        .args([
            "bench",
            "--model",
            "no/such/model.gguf",
            "--gen-tokens",
            "1",
        ])
        .output()
        .unwrap();
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("--gen-tokens ≥ 2"), "{err}");
}

#[test]
fn gguf_export_of_stories260k_generates_the_same_text() {
    let Some(dir) = shared("llama2c") else { return };
    let tmp = tempfile::tempdir().unwrap();
    let greedy = |model: &std::path::Path, tokenizer: bool| {
        let mut c = slm();
        c.args([
            "generate",
            "-n",
            "40",
            "-t",
            "0",
            "--prompt",
            "Once upon a time",
            "-m",
        ])
        .arg(model);
        if tokenizer {
            c.arg("--tokenizer").arg(dir.join("tok512.bin"));
        }
        run_ok(&mut c)
    };
    let want = greedy(&dir.join("stories260K.bin"), true);
    for ty in ["f32", "q8_0"] {
        let out = tmp.path().join(format!("s260k-{ty}.gguf"));
        let msg = run_ok(
            slm()
                .args(["export", "gguf", "--type", ty])
                .args(stories260k(&dir))
                .arg("--out")
                .arg(&out),
        );
        assert!(msg.contains("llama vocabulary of 512 tokens"), "{msg}");
        // The GGUF carries its own vocabulary: no --tokenizer.
        let got = greedy(&out, false);
        if ty == "f32" {
            assert_eq!(got, want, "f32 export");
        } else {
            // Q8_0 may drift late; the start of the story must agree.
            assert_eq!(got[..40], want[..40], "q8_0 export: {got}");
        }
    }
    // A directory made from the GGUF (prune, export hf) keeps its vocabulary: no --tokenizer.
    let gguf = tmp.path().join("s260k-f32.gguf");
    let pruned = tmp.path().join("pruned");
    run_ok(
        slm()
            .args(["prune", "--method", "magnitude", "--sparsity", "0.1", "-m"])
            .arg(&gguf)
            .arg("--out")
            .arg(&pruned),
    );
    assert!(pruned.join("vocab.gguf.json").is_file());
    let text = greedy(&pruned, false);
    assert!(
        text.starts_with("Once upon a time") && text.len() > 40,
        "{text}"
    );
    let hf = tmp.path().join("hf");
    run_ok(
        slm()
            .args(["export", "hf", "-m"])
            .arg(&gguf)
            .arg("--out")
            .arg(&hf),
    );
    assert_eq!(greedy(&hf, false), want, "export hf of the GGUF");
    let bad = slm()
        .args(["export", "gguf", "--type", "q5_k", "-m"])
        .arg(dir.join("stories260K.bin"))
        .arg("--out")
        .arg(tmp.path().join("x.gguf"))
        .output()
        .unwrap();
    assert!(!bad.status.success());
    assert!(String::from_utf8_lossy(&bad.stderr).contains("q5_k"));
}

/// The repository root and the reference Python that imports `modules`
/// (`slm_core::testdata::reference_python`: skips without it, fails under CI).
fn reference_python(modules: &[&str]) -> Option<(PathBuf, PathBuf)> {
    let root = PathBuf::from(concat!(env!("CARGO_MANIFEST_DIR"), "/../.."));
    let python = slm_core::testdata::reference_python(modules)?;
    Some((root, python))
}

/// The reference Python with llama-cpp-python.
fn llama_cpp_python() -> Option<(PathBuf, PathBuf)> {
    reference_python(&["llama_cpp"])
}

/// llama.cpp itself reads our GGUF exports: greedy continuations equal (runs when
/// `tools/reference/.venv` has llama-cpp-python; see tools/reference/check_gguf_llamacpp.py).
#[test]
fn llama_cpp_reads_our_gguf_exports() {
    let Some(dir) = shared("llama2c") else { return };
    let Some((root, python)) = llama_cpp_python() else {
        return;
    };
    let tmp = tempfile::tempdir().unwrap();
    // llama.cpp's greedy continuation of `gguf` equals ours.
    let llama_cpp_agrees = |gguf: &std::path::Path, label: &str| {
        let check = Command::new(&python)
            .arg(root.join("tools/reference/check_gguf_llamacpp.py"))
            .arg(gguf)
            .arg(env!("CARGO_BIN_EXE_slm"))
            .output()
            .unwrap();
        let report = String::from_utf8_lossy(&check.stdout);
        assert!(
            check.status.success(),
            "{label}: {report}{}",
            String::from_utf8_lossy(&check.stderr)
        );
        assert!(report.contains("\"equal\": true"), "{label}: {report}");
    };
    for ty in ["f32", "q8_0", "q4_0"] {
        let out = tmp.path().join(format!("s260k-{ty}.gguf"));
        run_ok(
            slm()
                .args(["export", "gguf", "--type", ty])
                .args(stories260k(&dir))
                .arg("--out")
                .arg(&out),
        );
        llama_cpp_agrees(&out, ty);
    }
    // A GPTQ file is ordinary Q4_0 blocks to llama.cpp.
    let out = tmp.path().join("s260k-q4_0-gptq.gguf");
    run_ok(
        slm()
            .args([
                "quantize",
                "--type",
                "q4_0",
                "--gptq",
                "--nsamples",
                "16",
                "--seqlen",
                "256",
            ])
            .args(stories260k(&dir))
            .arg("--calib")
            .arg(dir.join("../tinystories/tinystories_train_head197k.txt"))
            .arg("--out")
            .arg(&out),
    );
    llama_cpp_agrees(&out, "gptq");
}

/// llama.cpp's logits at every position of a token sequence on our GGUF export equal the
/// decode engine's on the same file: f32 within 1e-3; Q8_0 within twice what activation
/// quantisation alone moves them, with the same argmax everywhere.
#[test]
fn llama_cpp_logits_match_ours() {
    let Some(dir) = shared("llama2c") else { return };
    let Some((root, python)) = llama_cpp_python() else {
        return;
    };
    use slm_infer::decode::{Decoder, WeightType};
    let tokens: Vec<u32> = std::iter::once(1)
        .chain((0..31).map(|i| (i * 37 + 11) % 512))
        .collect();
    let ids = tokens
        .iter()
        .map(u32::to_string)
        .collect::<Vec<_>>()
        .join(",");
    let tmp = tempfile::tempdir().unwrap();
    // (type, absolute tolerance on max |Δ logit|)
    for (ty, tol) in [("f32", 1e-3f32), ("q8_0", 1e-3)] {
        let gguf = tmp.path().join(format!("s260k-{ty}.gguf"));
        run_ok(
            slm()
                .args(["export", "gguf", "--type", ty])
                .args(stories260k(&dir))
                .arg("--out")
                .arg(&gguf),
        );
        let raw = tmp.path().join(format!("{ty}.f32"));
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
        let loaded = slm_model::load(gguf.to_str().unwrap(), None).unwrap();
        let vocab = loaded.model.config.vocab_size;
        assert_eq!(theirs.len(), tokens.len() * vocab);
        let dec = Decoder::new(&loaded.model, WeightType::parse(ty).unwrap()).unwrap();
        // The same file's weights decoded in f32: how far quantisation itself moves logits.
        let exact = Decoder::new(&loaded.model, WeightType::F32).unwrap();
        let (mut state, mut es) = (dec.new_state(), exact.new_state());
        let (mut worst, mut quant_effect, mut agree) = (0f32, 0f32, 0);
        for (pos, &t) in tokens.iter().enumerate() {
            let ours = dec.forward(&mut state, t, pos).unwrap();
            let row = &theirs[pos * vocab..(pos + 1) * vocab];
            worst = ours
                .iter()
                .zip(row)
                .map(|(a, b)| (a - b).abs())
                .fold(worst, f32::max);
            let e = exact.forward(&mut es, t, pos).unwrap();
            quant_effect = ours
                .iter()
                .zip(e)
                .map(|(a, b)| (a - b).abs())
                .fold(quant_effect, f32::max);
            let same = slm_infer::sampler::argmax(ours) == slm_infer::sampler::argmax(row);
            agree += usize::from(same);
        }
        println!(
            "{ty}: max |Δ logit| vs llama.cpp over {} positions = {worst:e} (quantisation itself moves them by up to {quant_effect:e}); same argmax at {agree}",
            tokens.len()
        );
        // f32: the same arithmetic up to summation order. Q8_0: both sides quantise each
        // activation to Q8_0 blocks (ties rounded differently) and llama.cpp rounds inputs of
        // f16-kept matrices to f16, so the two may differ by about as much as activation
        // quantisation moves the logits; allow twice that.
        let bound = tol.max(2.0 * quant_effect);
        assert!(
            worst < bound,
            "{ty}: logits differ by {worst} (bound {bound})"
        );
        assert_eq!(agree, tokens.len(), "{ty}: argmax differs");
    }
}

#[test]
fn quantize_writes_a_gguf_and_reports_the_error() {
    let Some(dir) = shared("llama2c") else { return };
    let tmp = tempfile::tempdir().unwrap();
    let mut errors = Vec::new();
    for ty in ["q8_0", "q4_1", "q4_0"] {
        let out = tmp.path().join(format!("{ty}.gguf"));
        let report = run_ok(
            slm()
                .args(["quantize", "--json", "--type", ty])
                .args(stories260k(&dir))
                .arg("--out")
                .arg(&out),
        );
        let v: serde_json::Value = serde_json::from_str(report.trim()).unwrap();
        let err = v["overall_relative_error"].as_f64().unwrap();
        assert!(err > 0.0 && err < 0.05, "{ty}: {err}");
        assert!(v["weight_bytes"].as_u64().unwrap() * 3 < v["f32_bytes"].as_u64().unwrap());
        assert!(v["matrices"].as_array().unwrap().len() >= 21);
        errors.push(err);
        // The file is a model: it generates text.
        let text = run_ok(
            slm()
                .args([
                    "generate",
                    "-n",
                    "20",
                    "-t",
                    "0",
                    "--prompt",
                    "Once upon a time",
                ])
                .args(["--type", ty, "-m"])
                .arg(&out),
        );
        assert!(text.len() > "Once upon a time".len() + 10, "{ty}: {text}");
    }
    assert!(
        errors[0] < errors[1] && errors[1] < errors[2],
        "q8_0 < q4_1 < q4_0: {errors:?}"
    );
    // f16 is not a quantised type: refused while parsing, with the choices named.
    let out = slm()
        .args(["quantize", "--type", "f16", "--out", "/tmp/x.gguf", "-m"])
        .arg(dir.join("stories260K.bin"))
        .output()
        .unwrap();
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("'f16'")
            && err.contains("[possible values: q8_0, q4_1, q4_0, q4_k_m, q5_k_m, q6_k]"),
        "{err}"
    );
}

#[test]
fn gptq_quantize_beats_round_to_nearest_on_held_out_text() {
    let Some(dir) = shared("llama2c") else { return };
    let tiny = dir.join("../tinystories");
    let tmp = tempfile::tempdir().unwrap();
    // Held-out text: the first 60 KB of the validation file; calibration from the train file.
    let valid = std::fs::read(tiny.join("tinystories_valid_head794k.txt")).unwrap();
    let held_out = tmp.path().join("valid60k.txt");
    std::fs::write(&held_out, &valid[..60_000]).unwrap();
    let quantize = |extra: &[&str], out: &std::path::Path| {
        let j = run_ok(
            slm()
                .args(["quantize", "--json", "--type", "q4_0"])
                .args(stories260k(&dir))
                .args(extra)
                .arg("--out")
                .arg(out),
        );
        serde_json::from_str::<serde_json::Value>(j.trim()).unwrap()
    };
    let ppl = |model: &std::path::Path| {
        let j = run_ok(
            slm()
                .args(["eval", "--json", "-m"])
                .arg(model)
                .arg("--ppl")
                .arg(&held_out),
        );
        serde_json::from_str::<serde_json::Value>(&j).unwrap()["ppl"]
            .as_f64()
            .unwrap()
    };
    let (rtn, gptq) = (tmp.path().join("rtn.gguf"), tmp.path().join("gptq.gguf"));
    let r = quantize(&[], &rtn);
    assert_eq!(r["method"], "rtn");
    let calib = tiny.join("tinystories_train_head197k.txt");
    let g = quantize(
        &[
            "--gptq",
            "--nsamples",
            "16",
            "--seqlen",
            "256",
            "--calib",
            calib.to_str().unwrap(),
        ],
        &gptq,
    );
    assert_eq!(g["method"], "gptq");
    let report = &g["gptq"];
    let tensors = report["tensors"].as_array().unwrap();
    // Five blocks × q, k, v, o, gate, up; down's 172-wide rows do not fill blocks.
    assert_eq!(tensors.len(), 30);
    assert_eq!(report["skipped_roles"], serde_json::json!(["down"]));
    let mean = |key: &str| {
        tensors
            .iter()
            .map(|t| t[key].as_f64().unwrap())
            .sum::<f64>()
            / tensors.len() as f64
    };
    assert!(
        mean("rel_error_gptq") < 0.8 * mean("rel_error_rtn"),
        "{} vs {}",
        mean("rel_error_gptq"),
        mean("rel_error_rtn")
    );
    assert_eq!(g["file_bytes"], r["file_bytes"]);
    let (p_rtn, p_gptq) = (ppl(&rtn), ppl(&gptq));
    assert!(p_gptq < p_rtn, "GPTQ {p_gptq} vs round-to-nearest {p_rtn}");
    // The file runs on the decode engine with its own blocks.
    let text = run_ok(
        slm()
            .args([
                "generate",
                "-n",
                "12",
                "-t",
                "0",
                "--prompt",
                "Once upon a time",
                "--type",
                "q4_0",
                "-m",
            ])
            .arg(&gptq),
    );
    assert!(text.len() > "Once upon a time".len() + 5, "{text}");
    // Argument errors say what to do.
    for (args, want) in [
        (vec!["--gptq"], "needs calibration text"),
        (vec!["--calib", "x.txt"], "only used by --gptq"),
    ] {
        let out = slm()
            .args([
                "quantize",
                "--type",
                "q4_0",
                "--out",
                "/tmp/never.gguf",
                "-m",
            ])
            .arg(dir.join("stories260K.bin"))
            .args(&args)
            .output()
            .unwrap();
        assert!(!out.status.success());
        let err = String::from_utf8_lossy(&out.stderr);
        assert!(err.contains(want), "{args:?}: {err}");
    }
}

/// (success, stdout, stderr) of a command.
fn outputs(c: &mut Command) -> (bool, String, String) {
    let out = c.output().unwrap();
    (
        out.status.success(),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

#[test]
fn run_list_names_the_builtin_recipes() {
    let out = run_ok(slm().args(["run", "--list"]));
    assert!(
        out.contains("quickstart ") && out.contains("quickstart-tiny"),
        "{out}"
    );
}

/// A tiny recipe: stories → tokenizer → shards, a model trained 600 steps (checkpoint every
/// 20), pruned, quantised and evaluated.
const TINY_RECIPE: &str = r#"[recipe]
name = "tiny"
seed = 3

[[stage]]
name = "data"
[stage.prepare]
stories = { bytes = 40_000 }
bpe_vocab = 300

[[stage]]
name = "model"
[stage.train]
data = "data"
[stage.train.config]
layers = 2
dim = 64
heads = 4
hidden = 176
seq_len = 64
batch_size = 4
steps = 600
warmup_steps = 5
eval_every = 300
eval_windows = 4
checkpoint_every = 20

[[stage]]
name = "pruned"
[stage.prune]
model = "model"
method = "magnitude"
sparsity = 0.5

[[stage]]
name = "q8"
[stage.quantize]
model = "pruned"
type = "q8_0"

[[stage]]
name = "eval"
[stage.evaluate]
models = ["model", "pruned", "q8"]
text = "data"
speed = false
"#;

#[test]
fn a_recipe_runs_resumes_after_a_kill_and_skips_finished_stages() {
    let tmp = tempfile::tempdir().unwrap();
    let recipe = tmp.path().join("tiny.toml");
    std::fs::write(&recipe, TINY_RECIPE).unwrap();
    let root = tmp.path().join("run");
    // Kill the run (SIGKILL: no chance to clean up) once training has written a checkpoint.
    let mut child = slm()
        .args(["run", "--out"])
        .arg(&root)
        .arg(&recipe)
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .spawn()
        .unwrap();
    let ckpt = root.join("model/checkpoints/latest.ckpt");
    let t0 = std::time::Instant::now();
    while !ckpt.is_file() {
        assert!(t0.elapsed().as_secs() < 300, "no checkpoint appeared");
        assert!(
            child.try_wait().unwrap().is_none(),
            "the run ended before its first checkpoint"
        );
        std::thread::sleep(std::time::Duration::from_millis(10));
    }
    child.kill().unwrap();
    child.wait().unwrap();
    assert!(root.join("data/stage.json").is_file());
    assert!(
        !root.join("model/stage.json").is_file(),
        "the kill came too late"
    );
    // The rerun skips the data, resumes training from the checkpoint and finishes.
    let out = run_ok(slm().args(["run", "--out"]).arg(&root).arg(&recipe));
    assert!(
        out.contains("[1/5] data (prepare)\n      finished earlier"),
        "{out}"
    );
    assert!(
        out.contains("resuming from its checkpoint at step"),
        "{out}"
    );
    assert!(
        out.contains("3 stages run") || out.contains("4 stages run"),
        "{out}"
    );
    let metrics = std::fs::read_to_string(root.join("model/metrics.jsonl")).unwrap();
    // Every step once: the resumed run dropped what the killed one logged after its checkpoint.
    let steps: Vec<u64> = metrics
        .lines()
        .filter(|l| l.contains("\"loss\""))
        .map(|l| {
            serde_json::from_str::<serde_json::Value>(l).unwrap()["step"]
                .as_u64()
                .unwrap()
        })
        .collect();
    assert_eq!(steps, (1..=600).collect::<Vec<_>>());
    let report = std::fs::read_to_string(root.join("report.md")).unwrap();
    for want in [
        "| [data](data/) | prepare | finished earlier",
        "## model (train)",
        "validation loss",
        "![model/plots/loss.png](model/plots/loss.png)",
        "## q8 (quantize)",
        "| q8 |",
    ] {
        assert!(report.contains(want), "report.md lacks {want}:\n{report}");
    }
    assert!(root.join("q8/model.gguf").is_file());
    // Once more: everything is finished, nothing runs.
    let out = run_ok(slm().args(["run", "--out"]).arg(&root).arg(&recipe));
    assert!(out.contains("0 stages run, 5 finished earlier"), "{out}");
}

#[test]
fn recipe_errors_name_the_line_before_any_stage_runs() {
    let tmp = tempfile::tempdir().unwrap();
    let root = tmp.path().join("run");
    for (edit, want) in [
        (("bpe_vocab = 300", "bpe_vocab = 300\nvocab = 3"), "line 10: unknown field `vocab`"),
        (("steps = 600", "steps = 600\nstpes = 2"), "line 23: stage `model`: training settings: unknown field `stpes`"),
        (("text = \"data\"", "text = \"/no/such/text.txt\""), "line 45: stage `eval`: `/no/such/text.txt` is neither an earlier stage nor an existing file"),
        (("model = \"pruned\"", "model = \"eval\""), "line 38: stage `q8` uses stage `eval`, which does not come before it"),
        (("method = \"magnitude\"", "method = \"wanda\""), "line 29: stage `pruned`: method `wanda` needs calibration text"),
    ] {
        let recipe = tmp.path().join("bad.toml");
        std::fs::write(&recipe, TINY_RECIPE.replace(edit.0, edit.1)).unwrap();
        let (ok, stdout, stderr) = outputs(slm().args(["run", "--out"]).arg(&root).arg(&recipe));
        assert!(!ok && stderr.contains(want), "{want}: {stderr}");
        assert!(stderr.contains("bad.toml, line"), "{stderr}");
        assert!(stdout.is_empty() && !root.exists(), "work started: {stdout}");
    }
    let (ok, _, stderr) = outputs(slm().args(["run", "no-such-recipe"]));
    assert!(
        !ok && stderr.contains("built-in: quickstart, quickstart-tiny"),
        "{stderr}"
    );
}

#[test]
fn choice_options_are_checked_while_parsing() {
    for (args, bad, choices) in [
        (
            vec!["generate", "-m", "x", "--kv", "f8"],
            "'f8'",
            "[possible values: f32, f16]",
        ),
        (
            vec!["generate", "-m", "x", "--type", "q5_k"],
            "'q5_k'",
            "[possible values: auto, f32, q8_0, q4_1, q4_0]",
        ),
        (
            vec!["bench", "-m", "x", "--sparse", "on"],
            "'on'",
            "[possible values: auto, off]",
        ),
        (
            vec!["prune", "-m", "x", "--method", "lottery", "--out", "y"],
            "'lottery'",
            "magnitude-global",
        ),
        (
            vec![
                "prune",
                "sweep",
                "-m",
                "x",
                "--methods",
                "wanda,lottery",
                "--ppl",
                "p",
                "--out",
                "y",
            ],
            "'lottery'",
            "sparsegpt",
        ),
        (
            vec!["eval", "-m", "x", "--format", "csv"],
            "'csv'",
            "[possible values: auto, wikitext, plain]",
        ),
        (
            vec!["export", "gguf", "-m", "x", "--type", "q2", "--out", "y"],
            "'q2'",
            "[possible values: f32, f16, q8_0, q4_0, q4_1, q4_k_m, q5_k_m, q6_k]",
        ),
        (
            vec![
                "prune",
                "-m",
                "x",
                "--method",
                "wanda",
                "--sparsity",
                "1.5",
                "--out",
                "y",
            ],
            "'1.5'",
            "in [0, 1)",
        ),
    ] {
        let (ok, stdout, stderr) = outputs(slm().args(&args));
        assert!(!ok && stdout.is_empty(), "{args:?}");
        assert!(
            stderr.contains("invalid value") && stderr.contains(bad) && stderr.contains(choices),
            "{args:?}: {stderr}"
        );
    }
}

#[test]
fn arguments_are_checked_before_any_output() {
    // The sampler settings are refused before the model is even opened, so nothing is printed.
    let (ok, stdout, stderr) = outputs(slm().args([
        "generate",
        "-m",
        "/no/such/model",
        "--prompt",
        "Hello",
        "--top-p",
        "2",
    ]));
    assert!(!ok && stdout.is_empty(), "{stdout}");
    assert!(
        stderr.contains("top-p must be in (0, 1], got 2") && !stderr.contains("/no/such"),
        "{stderr}"
    );
    let (ok, stdout, stderr) = outputs(slm().args([
        "generate",
        "-m",
        "/no/such/model",
        "--prompt",
        "Hi",
        "--temperature=-1",
    ]));
    assert!(
        !ok && stdout.is_empty() && stderr.contains("temperature"),
        "{stderr}"
    );
}

#[test]
fn an_error_names_its_cause_once() {
    let (ok, _, err) = outputs(slm().args(["generate", "-m", "/x"]));
    assert!(!ok && err.contains("/x"), "{err}");
    assert_eq!(
        err.to_lowercase()
            .matches("no such file or directory")
            .count(),
        1,
        "{err}"
    );
    let (ok, _, err) = outputs(slm().args(["train", "--data", "/x", "--out", "/tmp/never-made"]));
    assert!(!ok && err.contains("/x/data.json"), "{err}");
    assert_eq!(
        err.matches("is this a folder made by `slm data prepare`?")
            .count(),
        1,
        "{err}"
    );
    assert_eq!(err.matches("No such file or directory").count(), 1, "{err}");
    let (ok, _, err) = outputs(slm().args(["inspect", "/x"]));
    assert!(
        !ok && err
            .to_lowercase()
            .matches("no such file or directory")
            .count()
            == 1,
        "{err}"
    );
}

/// `slm export hf` and `slm export gguf` of SmolLM2 keep its tokenizer: transformers on the
/// exported tokenizer.json and llama.cpp on the exported GGUF give the fixture's llama.cpp ids
/// on every case (runs when `tools/reference/.venv` has llama-cpp-python and transformers;
/// see tools/reference/check_tokenizer_export.py).
#[test]
fn transformers_and_llama_cpp_read_our_tokenizer_exports() {
    let Some(model) = slm_core::testdata::shared_data("models/SmolLM2-135M-Instruct.Q4_1.gguf")
    else {
        return;
    };
    let Some((root, python)) = reference_python(&["llama_cpp", "transformers", "torch", "gguf"])
    else {
        return;
    };
    let tmp = tempfile::tempdir().unwrap();
    let hf = tmp.path().join("hf");
    let gguf = tmp.path().join("smol.gguf");
    run_ok(
        slm()
            .args(["export", "hf", "-m"])
            .arg(&model)
            .arg("--out")
            .arg(&hf),
    );
    run_ok(
        slm()
            .args(["export", "gguf", "--type", "q8_0", "-m"])
            .arg(&model)
            .arg("--out")
            .arg(&gguf),
    );
    let check = Command::new(&python)
        .arg(root.join("tools/reference/check_tokenizer_export.py"))
        .arg(&hf)
        .arg(&gguf)
        .arg(root.join("tools/reference/fixtures_tokenizer/SmolLM2-135M-Instruct.Q4_1.json"))
        .output()
        .unwrap();
    let report = String::from_utf8_lossy(&check.stdout);
    assert!(
        check.status.success() && report.contains("\"all_equal\": true"),
        "{report}{}",
        String::from_utf8_lossy(&check.stderr)
    );
    // transformers reads the export as it reads the original GGUF: ids, chat template, logits.
    let check = Command::new(&python)
        .arg(root.join("tools/reference/check_hf_export.py"))
        .arg(&hf)
        .arg(&model)
        .output()
        .unwrap();
    let report = String::from_utf8_lossy(&check.stdout);
    assert!(
        check.status.success() && report.contains("\"equal\": true"),
        "{report}{}",
        String::from_utf8_lossy(&check.stderr)
    );
}

/// `slm tokenize` on SmolLM2's GGUF: digits one by one, no BOS by default, `--bos` adds it.
#[test]
fn tokenize_smollm2() {
    let Some(model) = slm_core::testdata::shared_data("models/SmolLM2-135M-Instruct.Q4_1.gguf")
    else {
        return;
    };
    let out = run_ok(
        slm()
            .args(["tokenize", "--ids", "--text", "Hello world! 123", "-m"])
            .arg(&model),
    );
    assert_eq!(out.trim(), "[19556, 905, 17, 216, 33, 34, 35]");
    let out = run_ok(
        slm()
            .args(["tokenize", "--ids", "--bos", "--text", "x", "-m"])
            .arg(&model),
    );
    assert!(out.trim().starts_with("[1, "), "{out}");
    let out = run_ok(
        slm()
            .args(["tokenize", "--json", "--text", "12", "-m"])
            .arg(&model),
    );
    let v: serde_json::Value = serde_json::from_str(&out).unwrap();
    assert_eq!(v["count"], 2);
    let bad = slm().args(["tokenize", "-m"]).arg(&model).output().unwrap();
    assert!(!bad.status.success());

    // --chat: the model's template renders the messages as transformers does (the rendered
    // strings in tools/reference/fixtures_chat/ come from transformers' apply_chat_template).
    let fixtures: serde_json::Value = serde_json::from_str(
        &std::fs::read_to_string(concat!(
            env!("CARGO_MANIFEST_DIR"),
            "/../../tools/reference/fixtures_chat/chat_templates.json"
        ))
        .unwrap(),
    )
    .unwrap();
    let tmp = tempfile::tempdir().unwrap();
    let mut checked = 0;
    for case in fixtures["cases"].as_array().unwrap() {
        if case["template_name"] != "smollm2" || case["add_generation_prompt"] != true {
            continue;
        }
        let messages = tmp.path().join("messages.json");
        std::fs::write(&messages, case["messages"].to_string()).unwrap();
        let ours = run_ok(
            slm()
                .args(["tokenize", "--ids", "--chat"])
                .arg(&messages)
                .arg("-m")
                .arg(&model),
        );
        let rendered = case["expected"].as_str().unwrap();
        let want = run_ok(
            slm()
                .args(["tokenize", "--ids", "--no-bos", "--text", rendered, "-m"])
                .arg(&model),
        );
        assert_eq!(ours, want, "{}", case["name"]);
        checked += 1;
    }
    assert!(checked >= 2, "SmolLM2 chat cases in the fixture: {checked}");
}

/// `slm eval --tasks` through the binary on SmolLM2: the table as JSON, per-question records in
/// --output, a user task from a TOML + JSONL file scored like the built-in one, and clear
/// errors for an unknown task and a document missing a field.
#[test]
fn eval_tasks_through_the_binary() {
    let Some(model) = shared("models/SmolLM2-135M-Instruct.Q4_1.gguf") else {
        return;
    };
    let Some(data) = shared("eval") else {
        return;
    };
    let copa = data.join("copa/val.jsonl");
    let tmp = tempfile::tempdir().unwrap();
    let out = tmp.path().join("records");
    let json = run_ok(
        slm()
            .args([
                "eval", "--tasks", "arc_easy", "--limit", "6", "--type", "q4_1", "--json",
            ])
            .arg("--output")
            .arg(&out)
            .arg("--data-dir")
            .arg(&data)
            .arg("-m")
            .arg(&model),
    );
    let v: serde_json::Value = serde_json::from_str(json.trim()).unwrap();
    let text = v.to_string();
    assert!(
        text.contains("arc_easy") && text.contains("acc_norm"),
        "{text}"
    );
    let records = std::fs::read_to_string(out.join("arc_easy.jsonl")).unwrap();
    assert_eq!(records.lines().count(), 6, "{records}");
    for line in records.lines() {
        let r: serde_json::Value = serde_json::from_str(line).unwrap();
        assert!(r.to_string().contains("pred"), "{r}");
    }

    // A user task: COPA's first 8 rows with a prompt of our own.
    let copa_text = std::fs::read_to_string(&copa).unwrap();
    let rows: Vec<&str> = copa_text.lines().take(8).collect();
    std::fs::write(tmp.path().join("q.jsonl"), rows.join("\n")).unwrap();
    let toml = tmp.path().join("mine.toml");
    std::fs::write(
        &toml,
        "name = \"mine\"\ndata = \"q.jsonl\"\nprompt = \"{premise} What happened?\"\n\
         choices_field = \"choices\"\nanswer = \"label\"\n",
    )
    .unwrap();
    // COPA rows have choice1/choice2, not a `choices` list: the error names file, line, field.
    let bad = slm()
        .args(["eval", "--task-file"])
        .arg(&toml)
        .arg("-m")
        .arg(&model)
        .output()
        .unwrap();
    let err = String::from_utf8_lossy(&bad.stderr);
    assert!(!bad.status.success());
    assert!(
        err.contains("q.jsonl") && err.contains("line 1") && err.contains("choices"),
        "{err}"
    );
    // Fixed: the two choices as a list field written into the rows.
    let fixed: Vec<String> = rows
        .iter()
        .map(|l| {
            let mut r: serde_json::Value = serde_json::from_str(l).unwrap();
            r["choices"] = serde_json::json!([r["choice1"], r["choice2"]]);
            r.to_string()
        })
        .collect();
    std::fs::write(tmp.path().join("q.jsonl"), fixed.join("\n")).unwrap();
    let table = run_ok(
        slm()
            .args(["eval", "--type", "q4_1", "--task-file"])
            .arg(&toml)
            .arg("-m")
            .arg(&model),
    );
    assert!(table.contains("mine") && table.contains("acc"), "{table}");

    let bad = slm()
        .args(["eval", "--tasks", "arc_eazy", "--data-dir"])
        .arg(&data)
        .arg("-m")
        .arg(&model)
        .output()
        .unwrap();
    let err = String::from_utf8_lossy(&bad.stderr);
    assert!(
        !bad.status.success() && err.contains("arc_eazy") && err.contains("arc_easy"),
        "{err}"
    );
}
