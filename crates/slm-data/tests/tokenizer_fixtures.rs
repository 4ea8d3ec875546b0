//! GGUF tokenizers against the committed llama.cpp and transformers ids
//! (`tools/reference/fixtures_tokenizer/*.json`, made by
//! `tools/reference/make_tokenizer_fixtures.py`): SmolLM2's byte-level BPE (`pre = smollm`)
//! must equal both on every case (the ChatML case: transformers and llama.cpp with special
//! tokens parsed, as slm always parses them); the Llama-2 SentencePiece vocabulary must equal
//! llama.cpp on every case. Also: the vocabulary written as tokenizer.json gives the same ids
//! through `HfTokenizer`.

mod common;

use serde_json::Value;
use slm_data::tokenizer::hf_json::{tokenizer_config_json, tokenizer_json};
use slm_data::{load_tokenizer_file, HfTokenizer, Tokenizer};

fn fixture(name: &str) -> Value {
    let path = std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../../tools/reference/fixtures_tokenizer")
        .join(name);
    serde_json::from_str(&std::fs::read_to_string(&path).unwrap()).unwrap()
}

fn ids(v: &Value) -> Vec<u32> {
    v.as_array()
        .unwrap()
        .iter()
        .map(|x| x.as_u64().unwrap() as u32)
        .collect()
}

/// The text of a case: stored, or WikiText's first 20,000 bytes.
fn case_text(case: &Value) -> Option<String> {
    if let Some(t) = case["text"].as_str() {
        return Some(t.to_string());
    }
    let path = common::data_file(case["source"].as_str().unwrap())?;
    let end = case["byte_range"][1].as_u64().unwrap() as usize;
    let bytes = std::fs::read(path).unwrap();
    Some(String::from_utf8(bytes[..end].to_vec()).unwrap())
}

/// (case, ours, reference) for every case where `ours(text, bos)` differs from `key`.
fn mismatches(
    t: &dyn Tokenizer,
    fx: &Value,
    key_no_bos: &dyn Fn(&Value) -> &'static str,
    key_bos: &dyn Fn(&Value) -> &'static str,
) -> Vec<String> {
    let mut bad = Vec::new();
    for case in fx["cases"].as_array().unwrap() {
        let name = case["name"].as_str().unwrap();
        let Some(text) = case_text(case) else {
            continue;
        };
        for (bos, key) in [(false, key_no_bos(case)), (t.adds_bos(), key_bos(case))] {
            let ours = t.encode(&text, bos).unwrap();
            let want = ids(&case[key]);
            if ours != want {
                let at = ours.iter().zip(&want).position(|(a, b)| a != b);
                bad.push(format!(
                    "{name} bos={bos} vs {key}: {} vs {} ids, first difference at {at:?}",
                    ours.len(),
                    want.len()
                ));
            }
        }
    }
    bad
}

fn smollm() -> Option<Box<dyn Tokenizer>> {
    let path = common::data_file("models/SmolLM2-135M-Instruct.Q4_1.gguf")?;
    Some(load_tokenizer_file(&path).unwrap())
}

#[test]
fn smollm2_equals_llama_cpp_and_transformers() {
    let Some(t) = smollm() else { return };
    let fx = fixture("SmolLM2-135M-Instruct.Q4_1.json");
    assert_eq!(t.vocab_size(), 49_152);
    assert!(!t.adds_bos(), "SmolLM2's GGUF says add_bos_token = false");
    assert_eq!((t.bos_id(), t.eos_id()), (Some(1), Some(2)));
    let chat = |c: &Value| c["name"] == "chatml";
    let bad = mismatches(
        t.as_ref(),
        &fx,
        &|c| {
            if chat(c) {
                "llama_cpp_special"
            } else {
                "llama_cpp"
            }
        },
        &|c| {
            if chat(c) {
                "llama_cpp_special_bos"
            } else {
                "llama_cpp_bos"
            }
        },
    );
    assert!(bad.is_empty(), "differs from llama.cpp: {bad:#?}");
    let bad = mismatches(t.as_ref(), &fx, &|_| "transformers", &|_| {
        "transformers_special"
    });
    assert!(bad.is_empty(), "differs from transformers: {bad:#?}");
    // The headline case: WikiText's first 20,000 bytes are 4,678 tokens.
    let wiki = &fx["cases"][0];
    if let Some(text) = case_text(wiki) {
        assert_eq!(t.encode(&text, false).unwrap().len(), 4678);
    }
}

#[test]
fn llama2_spm_equals_llama_cpp() {
    let Some(path) = common::data_file("gguf/llama-2-tiny-random.gguf") else {
        return;
    };
    let t = load_tokenizer_file(&path).unwrap();
    assert!(
        t.adds_bos(),
        "SentencePiece GGUF without add_bos_token: BOS (llama.cpp)"
    );
    let fx = fixture("llama-2-tiny-random.json");
    let bad = mismatches(t.as_ref(), &fx, &|_| "llama_cpp", &|_| "llama_cpp_bos");
    assert!(bad.is_empty(), "differs from llama.cpp: {bad:#?}");
}

/// The GGUF vocabulary written as tokenizer.json (+ tokenizer_config.json) and read back by
/// `HfTokenizer` gives the same ids and the same BOS decision.
#[test]
fn smollm2_tokenizer_json_round_trip() {
    let Some(path) = common::data_file("models/SmolLM2-135M-Instruct.Q4_1.gguf") else {
        return;
    };
    let header = slm_io::gguf::read_header(&path).unwrap();
    let vocab = slm_io::gguf::vocab(&path, &header).unwrap().unwrap();
    let dir = tempfile::tempdir().unwrap();
    let json_path = dir.path().join("tokenizer.json");
    std::fs::write(
        &json_path,
        serde_json::to_vec(&tokenizer_json(&vocab).unwrap()).unwrap(),
    )
    .unwrap();
    let config = tokenizer_config_json(&vocab);
    assert_eq!(config["bos_token"], "<|im_start|>");
    assert_eq!(config["eos_token"], "<|im_end|>");
    assert!(config["chat_template"]
        .as_str()
        .unwrap()
        .contains("<|im_start|>"));
    std::fs::write(
        dir.path().join("tokenizer_config.json"),
        serde_json::to_vec(&config).unwrap(),
    )
    .unwrap();
    let hf = HfTokenizer::from_file_with_config(&json_path, Some(&config)).unwrap();
    let via_file = load_tokenizer_file(&json_path).unwrap();
    let gguf = load_tokenizer_file(&path).unwrap();
    let fx = fixture("SmolLM2-135M-Instruct.Q4_1.json");
    for case in fx["cases"].as_array().unwrap() {
        let Some(text) = case_text(case) else {
            continue;
        };
        let want = gguf.encode(&text, false).unwrap();
        assert_eq!(hf.encode(&text, false).unwrap(), want, "{}", case["name"]);
        assert_eq!(via_file.encode(&text, false).unwrap(), want);
    }
    for t in [&hf as &dyn Tokenizer, via_file.as_ref()] {
        assert_eq!(
            (t.bos_id(), t.eos_id(), t.adds_bos()),
            (gguf.bos_id(), gguf.eos_id(), false)
        );
        assert_eq!(t.vocab_size(), gguf.vocab_size());
    }
}

/// The SentencePiece vocabulary as an HF Llama-style tokenizer.json: BPE over the pieces
/// merges a leading space into the dummy prefix (`▁▁`) as llama.cpp does, so it equals
/// llama.cpp on every case (transformers' own GGUF conversion differs on the 4 cases whose
/// text starts with a space).
#[test]
fn llama2_tokenizer_json_equals_llama_cpp() {
    let Some(path) = common::data_file("gguf/llama-2-tiny-random.gguf") else {
        return;
    };
    let header = slm_io::gguf::read_header(&path).unwrap();
    let vocab = slm_io::gguf::vocab(&path, &header).unwrap().unwrap();
    let json = tokenizer_json(&vocab).unwrap();
    let inner = tokenizers::Tokenizer::from_bytes(serde_json::to_vec(&json).unwrap()).unwrap();
    let hf = HfTokenizer::from_tokenizer(inner, &Default::default()).unwrap();
    assert!(hf.adds_bos());
    let fx = fixture("llama-2-tiny-random.json");
    let bad = mismatches(&hf, &fx, &|_| "llama_cpp", &|_| "llama_cpp_bos");
    assert!(bad.is_empty(), "differs from llama.cpp: {bad:#?}");
}

/// Every token's bytes, concatenated, spell the text, also where a token holds only part of a
/// character (`decode` of such a token alone is U+FFFD): what `slm serve` reports as logprobs
/// `bytes` and what remote-teacher top-k is matched by. SmolLM2 (byte-level BPE) and its
/// tokenizer exported as tokenizer.json, and stories260K's SentencePiece vocabulary with byte
/// fallback.
#[test]
fn token_bytes_spell_the_text_even_inside_a_character() {
    let text = "Naïve café — “quoted” 🙂 日本語 ∑x² ok";
    let mut checked = 0;
    let mut split = 0;
    let mut check = |name: &str, t: &dyn Tokenizer| {
        let ids = t.encode(text, false).unwrap();
        let mut bytes = Vec::new();
        for &id in &ids {
            let b = t
                .token_bytes(id)
                .unwrap_or_else(|| panic!("{name}: no bytes for token {id}"));
            split += t.decode(&[id]).unwrap().contains('\u{FFFD}') as usize;
            bytes.extend(b);
        }
        // SentencePiece encodes with a dummy-prefix space, which the first token carries.
        let spelled = String::from_utf8(bytes).unwrap_or_else(|e| panic!("{name}: {e}"));
        assert!(
            spelled == text || spelled == format!(" {text}"),
            "{name}: {spelled:?}"
        );
        checked += 1;
    };
    if let Some(t) = smollm() {
        check("SmolLM2 GGUF", t.as_ref());
        // The same vocabulary as `slm export hf` writes it (tokenizers' ByteLevel pieces).
        let path = common::data_file("models/SmolLM2-135M-Instruct.Q4_1.gguf").unwrap();
        let header = slm_io::gguf::read_header(&path).unwrap();
        let vocab = slm_io::gguf::vocab(&path, &header).unwrap().unwrap();
        let source = slm_io::TokenizerSource::Gguf(vocab);
        let dir = tempfile::tempdir().unwrap();
        for (name, bytes) in slm_data::tokenizer::export::hf_tokenizer_files(&source, None).unwrap()
        {
            std::fs::write(dir.path().join(name), bytes).unwrap();
        }
        let json = dir.path().join("tokenizer.json");
        check(
            "SmolLM2 tokenizer.json",
            load_tokenizer_file(&json).unwrap().as_ref(),
        );
    }
    if let Some(path) = common::data_file("llama2c/tok512.bin") {
        // SentencePiece with byte fallback: `<0xE6>` pieces.
        check(
            "llama2.c tok512",
            load_tokenizer_file(&path).unwrap().as_ref(),
        );
    }
    if checked > 0 {
        assert!(
            split > 0,
            "the text split no character across tokens: it tests nothing"
        );
    }
}
