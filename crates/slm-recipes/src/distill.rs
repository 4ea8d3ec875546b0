//! Distillation runs as `slm distill` starts them: the offline teacher cache with its progress
//! bar and summary, and a new logit-distillation run — the teacher checked against the data,
//! the student chosen (a model, a preset, or every k-th block of the teacher), the trainer.
//! The losses, teachers and objective are `slm_distill`'s.

use crate::progress::{bar_callback, progress_bar};
use crate::train::initial_model;
use slm_core::error::IoContext;
use slm_core::{Error, Result};
use slm_data::prepare::TRAIN_SHARD;
use slm_data::shards::Shard;
use slm_distill::{LocalTeacher, RunConfig};
use slm_train::Trainer;
use std::path::{Path, PathBuf};
use std::time::Instant;

/// Writes the teacher's top-`k` log-probs for every `seq_len` window of `data`'s training
/// shard to `out`; returns the summary line.
pub fn cache(
    teacher: &str,
    teacher_tokenizer: Option<&Path>,
    data: &Path,
    k: usize,
    seq_len: usize,
    out: &Path,
) -> Result<String> {
    let mut teacher = LocalTeacher::load_for_data(teacher, teacher_tokenizer, data)?;
    let shard = Shard::open(&data.join(TRAIN_SHARD))?;
    let bar = progress_bar("cache", "windows");
    let t0 = Instant::now();
    let header = slm_distill::cache::build_cache(
        &mut teacher,
        &shard,
        seq_len,
        k,
        out,
        &bar_callback(&bar),
    )?;
    bar.finish_and_clear();
    let bytes = std::fs::metadata(out).with_path(out)?.len();
    Ok(format!(
        "cached top-{} of {} windows × {} tokens = {} positions in {:.1} s: {bytes} bytes \
         ({} bytes/token, {:.1} MB) → {}",
        header.k,
        header.windows,
        header.seq_len,
        header.windows * header.seq_len,
        t0.elapsed().as_secs_f64(),
        header.bytes_per_token(),
        bytes as f64 / 1e6,
        out.display()
    ))
}

/// Where a distillation student starts.
#[derive(Debug, Clone)]
pub enum Student {
    /// This model.
    Model(String),
    /// Random weights of a size preset (with the settings' layer/width overrides).
    Preset(String),
    /// The teacher's blocks 0, k, 2k, ... (DistilBERT's initialisation).
    EveryKth(usize),
}

/// Starts a distillation run of `cfg` (teacher or cache in `cfg.distill`, data in
/// `cfg.train.data`) with `student` in `out`: the teacher is checked against the data first.
pub fn start(
    mut cfg: RunConfig,
    student: Student,
    teacher_tokenizer: Option<&Path>,
    out: &Path,
) -> Result<Trainer> {
    let data = PathBuf::from(&cfg.train.data);
    match (&cfg.distill.teacher, &cfg.distill.cache) {
        (Some(t), None) => drop(LocalTeacher::load_for_data(t, teacher_tokenizer, &data)?),
        (None, Some(_)) => {}
        _ => {
            return Err(Error::config(
                "give the teacher: --teacher MODEL (online) or --cache FILE (offline)",
            ))
        }
    }
    match student {
        Student::Model(m) => cfg.train.init = Some(m),
        Student::Preset(p) => cfg.train.preset = p,
        Student::EveryKth(k) => {
            let Some(t) = &cfg.distill.teacher else {
                return Err(Error::config(
                    "--student-every takes the layers of a --teacher model",
                ));
            };
            let dir = out.join("student-init");
            let (kept, of) =
                slm_distill::init::write_every_kth_layer(t, teacher_tokenizer, k, &dir)?;
            println!(
                "student: the teacher's blocks 0, {k}, 2·{k}, ... ({kept} of {of}) in {}",
                dir.display()
            );
            cfg.train.init = Some(dir.display().to_string());
        }
    }
    let model = initial_model(&cfg.train)?;
    let (t, d) = (&cfg.train, &cfg.distill);
    println!(
        "student: {} parameters ({} layers, dim {}); teacher: {}; loss {} (T {}, weight {}); {} steps of {} × {} tokens",
        model.num_parameters(),
        model.config().num_hidden_layers,
        model.config().hidden_size,
        d.teacher.as_deref().or(d.cache.as_deref()).unwrap_or("-"),
        slm_distill::loss::name(d.loss),
        d.temperature,
        d.weight,
        t.steps,
        t.batch_size * t.grad_accum,
        t.seq_len
    );
    slm_distill::run::start(&cfg, model, out)
}

/// `slm distill cache --samples`: a data folder and its offline KD cache from the samples a
/// remote teacher wrote with `--top-logprobs` (see `slm_distill::cache::cache_from_samples`).
/// Every 10th sample goes to the validation shard (no cache needed there); samples written
/// without top-k (a token the student's vocabulary lacks) are skipped and counted.
pub fn cache_from_samples(
    samples: &Path,
    tokenizer: &Path,
    vocab_size: Option<usize>,
    k: usize,
    seq_len: usize,
    data_out: &Path,
    cache_out: &Path,
) -> Result<String> {
    use slm_data::prepare::{DataSummary, SUMMARY, VAL_SHARD};
    use slm_data::shards::{ShardWriter, TokenWidth};
    let records = slm_distill::generate::output::read_kept(samples)?;
    let tok = slm_data::tokenizer::load_tokenizer_file(tokenizer)?;
    let vocab = vocab_size.unwrap_or(tok.vocab_size());
    let separator = tok.eos_id().or(tok.bos_id()).ok_or_else(|| {
        Error::invalid("the tokenizer has neither EOS nor BOS to separate samples with")
    })?;
    let with_topk: Vec<_> = records.iter().filter_map(|r| r.topk.clone()).collect();
    let skipped = records.len() - with_topk.len();
    if with_topk.is_empty() {
        return Err(Error::invalid(format!(
            "{}: none of its {} samples has top-k log-probabilities (generate with \
             --teacher-url URL --top-logprobs K --tokenizer STUDENT_TOKENIZER)",
            samples.display(),
            records.len()
        )));
    }
    // Validation: the last samples, about a tenth of the tokens and at least one window of
    // `seq_len + 1` (the trainer's evaluation reads whole windows).
    let total: usize = with_topk.iter().map(|s| s.ids.len() + 1).sum();
    let val_target = (total / 10).max(seq_len + 1);
    let mut train = with_topk;
    let mut val = Vec::new();
    let mut val_tokens_taken = 0;
    while val_tokens_taken < val_target && train.len() > 1 {
        let Some(s) = train.pop() else { break };
        val_tokens_taken += s.ids.len() + 1;
        val.push(s);
    }
    val.reverse();
    if val_tokens_taken < seq_len + 1 {
        return Err(Error::invalid(format!(
            "the samples hold {total} tokens: too few for a training window and a validation \
             window of {} each (lower --seq-len or generate more)",
            seq_len + 1
        )));
    }
    let cache = slm_distill::cache::cache_from_samples(&train, separator, vocab, seq_len, k)?;
    if cache.windows == 0 {
        return Err(Error::invalid(format!(
            "the samples hold {} tokens: not one window of {} (lower --seq-len or generate more)",
            cache.tokens.len(),
            seq_len + 1
        )));
    }
    std::fs::create_dir_all(data_out).with_path(data_out)?;
    let width = TokenWidth::for_vocab(vocab);
    let mut w = ShardWriter::create(&data_out.join(TRAIN_SHARD), width)?;
    w.write(&cache.tokens)?;
    let train_tokens = w.finish()?;
    let mut v = ShardWriter::create(&data_out.join(VAL_SHARD), width)?;
    for s in &val {
        v.write(&s.ids)?;
        v.write(&[separator])?;
    }
    let val_tokens = v.finish()?;
    slm_data::tokenizer::export::place_tokenizer_file(tokenizer, data_out)?;
    let summary = DataSummary {
        train_tokens,
        val_tokens,
        train_documents: train.len(),
        val_documents: val.len(),
        vocab_size: vocab,
        token_bytes: if vocab <= u16::MAX as usize + 1 { 2 } else { 4 },
        sources: vec![samples.display().to_string()],
    };
    let json = serde_json::to_vec_pretty(&summary)?;
    std::fs::write(data_out.join(SUMMARY), json).with_path(data_out)?;
    let header = slm_data::kd_cache::KdCacheHeader {
        k,
        vocab_size: vocab,
        seq_len,
        windows: cache.windows,
        shard_tokens: cache.tokens.len(),
        teacher: format!("remote samples {}", samples.display()),
    };
    let mut writer = slm_data::kd_cache::KdCacheWriter::create(cache_out, header)?;
    let per = seq_len * k;
    for w in 0..cache.windows {
        writer.write_window(
            &cache.ids[w * per..(w + 1) * per],
            &cache.logp[w * per..(w + 1) * per],
            &cache.tail[w * seq_len..(w + 1) * seq_len],
        )?;
    }
    writer.finish()?;
    Ok(format!(
        "{} samples with top-k ({skipped} without, skipped): {} train / {} val; {} training \
         tokens → {} windows of {seq_len} cached at k {k} → {} (data folder {})",
        train.len() + val.len(),
        train.len(),
        val.len(),
        cache.tokens.len(),
        cache.windows,
        cache_out.display(),
        data_out.display()
    ))
}
