//! Helpers the llama.cpp comparison tests share (`mod common;` in each test file): the `slm`
//! binary, running commands, the repository root, and llama.cpp's own quantiser.
#![allow(dead_code)] // each test file uses its own subset

use std::path::{Path, PathBuf};
use std::process::Command;

/// The `slm` binary under test, on 2 threads.
pub fn slm() -> Command {
    let mut c = Command::new(env!("CARGO_BIN_EXE_slm"));
    c.env("RAYON_NUM_THREADS", "2");
    c
}

/// Runs `c`: (success, stdout, stderr).
pub fn run(c: &mut Command) -> (bool, String, String) {
    let out = c.output().unwrap();
    (
        out.status.success(),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

/// Runs `c`, which must succeed; its stdout.
pub fn run_ok(c: &mut Command) -> String {
    let (ok, out, err) = run(c);
    assert!(ok, "{c:?} failed:\n{out}\n{err}");
    out
}

/// The repository root (for `tools/reference/`).
pub fn repo_root() -> PathBuf {
    PathBuf::from(concat!(env!("CARGO_MANIFEST_DIR"), "/../.."))
}

/// llama.cpp's own quantiser (`tools/reference/llama_quantize.py`, no importance matrix) of
/// `src` to `ty` (`q4_k_m`, `q8_0`, …) into `dst`.
pub fn llama_quantize(python: &Path, src: &Path, dst: &Path, ty: &str) {
    run_ok(
        Command::new(python)
            .arg(repo_root().join("tools/reference/llama_quantize.py"))
            .arg(src)
            .arg(dst)
            .arg(ty)
            .args(["--threads", "2"]),
    );
}
