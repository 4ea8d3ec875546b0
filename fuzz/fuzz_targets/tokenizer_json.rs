//! Hugging Face `tokenizer.json` (`HfTokenizer::from_bytes`, what `from_file` runs on the
//! file's bytes), then a short text encoded and decoded.
#![no_main]

use libfuzzer_sys::fuzz_target;
use slm_data::tokenizer::{HfTokenizer, SpecialTokens, Tokenizer};

fuzz_target!(|data: &[u8]| {
    let Ok(tok) = HfTokenizer::from_bytes(data, &SpecialTokens::default()) else {
        return;
    };
    if let Ok(ids) = tok.encode("Hello, wörld! 12 ", true) {
        let _ = tok.decode(&ids);
    }
    let _ = tok.decode(&[0, 1, 2, 3]);
});
