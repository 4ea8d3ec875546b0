//! `slm quickstart`: the whole pipeline offline on the built-in story corpus.
//!
//! Stages (each in its own folder under `--out`): write the corpus, train a BPE tokenizer,
//! prepare token shards, train a small model, then print samples and validation perplexity.
//! Then it prunes the model to 50% (Wanda) and distils it into a student a third its size
//! (forward KL + hidden-state loss), showing perplexity, size and decode speed of each.

use slm_recipes::train::{toml_str, train_run};
use anyhow::{Context, Result};
use clap::Args as ClapArgs;
use slm_data::documents::Split;
use slm_data::prepare::{prepare, PrepareOptions};
use slm_data::tokenizer::train::{save, train_bpe, BpeTrainOptions};
use slm_infer::decode::{Decoder, WeightType};
use slm_infer::{generate, GenerateOptions, SamplerConfig};
use slm_train::engine::FastModel;
use slm_train::{TrainConfig, Trainer};
use std::path::PathBuf;
use std::time::Instant;

#[derive(ClapArgs, Debug)]
#[command(
    after_help = "Runs in about 3–5 minutes on 2 cores and leaves:\n  OUT/corpus.txt        the generated stories (a demo corpus, not a benchmark)\n  \
OUT/data/             tokenizer.json, train.bin, val.bin\n  OUT/model/            the trained model (HF layout), report.md, plots/loss.png, metrics.jsonl\n  \
OUT/model-wanda50/    the model pruned to 50% (Wanda)\n  OUT/student/          a student half as wide, distilled from OUT/model (forward KL + hidden states)\n\n\
Then try:  slm generate -m OUT/model --prompt \"Once upon a time\""
)]
pub struct Args {
    /// Output folder.
    #[arg(long, short = 'o', default_value = "runs/quickstart")]
    pub out: PathBuf,
    /// Bytes of built-in corpus to generate.
    #[arg(long, default_value_t = 3_000_000)]
    pub corpus_bytes: usize,
    /// BPE vocabulary size.
    #[arg(long, default_value_t = 2048)]
    pub vocab_size: usize,
    /// Training steps.
    #[arg(long, default_value_t = 500)]
    pub steps: u64,
    /// Extra training settings (as in `slm train --set`).
    #[arg(long = "set")]
    pub set: Vec<String>,
    /// A very small run (seconds) to check the pipeline works.
    #[arg(long)]
    pub tiny: bool,
    #[arg(long, default_value_t = 1)]
    pub seed: u64,
}

pub fn run(a: Args) -> Result<()> {
    let t0 = Instant::now();
    let (corpus_bytes, vocab, steps) = if a.tiny {
        (60_000, 300, 30)
    } else {
        (a.corpus_bytes, a.vocab_size, a.steps)
    };
    std::fs::create_dir_all(&a.out).with_context(|| a.out.display().to_string())?;

    println!(
        "[1/7] writing {corpus_bytes} bytes of built-in stories (seed {})",
        a.seed
    );
    let corpus = slm_data::corpus::generate_corpus(a.seed, corpus_bytes);
    let corpus_path = a.out.join("corpus.txt");
    std::fs::write(&corpus_path, &corpus)?;
    let docs: Vec<&str> = corpus
        .split(slm_data::corpus::STORY_SEPARATOR)
        .map(str::trim)
        .filter(|d| !d.is_empty())
        .collect();

    println!(
        "[2/7] training a {vocab}-token byte-level BPE tokenizer on {} stories",
        docs.len()
    );
    let data = a.out.join("data");
    std::fs::create_dir_all(&data)?;
    let tok = train_bpe(
        docs.iter(),
        &BpeTrainOptions {
            vocab_size: vocab,
            ..Default::default()
        },
    )?;
    let tok_path = data.join("tokenizer.json");
    save(&tok, &tok_path)?;
    let tokenizer = slm_data::tokenizer::load_tokenizer_file(&tok_path)?;

    println!("[3/7] tokenising into train/val shards");
    let summary = prepare(
        std::slice::from_ref(&corpus_path),
        tokenizer.as_ref(),
        &data,
        &PrepareOptions {
            split: Split::Auto(slm_data::corpus::STORY_SEPARATOR.into()),
            val_fraction: 0.05,
            seed: a.seed,
            ..Default::default()
        },
        &|_, _| {},
    )?;
    println!(
        "      train {} tokens, val {} tokens ({:.2} bytes/token)",
        summary.train_tokens,
        summary.val_tokens,
        corpus.len() as f64 / (summary.train_tokens + summary.val_tokens).max(1) as f64
    );

    let mut sets = vec![
        format!("data={}", toml_str(&data.display().to_string())),
        "preset=\"1m\"".to_string(),
        format!("steps={steps}"),
        "seq_len=128".into(),
        "batch_size=16".into(),
        "lr=2e-3".into(),
        "min_lr=2e-4".into(),
        "warmup_steps=50".into(),
        "eval_every=100".into(),
        "eval_windows=64".into(),
        "checkpoint_every=200".into(),
        format!("seed={}", a.seed),
    ];
    if a.tiny {
        sets.extend(
            [
                "layers=2",
                "dim=64",
                "heads=4",
                "hidden=176",
                "seq_len=64",
                "batch_size=8",
                "warmup_steps=5",
                "eval_every=10",
                "eval_windows=8",
            ]
            .map(String::from),
        );
    }
    sets.extend(a.set.iter().cloned());
    let cfg = TrainConfig::resolve(None, &sets)?;
    let mcfg = cfg.model_config(summary.vocab_size)?;
    let llama = slm_model::Llama::random(mcfg, cfg.seed, &candle_core::Device::Cpu)?;
    println!(
        "[4/7] training a {:.2}M-parameter model ({} layers, dim {}) for {} steps of {}×{} tokens",
        llama.num_parameters() as f64 / 1e6,
        llama.config.num_hidden_layers,
        llama.config.hidden_size,
        cfg.steps,
        cfg.batch_size,
        cfg.seq_len
    );
    let model_dir = a.out.join("model");
    let mut trainer = Trainer::new(cfg, FastModel::from_llama(&llama)?, &model_dir)?;
    let outcome = train_run(&mut trainer)?;
    if outcome.interrupted {
        println!(
            "interrupted: resume with `slm train --resume {}`",
            model_dir.display()
        );
        return Ok(());
    }

    println!("[5/7] samples from {}", model_dir.display());
    let loaded = slm_model::load(&model_dir.display().to_string(), None)?;
    let tok = slm_data::tokenizer::load_tokenizer(&loaded.tokenizer)?;
    for (i, prompt) in ["Once upon a time", "One day, a little"].iter().enumerate() {
        let opts = GenerateOptions {
            max_tokens: if a.tiny { 20 } else { 80 },
            sampler: SamplerConfig {
                temperature: 0.8,
                top_p: 0.95,
                seed: a.seed + i as u64,
                ..Default::default()
            },
            ..Default::default()
        };
        let g = generate(&loaded.model, tok.as_ref(), prompt, &opts, &mut |_| Ok(()))?;
        println!("  > {prompt}{}", g.text.replace('\n', " "));
    }
    let val = outcome.val_loss.unwrap_or(f64::NAN);
    println!(
        "\nvalidation loss {val:.4}, perplexity {:.2} | {} tokens trained in {:.0} s",
        val.exp(),
        outcome.tokens_seen,
        outcome.seconds,
    );

    // Stage 6: prune to 50% with Wanda and compare perplexity on fresh stories.
    println!("[6/7] pruning to 50% (Wanda, calibrated on the training stories)");
    let held_out =
        slm_data::corpus::generate_corpus(a.seed + 1_000_003, if a.tiny { 8_000 } else { 60_000 });
    let popts = slm_eval::PplOptions {
        add_bos: true,
        doc_separator: Some(slm_data::corpus::STORY_SEPARATOR.into()),
        ..Default::default()
    };
    let dense = slm_eval::perplexity(
        &loaded.model,
        tok.as_ref(),
        &held_out,
        &popts,
        &mut |_, _| {},
    )?;
    let mut pruned = loaded.model.clone();
    let calib = crate::cmd::prune::CalibArgs {
        text: crate::cmd::prune::CalibText {
            calib: Some(corpus_path.clone()),
            nsamples: if a.tiny { 8 } else { 64 },
            seqlen: Some(loaded.model.config.max_position_embeddings),
            seed: a.seed,
        },
        roles: "q,k,v,o,gate,up,down".into(),
        measure_error: false,
    };
    let report = crate::cmd::prune::prune_model(
        &mut pruned,
        tok.as_ref(),
        slm_compress::Method::Wanda,
        0.5,
        slm_compress::Pattern::Unstructured,
        &calib,
    )?;
    let sparse = slm_eval::perplexity(&pruned, tok.as_ref(), &held_out, &popts, &mut |_, _| {})?;
    let pruned_dir = a.out.join("model-wanda50");
    let tok_bytes = std::fs::read(data.join("tokenizer.json"))?;
    let meta = serde_json::json!({"stage": "prune", "parent": model_dir.display().to_string(), "method": "wanda", "sparsity": report.overall_sparsity()});
    slm_model::save(
        &pruned,
        &pruned_dir,
        &[
            ("tokenizer.json", tok_bytes),
            ("slm.json", serde_json::to_vec_pretty(&meta)?),
        ],
    )?;
    println!("      perplexity on {} held-out story tokens: dense {:.3}, 50% Wanda {:.3} ({:+.1}%); pruned model in {}",
        dense.tokens, dense.ppl, sparse.ppl, 100.0 * (sparse.ppl / dense.ppl - 1.0), pruned_dir.display());

    // Stage 7: the model teaches a student half as wide (forward KL mixed with CE).
    let tcfg = &loaded.model.config;
    let student_steps = if a.tiny { 20 } else { steps * 3 / 5 };
    let mut ssets = vec![
        format!("data={}", toml_str(&data.display().to_string())),
        format!("teacher={}", toml_str(&model_dir.display().to_string())),
        "preset=\"1m\"".to_string(),
        format!("layers={}", tcfg.num_hidden_layers),
        format!("dim={}", tcfg.hidden_size / 2),
        format!("heads={}", (tcfg.num_attention_heads / 2).max(1)),
        format!("kv_heads={}", (tcfg.num_attention_heads / 2).max(1)),
        format!("hidden={}", tcfg.intermediate_size / 2),
        format!("steps={student_steps}"),
        format!("seq_len={}", trainer.cfg.seq_len),
        format!("batch_size={}", trainer.cfg.batch_size),
        "kd_loss=\"fkl\"".into(),
        "kd_weight=0.5".into(),
        "kd_hidden=\"cosine\"".into(),
        "lr=6e-3".into(),
        "min_lr=6e-4".into(),
        format!("warmup_steps={}", if a.tiny { 5 } else { 30 }),
        "eval_every=0".into(),
        format!("eval_windows={}", trainer.cfg.eval_windows),
        "checkpoint_every=0".into(),
        format!("seed={}", a.seed),
    ];
    ssets.extend(a.set.iter().filter(|s| s.starts_with("context=")).cloned());
    let scfg = TrainConfig::resolve(None, &ssets)?;
    let smodel = slm_model::Llama::random(
        scfg.model_config(summary.vocab_size)?,
        scfg.seed,
        &candle_core::Device::Cpu,
    )?;
    println!(
        "[7/7] distilling into a {:.2}M-parameter student (dim {}) for {} steps: 0.5·CE + 0.5·KL(teacher ‖ student) + hidden-state cosine",
        smodel.num_parameters() as f64 / 1e6,
        smodel.config.hidden_size,
        student_steps
    );
    let student_dir = a.out.join("student");
    let mut strainer = Trainer::new(scfg, FastModel::from_llama(&smodel)?, &student_dir)?;
    let soutcome = train_run(&mut strainer)?;
    if soutcome.interrupted {
        println!(
            "interrupted: resume with `slm distill train --resume {}`",
            student_dir.display()
        );
        return Ok(());
    }
    let student = slm_model::load(&student_dir.display().to_string(), None)?;
    let sppl = slm_eval::perplexity(
        &student.model,
        tok.as_ref(),
        &held_out,
        &popts,
        &mut |_, _| {},
    )?;
    // Greedy decode speed on the decode engine: the prompt, then 64 timed tokens.
    let speed = |m: &slm_model::Llama| -> Result<f64> {
        let dec = Decoder::new(m, WeightType::F32)?;
        let prompt = tok.encode("Once upon a time", true)?;
        let n = 64.min(m.config.max_position_embeddings - prompt.len());
        Ok(slm_infer::bench::time_greedy(&dec, &prompt, n, Default::default())?.1)
    };
    let (tspeed, sspeed) = (speed(&loaded.model)?, speed(&student.model)?);
    println!(
        "      {:<8} {:>10} {:>11} {:>12}",
        "", "parameters", "perplexity", "decode tok/s"
    );
    println!(
        "      {:<8} {:>10} {:>11.3} {:>12.0}",
        "teacher",
        loaded.model.num_parameters(),
        dense.ppl,
        tspeed
    );
    println!(
        "      {:<8} {:>10} {:>11.3} {:>12.0}",
        "student",
        student.model.num_parameters(),
        sppl.ppl,
        sspeed
    );
    println!(
        "      student: {:.0}% of the teacher's parameters, {:+.1}% perplexity, {:.1}× decode speed; in {}",
        100.0 * student.model.num_parameters() as f64 / loaded.model.num_parameters() as f64,
        100.0 * (sppl.ppl / dense.ppl - 1.0),
        sspeed / tspeed.max(1e-9),
        student_dir.display()
    );
    println!("\ntotal {:.0} s", t0.elapsed().as_secs_f64());
    println!("report: {}", model_dir.join("report.md").display());
    Ok(())
}
