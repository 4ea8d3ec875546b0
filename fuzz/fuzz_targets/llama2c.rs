//! llama2.c checkpoints (v0 and v1): the header, then every weight read and permuted
//! (`slm_io::llama2c::read_bytes`, what `read` runs on the memory map).
#![no_main]

use std::path::Path;

use libfuzzer_sys::fuzz_target;
use slm_io::llama2c;

fuzz_target!(|data: &[u8]| {
    let path = Path::new("fuzz.bin");
    if let Ok(h) = llama2c::parse_header(path, data) {
        let _ = h.file_bytes();
        let _ = llama2c::config_json(&h);
    }
    let _ = llama2c::read_bytes(path, data);
});
