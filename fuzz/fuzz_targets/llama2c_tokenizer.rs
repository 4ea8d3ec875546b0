//! llama2.c `tokenizer.bin`: parsed (`Llama2cTokenizer::from_bytes`), then a short text
//! encoded and decoded, and arbitrary ids decoded.
#![no_main]

use libfuzzer_sys::fuzz_target;
use slm_data::tokenizer::{Llama2cTokenizer, Tokenizer};

fuzz_target!(|data: &[u8]| {
    let Ok(tok) = Llama2cTokenizer::from_bytes(data) else {
        return;
    };
    if let Ok(ids) = tok.encode("Once upon a time, ünïcode \u{1F600}\n", true) {
        let _ = tok.decode(&ids);
    }
    let _ = tok.decode(&[1, 0, 2, 3, 300, 7]);
    let _ = tok.id_to_piece(5);
    let _ = tok.token_to_id(" a");
});
