//! Each stage kind: what it checks before the run starts ([`check`]) and what it does
//! ([`run`]), by calling the library that owns the work (slm-data, slm-train, slm-compress,
//! slm-infer, slm-eval).

use crate::calib::CalibSpec;
use crate::prune::{parse_roles, prune_meta, prune_model, save_pruned, MethodName, PruneOptions};
use crate::quantize::{quantize_to_gguf, QuantizeOptions};
use crate::recipe::{
    Evaluate, ExportFormat, Kind, Prepare, Prune, Quantize, Recipe, Structured, Train, Want,
};
use crate::run::StageRecord;
use crate::train::{initial_model, toml_str, train_run};
use slm_compress::Pattern;
use slm_core::{Error, Result};
use slm_data::documents::{expand_inputs, read_documents, Split};
use slm_distill::RunConfig;
use slm_io::gguf::export::GgufType;
use std::fmt::Write as _;
use std::path::Path;

fn fig(k: &str, v: impl std::fmt::Display) -> (String, String) {
    (k.to_string(), v.to_string())
}

/// Checks stage `i`'s inputs and settings (everything that can be known before the run).
pub fn check(r: &Recipe, root: &Path, i: usize) -> Result<()> {
    let s = &r.stages[i];
    let name = &s.name;
    let stage_err = |msg: String| {
        Error::config(format!(
            "{}, line {}: stage `{name}`: {msg}",
            r.origin, s.line
        ))
    };
    match &s.kind {
        Kind::Prepare(p) => {
            if p.stories.is_some() != p.inputs.is_empty() {
                return Err(stage_err("give either `stories` or `inputs`".into()));
            }
            if p.tokenizer.is_some() == p.bpe_vocab.is_some() {
                return Err(stage_err(
                    "give either `tokenizer` (a file) or `bpe_vocab` (train one)".into(),
                ));
            }
            for input in &p.inputs {
                expand_inputs(std::slice::from_ref(input.get_ref()))
                    .map_err(|e| r.error_at(input.span().start, format!("stage `{name}`: {e}")))?;
            }
            if let Some(t) = &p.tokenizer {
                r.resolve(root, i, t, Want::Text)?;
            }
            if !(0.0..1.0).contains(&p.val_fraction) {
                return Err(stage_err("`val_fraction` must be in [0, 1)".into()));
            }
        }
        Kind::Train(t) | Kind::Distill(t) | Kind::Recover(t) => {
            let data = r.resolve(root, i, &t.data, Want::Data)?;
            let init = t
                .init
                .as_ref()
                .map(|m| r.resolve(root, i, m, Want::Model))
                .transpose()?;
            let teacher = t
                .teacher
                .as_ref()
                .map(|m| r.resolve(root, i, m, Want::Model))
                .transpose()?;
            match &s.kind {
                Kind::Distill(_) if teacher.is_none() => {
                    return Err(stage_err("a distill stage needs `teacher`".into()))
                }
                Kind::Recover(_) if init.is_none() => {
                    return Err(stage_err(
                        "a recover stage needs `init` (the pruned model)".into(),
                    ))
                }
                _ => {}
            }
            if let Some(w) = t.student_width {
                if !matches!(s.kind, Kind::Distill(_)) || init.is_some() || !(w > 0.0 && w <= 1.0) {
                    return Err(stage_err(
                        "`student_width` (in (0, 1]) belongs to a distill stage without `init`"
                            .into(),
                    ));
                }
            }
            train_config(r, i, t, &data, init.as_deref(), teacher.as_deref(), None)?;
        }
        Kind::Prune(p) => {
            r.resolve(root, i, &p.model, Want::Model)?;
            prune_options(r, root, i, p)?;
            if !(0.0..1.0).contains(&p.sparsity) {
                return Err(stage_err(format!(
                    "`sparsity` must be in [0, 1), got {}",
                    p.sparsity
                )));
            }
        }
        Kind::Structured(p) => {
            r.resolve(root, i, &p.model, Want::Model)?;
            let o = structured_options(r, root, i, p)?;
            if o.shape.is_empty() {
                return Err(stage_err(
                    "say what to keep: `target_params`, or `layers`, `hidden`, `heads`, `kv_heads`, `mlp`".into(),
                ));
            }
        }
        Kind::Quantize(q) => {
            r.resolve(root, i, &q.model, Want::Model)?;
            quantize_options(r, root, i, q)?;
        }
        Kind::Export(e) => {
            r.resolve(root, i, &e.model, Want::Model)?;
            export_type(r, name, e.format, e.ty.as_ref())?;
        }
        Kind::Evaluate(e) => {
            if e.models.is_empty() {
                return Err(stage_err("`models` lists no model".into()));
            }
            for m in &e.models {
                r.resolve(root, i, m, Want::Model)?;
            }
            if e.text.is_some() == e.stories.is_some() {
                return Err(stage_err("give either `text` (a file) or `stories`".into()));
            }
            if let Some(t) = &e.text {
                r.resolve(root, i, t, Want::Text)?;
            }
        }
    }
    Ok(())
}

/// Runs stage `i` into `dir`; None when a training stage was interrupted (Ctrl-C).
pub fn run(r: &Recipe, root: &Path, i: usize, dir: &Path) -> Result<Option<StageRecord>> {
    std::fs::create_dir_all(dir).map_err(|e| Error::io(dir, e))?;
    let seed = r.header.seed;
    Ok(Some(match &r.stages[i].kind {
        Kind::Prepare(p) => prepare(r, root, i, p, dir, seed)?,
        Kind::Train(t) | Kind::Distill(t) | Kind::Recover(t) => return train(r, root, i, t, dir),
        Kind::Prune(p) => prune(r, root, i, p, dir)?,
        Kind::Structured(p) => structured(r, root, i, p, dir)?,
        Kind::Quantize(q) => quantize(r, root, i, q, dir)?,
        Kind::Export(e) => {
            let src = r.resolve(root, i, &e.model, Want::Model)?;
            let spec = src.display().to_string();
            let loaded = slm_model::load(&spec, None)?;
            let ty = export_type(r, &r.stages[i].name, e.format, e.ty.as_ref())?;
            let (out, what) = match e.format {
                ExportFormat::Hf => {
                    crate::export::export_hf(&loaded, dir)?;
                    (dir.to_path_buf(), "Hugging Face folder".to_string())
                }
                ExportFormat::Gguf => {
                    let out = dir.join("model.gguf");
                    let (rep, _) = crate::export::export_gguf(&loaded, &spec, ty, &out)?;
                    (
                        out,
                        format!(
                            "GGUF, {:?}, {} tensors, {:.1} MB",
                            ty,
                            rep.tensors,
                            rep.bytes as f64 / 1e6
                        ),
                    )
                }
            };
            StageRecord {
                figures: vec![fig("wrote", format!("{} ({what})", out.display()))],
                ..Default::default()
            }
        }
        Kind::Evaluate(e) => evaluate(r, root, i, e, dir)?,
    }))
}

fn prepare(
    r: &Recipe,
    root: &Path,
    i: usize,
    p: &Prepare,
    dir: &Path,
    seed: u64,
) -> Result<StageRecord> {
    let seed = p.seed.unwrap_or(seed);
    let (files, docs, split, bytes) = if let Some(s) = &p.stories {
        let corpus = crate::stories::generate(s.seed.unwrap_or(seed), s.bytes);
        let path = dir.join("corpus.txt");
        std::fs::write(&path, &corpus).map_err(|e| Error::io(&path, e))?;
        let docs: Vec<String> = crate::stories::documents(&corpus)
            .into_iter()
            .map(String::from)
            .collect();
        (
            vec![path],
            docs,
            Split::Auto(crate::stories::SEPARATOR.into()),
            corpus.len(),
        )
    } else {
        let inputs: Vec<String> = p.inputs.iter().map(|s| s.get_ref().clone()).collect();
        let files = expand_inputs(&inputs)?;
        let mut docs = Vec::new();
        let mut bytes = 0;
        for f in &files {
            bytes += std::fs::metadata(f).map_err(|e| Error::io(f, e))?.len() as usize;
            if p.bpe_vocab.is_some() {
                docs.extend(read_documents(f, &Split::default())?);
            }
        }
        (files, docs, Split::default(), bytes)
    };
    let tok_path = match (&p.tokenizer, p.bpe_vocab) {
        (Some(t), _) => {
            // tokenizer.json (+ config) copied, a GGUF model's vocabulary written as
            // tokenizer.json, a llama2.c tokenizer.bin copied: as `slm data prepare` does.
            let src = r.resolve(root, i, t, Want::Text)?;
            slm_data::tokenizer::export::place_tokenizer_file(&src, dir)?
        }
        (None, vocab) => {
            let opts = slm_data::tokenizer::train::BpeTrainOptions {
                vocab_size: vocab.unwrap_or(4096),
                ..Default::default()
            };
            println!(
                "      training a {}-token byte-level BPE tokenizer on {} documents",
                opts.vocab_size,
                docs.len()
            );
            let tok = slm_data::tokenizer::train::train_bpe(docs.iter(), &opts)?;
            let path = dir.join("tokenizer.json");
            slm_data::tokenizer::train::save(&tok, &path)?;
            path
        }
    };
    let tokenizer = slm_data::tokenizer::load_tokenizer_file(&tok_path)?;
    let opts = slm_data::prepare::PrepareOptions {
        split,
        val_fraction: p.val_fraction,
        seed,
        ..Default::default()
    };
    let bar = crate::progress::progress_bar("tokenising", "documents");
    let s = slm_data::prepare::prepare(
        &files,
        tokenizer.as_ref(),
        dir,
        &opts,
        &crate::progress::bar_callback(&bar),
    )?;
    bar.finish_and_clear();
    Ok(StageRecord {
        figures: vec![
            fig("corpus", format!("{} files, {bytes} bytes", files.len())),
            fig(
                "tokens",
                format!(
                    "train {} ({} documents), val {} ({} documents), {:.2} bytes/token",
                    s.train_tokens,
                    s.train_documents,
                    s.val_tokens,
                    s.val_documents,
                    bytes as f64 / (s.train_tokens + s.val_tokens).max(1) as f64
                ),
            ),
            fig("vocabulary", s.vocab_size),
        ],
        ..Default::default()
    })
}

/// The training settings of a train/distill/recover stage: the recipe seed, its `config`
/// table, the inputs, a student `student_width` of the `teacher_config`'s widths, its sets.
fn train_config(
    r: &Recipe,
    i: usize,
    t: &Train,
    data: &Path,
    init: Option<&Path>,
    teacher: Option<&Path>,
    teacher_config: Option<&slm_model::LlamaConfig>,
) -> Result<RunConfig> {
    let kind = &r.stages[i].kind;
    let path = |p: &Path| toml_str(&p.display().to_string());
    let mut sets = Vec::new();
    if !t
        .config
        .as_ref()
        .is_some_and(|c| c.get_ref().contains_key("seed"))
    {
        sets.push(format!("seed={}", r.header.seed));
    }
    sets.push(format!("data={}", path(data)));
    if let Some(m) = init {
        sets.push(format!("init={}", path(m)));
    }
    if let Some(m) = teacher {
        sets.push(format!("teacher={}", path(m)));
    }
    if t.hold_masks.unwrap_or(matches!(kind, Kind::Recover(_))) {
        sets.push("hold_masks=true".into());
    }
    if let (Some(w), Some(c)) = (t.student_width, teacher_config) {
        let scale = |x: usize| ((x as f64 * w).round() as usize).max(1);
        let heads = scale(c.num_attention_heads);
        sets.extend([
            format!("layers={}", c.num_hidden_layers),
            format!("dim={}", scale(c.hidden_size)),
            format!("heads={heads}"),
            format!("kv_heads={}", scale(c.num_key_value_heads).min(heads)),
            format!("hidden={}", scale(c.intermediate_size)),
        ]);
    }
    sets.extend(t.sets.iter().cloned());
    let text = match &t.config {
        Some(c) => Some(toml::to_string(c.get_ref()).map_err(|e| Error::config(e.to_string()))?),
        None => None,
    };
    RunConfig::resolve(text.as_deref(), &sets).map_err(|e| match &t.config {
        Some(c) => r.config_error(c, &r.stages[i].name, e),
        None => Error::config(format!(
            "{}, line {}: stage `{}`: {e}",
            r.origin, r.stages[i].line, r.stages[i].name
        )),
    })
}

fn train(r: &Recipe, root: &Path, i: usize, t: &Train, dir: &Path) -> Result<Option<StageRecord>> {
    let mut trainer = if dir.join("checkpoints").join("latest.ckpt").is_file() {
        let tr = slm_distill::run::resume(dir, None)?;
        println!(
            "      resuming from its checkpoint at step {} of {}",
            tr.step, tr.cfg.steps
        );
        tr
    } else {
        let data = r.resolve(root, i, &t.data, Want::Data)?;
        let init = t
            .init
            .as_ref()
            .map(|m| r.resolve(root, i, m, Want::Model))
            .transpose()?;
        let teacher = t
            .teacher
            .as_ref()
            .map(|m| r.resolve(root, i, m, Want::Model))
            .transpose()?;
        let tcfg = match (&teacher, t.student_width) {
            (Some(p), Some(_)) => Some(
                slm_model::load(&p.display().to_string(), None)?
                    .model
                    .config,
            ),
            _ => None,
        };
        let cfg = train_config(
            r,
            i,
            t,
            &data,
            init.as_deref(),
            teacher.as_deref(),
            tcfg.as_ref(),
        )?;
        let model = initial_model(&cfg.train)?;
        println!(
            "      {:.2}M parameters ({} layers, dim {}), {} steps of {} × {} tokens",
            model.num_parameters() as f64 / 1e6,
            model.config().num_hidden_layers,
            model.config().hidden_size,
            cfg.train.steps,
            cfg.train.batch_size * cfg.train.grad_accum,
            cfg.train.seq_len
        );
        slm_distill::run::start(&cfg, model, dir)?
    };
    let o = train_run(&mut trainer)?;
    if o.interrupted {
        return Ok(None);
    }
    let name = &r.stages[i].name;
    let mut figures = vec![
        fig("parameters", trainer.model.num_parameters()),
        fig(
            "trained",
            format!(
                "{} steps, {} tokens in {:.1} s",
                o.step, o.tokens_seen, o.seconds
            ),
        ),
        fig("train loss", format!("{:.4}", o.train_loss)),
    ];
    if let Some(v) = o.val_loss {
        figures.push(fig(
            "validation loss",
            format!("{v:.4} (perplexity {:.2})", v.exp()),
        ));
    }
    let d = RunConfig::from_toml(trainer.settings())?.distill;
    if d.teacher.is_some() || d.cache.is_some() {
        figures.push(fig(
            "distillation",
            format!(
                "{} loss, weight {}, T {}",
                slm_distill::loss::name(d.loss),
                d.weight,
                d.temperature
            ),
        ));
    }
    let files = ["report.md", "plots/loss.png"]
        .iter()
        .filter(|f| dir.join(f).is_file())
        .map(|f| format!("{name}/{f}"))
        .collect();
    Ok(Some(StageRecord {
        figures,
        files,
        ..Default::default()
    }))
}

/// The calibration of a prune or quantize stage: a file or a prepare stage's text.
fn calib_spec(
    r: &Recipe,
    root: &Path,
    i: usize,
    calib: Option<&crate::recipe::Ref>,
    nsamples: Option<usize>,
    seqlen: Option<usize>,
    seed: Option<u64>,
) -> Result<CalibSpec> {
    Ok(CalibSpec {
        file: calib
            .map(|c| r.resolve(root, i, c, Want::Text))
            .transpose()?,
        nsamples: nsamples.unwrap_or(128),
        seqlen,
        seed: seed.unwrap_or(r.header.seed),
    })
}

fn prune_options(r: &Recipe, root: &Path, i: usize, p: &Prune) -> Result<(Pattern, PruneOptions)> {
    let name = &r.stages[i].name;
    let pattern = match &p.pattern {
        Some(s) => Pattern::parse(s.get_ref())
            .map_err(|e| r.error_at(s.span().start, format!("stage `{name}`: {e}")))?,
        None => Pattern::Unstructured,
    };
    let roles = match &p.roles {
        Some(s) => parse_roles(s.get_ref())
            .map_err(|e| r.error_at(s.span().start, format!("stage `{name}`: {e}")))?,
        None => slm_core::LinearRole::ALL.to_vec(),
    };
    let calib = calib_spec(r, root, i, p.calib.as_ref(), p.nsamples, p.seqlen, p.seed)?;
    if calib.file.is_none() && p.method.needs_calibration() {
        return Err(Error::config(format!(
            "{}, line {}: stage `{name}`: method `{}` needs calibration text: set `calib`",
            r.origin,
            r.stages[i].line,
            p.method.name()
        )));
    }
    Ok((
        pattern,
        PruneOptions {
            calib,
            roles,
            measure_error: p.measure_error,
        },
    ))
}

fn structured_options(
    r: &Recipe,
    root: &Path,
    i: usize,
    p: &Structured,
) -> Result<crate::structured::StructuredOptions> {
    use crate::structured::{ImportanceSource, ShapeRequest, StructuredOptions};
    let name = &r.stages[i].name;
    let calib = calib_spec(r, root, i, Some(&p.calib), p.nsamples, p.seqlen, p.seed)?;
    let importance = match &p.importance {
        Some(s) => ImportanceSource::parse(s.get_ref(), calib.seed)
            .map_err(|e| r.error_at(s.span().start, format!("stage `{name}`: {e}")))?,
        None => ImportanceSource::Measured(slm_compress::structured::Aggregate::L2),
    };
    let layer_metric = match &p.layer_metric {
        Some(s) => slm_compress::structured::LayerMetric::parse(s.get_ref())
            .map_err(|e| r.error_at(s.span().start, format!("stage `{name}`: {e}")))?,
        None => Default::default(),
    };
    let shape = ShapeRequest {
        layers: p.layers,
        hidden: p.hidden,
        heads: p.heads,
        kv_heads: p.kv_heads,
        mlp: p.mlp,
        target: p.target_params.clone(),
    };
    if shape.target.is_some() && shape.explicit() {
        return Err(Error::config(format!(
            "{}, line {}: stage `{name}`: give either `target_params` or explicit sizes, not both",
            r.origin, r.stages[i].line
        )));
    }
    Ok(StructuredOptions {
        calib,
        importance,
        layer_metric,
        shape,
        score_samples: p.score_samples.unwrap_or(16),
        ..Default::default()
    })
}

fn structured(
    r: &Recipe,
    root: &Path,
    i: usize,
    p: &Structured,
    dir: &Path,
) -> Result<StageRecord> {
    use crate::structured as st;
    let src = r.resolve(root, i, &p.model, Want::Model)?;
    let o = structured_options(r, root, i, p)?;
    let loaded = slm_model::load(&src.display().to_string(), None)?;
    let tok = slm_data::tokenizer::load_tokenizer(&loaded.tokenizer)?;
    let (pruned, report) = st::structured_prune(&loaded.model, tok.as_ref(), &o)?;
    let meta = st::structured_meta(&src.display().to_string(), &report, &o.calib);
    st::save_structured(&pruned, &loaded.tokenizer, &meta, &report.importance, dir)?;
    let name = &r.stages[i].name;
    let mut figures = vec![
        fig("shape", format!("{} → {}", report.parent, report.shape)),
        fig(
            "parameters",
            format!(
                "{:.1}M → {:.1}M; non-embedding {:.1}M → {:.1}M ({:.1}%)",
                report.parent_params as f64 / 1e6,
                report.params as f64 / 1e6,
                report.parent_non_embedding as f64 / 1e6,
                report.non_embedding as f64 / 1e6,
                100.0 * report.non_embedding as f64 / report.parent_non_embedding as f64
            ),
        ),
        fig(
            "importance",
            format!(
                "{}, layers by {}",
                report.importance.source,
                report.layer_metric.name()
            ),
        ),
        fig("time", format!("{:.1} s", report.seconds)),
    ];
    if let Some(best) = report.chosen {
        let c = &report.candidates[best];
        figures.push(fig(
            "chosen",
            format!(
                "`{}` (calibration loss {:.4}, lowest of {} candidates)",
                c.name,
                c.loss,
                report.candidates.len()
            ),
        ));
    }
    Ok(StageRecord {
        figures,
        files: vec![
            format!("{name}/importance/layers.png"),
            format!("{name}/importance/mlp.png"),
        ],
        markdown: format!("```text\n{}```\n", st::summary(&report)),
        ..Default::default()
    })
}

/// How a method is written in figures.
fn method_label(m: MethodName) -> &'static str {
    match m {
        MethodName::Wanda => "Wanda",
        MethodName::Sparsegpt => "SparseGPT",
        MethodName::Obd => "OBD",
        other => other.name(),
    }
}

fn prune(r: &Recipe, root: &Path, i: usize, p: &Prune, dir: &Path) -> Result<StageRecord> {
    let src = r.resolve(root, i, &p.model, Want::Model)?;
    let (pattern, opts) = prune_options(r, root, i, p)?;
    let mut loaded = slm_model::load(&src.display().to_string(), None)?;
    let tok = slm_data::tokenizer::load_tokenizer(&loaded.tokenizer)?;
    let report = prune_model(
        &mut loaded.model,
        tok.as_ref(),
        p.method,
        p.sparsity,
        pattern,
        &opts,
    )?;
    save_pruned(
        &loaded.model,
        &loaded.tokenizer,
        &prune_meta(&src.display().to_string(), &report, &opts.calib),
        dir,
    )?;
    Ok(StageRecord {
        figures: vec![
            fig(
                "pruned",
                format!(
                    "{:.0}% {} ({pattern}): {:.1}% of the pruned tensors are zero",
                    100.0 * pattern.effective_sparsity(p.sparsity),
                    method_label(p.method),
                    100.0 * report.overall_sparsity()
                ),
            ),
            fig(
                "calibration",
                format!(
                    "{} windows, {} tokens",
                    report.calib_windows, report.calib_tokens
                ),
            ),
            fig("time", format!("{:.1} s", report.seconds)),
        ],
        ..Default::default()
    })
}

fn quantize_options(r: &Recipe, root: &Path, i: usize, q: &Quantize) -> Result<QuantizeOptions> {
    let name = &r.stages[i].name;
    let ty = GgufType::parse(q.ty.get_ref())
        .map_err(|e| r.error_at(q.ty.span().start, format!("stage `{name}`: {e}")))?;
    let calib = calib_spec(r, root, i, q.calib.as_ref(), q.nsamples, q.seqlen, q.seed)?;
    if calib.file.is_some() != q.gptq {
        return Err(Error::config(format!(
            "{}, line {}: stage `{name}`: `calib` goes with `gptq = true` and only with it",
            r.origin, r.stages[i].line
        )));
    }
    let o = QuantizeOptions {
        ty,
        gptq: q.gptq.then_some(calib),
        damp: q.damp.unwrap_or(0.01),
    };
    o.validate()
        .map_err(|e| r.error_at(q.ty.span().start, format!("stage `{name}`: {e}")))?;
    Ok(o)
}

fn quantize(r: &Recipe, root: &Path, i: usize, q: &Quantize, dir: &Path) -> Result<StageRecord> {
    let src = r.resolve(root, i, &q.model, Want::Model)?;
    let spec = src.display().to_string();
    let o = quantize_options(r, root, i, q)?;
    let loaded = slm_model::load(&spec, None)?;
    let tok = match o.gptq {
        Some(_) => Some(slm_data::tokenizer::load_tokenizer(&loaded.tokenizer)?),
        None => None,
    };
    let out = dir.join("model.gguf");
    let outcome = quantize_to_gguf(loaded, &spec, tok.as_deref(), &o, &out, &mut |w| {
        eprintln!("warning: {w}")
    })?;
    let mut lines = outcome.summary(&out, q.ty.get_ref()).into_iter();
    let mut figures = vec![fig("wrote", lines.next().unwrap_or_default())];
    figures.push(fig(
        "error",
        format!(
            "‖W − Ŵ‖²/‖W‖² {:.3e} over all matrices",
            outcome.report.overall_relative_error
        ),
    ));
    if let Some((g, n)) = outcome.gptq_means() {
        figures.push(fig(
            "GPTQ",
            format!("mean output error {g:.3e} vs {n:.3e} round-to-nearest"),
        ));
    }
    Ok(StageRecord {
        figures,
        ..Default::default()
    })
}

fn export_type(
    r: &Recipe,
    name: &str,
    format: ExportFormat,
    ty: Option<&toml::Spanned<String>>,
) -> Result<GgufType> {
    match (format, ty) {
        (ExportFormat::Hf, Some(t)) => Err(r.error_at(
            t.span().start,
            format!("stage `{name}`: `type` is for GGUF exports"),
        )),
        (_, Some(t)) => GgufType::parse(t.get_ref())
            .map_err(|e| r.error_at(t.span().start, format!("stage `{name}`: {e}"))),
        (_, None) => Ok(GgufType::F16),
    }
}

fn evaluate(r: &Recipe, root: &Path, i: usize, e: &Evaluate, dir: &Path) -> Result<StageRecord> {
    let (text, sep) = match (&e.text, &e.stories) {
        (Some(t), _) => {
            let path = r.resolve(root, i, t, Want::Text)?;
            (
                slm_eval::read_eval_text(&path, slm_eval::TextFormat::Auto)?,
                e.doc_separator.clone(),
            )
        }
        (None, Some(s)) => (
            crate::stories::generate(s.seed.unwrap_or(r.header.seed + 1_000_003), s.bytes),
            Some(
                e.doc_separator
                    .clone()
                    .unwrap_or_else(|| crate::stories::SEPARATOR.into()),
            ),
        ),
        (None, None) => return Err(Error::config("evaluate: no text")),
    };
    let popts = slm_eval::PplOptions {
        ctx: e.ctx,
        add_bos: true,
        doc_separator: sep,
        ..Default::default()
    };
    let mut rows: Vec<(String, usize, f64, Option<f64>)> = Vec::new();
    let mut md =
        String::from("| model | parameters | perplexity | decode tok/s |\n|---|---|---|---|\n");
    let mut samples = String::new();
    let mut json = Vec::new();
    for m in &e.models {
        let path = r.resolve(root, i, m, Want::Model)?;
        let loaded = slm_model::load(&path.display().to_string(), None)?;
        let tok = slm_data::tokenizer::load_tokenizer(&loaded.tokenizer)?;
        let ppl = slm_eval::perplexity(&loaded.model, tok.as_ref(), &text, &popts, &mut |_, _| {})?;
        let speed = if e.speed {
            let dec =
                slm_infer::decode::Decoder::new(&loaded.model, slm_infer::decode::WeightType::F32)?;
            let prompt = tok.encode(
                e.prompts.first().map_or("Once upon a time", |p| p.as_str()),
                true,
            )?;
            let n = 64.min(
                loaded
                    .model
                    .config
                    .max_position_embeddings
                    .saturating_sub(prompt.len()),
            );
            Some(slm_infer::bench::time_greedy(&dec, &prompt, n, Default::default())?.1)
        } else {
            None
        };
        for (k, prompt) in e.prompts.iter().enumerate() {
            let opts = slm_infer::GenerateOptions {
                max_tokens: e.max_tokens,
                sampler: slm_infer::SamplerConfig {
                    temperature: e.temperature,
                    top_p: 0.95,
                    seed: r.header.seed + k as u64,
                    ..Default::default()
                },
                ..Default::default()
            };
            let g =
                slm_infer::generate(&loaded.model, tok.as_ref(), prompt, &opts, &mut |_| Ok(()))?;
            let line = format!("{} > {prompt}{}", m.get_ref(), g.text.replace('\n', " "));
            println!("      {line}");
            let _ = writeln!(samples, "    {line}");
        }
        let params = loaded.model.num_parameters();
        let sp = speed.map_or("-".into(), |s| format!("{s:.0}"));
        let _ = writeln!(md, "| {} | {params} | {:.3} | {sp} |", m.get_ref(), ppl.ppl);
        json.push(serde_json::json!({"model": m.get_ref(), "path": path, "parameters": params, "ppl": ppl.ppl, "tokens": ppl.tokens, "decode_tok_s": speed}));
        rows.push((m.get_ref().clone(), params, ppl.ppl, speed));
    }
    let eval_json = dir.join("eval.json");
    slm_io::atomic::write_atomic(&eval_json, &serde_json::to_vec_pretty(&json)?)?;
    let mut figures: Vec<(String, String)> = rows
        .iter()
        .map(|(n, p, ppl, s)| {
            fig(
                n,
                format!(
                    "{p} parameters, perplexity {ppl:.3}{}",
                    s.map_or(String::new(), |s| format!(", {s:.0} tok/s decode"))
                ),
            )
        })
        .collect();
    if let Some((first, rest)) = rows.split_first() {
        for (n, p, ppl, s) in rest {
            let speedup = match (s, first.3) {
                (Some(s), Some(f)) => format!(", {:.1}× decode speed", s / f.max(1e-9)),
                _ => String::new(),
            };
            figures.push(fig(
                n,
                format!(
                    "{:.0}% of `{}`'s parameters, {:+.1}% perplexity{speedup}",
                    100.0 * *p as f64 / first.1.max(1) as f64,
                    first.0,
                    100.0 * (ppl / first.2 - 1.0)
                ),
            ));
        }
    }
    if !samples.is_empty() {
        let _ = write!(md, "\nSamples:\n\n{samples}");
    }
    let name = &r.stages[i].name;
    Ok(StageRecord {
        figures,
        files: vec![format!("{name}/eval.json")],
        markdown: md,
        ..Default::default()
    })
}
