//! Property: streaming decode equals whole-sequence decode, for random id sequences rich in
//! byte-fallback tokens, BOS and EOS, on synthetic vocabularies (always) and on the real
//! llama2.c, Llama 2 (GGUF) and GPT-NeoX vocabularies (when ../shared/data is present).

mod common;

use std::sync::LazyLock;

use proptest::prelude::*;
use slm_data::{GgufTokenizer, HfTokenizer, Llama2cTokenizer, StreamDecoder, Tokenizer};

fn stream(t: &dyn Tokenizer, ids: &[u32]) -> String {
    let mut d = StreamDecoder::new(t);
    let mut out = String::new();
    for &id in ids {
        if let Some(s) = d.push(id).unwrap() {
            assert!(!s.is_empty());
            out.push_str(&s);
        }
    }
    out.push_str(&d.finish().unwrap().unwrap_or_default());
    out
}

/// Ids that stress the decoder: BOS, EOS, byte pieces (ids 3..259, with UTF-8 lead bytes
/// over-represented), and anything in the vocabulary.
fn ids(vocab: u32) -> impl Strategy<Value = Vec<u32>> {
    let id = prop_oneof![
        1 => Just(1u32),
        1 => Just(2u32),
        3 => (0xC2u32..0xF5).prop_map(|b| b + 3),
        3 => (0x80u32..0xC0).prop_map(|b| b + 3),
        2 => 3u32..259,
        4 => 0..vocab,
    ];
    proptest::collection::vec(id, 0..40)
}

fn synthetic_llama2c() -> Llama2cTokenizer {
    let mut pieces: Vec<Vec<u8>> =
        vec![b"<unk>".to_vec(), b"\n<s>\n".to_vec(), b"\n</s>\n".to_vec()];
    pieces.extend((0..=255u8).map(|b| format!("<0x{b:02X}>").into_bytes()));
    for p in [" ", " a", "b", "  ", "é", " the", "\n"] {
        pieces.push(p.as_bytes().to_vec());
    }
    let scores = (0..pieces.len()).map(|i| -(i as f32)).collect();
    Llama2cTokenizer::from_pieces(pieces, scores).unwrap()
}

fn synthetic_gguf() -> GgufTokenizer {
    let mut tokens: Vec<String> = vec!["<unk>".into(), "<s>".into(), "</s>".into()];
    tokens.extend((0..=255u8).map(|b| format!("<0x{b:02X}>")));
    tokens.extend(
        ["▁", "▁a", "b", "▁▁", "é", "▁the"]
            .iter()
            .map(|s| s.to_string()),
    );
    GgufTokenizer::new(
        "llama",
        tokens,
        vec![],
        vec![],
        vec![],
        Some(1),
        Some(2),
        Some(0),
        true,
    )
    .unwrap()
}

static SYN_L2C: LazyLock<Llama2cTokenizer> = LazyLock::new(synthetic_llama2c);
static SYN_GGUF: LazyLock<GgufTokenizer> = LazyLock::new(synthetic_gguf);
static TOK512: LazyLock<Option<Llama2cTokenizer>> = LazyLock::new(|| {
    common::data_file("llama2c/tok512.bin").map(|p| Llama2cTokenizer::from_file(p).unwrap())
});
static NEOX: LazyLock<Option<HfTokenizer>> = LazyLock::new(|| {
    common::data_file("tokenizers/gpt-neox-20b_tokenizer.json")
        .map(|p| HfTokenizer::from_file(p).unwrap())
});

proptest! {
    #![proptest_config(ProptestConfig::with_cases(300))]

    #[test]
    fn llama2c_synthetic(ids in ids(265)) {
        let t = &*SYN_L2C;
        prop_assert_eq!(stream(t, &ids), t.decode(&ids).unwrap());
    }

    #[test]
    fn gguf_synthetic(ids in ids(265)) {
        let t = &*SYN_GGUF;
        prop_assert_eq!(stream(t, &ids), t.decode(&ids).unwrap());
    }

    #[test]
    fn llama2c_tok512(ids in ids(512)) {
        if let Some(t) = TOK512.as_ref() {
            prop_assert_eq!(stream(t, &ids), t.decode(&ids).unwrap());
        }
    }

    #[test]
    fn hf_neox(ids in ids(50277)) {
        if let Some(t) = NEOX.as_ref() {
            prop_assert_eq!(stream(t, &ids), t.decode(&ids).unwrap());
        }
    }

    #[test]
    fn llama2c_text_round_trip(text in "[a-zé€🦀 \n]{0,30}") {
        let t = &*SYN_L2C;
        let ids = t.encode(&text, true).unwrap();
        prop_assert_eq!(t.decode(&ids).unwrap(), text.clone());
        prop_assert_eq!(stream(t, &ids), text);
    }

    #[test]
    fn gguf_text_round_trip(text in "[a-zé€🦀 \n]{0,30}", bos in any::<bool>()) {
        let t = &*SYN_GGUF;
        let ids = t.encode(&text, bos).unwrap();
        prop_assert_eq!(t.decode(&ids).unwrap(), text.clone());
        prop_assert_eq!(stream(t, &ids), text);
    }
}
