//! safetensors: the 8-byte length, the JSON header, and every tensor converted
//! (`slm_io::parse_safetensors`, what `read_safetensors` runs on the memory map).
#![no_main]

use std::path::Path;

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let _ = slm_io::parse_safetensors(Path::new("fuzz.safetensors"), data);
});
