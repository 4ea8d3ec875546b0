//! Hugging Face tokenizer.json on a real vocabulary (GPT-NeoX-20B), and the file loader.

mod common;

use slm_data::{
    load_tokenizer_file, HfTokenizer, SpecialToken, SpecialTokens, StreamDecoder, Tokenizer,
};

fn neox() -> Option<HfTokenizer> {
    let path = common::data_file("tokenizers/gpt-neox-20b_tokenizer.json")?;
    Some(HfTokenizer::from_file(path).unwrap())
}

#[test]
fn neox_specials() {
    let Some(t) = neox() else { return };
    assert_eq!(t.kind(), "hf");
    // GPT-NeoX uses <|endoftext|> (id 0) for both.
    assert_eq!(t.bos_id(), Some(0));
    assert_eq!(t.eos_id(), Some(0));
    assert!(t.vocab_size() >= 50277, "{}", t.vocab_size());
    assert_eq!(t.token_to_id("<|endoftext|>"), Some(0));
    assert_eq!(t.id_to_piece(0).as_deref(), Some("<|endoftext|>"));
    let ids = t.encode("Hello world", true).unwrap();
    assert_eq!(ids[0], 0);
    assert_eq!(
        &ids[1..],
        t.encode("Hello world", false).unwrap().as_slice()
    );
    assert!(!ids[1..].contains(&0));
    assert_eq!(t.decode(&ids).unwrap(), "Hello world");
    let no_bos = SpecialTokens {
        bos: SpecialToken::None,
        ..Default::default()
    };
    let path = common::data_file("tokenizers/gpt-neox-20b_tokenizer.json").unwrap();
    let t2 = HfTokenizer::from_file_with(path, &no_bos).unwrap();
    assert_eq!(
        t2.encode("Hello", true).unwrap(),
        t2.encode("Hello", false).unwrap()
    );
}

#[test]
fn neox_round_trips_fixtures() {
    let Some(t) = neox() else { return };
    for rel in [
        "tokenizers/bpe_train_test/address.txt",
        "tokenizers/bpe_train_test/german.txt",
    ] {
        let Some(path) = common::data_file(rel) else {
            return;
        };
        let text = std::fs::read_to_string(path).unwrap();
        for bos in [false, true] {
            let ids = t.encode(&text, bos).unwrap();
            assert_eq!(t.decode(&ids).unwrap(), text, "{rel}");
            let mut stream = StreamDecoder::new(&t);
            let mut out = String::new();
            for &id in &ids {
                out.push_str(&stream.push(id).unwrap().unwrap_or_default());
            }
            out.push_str(&stream.finish().unwrap().unwrap_or_default());
            assert_eq!(out, text, "{rel} streamed");
        }
    }
}

#[test]
fn loader_picks_by_extension() {
    let Some(dir) = common::data_dir() else {
        return;
    };
    let t = load_tokenizer_file(&dir.join("tokenizers/gpt-neox-20b_tokenizer.json")).unwrap();
    assert_eq!(t.kind(), "hf");
    let t = load_tokenizer_file(&dir.join("llama2c/tok512.bin")).unwrap();
    assert_eq!(t.kind(), "llama2c");
    // A model checkpoint is not a tokenizer.
    assert!(load_tokenizer_file(&dir.join("llama2c/stories260K.bin")).is_err());
    // A GGUF model: its vocabulary, read from the metadata.
    let t = load_tokenizer_file(&dir.join("gguf/llama-2-tiny-random.gguf")).unwrap();
    assert_eq!((t.kind(), t.vocab_size()), ("gguf-llama", 32_000));
}
