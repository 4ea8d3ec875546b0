//! GGUF: the header, the embedded vocabulary (and a tokenizer built from it: encode + decode),
//! every tensor decoded to f32, and the whole model read (`slm_io::gguf::read_bytes`).
#![no_main]

use std::path::Path;

use libfuzzer_sys::fuzz_target;
use slm_data::tokenizer::{GgufTokenizer, Tokenizer};
use slm_io::gguf;

fuzz_target!(|data: &[u8]| {
    let path = Path::new("fuzz.gguf");
    let Ok(h) = gguf::parse_header(path, data) else {
        return;
    };
    if let Ok(Some(v)) = gguf::vocab(path, &h) {
        if let Ok(tok) = GgufTokenizer::from_vocab(&v) {
            if let Ok(ids) = tok.encode("Hello, wörld! 12 ", true) {
                let _ = tok.decode(&ids);
            }
            let _ = tok.decode(&[0, 1, 2, 3, 255, 1000]);
        }
    }
    for t in &h.tensors {
        let _ = gguf::read_tensor(path, data, &h, t);
    }
    let _ = gguf::read_bytes(path, data);
});
