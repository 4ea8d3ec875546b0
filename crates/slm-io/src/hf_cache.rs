//! Resolving a Hugging Face model id (`org/name`, optionally `org/name@revision`) to a snapshot
//! directory of the *local* Hugging Face hub cache. Nothing is downloaded.
//!
//! Cache root: `$HF_HUB_CACHE`, else `$HF_HOME/hub`, else `~/.cache/huggingface/hub`.
//! Layout (as written by `huggingface_hub`):
//!
//! ```text
//! <root>/models--<org>--<name>/refs/<revision>      a file holding a commit hash
//! <root>/models--<org>--<name>/snapshots/<commit>/  config.json, model.safetensors, ... (symlinks into blobs/)
//! ```
//!
//! The revision defaults to `main`; a revision that is not a ref is tried as a commit directory.
//! If `refs/main` is absent but exactly one snapshot exists, that snapshot is used.

use std::io;
use std::path::{Path, PathBuf};

use slm_core::{Error, Result};

/// True when `spec` has the shape of a hub id: `org/name` or `org/name@rev`, with the characters
/// the hub allows (letters, digits, `-`, `_`, `.`), no part starting with `.`.
pub fn looks_like_repo_id(spec: &str) -> bool {
    let id = spec.split_once('@').map_or(spec, |(id, _)| id);
    let Some((org, name)) = id.split_once('/') else {
        return false;
    };
    let ok = |s: &str| {
        !s.is_empty()
            && !s.starts_with('.')
            && s.chars()
                .all(|c| c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.'))
    };
    ok(org) && ok(name)
}

/// The cache root from the environment, or `None` when no variable and no home directory is set.
pub fn cache_root() -> Option<PathBuf> {
    let var = |k: &str| {
        std::env::var_os(k)
            .filter(|v| !v.is_empty())
            .map(PathBuf::from)
    };
    if let Some(p) = var("HF_HUB_CACHE") {
        return Some(p);
    }
    if let Some(p) = var("HF_HOME") {
        return Some(p.join("hub"));
    }
    var("HOME")
        .or_else(|| var("USERPROFILE"))
        .map(|h| h.join(".cache").join("huggingface").join("hub"))
}

/// Resolves `spec` in the cache root given by the environment.
pub fn resolve(spec: &str) -> Result<PathBuf> {
    match cache_root() {
        Some(root) => resolve_in(spec, &root),
        None => Err(not_found(
            spec,
            "no Hugging Face cache: none of HF_HUB_CACHE, HF_HOME, HOME is set".to_string(),
        )),
    }
}

/// Resolves `spec` (`org/name` or `org/name@rev`) to a snapshot directory under `root`.
pub fn resolve_in(spec: &str, root: &Path) -> Result<PathBuf> {
    if !looks_like_repo_id(spec) {
        return Err(Error::invalid(format!(
            "`{spec}` is not a Hugging Face model id of the form org/name[@revision]"
        )));
    }
    let (id, rev) = spec.split_once('@').unwrap_or((spec, "main"));
    let repo = root.join(format!("models--{}", id.replace('/', "--")));
    let snapshots = repo.join("snapshots");
    let ref_file = repo.join("refs").join(rev);
    let mut looked = Vec::new();

    looked.push(ref_file.display().to_string());
    if let Ok(commit) = std::fs::read_to_string(&ref_file) {
        let commit = commit.trim();
        let dir = snapshots.join(commit);
        if !commit.is_empty() && !commit.contains(['/', '\\']) && dir.is_dir() {
            return Ok(dir);
        }
        looked.push(dir.display().to_string());
    }
    // A commit hash given directly as the revision.
    if rev != "main" && !rev.contains(['/', '\\']) && !rev.starts_with('.') {
        let dir = snapshots.join(rev);
        if dir.is_dir() {
            return Ok(dir);
        }
        looked.push(dir.display().to_string());
    }
    // No usable ref for main: accept a single snapshot.
    if rev == "main" {
        looked.push(format!("{}/*", snapshots.display()));
        if let Ok(entries) = std::fs::read_dir(&snapshots) {
            let dirs: Vec<PathBuf> = entries
                .filter_map(|e| e.ok().map(|e| e.path()))
                .filter(|p| p.is_dir())
                .collect();
            if let [only] = dirs.as_slice() {
                return Ok(only.clone());
            }
            if dirs.len() > 1 {
                return Err(not_found(
                    spec,
                    format!(
                        "{} snapshots in {} and no refs/main to choose one; pass org/name@<commit>",
                        dirs.len(),
                        snapshots.display()
                    ),
                ));
            }
        }
    }
    Err(not_found(
        spec,
        format!(
            "not a local path, and not in the Hugging Face cache (looked in: {})",
            looked.join(", ")
        ),
    ))
}

fn not_found(spec: &str, msg: String) -> Error {
    Error::io(spec, io::Error::new(io::ErrorKind::NotFound, msg))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn recognises_ids() {
        assert!(looks_like_repo_id("Qwen/Qwen2.5-0.5B"));
        assert!(looks_like_repo_id("org/name@abc123"));
        assert!(!looks_like_repo_id("model.gguf"));
        assert!(!looks_like_repo_id("a/b/c"));
        assert!(!looks_like_repo_id("../x"));
        assert!(!looks_like_repo_id("/abs"));
    }

    #[test]
    fn resolves_refs_main_commits_and_single_snapshots() {
        let root = tempfile::tempdir().unwrap();
        let repo = root.path().join("models--org--name");
        std::fs::create_dir_all(repo.join("snapshots/abc123")).unwrap();
        std::fs::create_dir_all(repo.join("snapshots/def456")).unwrap();
        std::fs::create_dir_all(repo.join("refs")).unwrap();
        std::fs::write(repo.join("refs/main"), "abc123\n").unwrap();
        let got = resolve_in("org/name", root.path()).unwrap();
        assert_eq!(got, repo.join("snapshots/abc123"));
        let got = resolve_in("org/name@def456", root.path()).unwrap();
        assert_eq!(got, repo.join("snapshots/def456"));

        // Two snapshots and no ref: ambiguous, and the error says so.
        std::fs::remove_file(repo.join("refs/main")).unwrap();
        let err = resolve_in("org/name", root.path()).unwrap_err().to_string();
        assert!(err.contains("2 snapshots"), "{err}");
        std::fs::remove_dir(repo.join("snapshots/def456")).unwrap();
        assert_eq!(
            resolve_in("org/name", root.path()).unwrap(),
            repo.join("snapshots/abc123")
        );
    }

    #[test]
    fn missing_model_lists_places_looked() {
        let root = tempfile::tempdir().unwrap();
        let err = resolve_in("org/absent", root.path())
            .unwrap_err()
            .to_string();
        assert!(err.contains("org/absent"), "{err}");
        assert!(err.contains("models--org--absent/refs/main"), "{err}");
        assert!(err.contains("looked in"), "{err}");
    }
}
