//! The KD (teacher) cache: the bytes written to a file and opened (`KdCache::open`
//! memory-maps a path), then records gathered: first, last, repeated and out-of-range windows.
#![no_main]

use std::path::PathBuf;
use std::sync::OnceLock;

use libfuzzer_sys::fuzz_target;
use slm_data::kd_cache::KdCache;

/// One temporary file per process, rewritten each run.
fn scratch() -> &'static PathBuf {
    static DIR: OnceLock<(tempfile::TempDir, PathBuf)> = OnceLock::new();
    let (_, p) = DIR.get_or_init(|| {
        let d = tempfile::tempdir().expect("temp dir");
        let p = d.path().join("fuzz.kdc");
        (d, p)
    });
    p
}

fuzz_target!(|data: &[u8]| {
    let path = scratch();
    std::fs::write(path, data).expect("write scratch file");
    let Ok(cache) = KdCache::open(path) else {
        return;
    };
    let windows = cache.header().windows;
    let last = u32::try_from(windows.saturating_sub(1)).unwrap_or(u32::MAX);
    let (mut ids, mut logp, mut tail) = (Vec::new(), Vec::new(), Vec::new());
    let _ = cache.gather(&[0, last, 0], &mut ids, &mut logp, &mut tail);
    let _ = cache.gather(&[u32::MAX], &mut ids, &mut logp, &mut tail);
});
