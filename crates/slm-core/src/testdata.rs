//! Where tests find the real data in `../shared/data` (beside the repository), and what they
//! do without it: skip with a printed reason on a developer's machine, **fail** under CI
//! (`CI=true`), where every test must run.
//!
//! Test support only (integration tests of every crate call it); nothing in a library path
//! uses it.

use std::path::PathBuf;

/// The shared data folder, `../shared/data` from the repository root.
pub fn shared_root() -> PathBuf {
    PathBuf::from(concat!(env!("CARGO_MANIFEST_DIR"), "/../../../shared/data"))
}

/// Whether this run is CI's (`CI` set to `true` or `1`).
pub fn under_ci() -> bool {
    std::env::var("CI").is_ok_and(|v| v == "true" || v == "1")
}

/// `../shared/data/<rel>` when it exists. Otherwise prints why the caller skips and returns
/// `None` — or, under CI, panics: a CI run whose test data is missing must not pass by
/// skipping.
pub fn shared_data(rel: &str) -> Option<PathBuf> {
    let p = shared_root().join(rel);
    if p.exists() {
        return Some(p);
    }
    let msg = format!("../shared/data/{rel} not found");
    if under_ci() {
        panic!("{msg} (CI=true: tests needing shared data must run, not skip)");
    }
    println!("skipping: {msg}");
    None
}

/// The reference virtualenv's Python (`tools/reference/`) when it imports every module in
/// `modules` (e.g. `["llama_cpp"]`, `["transformers", "torch"]`): the peers (llama.cpp,
/// transformers, peft) that read our files in the tests that check them. Looked for at
/// `$SLM_REFERENCE_PYTHON` (what `.ci/run` sets after installing the peers into a virtualenv
/// outside the clone), then `tools/reference/.venv/bin/python`. Missing: prints why the caller
/// skips and returns `None` — or, under CI, panics, as [`shared_data`] does.
pub fn reference_python(modules: &[&str]) -> Option<PathBuf> {
    let repo = PathBuf::from(concat!(env!("CARGO_MANIFEST_DIR"), "/../.."));
    let candidates = std::env::var_os("SLM_REFERENCE_PYTHON")
        .map(PathBuf::from)
        .into_iter()
        .chain([repo.join("tools/reference/.venv/bin/python")]);
    let import = format!("import {}", modules.join(", "));
    for python in candidates {
        let imports = python.is_file()
            && std::process::Command::new(&python)
                .args(["-c", &import])
                .output()
                .is_ok_and(|o| o.status.success());
        if imports {
            return Some(python);
        }
    }
    let msg = format!(
        "no reference Python that can `{import}` (set SLM_REFERENCE_PYTHON or see \
         tools/reference/README.md; .ci/run installs them)"
    );
    if under_ci() {
        panic!("{msg} (CI=true: peer checks must run, not skip)");
    }
    println!("skipping: {msg}");
    None
}
