//! `slm chat` and `slm generate --chat` end to end on the real instruction-tuned SmolLM2
//! (shared data): piped conversations, the chat format, and clear errors for a model without a
//! template, a bad messages file and a template that refuses the conversation.

use std::io::Write;
use std::path::PathBuf;
use std::process::{Command, Stdio};

const SMOLLM2: &str = "models/SmolLM2-135M-Instruct.Q4_1.gguf";

fn slm() -> Command {
    let mut c = Command::new(env!("CARGO_BIN_EXE_slm"));
    c.env("RAYON_NUM_THREADS", "2");
    c
}

fn shared(rel: &str) -> Option<PathBuf> {
    slm_core::testdata::shared_data(rel)
}

/// (success, stdout, stderr) of `c` with `input` on standard input.
fn run_with_input(c: &mut Command, input: &str) -> (bool, String, String) {
    let mut child = c
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    child
        .stdin
        .take()
        .unwrap()
        .write_all(input.as_bytes())
        .unwrap();
    let out = child.wait_with_output().unwrap();
    (
        out.status.success(),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

#[test]
fn chat_help_teaches_the_commands() {
    let (ok, out, _) = run_with_input(slm().args(["chat", "--help"]), "");
    assert!(ok);
    for want in [
        "/reset",
        "/exit",
        "\"\"\"",
        "Ctrl-C",
        "--chat-template",
        "--system",
    ] {
        assert!(out.contains(want), "{want}: {out}");
    }
}

#[test]
fn piped_chat_answers_each_line_and_resets() {
    let Some(m) = shared(SMOLLM2) else { return };
    let (ok, out, err) = run_with_input(
        slm()
            // The dequantised weights: run as Q4_1 with Q8_0 activations (the default, as
            // llama.cpp runs the file), SmolLM2-135M answers "L'Étoile, la Cité, …" — so
            // does llama.cpp on the same file.
            .args([
                "chat", "-t", "0", "-n", "48", "--stats", "--type", "f32", "-m",
            ])
            .arg(&m),
        "What is the capital of France?\nAnd what about Italy?\n/reset\n",
    );
    assert!(ok, "{err}");
    let answers: Vec<&str> = out.split("\n\n").filter(|s| !s.trim().is_empty()).collect();
    assert_eq!(answers.len(), 2, "{out}");
    assert!(answers[0].contains("Paris"), "{out}");
    assert!(answers[1].contains("Rome"), "{out}");
    assert!(err.contains("reused from the cache"), "{err}");
    assert!(err.contains("(conversation reset)"), "{err}");
    assert!(
        !out.contains("<|im_end|>") && !out.contains("<|im_start|>"),
        "{out}"
    );
}

#[test]
fn generate_chat_answers_the_prompt() {
    let Some(m) = shared(SMOLLM2) else { return };
    let (ok, out, err) = run_with_input(
        slm()
            // f32: see `piped_chat_answers_each_line_and_resets`.
            .args([
                "generate", "--chat", "-t", "0", "-n", "32", "--stats", "--type", "f32", "-m",
            ])
            .arg(&m)
            .args(["--prompt", "What is the capital of France?"]),
        "",
    );
    assert!(ok, "{err}");
    assert!(out.contains("Paris"), "{out}");
    assert!(
        !out.contains("What is the capital"),
        "the prompt is not echoed: {out}"
    );
    assert!(err.contains("stop: Eos"), "{err}");
}

#[test]
fn chat_errors_name_the_problem() {
    let Some(m) = shared(SMOLLM2) else { return };
    let dir = tempfile::tempdir().unwrap();
    // A bad messages file: named, with what is wrong.
    let bad = dir.path().join("conv.json");
    std::fs::write(&bad, r#"[{"role": "user", "text": "hi"}]"#).unwrap();
    let (ok, _, err) = run_with_input(
        slm()
            .args(["generate", "-m"])
            .arg(&m)
            .arg("--messages")
            .arg(&bad),
        "",
    );
    assert!(
        !ok && err.contains("conv.json") && err.contains("text"),
        "{err}"
    );
    assert!(!err.contains("panicked"), "{err}");

    // A template that refuses the conversation (Llama-2's rule: roles alternate).
    let tpl = dir.path().join("alt.jinja");
    std::fs::write(
        &tpl,
        "{% for m in messages %}{% if (m.role == 'user') != (loop.index0 % 2 == 0) %}\
         {{ raise_exception('Conversation roles must alternate') }}{% endif %}\
         [{{ m.role }}] {{ m.content }}\n{% endfor %}",
    )
    .unwrap();
    let conv = dir.path().join("two.json");
    std::fs::write(
        &conv,
        r#"[{"role": "user", "content": "a"}, {"role": "user", "content": "b"}]"#,
    )
    .unwrap();
    let (ok, _, err) = run_with_input(
        slm()
            .args(["generate", "-m"])
            .arg(&m)
            .arg("--messages")
            .arg(&conv)
            .arg("--chat-template")
            .arg(&tpl),
        "",
    );
    assert!(
        !ok && err.contains("Conversation roles must alternate") && err.contains("alt.jinja"),
        "{err}"
    );
    assert!(!err.contains("panicked"), "{err}");
}

#[test]
fn a_model_without_a_template_says_how_to_give_one() {
    let Some(dir) = shared("llama2c") else { return };
    let (ok, out, err) = run_with_input(
        slm()
            .args(["chat", "-m"])
            .arg(dir.join("stories260K.bin"))
            .arg("--tokenizer")
            .arg(dir.join("tok512.bin")),
        "hello\n",
    );
    assert!(!ok && out.is_empty(), "{out}");
    assert!(
        err.contains("no chat template") && err.contains("--chat-template FILE"),
        "{err}"
    );
}
