//! Token shards: the bytes written to a file and opened (`Shard::open` memory-maps a path),
//! then every token read (`to_vec`, `get`, `read_into`).
#![no_main]

use std::path::PathBuf;
use std::sync::OnceLock;

use libfuzzer_sys::fuzz_target;
use slm_data::shards::Shard;

/// One temporary file per process, rewritten each run (creating one per input is slower).
fn scratch() -> &'static PathBuf {
    static DIR: OnceLock<(tempfile::TempDir, PathBuf)> = OnceLock::new();
    let (_, p) = DIR.get_or_init(|| {
        let d = tempfile::tempdir().expect("temp dir");
        let p = d.path().join("fuzz.tokens");
        (d, p)
    });
    p
}

fuzz_target!(|data: &[u8]| {
    let path = scratch();
    std::fs::write(path, data).expect("write scratch file");
    let Ok(shard) = Shard::open(path) else {
        return;
    };
    let n = shard.len();
    let _ = shard.is_empty();
    let _ = shard.to_vec();
    let _ = shard.get(0);
    let _ = shard.get(n.saturating_sub(1));
    let _ = shard.get(n);
    let mut buf = [0u32; 3];
    let _ = shard.read_into(n / 2, &mut buf);
    let _ = shard.read_into(usize::MAX - 1, &mut buf);
});
