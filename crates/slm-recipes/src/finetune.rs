//! Fine-tuning a model for a task (`slm finetune`): the base model, its tokenizer and chat
//! template, the instruction files packed into rows (`slm_data::sft`), the trainer with a
//! full or LoRA objective, and what the run leaves behind — the fine-tuned model in Hugging
//! Face layout, or a PEFT adapter (and on request the merged model) — with its report.
//!
//! A run directory holds `config.toml` (the [`FinetuneSettings`]), `metrics.jsonl`,
//! `checkpoints/`, `report.md`, `plots/loss.png`, and at the end either the model
//! (`config.json`, `model.safetensors`, tokenizer files) or `adapter_config.json` +
//! `adapter_model.safetensors` (+ `merged/` with `--merge`).

use crate::progress::{ctrlc_flag, BarObserver};
use slm_core::{error::IoContext, Error, Result};
use slm_data::chat::ChatTemplate;
use slm_data::sft::{prepare, SftOptions, Summary};
use slm_io::peft::LoraAdapter;
use slm_io::TokenizerSource;
use slm_model::LoadedLlama;
use slm_train::data::PackedData;
use slm_train::finetune::FinetuneSettings;
use slm_train::{CrossEntropy, FastModel, Outcome, PruneConfig, Setup, Trainer};
use std::cell::RefCell;
use std::path::{Path, PathBuf};
use std::sync::Arc;

/// What the base model brings besides its weights (kept to write the outputs).
pub struct BaseInfo {
    pub spec: String,
    pub tokenizer: TokenizerSource,
    pub tokenizer_config: Option<serde_json::Value>,
    pub generation_config: Option<serde_json::Value>,
    pub source: PathBuf,
}

/// A fine-tuning run ready to train.
pub struct Finetune {
    pub trainer: Trainer,
    pub summary: Summary,
    pub base: BaseInfo,
}

/// The base model, its tokenizer and template, and the packed data for `settings`.
fn build(settings: &mut FinetuneSettings) -> Result<(FastModel, PackedData, Summary, BaseInfo)> {
    settings.validate()?;
    let spec = settings.train.init.clone().unwrap_or_default();
    let loaded: LoadedLlama = slm_model::load(&spec, None)
        .map_err(|e| Error::msg(format!("loading the base model `{spec}`: {e}")))?;
    let tok = slm_data::tokenizer::load_tokenizer_with_config(
        &loaded.tokenizer,
        loaded.tokenizer_config.as_ref(),
    )?;
    let template_file = settings.finetune.chat_template.as_ref().map(PathBuf::from);
    let resolved = ChatTemplate::resolve(
        template_file.as_deref(),
        &loaded.tokenizer,
        loaded.tokenizer_config.as_ref(),
        &loaded.source,
        tok.as_ref(),
    );
    // A template file given but unusable is an error; a model without one only matters
    // for conversation rows, which say so when they meet it.
    let template = match (resolved, &template_file) {
        (Ok(t), _) => Some(t),
        (Err(e), Some(_)) => return Err(e),
        (Err(_), None) => None,
    };
    let f = &settings.finetune;
    let seq = settings.train.seq_len;
    let pad_id = tok.eos_id().unwrap_or(0);
    let opts = |eval_fraction: f64| SftOptions {
        train_on: f.train_on,
        add_bos: tok.adds_bos(),
        seq,
        packing: f.packing,
        pad_id,
        eval_fraction,
        seed: settings.train.seed,
    };
    let files: Vec<PathBuf> = f.data.iter().map(PathBuf::from).collect();
    let own_eval = if f.eval_data.is_empty() {
        f.eval_fraction
    } else {
        0.0
    };
    let prepared = prepare(&files, tok.as_ref(), template.as_ref(), &opts(own_eval))?;
    let mut summary = prepared.summary;
    let eval = if f.eval_data.is_empty() {
        prepared.eval
    } else {
        let files: Vec<PathBuf> = f.eval_data.iter().map(PathBuf::from).collect();
        let e = prepare(&files, tok.as_ref(), template.as_ref(), &opts(0.0))?;
        summary.eval = Some(e.summary.train);
        summary.files.extend(e.summary.files);
        Some(e.train)
    };
    settings.resolve_steps(prepared.train.rows());
    let lora = &settings.finetune.lora;
    let mut model = match lora.as_ref().and_then(|l| l.base_type.block_kind()) {
        // QLoRA: the block linears quantised from the loaded tensors, adapters attached.
        Some(kind) => {
            let tensors = loaded.model.tensors().into_iter().collect();
            let spec = lora.as_ref().map(|l| l.spec()).transpose()?;
            let spec = spec.ok_or_else(|| Error::msg("a quantised base without adapters"))?;
            FastModel::with_quantized_base(
                &loaded.model.config,
                &tensors,
                kind,
                spec,
                settings.train.seed,
            )?
        }
        None => FastModel::from_llama(&loaded.model)?,
    };
    let LoadedLlama {
        tokenizer,
        tokenizer_config,
        generation_config,
        source,
        ..
    } = loaded;
    if let (Some(l), None) = (&settings.finetune.lora, model.lora()) {
        model.attach_lora(l.spec()?, settings.train.seed)?;
    }
    let data = PackedData {
        train: Arc::new(prepared.train),
        eval,
    };
    let base = BaseInfo {
        spec,
        tokenizer,
        tokenizer_config,
        generation_config,
        source,
    };
    Ok((model, data, summary, base))
}

fn setup(settings: &FinetuneSettings, data: PackedData) -> Result<Setup> {
    Ok(Setup {
        train: settings.train.clone(),
        prune: PruneConfig::default(),
        objective: Box::new(CrossEntropy),
        settings: settings.to_toml()?,
        data: Some(Arc::new(data)),
    })
}

/// A new run of `settings` in `out` (refused when `out` holds anything, unless `force`).
pub fn start(mut settings: FinetuneSettings, out: &Path, force: bool) -> Result<Finetune> {
    let occupied = out.is_dir() && std::fs::read_dir(out).with_path(out)?.next().is_some();
    if occupied && !force {
        return Err(Error::invalid(format!(
            "{} already exists and is not empty: choose another --out, continue it with \
             `slm finetune --resume {}`, or overwrite it with --force",
            out.display(),
            out.display()
        )));
    }
    if out.is_file() {
        return Err(Error::invalid(format!("{} is a file", out.display())));
    }
    let (model, data, summary, base) = build(&mut settings)?;
    if occupied {
        std::fs::remove_dir_all(out).with_path(out)?;
    }
    let trainer = Trainer::new(setup(&settings, data)?, model, out)?;
    Ok(Finetune {
        trainer,
        summary,
        base,
    })
}

/// Continues the run in `out` from its latest checkpoint with its own settings (`steps`
/// may extend it). The data files must still hold what they held.
pub fn resume(out: &Path, steps: Option<u64>) -> Result<Finetune> {
    let p = out.join(slm_train::trainer::CONFIG);
    let text = std::fs::read_to_string(&p).with_path(&p)?;
    let mut settings = FinetuneSettings::from_toml(&text).map_err(|e| {
        Error::config(format!(
            "{}: {e} (is this a run made by `slm finetune`?)",
            p.display()
        ))
    })?;
    if let Some(s) = steps {
        settings.train.steps = s;
    }
    // `build` prepares the model and the data; `setup` takes the data; the rest is kept.
    let data: RefCell<Option<PackedData>> = RefCell::new(None);
    let kept: RefCell<Option<(Summary, BaseInfo)>> = RefCell::new(None);
    let trainer = Trainer::resume_with(
        out,
        |_, mcfg| {
            let (model, packed, summary, base) = build(&mut settings.clone())?;
            let dims = |c: &slm_model::LlamaConfig| {
                (
                    c.vocab_size,
                    c.hidden_size,
                    c.intermediate_size,
                    c.num_hidden_layers,
                    c.num_attention_heads,
                    c.num_key_value_heads,
                    c.head_dim,
                )
            };
            if dims(model.config()) != dims(mcfg) {
                return Err(Error::config(format!(
                    "the base model `{}` is not the one this run started from",
                    base.spec
                )));
            }
            *data.borrow_mut() = Some(packed);
            *kept.borrow_mut() = Some((summary, base));
            Ok(model)
        },
        |_, _| match data.borrow_mut().take() {
            Some(d) => setup(&settings, d),
            None => Err(Error::msg("resume: the data was not prepared")),
        },
    )?;
    let Some((summary, base)) = kept.into_inner() else {
        return Err(Error::msg("resume: the data was not prepared"));
    };
    Ok(Finetune {
        trainer,
        summary,
        base,
    })
}

/// The adapters of `model` in PEFT's format, recording `base` as their base model.
pub fn adapter(model: &FastModel, base: &str) -> Result<LoraAdapter> {
    let Some(lora) = model.lora() else {
        return Err(Error::invalid("the model has no LoRA adapters"));
    };
    Ok(lora.to_peft(model.config(), Some(base.to_string())))
}

/// Writes `llama` into `dir` in Hugging Face layout with the base's tokenizer files,
/// generation config and an `slm.json` of provenance.
fn save_model(
    llama: &slm_model::Llama,
    base: &BaseInfo,
    dir: &Path,
    meta: serde_json::Value,
) -> Result<()> {
    let mut extra = slm_data::tokenizer::export::hf_tokenizer_files(
        &base.tokenizer,
        base.tokenizer_config.as_ref(),
    )?;
    if let Some(g) = &base.generation_config {
        extra.push(("generation_config.json", serde_json::to_vec_pretty(g)?));
    }
    extra.push(("slm.json", serde_json::to_vec_pretty(&meta)?));
    slm_model::save(llama, dir, &extra)
}

/// What a finished run wrote.
#[derive(Debug, Clone)]
pub struct Written {
    /// The model directory (full fine-tune, or the merged model with `--merge`).
    pub model: Option<PathBuf>,
    /// The adapter directory (LoRA).
    pub adapter: Option<PathBuf>,
}

/// Trains (Ctrl-C checkpoints and stops), then writes the model or the adapter (and the
/// merged model when `merge`) and the report.
pub fn run(ft: &mut Finetune, merge: bool) -> Result<(Outcome, Written)> {
    let flag = ctrlc_flag();
    let mut obs = BarObserver::new();
    let outcome = ft.trainer.run(&flag, &mut obs)?;
    obs.finish();
    let mut written = Written {
        model: None,
        adapter: None,
    };
    let dir = ft.trainer.run_dir().to_path_buf();
    if !outcome.interrupted {
        let meta = serde_json::json!({
            "stage": "finetune",
            "base": ft.base.spec,
            "base_type": ft.trainer.model.base_kind().map(|k| format!("{k:?}").to_lowercase()),
            "steps": outcome.step,
            "tokens_seen": outcome.tokens_seen,
            "train_loss": outcome.train_loss,
            "val_loss": outcome.val_loss,
            "seconds": outcome.seconds,
        });
        let model = &ft.trainer.model;
        if model.lora().is_some() {
            let adapter = adapter(model, &ft.base.spec)?;
            adapter.write(&dir)?;
            written.adapter = Some(dir.clone());
            if merge {
                let mut llama = model.to_llama()?;
                slm_model::lora::merge(&mut llama, &adapter)?;
                let m = dir.join("merged");
                save_model(&llama, &ft.base, &m, meta)?;
                written.model = Some(m);
            }
        } else {
            save_model(&model.to_llama()?, &ft.base, &dir, meta)?;
            written.model = Some(dir.clone());
        }
    }
    slm_train::report::write_train_report(&dir, ft.trainer.settings(), &outcome)?;
    Ok((outcome, written))
}
