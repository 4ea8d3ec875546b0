//! llama2.c tokenizer against the references made with llama2.c `run.c` (tok512.bin).

mod common;

use slm_data::{Llama2cTokenizer, StreamDecoder, Tokenizer};

fn tok512() -> Option<Llama2cTokenizer> {
    let path = common::data_file("llama2c/tok512.bin")?;
    Some(Llama2cTokenizer::from_file(path).unwrap())
}

fn json(rel: &str) -> Option<serde_json::Value> {
    let path = common::data_file(rel)?;
    Some(serde_json::from_str(&std::fs::read_to_string(path).unwrap()).unwrap())
}

fn ids(v: &serde_json::Value) -> Vec<u32> {
    v.as_array()
        .unwrap()
        .iter()
        .map(|x| x.as_u64().unwrap() as u32)
        .collect()
}

#[test]
fn header_and_specials() {
    let Some(t) = tok512() else { return };
    assert_eq!(t.vocab_size(), 512);
    assert_eq!(t.max_token_length(), 7);
    assert_eq!(t.id_to_piece(1).as_deref(), Some("\n<s>\n"));
    assert_eq!(t.id_to_piece(3).as_deref(), Some("<0x00>"));
    // The dummy prefix is a piece of its own.
    assert!(t.token_to_id(" ").is_some());
}

#[test]
fn once_upon_a_time() {
    let Some(t) = tok512() else { return };
    assert_eq!(
        t.encode("Once upon a time", true).unwrap(),
        vec![1, 403, 407, 261, 378]
    );
    assert_eq!(
        t.decode(&[1, 403, 407, 261, 378]).unwrap(),
        "Once upon a time"
    );
}

#[test]
fn cs336_stories_match_reference_counts_and_prefixes() {
    let (Some(t), Some(stories), Some(reference)) = (
        tok512(),
        common::cs336_stories(),
        json("llama2c/stories260K_ppl_reference_cs336_sample.json"),
    ) else {
        return;
    };
    let refs = reference["stories"].as_array().unwrap();
    assert_eq!(stories.len(), 5);
    assert_eq!(refs.len(), 5);
    let mut counts = Vec::new();
    for (story, r) in stories.iter().zip(refs) {
        let enc = t.encode(story, true).unwrap();
        counts.push(enc.len());
        assert_eq!(enc.len() as u64, r["n_tokens_incl_bos"].as_u64().unwrap());
        let first = ids(&r["first_tokens"]);
        assert_eq!(&enc[..first.len()], first.as_slice());
        // And back: the stories contain curly quotes, which go through byte fallback.
        assert_eq!(&t.decode(&enc).unwrap(), story);
    }
    assert_eq!(counts, [374, 330, 223, 425, 457]);
}

#[test]
fn greedy_reference_decodes_to_its_text() {
    let (Some(t), Some(reference)) = (tok512(), json("llama2c/stories260K_greedy_reference.json"))
    else {
        return;
    };
    // The reference texts leave BOS unrendered and drop the space after it, as run.c prints.
    for run in [&reference, &reference["empty_prompt"]] {
        let tokens = ids(&run["greedy_tokens"]);
        let text = run["greedy_text"].as_str().unwrap();
        assert_eq!(tokens[0], 1);
        assert_eq!(t.decode(&tokens).unwrap(), text);
        let mut stream = StreamDecoder::new(&t);
        let mut out = String::new();
        for &id in &tokens {
            out.push_str(&stream.push(id).unwrap().unwrap_or_default());
        }
        out.push_str(&stream.finish().unwrap().unwrap_or_default());
        assert_eq!(out, text);
    }
    assert_eq!(
        ids(&reference["prompt_tokens"]),
        t.encode(reference["prompt"].as_str().unwrap(), true)
            .unwrap()
    );
}
