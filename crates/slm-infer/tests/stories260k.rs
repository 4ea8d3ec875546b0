//! stories260K (Karpathy's llama2.c model, real pretrained weights) reproduces the golden
//! greedy outputs of an independent float64 implementation of llama2.c's run.c.

use candle_core::Tensor;
use slm_infer::{generate_from_tokens, GenerateOptions, SamplerConfig};
use std::path::PathBuf;

fn shared() -> Option<PathBuf> {
    slm_core::testdata::shared_data("llama2c/stories260K.bin")?;
    slm_core::testdata::shared_data("llama2c")
}

fn reference(dir: &std::path::Path) -> serde_json::Value {
    serde_json::from_slice(&std::fs::read(dir.join("stories260K_greedy_reference.json")).unwrap())
        .unwrap()
}

fn ids(v: &serde_json::Value) -> Vec<u32> {
    v.as_array()
        .unwrap()
        .iter()
        .map(|x| x.as_u64().unwrap() as u32)
        .collect()
}

/// Greedy decoding as llama2.c does: stop at BOS (=1) or when `total` positions are filled.
fn greedy(prompt: Vec<u32>, total: usize) -> Vec<u32> {
    let dir = shared().unwrap();
    let loaded = slm_model::load(dir.join("stories260K.bin").to_str().unwrap(), None).unwrap();
    let tok = slm_data::tokenizer::load_tokenizer(&loaded.tokenizer).unwrap();
    let opts = GenerateOptions {
        max_tokens: total - prompt.len(),
        sampler: SamplerConfig::greedy(),
        stop: vec![],
        add_bos: true,
        stop_at_eos: false,
        ..Default::default()
    };
    let g = generate_from_tokens(
        &loaded.model,
        tok.as_ref(),
        prompt.clone(),
        &opts,
        &mut |_| Ok(()),
    )
    .unwrap();
    let mut all = prompt;
    for t in g.tokens {
        if t == 1 {
            break;
        }
        all.push(t);
    }
    all
}

#[test]
fn greedy_from_prompt_matches_reference() {
    let Some(dir) = shared() else { return };
    let r = reference(&dir);
    let expected = ids(&r["greedy_tokens"]);
    let got = greedy(ids(&r["prompt_tokens"]), expected.len());
    assert_eq!(got, expected);
}

#[test]
fn greedy_from_bos_matches_reference() {
    let Some(dir) = shared() else { return };
    let r = reference(&dir);
    let expected = ids(&r["empty_prompt"]["greedy_tokens"]);
    let got = greedy(vec![1], expected.len());
    assert_eq!(got, expected);
}

#[test]
fn prompt_tokens_and_top5_logits_match_reference() {
    let Some(dir) = shared() else { return };
    let r = reference(&dir);
    let loaded = slm_model::load(dir.join("stories260K.bin").to_str().unwrap(), None).unwrap();
    let tok = slm_data::tokenizer::load_tokenizer(&loaded.tokenizer).unwrap();
    let prompt = tok.encode(r["prompt"].as_str().unwrap(), true).unwrap();
    assert_eq!(prompt, ids(&r["prompt_tokens"]));
    let input = Tensor::new(prompt.as_slice(), &candle_core::Device::Cpu)
        .unwrap()
        .unsqueeze(0)
        .unwrap();
    let logits = loaded.model.forward(&input, None).unwrap();
    let last = logits
        .squeeze(0)
        .unwrap()
        .get(prompt.len() - 1)
        .unwrap()
        .to_vec1::<f32>()
        .unwrap();
    for pair in r["last_position_logits_top5"].as_array().unwrap() {
        let id = pair[0].as_u64().unwrap() as usize;
        let want = pair[1].as_f64().unwrap();
        let got = last[id] as f64;
        assert!(
            (got - want).abs() < 1e-4 * want.abs().max(1.0),
            "token {id}: {got} vs {want}"
        );
    }
}

/// A stop token ends the story where llama2.c's loop ends it (at BOS), and the kept
/// log-probabilities equal the candle model's log-softmax over the same sequence.
#[test]
fn stop_tokens_end_the_story_and_logprobs_score_it() {
    let Some(dir) = shared() else { return };
    let loaded = slm_model::load(dir.join("stories260K.bin").to_str().unwrap(), None).unwrap();
    let tok = slm_data::tokenizer::load_tokenizer(&loaded.tokenizer).unwrap();
    let mut opts = GenerateOptions {
        max_tokens: 400,
        sampler: SamplerConfig::greedy(),
        stop_at_eos: false,
        stop_tokens: vec![1],
        logprobs: true,
        ..Default::default()
    };
    let run = |opts: &GenerateOptions| {
        generate_from_tokens(&loaded.model, tok.as_ref(), vec![1], opts, &mut |_| Ok(())).unwrap()
    };
    let g = run(&opts);
    assert_eq!(
        g.stop_reason,
        slm_infer::StopReason::StopToken(1),
        "{}",
        g.text
    );
    assert!(!g.tokens.is_empty() && !g.tokens.contains(&1));
    assert_eq!(g.logprobs.len(), g.tokens.len());
    // One forward pass of the candle model over BOS + the story (the last token is only
    // predicted): log-softmax at each position, at the generated token.
    let mut ids = vec![1u32];
    ids.extend_from_slice(&g.tokens[..g.tokens.len() - 1]);
    let input = Tensor::new(ids.as_slice(), &candle_core::Device::Cpu)
        .unwrap()
        .unsqueeze(0)
        .unwrap();
    let logits = loaded.model.forward(&input, None).unwrap(); // [1, t, vocab]
    let rows = logits.squeeze(0).unwrap().to_vec2::<f32>().unwrap();
    for (i, (row, &t)) in rows.iter().zip(&g.tokens).enumerate() {
        let max = row.iter().fold(f32::NEG_INFINITY, |m, &v| m.max(v)) as f64;
        let lse = max
            + row
                .iter()
                .map(|&v| (v as f64 - max).exp())
                .sum::<f64>()
                .ln();
        let want = row[t as usize] as f64 - lse;
        assert!(
            (g.logprobs[i] as f64 - want).abs() < 1e-3,
            "position {i}: {} vs {want}",
            g.logprobs[i]
        );
        assert!(g.logprobs[i] <= 0.0);
    }
    // Without the stop token, greedy decoding runs on into BOS and the next story.
    opts.stop_tokens.clear();
    opts.max_tokens = g.tokens.len() + 5;
    let on = run(&opts);
    assert_eq!(on.tokens[..g.tokens.len()], g.tokens[..]);
    assert_eq!(on.tokens[g.tokens.len()], 1);
    assert!(on.logprobs.len() == on.tokens.len());
}
