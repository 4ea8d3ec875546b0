//! `slm serve`, remote teachers and `slm chat --url` on SmolLM2, against real peers: the
//! official `openai` Python client reads our server; `slm distill generate --teacher-url`
//! writes a resumable set with a top-k cache that trains a student, from our server and from
//! llama.cpp's (`llama-cpp-python[server]`); `slm chat --url` talks to both. Servers listen on
//! 127.0.0.1 ports of their own choosing and are stopped at the end of each test.

use std::io::{BufRead, BufReader};
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

const SMOLLM2: &str = "models/SmolLM2-135M-Instruct.Q4_1.gguf";

fn slm() -> Command {
    let mut c = Command::new(env!("CARGO_BIN_EXE_slm"));
    c.env("RAYON_NUM_THREADS", "2");
    c
}

fn run_ok(c: &mut Command) -> String {
    let out = c.output().unwrap();
    assert!(
        out.status.success(),
        "{c:?} failed:\n{}\n{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).into_owned()
}

/// A server process; killed when dropped.
struct Server {
    child: Child,
    url: String,
}

impl Drop for Server {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// `slm serve` on a free port: the URL from its "listening on" line.
fn slm_serve(model: &Path, extra: &[&str]) -> Server {
    let mut child = slm()
        .args(["serve", "-m"])
        .arg(model)
        .args(["--port", "0", "--type", "q4_0", "--ctx", "512"])
        .args(extra)
        .stdout(Stdio::piped())
        .stderr(Stdio::inherit())
        .spawn()
        .unwrap();
    let stdout = child.stdout.take().unwrap();
    let mut lines = BufReader::new(stdout).lines();
    let url = loop {
        let line = lines
            .next()
            .expect("slm serve ended before listening")
            .unwrap();
        if let Some(rest) = line.strip_prefix("listening on ") {
            break rest.split_whitespace().next().unwrap().to_string();
        }
    };
    Server { child, url }
}

/// llama.cpp's server (llama-cpp-python) on a free port, once it answers /v1/models.
fn llama_cpp_serve(python: &Path, model: &Path) -> Server {
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    // `python -m llama_cpp.server` behind the AMX workaround (tools/reference/llamacpp_compat.py).
    let wrapper = concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/../../tools/reference/llama_cpp_server.py"
    );
    let child = Command::new(python)
        .arg(wrapper)
        .arg("--model")
        .arg(model)
        .args(["--host", "127.0.0.1", "--port", &port.to_string()])
        .args(["--n_threads", "2", "--n_ctx", "1024"])
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let server = Server {
        child,
        url: format!("http://127.0.0.1:{port}"),
    };
    let t = Instant::now();
    while ureq::get(&format!("{}/v1/models", server.url))
        .call()
        .is_err()
    {
        assert!(
            t.elapsed() < Duration::from_secs(120),
            "llama.cpp's server did not start"
        );
        std::thread::sleep(Duration::from_millis(300));
    }
    server
}

/// A student tokenizer.json: SmolLM2's vocabulary as `slm export hf` writes it.
fn student_tokenizer(model: &Path, dir: &Path) -> std::path::PathBuf {
    run_ok(
        slm()
            .args(["export", "hf", "-m"])
            .arg(model)
            .arg("--out")
            .arg(dir.join("hf")),
    );
    dir.join("hf/tokenizer.json")
}

/// Generates with a remote teacher (kill-free resume: a second call with a larger --n
/// continues), builds the KD cache from the top-k and trains two steps on it.
/// `min_mapped`: how many of the 8 samples must keep their top-k in the student's ids (every
/// generated token must map by its bytes; alternatives that do not are left out).
fn remote_teacher_round_trip(url: &str, model: &Path, dir: &Path, min_mapped: usize) {
    let tok = student_tokenizer(model, dir);
    let out = dir.join("remote.jsonl");
    let generate = |n: &str| {
        run_ok(
            slm()
                .args([
                    "distill",
                    "generate",
                    "--teacher-url",
                    url,
                    "--templates",
                    "instruct",
                ])
                .args([
                    "--n",
                    n,
                    "--max-tokens",
                    "40",
                    "--min-words",
                    "3",
                    "--concurrency",
                    "3",
                ])
                .args(["--top-logprobs", "4", "--tokenizer"])
                .arg(&tok)
                .arg("--out")
                .arg(&out),
        )
    };
    generate("4");
    let first = std::fs::read_to_string(&out).unwrap();
    let log = generate("8");
    assert!(log.contains("resumed at sample"), "{log}");
    let all = std::fs::read_to_string(&out).unwrap();
    assert!(
        all.starts_with(&first),
        "a resumed run rewrote earlier samples"
    );
    let records: Vec<serde_json::Value> = all
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    assert_eq!(records.len(), 8);
    for r in &records {
        assert!(
            r["teacher"]["endpoint"].as_str().unwrap().starts_with(url),
            "{r}"
        );
        assert!(r["teacher"]["seed"].is_u64(), "{r}");
    }
    let with_topk = records.iter().filter(|r| r["topk"].is_object()).count();
    assert!(
        with_topk >= min_mapped,
        "only {with_topk} of 8 samples mapped onto the student's vocabulary"
    );
    let data = dir.join("data");
    let log = run_ok(
        slm()
            .args(["distill", "cache", "--samples"])
            .arg(&out)
            .arg("--tokenizer")
            .arg(&tok)
            .args(["--k", "4", "--seq-len", "32", "--data-out"])
            .arg(&data)
            .arg("--out")
            .arg(data.join("t.kdc")),
    );
    assert!(log.contains("windows of 32"), "{log}");
    let log = run_ok(
        slm()
            .args(["distill", "train", "--cache"])
            .arg(data.join("t.kdc"))
            .arg("--student")
            .arg(dir.join("hf"))
            .arg("--data")
            .arg(&data)
            .arg("--out")
            .arg(dir.join("student"))
            .args([
                "--set",
                "steps=2",
                "--set",
                "seq_len=32",
                "--set",
                "batch_size=2",
            ]),
    );
    assert!(log.contains("done: 2 steps"), "{log}");
}

/// Piped `slm chat` (local or --url): the answers, one per line.
fn chat(args: &[&str], input: &str) -> String {
    let mut child = slm()
        .arg("chat")
        .args(args)
        .args(["-t", "0", "-n", "20"])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    use std::io::Write;
    child
        .stdin
        .take()
        .unwrap()
        .write_all(input.as_bytes())
        .unwrap();
    let out = child.wait_with_output().unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).into_owned()
}

#[test]
fn slm_serve_answers_the_openai_client_a_remote_teacher_and_chat_url() {
    let Some(model) = slm_core::testdata::shared_data(SMOLLM2) else {
        return;
    };
    let server = slm_serve(&model, &["--max-batch", "4"]);
    // `slm chat --url` against the server says what local `slm chat` says (greedy; f32 vs
    // Q4_0 weights may part late, so the first answer's opening is compared).
    let remote = chat(&["--url", &server.url], "What is the capital of France?\n");
    let local = chat(
        &["-m", model.to_str().unwrap(), "--type", "q4_0"],
        "What is the capital of France?\n",
    );
    assert_eq!(
        remote.trim(),
        local.trim(),
        "remote {remote:?} vs local {local:?}"
    );

    if let Some(python) = slm_core::testdata::reference_python(&["openai"]) {
        let script = concat!(
            env!("CARGO_MANIFEST_DIR"),
            "/../../tools/reference/openai_client_check.py"
        );
        let out = Command::new(python)
            .arg(script)
            .arg(format!("{}/v1", server.url))
            .output()
            .unwrap();
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
        let v: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
        assert_eq!(v["models"][0], "SmolLM2-135M-Instruct.Q4_1.gguf");
        assert!(!v["whole"].as_str().unwrap().is_empty(), "{v}");
        assert_eq!(v["whole"], v["streamed"], "{v}");
        assert_eq!(v["whole_finish"], v["streamed_finish"]);
        assert_eq!(v["whole_logprobs"], v["whole_usage"]["completion_tokens"]);
        assert_eq!(v["streamed_logprobs"], v["whole_logprobs"]);
        assert_eq!(v["whole_top"], 2);
        assert_eq!(v["streamed_usage"], v["whole_usage"]);
        assert_eq!(v["completion"], v["completion_stream"]);
        assert_eq!(v["completion_tokens"], 12);
    }

    let dir = tempfile::tempdir().unwrap();
    // The same vocabulary and raw token bytes: every sample maps.
    remote_teacher_round_trip(&server.url, &model, dir.path(), 8);

    // SIGTERM: the server drains and exits cleanly.
    let mut server = server;
    let pid = server.child.id().to_string();
    assert!(Command::new("kill")
        .args(["-TERM", &pid])
        .status()
        .unwrap()
        .success());
    let t = Instant::now();
    let status = loop {
        if let Some(s) = server.child.try_wait().unwrap() {
            break s;
        }
        assert!(
            t.elapsed() < Duration::from_secs(40),
            "slm serve did not stop on SIGTERM"
        );
        std::thread::sleep(Duration::from_millis(100));
    };
    assert!(status.success(), "{status:?}");
}

#[test]
fn llama_cpp_server_is_a_remote_teacher_and_a_chat_url() {
    let Some(model) = slm_core::testdata::shared_data(SMOLLM2) else {
        return;
    };
    let Some(python) = slm_core::testdata::reference_python(&[
        "llama_cpp.server",
        "fastapi",
        "uvicorn",
        "sse_starlette",
    ]) else {
        return;
    };
    let server = llama_cpp_serve(&python, &model);
    let answer = chat(&["--url", &server.url], "What is the capital of France?\n");
    // llama.cpp's greedy answer with Q4_1 weights need not name Paris: a non-empty answer.
    assert!(
        !answer.trim().is_empty(),
        "llama.cpp's server gave an empty answer"
    );
    let dir = tempfile::tempdir().unwrap();
    remote_teacher_round_trip(&server.url, &model, dir.path(), 6);
}
