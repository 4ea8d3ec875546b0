//! Chat templates rendered by `slm_data::chat` against transformers' `apply_chat_template`
//! (`tools/reference/fixtures_chat/chat_templates.json`, made by
//! `tools/reference/make_chat_fixtures.py`): Llama-2 `[INST]`, Llama-3, Zephyr, a template
//! exercising Python string methods, namespace, tojson and lstrip_blocks, and SmolLM2's
//! ChatML template read from the real GGUF file in the shared data.

use std::path::PathBuf;

use slm_data::chat::{ChatTemplate, Message};
use slm_data::load_tokenizer;
use slm_io::TokenizerSource;

const SMOLLM2: &str = "models/SmolLM2-135M-Instruct.Q4_1.gguf";

fn fixtures() -> serde_json::Value {
    let path = PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("../../tools/reference/fixtures_chat/chat_templates.json");
    serde_json::from_str(&std::fs::read_to_string(&path).unwrap()).unwrap()
}

fn messages(case: &serde_json::Value) -> Vec<Message> {
    serde_json::from_value(case["messages"].clone()).unwrap()
}

/// Checks every case of `template_name` against `template`; returns how many were checked.
fn check_cases(fx: &serde_json::Value, template_name: &str, template: &str) -> usize {
    let mut n = 0;
    for case in fx["cases"].as_array().unwrap() {
        if case["template_name"] != template_name {
            continue;
        }
        let name = case["name"].as_str().unwrap();
        let t = ChatTemplate::new(template, template_name)
            .unwrap()
            .with_special_tokens(
                case["bos_token"].as_str().map(str::to_string),
                case["eos_token"].as_str().map(str::to_string),
            );
        let agp = case["add_generation_prompt"].as_bool().unwrap();
        let got = t.render(&messages(case), agp);
        match (case.get("expected"), case.get("error")) {
            (Some(want), _) => {
                assert_eq!(
                    got.as_deref().unwrap_or_else(|e| panic!("{name}: {e}")),
                    want.as_str().unwrap(),
                    "{name}"
                );
            }
            (None, Some(err)) => {
                let got = got.expect_err(name).to_string();
                assert!(got.contains(err.as_str().unwrap()), "{name}: {got}");
                assert!(got.contains(template_name), "{name}: {got}");
            }
            _ => panic!("{name}: neither expected nor error"),
        }
        n += 1;
    }
    n
}

#[test]
fn inline_templates_match_transformers() {
    let fx = fixtures();
    for name in ["llama2", "llama3", "zephyr", "pycompat"] {
        let template = fx["templates"][name].as_str().unwrap();
        assert_eq!(check_cases(&fx, name, template), 8, "{name}");
    }
}

#[test]
fn smollm2_chatml_from_gguf_matches_transformers() {
    let Some(path) = slm_core::testdata::shared_data(SMOLLM2) else {
        return;
    };
    let header = slm_io::gguf::read_header(&path).unwrap();
    let vocab = slm_io::gguf::vocab(&path, &header).unwrap().unwrap();
    let source = TokenizerSource::Gguf(vocab);
    let t = ChatTemplate::from_loaded(&source, None, &path)
        .unwrap()
        .expect("SmolLM2 carries a chat template");
    assert!(t.origin().contains("tokenizer.chat_template"), "{t:?}");
    assert_eq!(t.bos_token(), "<|im_start|>");
    assert_eq!(t.eos_token(), "<|im_end|>");
    let fx = fixtures();
    assert_eq!(check_cases(&fx, "smollm2", t.source()), 8);

    // The end-of-turn token: <|im_end|> (id 2), the GGUF's EOS.
    let tok = load_tokenizer(&source).unwrap();
    assert_eq!(t.stop_token_ids(tok.as_ref()), vec![2]);
    // The rendered prompt's special tokens encode as single ids.
    let text = t.render(&[Message::user("Hi")], true).unwrap();
    let ids = tok.encode(&text, false).unwrap();
    assert_eq!(ids[0], 1, "{ids:?}");
    assert_eq!(ids.iter().filter(|&&i| i == 2).count(), 2, "{ids:?}");
    assert_eq!(tok.id_to_piece(1).as_deref(), Some("<|im_start|>"));
}

#[test]
fn llama3_stops_at_eot_id_when_the_vocabulary_has_it() {
    // A byte-level vocabulary whose EOS is <|end_of_text|> and which also has <|eot_id|>.
    let tokens: Vec<String> = ["<|begin_of_text|>", "<|end_of_text|>", "<|eot_id|>", "a"]
        .iter()
        .map(|s| s.to_string())
        .collect();
    let vocab = slm_io::GgufVocab {
        model: "gpt2".into(),
        tokens,
        scores: vec![],
        token_types: vec![3, 3, 3, 1],
        merges: vec![],
        bos_id: Some(0),
        eos_id: Some(1),
        unk_id: None,
        add_bos: false,
        add_eos: false,
        pre: None,
        chat_template: Some(fixtures()["templates"]["llama3"].as_str().unwrap().into()),
    };
    let source = TokenizerSource::Gguf(vocab);
    let tok = load_tokenizer(&source).unwrap();
    let t = ChatTemplate::from_loaded(&source, None, std::path::Path::new("x.gguf"))
        .unwrap()
        .unwrap()
        .with_tokenizer_tokens(tok.as_ref());
    assert_eq!(t.stop_token_ids(tok.as_ref()), vec![1, 2]);
    // A template that does not name <|eot_id|> stops at EOS only.
    let plain = ChatTemplate::new("{{ messages[0].content }}", "plain")
        .unwrap()
        .with_tokenizer_tokens(tok.as_ref());
    assert_eq!(plain.eos_token(), "<|end_of_text|>");
    assert_eq!(plain.stop_token_ids(tok.as_ref()), vec![1]);
}

#[test]
fn no_template_error_says_how_to_give_one() {
    let vocab = slm_io::GgufVocab {
        model: "llama".into(),
        tokens: vec!["<unk>".into(), "<s>".into(), "</s>".into()],
        scores: vec![],
        token_types: vec![],
        merges: vec![],
        bos_id: Some(1),
        eos_id: Some(2),
        unk_id: Some(0),
        add_bos: true,
        add_eos: false,
        pre: None,
        chat_template: None,
    };
    let source = TokenizerSource::Gguf(vocab);
    let tok = load_tokenizer(&source).unwrap();
    let err = ChatTemplate::resolve(
        None,
        &source,
        None,
        std::path::Path::new("base.gguf"),
        tok.as_ref(),
    )
    .unwrap_err()
    .to_string();
    assert!(err.contains("base.gguf"), "{err}");
    assert!(err.contains("--chat-template FILE"), "{err}");

    // A file given by the user is used, with the vocabulary's BOS/EOS.
    let dir = tempfile::tempdir().unwrap();
    let f = dir.path().join("t.jinja");
    std::fs::write(
        &f,
        "{{ bos_token }}{{ messages[0].content }}{{ eos_token }}",
    )
    .unwrap();
    let t = ChatTemplate::resolve(
        Some(&f),
        &source,
        None,
        std::path::Path::new("base.gguf"),
        tok.as_ref(),
    )
    .unwrap();
    assert_eq!(t.render(&[Message::user("x")], false).unwrap(), "<s>x</s>");
    let err = ChatTemplate::resolve(
        Some(&dir.path().join("missing.jinja")),
        &source,
        None,
        std::path::Path::new("base.gguf"),
        tok.as_ref(),
    )
    .unwrap_err()
    .to_string();
    assert!(err.contains("missing.jinja"), "{err}");
}
