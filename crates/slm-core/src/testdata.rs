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
