//! `slm eval --tasks` against tools/reference/harness_reference.py (lm-evaluation-harness's
//! protocol in transformers, float32, on SmolLM2-135M-Instruct): the same prompts and
//! few-shot contexts, the same log-likelihoods (to 1e-3) and choices from the same token ids,
//! the same GSM8K greedy tokens and filters.
//!
//! Token ids come from the fixtures (transformers' tokenizer), so scoring is tested apart from
//! tokenisation; `tokenisation_equals_transformers` and the ARC-Easy dev accuracy compare the
//! whole text path (the second, all 570 questions, takes 2–3 minutes on 2 cores; exact
//! equality rests on the `smollm` pre-tokenizer, digits split one by one).

use serde_json::Value;
use slm_core::testdata::shared_data;
use slm_eval::tasks::metrics::{gsm8k_flexible, gsm8k_strict};
use slm_eval::tasks::{builtin, encode_pair, Item, Session, TaskOptions};
use slm_infer::decode::{Decoder, WeightType};
use std::path::{Path, PathBuf};

const TASKS: &[&str] = &[
    "arc_easy",
    "arc_challenge",
    "boolq",
    "copa",
    "winogrande",
    "openbookqa",
    "lambada",
    "mmlu",
];

fn fixture(name: &str) -> Value {
    let p = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../../tools/reference/fixtures_eval")
        .join(format!("{name}.json"));
    serde_json::from_str(&std::fs::read_to_string(&p).unwrap()).unwrap()
}

fn ids(v: &Value) -> Vec<u32> {
    v.as_array()
        .unwrap()
        .iter()
        .map(|x| x.as_u64().unwrap() as u32)
        .collect()
}

fn model() -> Option<(Decoder, Box<dyn slm_data::tokenizer::Tokenizer>)> {
    let path = shared_data("models/SmolLM2-135M-Instruct.Q4_1.gguf")?;
    let loaded = slm_model::load(path.to_str().unwrap(), None).unwrap();
    let tok = slm_data::tokenizer::load_tokenizer(&loaded.tokenizer).unwrap();
    Some((Decoder::new(&loaded.model, WeightType::F32).unwrap(), tok))
}

fn eval_dir() -> Option<PathBuf> {
    shared_data("eval")
}

/// The fixture's documents in order, with their (context, continuation) requests.
fn fixture_requests(f: &Value) -> Vec<Vec<(String, String)>> {
    f["docs"]
        .as_array()
        .unwrap()
        .iter()
        .map(|d| {
            d["requests"]
                .as_array()
                .unwrap()
                .iter()
                .map(|r| {
                    (
                        r["context"].as_str().unwrap().to_string(),
                        r["continuation"].as_str().unwrap().to_string(),
                    )
                })
                .collect()
        })
        .collect()
}

#[test]
fn prompts_and_few_shot_contexts_equal_the_reference() {
    let Some(dir) = eval_dir() else { return };
    for name in TASKS.iter().chain(&["gsm8k"]) {
        let f = fixture(name);
        let task = builtin(name, &dir).unwrap();
        let k = f["num_fewshot"].as_u64().unwrap() as usize;
        let n = f["docs"].as_array().unwrap().len();
        let limit = if *name == "mmlu" { 1 } else { n };
        let prepared = task.prepare(k, Some(limit), None, 1234).unwrap();
        assert_eq!(prepared.len(), n, "{name}");
        if *name == "gsm8k" {
            for (p, d) in prepared.iter().zip(f["docs"].as_array().unwrap()) {
                let Item::Generate { context, .. } = &p.item else {
                    panic!()
                };
                assert_eq!(
                    context,
                    d["context"].as_str().unwrap(),
                    "gsm8k doc {}",
                    p.doc
                );
            }
            continue;
        }
        for (p, want) in prepared.iter().zip(fixture_requests(&f)) {
            assert_eq!(p.item.requests(" "), want, "{name} doc {}", p.doc);
        }
    }
}

#[test]
fn loglikelihoods_equal_the_reference_from_the_same_ids() {
    let Some((dec, _tok)) = model() else { return };
    let mut worst = 0f64;
    for name in TASKS {
        let f = fixture(name);
        let mut sess = Session::new(&dec);
        for d in f["docs"].as_array().unwrap() {
            let mut lls = Vec::new();
            for r in d["requests"].as_array().unwrap() {
                let (ll, greedy) = sess
                    .loglikelihood(&dec, &ids(&r["context_ids"]), &ids(&r["continuation_ids"]))
                    .unwrap();
                let want = r["ll"].as_f64().unwrap();
                worst = worst.max((ll - want).abs());
                assert!(
                    (ll - want).abs() < 1e-3,
                    "{name} doc {}: {ll} vs {want}",
                    d["doc"]
                );
                assert_eq!(
                    greedy,
                    r["is_greedy"].as_bool().unwrap(),
                    "{name} doc {}",
                    d["doc"]
                );
                lls.push(ll);
            }
            if let Some(pred) = d.get("pred") {
                let ours = slm_eval::tasks::metrics::argmax_f64(&lls);
                assert_eq!(
                    ours as u64,
                    pred.as_u64().unwrap(),
                    "{name} doc {}",
                    d["doc"]
                );
            }
        }
    }
    println!("largest log-likelihood difference from transformers: {worst:.2e}");
}

#[test]
fn choices_scored_together_equal_the_reference() {
    let Some((dec, _tok)) = model() else { return };
    let mut sess = Session::new(&dec);
    for name in [
        "arc_easy",
        "arc_challenge",
        "boolq",
        "copa",
        "openbookqa",
        "mmlu",
    ] {
        let f = fixture(name);
        for d in f["docs"].as_array().unwrap() {
            let reqs = d["requests"].as_array().unwrap();
            let ctx = ids(&reqs[0]["context_ids"]);
            if reqs.iter().any(|r| ids(&r["context_ids"]) != ctx) {
                continue;
            }
            let conts: Vec<Vec<u32>> = reqs.iter().map(|r| ids(&r["continuation_ids"])).collect();
            let got = sess.choice_loglikelihoods(&dec, &ctx, &conts).unwrap();
            for ((ll, greedy), r) in got.iter().zip(reqs) {
                let want = r["ll"].as_f64().unwrap();
                assert!(
                    (ll - want).abs() < 1e-3,
                    "{name} doc {}: {ll} vs {want}",
                    d["doc"]
                );
                assert_eq!(
                    *greedy,
                    r["is_greedy"].as_bool().unwrap(),
                    "{name} doc {}",
                    d["doc"]
                );
            }
        }
    }
}

#[test]
fn gsm8k_greedy_generation_and_filters_equal_the_reference() {
    let f = fixture("gsm8k");
    for d in f["docs"].as_array().unwrap() {
        let text = d["text"].as_str().unwrap();
        assert_eq!(gsm8k_strict(text), d["strict"].as_str().unwrap());
        assert_eq!(gsm8k_flexible(text), d["flexible"].as_str().unwrap());
    }
    let Some((dec, tok)) = model() else { return };
    let mut sess = Session::new(&dec);
    let stop: Vec<u32> = tok.eos_id().into_iter().collect();
    for d in f["docs"].as_array().unwrap() {
        let want = ids(&d["generated_ids"]);
        let (got, _) = sess
            .generate(
                &dec,
                tok.as_ref(),
                &ids(&d["context_ids"]),
                want.len(),
                &stop,
                &["Question:"],
            )
            .unwrap();
        // transformers generates until its stop criteria fire (the stop string can end
        // inside the last token): our tokens are the same ones, up to where we stop.
        assert!(!got.is_empty());
        assert_eq!(got[..], want[..got.len()], "gsm8k doc {}", d["doc"]);
    }
}

#[test]
fn tokenisation_equals_transformers() {
    let Some((_, tok)) = model() else { return };
    let mut bad = Vec::new();
    for name in TASKS {
        let f = fixture(name);
        for d in f["docs"].as_array().unwrap() {
            for r in d["requests"].as_array().unwrap() {
                let (c, x) = (
                    r["context"].as_str().unwrap(),
                    r["continuation"].as_str().unwrap(),
                );
                let got = encode_pair(tok.as_ref(), c, x, false).unwrap();
                if got != (ids(&r["context_ids"]), ids(&r["continuation_ids"])) {
                    bad.push(format!("{name} doc {}", d["doc"]));
                }
            }
        }
    }
    assert!(
        bad.is_empty(),
        "{} requests tokenised differently: {bad:?}",
        bad.len()
    );
}

#[test]
fn arc_easy_dev_accuracy_equals_the_reference() {
    let Some(dir) = eval_dir() else { return };
    let Some((dec, tok)) = model() else { return };
    let f = fixture("arc_easy_dev_full");
    let mut task = builtin("arc_easy", &dir).unwrap();
    task.subtasks[0].docs =
        slm_eval::tasks::data::read_jsonl(&dir.join("arc/ARC-Easy-Dev.jsonl")).unwrap();
    let r = slm_eval::tasks::run_task(
        &dec,
        tok.as_ref(),
        &task,
        &TaskOptions::default(),
        &|_, _| {},
    )
    .unwrap();
    let preds: Vec<u64> = r
        .records
        .iter()
        .map(|x| x["pred"].as_u64().unwrap())
        .collect();
    let want: Vec<u64> = f["pred"]
        .as_array()
        .unwrap()
        .iter()
        .map(|x| x.as_u64().unwrap())
        .collect();
    let differ: Vec<usize> = (0..want.len()).filter(|&i| preds[i] != want[i]).collect();
    assert_eq!(r.n, f["n"].as_u64().unwrap() as usize);
    assert!(differ.is_empty(), "predictions differ on docs {differ:?}");
    assert_eq!(r.metrics[0].value, f["acc"].as_f64().unwrap());
    assert_eq!(r.metrics[1].value, f["acc_norm"].as_f64().unwrap());
}
