//! Helpers shared by the integration tests: where `../shared/data` is, and skipping without it.

#![allow(dead_code)]

use std::path::PathBuf;

/// `../shared/data` beside the repository, if present (under CI its absence fails the test:
/// `slm_core::testdata`).
pub fn data_dir() -> Option<PathBuf> {
    slm_core::testdata::shared_data("")
}

/// A file under `../shared/data`, or `None` (with the skip message) when it is absent.
pub fn data_file(rel: &str) -> Option<PathBuf> {
    slm_core::testdata::shared_data(rel)
}

/// The 5 stories of the CS336 TinyStories sample, split and trimmed as the references were made.
pub fn cs336_stories() -> Option<Vec<String>> {
    let path = data_file("tinystories/tinystories_sample_cs336.txt")?;
    let text = std::fs::read_to_string(path).unwrap();
    Some(
        text.split("<|endoftext|>")
            .map(|s| s.trim().to_string())
            .filter(|s| !s.is_empty())
            .collect(),
    )
}
