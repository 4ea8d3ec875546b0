//! Per-story negative log-likelihood of stories260K on the CS336 TinyStories sample matches
//! an independent float64 implementation of llama2.c within 1e-3 relative.

use slm_eval::{perplexity, window_nll, PplOptions};
use std::path::PathBuf;

fn shared() -> Option<PathBuf> {
    slm_core::testdata::shared_data("llama2c/stories260K.bin")?;
    Some(slm_core::testdata::shared_root())
}

#[test]
fn per_story_nll_matches_reference() {
    let Some(data) = shared() else { return };
    let reference: serde_json::Value = serde_json::from_slice(
        &std::fs::read(data.join("llama2c/stories260K_ppl_reference_cs336_sample.json")).unwrap(),
    )
    .unwrap();
    let loaded =
        slm_model::load(data.join("llama2c/stories260K.bin").to_str().unwrap(), None).unwrap();
    let tok = slm_data::tokenizer::load_tokenizer(&loaded.tokenizer).unwrap();
    let text =
        std::fs::read_to_string(data.join("tinystories/tinystories_sample_cs336.txt")).unwrap();
    let stories: Vec<&str> = text
        .split("<|endoftext|>")
        .map(str::trim)
        .filter(|s| !s.is_empty())
        .collect();
    let refs = reference["stories"].as_array().unwrap();
    assert_eq!(stories.len(), refs.len());
    for (story, r) in stories.iter().zip(refs) {
        let toks = tok.encode(story, true).unwrap();
        assert_eq!(toks.len() as u64, r["n_tokens_incl_bos"].as_u64().unwrap());
        let (nll, n) = window_nll(&loaded.model, &toks, 1).unwrap();
        assert_eq!(n as u64, r["n_predicted"].as_u64().unwrap());
        let want = r["nll_sum"].as_f64().unwrap();
        assert!(((nll - want) / want).abs() < 1e-3, "nll {nll} vs {want}");
    }
    // The same through the document protocol of `slm eval --doc-separator`.
    let opts = PplOptions {
        doc_separator: Some("<|endoftext|>".into()),
        add_bos: true,
        ..Default::default()
    };
    let rep = perplexity(&loaded.model, tok.as_ref(), &text, &opts, &mut |_, _| {}).unwrap();
    let want = reference["mean_nll"].as_f64().unwrap();
    assert_eq!(
        rep.tokens as u64,
        reference["total_predicted"].as_u64().unwrap()
    );
    assert!(
        ((rep.mean_nll - want) / want).abs() < 1e-3,
        "{} vs {want}",
        rep.mean_nll
    );
}
