//! The built-in story corpus, as the recipes use it (generated text, one story per document).

/// The separator between stories.
pub const SEPARATOR: &str = slm_stories::STORY_SEPARATOR;

/// About `bytes` bytes of stories from `seed`.
pub fn generate(seed: u64, bytes: usize) -> String {
    slm_stories::generate_corpus(seed, bytes)
}

/// The stories of `corpus`, trimmed, without empty ones.
pub fn documents(corpus: &str) -> Vec<&str> {
    corpus
        .split(SEPARATOR)
        .map(str::trim)
        .filter(|d| !d.is_empty())
        .collect()
}
