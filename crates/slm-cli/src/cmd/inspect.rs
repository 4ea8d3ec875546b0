//! `slm inspect`: what a model is made of.

use crate::common::{load_model, ModelArgs};
use anyhow::Result;
use clap::Args as ClapArgs;
use slm_core::ParamRole;
use std::collections::BTreeMap;

#[derive(ClapArgs, Debug)]
#[command(after_help = "Example:\n  slm inspect runs/student-2of4 --tensors")]
pub struct Args {
    /// Model: HF directory, HF cache id, .gguf or llama2.c checkpoint.
    pub model: String,
    /// Tokenizer for models that carry none (only used to report it).
    #[arg(long)]
    pub tokenizer: Option<std::path::PathBuf>,
    /// List every tensor with its shape and sparsity.
    #[arg(long)]
    pub tensors: bool,
    /// Print one JSON object.
    #[arg(long)]
    pub json: bool,
}

struct TensorInfo {
    name: String,
    shape: Vec<usize>,
    numel: usize,
    zeros: usize,
}

pub fn run(args: Args) -> Result<()> {
    let loaded = load_model(&ModelArgs {
        model: args.model.clone(),
        tokenizer: args.tokenizer.clone(),
    })?;
    let model = &loaded.model;
    let cfg = &model.config;
    let mut infos = Vec::new();
    for (name, t) in model.tensors() {
        let v = t.flatten_all()?.to_vec1::<f32>()?;
        let zeros = v.iter().filter(|x| **x == 0.0).count();
        infos.push(TensorInfo {
            name,
            shape: t.dims().to_vec(),
            numel: v.len(),
            zeros,
        });
    }
    let mut by_role: BTreeMap<String, (usize, usize)> = BTreeMap::new();
    for i in &infos {
        let group = ParamRole::of(&i.name)
            .map(|r| r.group())
            .unwrap_or_else(|| "other".into());
        let e = by_role.entry(group).or_default();
        e.0 += i.numel;
        e.1 += i.zeros;
    }
    let total: usize = infos.iter().map(|i| i.numel).sum();
    let zeros: usize = infos.iter().map(|i| i.zeros).sum();
    let dtype = "f32";
    if args.json {
        let tensors: Vec<_> = infos
            .iter()
            .map(|i| serde_json::json!({"name": i.name, "shape": i.shape, "sparsity": i.zeros as f64 / i.numel.max(1) as f64}))
            .collect();
        let roles: BTreeMap<_, _> = by_role
            .iter()
            .map(|(k, (n, z))| {
                (
                    k.clone(),
                    serde_json::json!({"params": n, "sparsity": *z as f64 / (*n).max(1) as f64}),
                )
            })
            .collect();
        let v = serde_json::json!({
            "source": loaded.source.display().to_string(),
            "format": format!("{:?}", loaded.format),
            "config": cfg.to_hf_json(),
            "parameters": total,
            "bytes": total * 4,
            "dtype": dtype,
            "sparsity": zeros as f64 / total.max(1) as f64,
            "roles": roles,
            "tensors": tensors,
            "slm": loaded.slm_meta,
        });
        println!("{}", serde_json::to_string_pretty(&v)?);
        return Ok(());
    }
    println!(
        "model       {} ({:?})",
        loaded.source.display(),
        loaded.format
    );
    println!(
        "arch        {:?}: {} layers, hidden {}, MLP {}, heads {} (kv {}), head_dim {}, vocab {}, context {}",
        cfg.model_type,
        cfg.num_hidden_layers,
        cfg.hidden_size,
        cfg.intermediate_size,
        cfg.num_attention_heads,
        cfg.num_key_value_heads,
        cfg.head_dim,
        cfg.vocab_size,
        cfg.max_position_embeddings
    );
    println!(
        "rope        theta {}{}; norm eps {:e}; tied embeddings: {}; qkv bias: {}",
        cfg.rope_theta,
        cfg.rope_scaling
            .as_ref()
            .map(|s| format!(", scaling {s:?}"))
            .unwrap_or_default(),
        cfg.rms_norm_eps,
        cfg.tie_word_embeddings,
        cfg.qkv_bias
    );
    println!(
        "parameters  {} ({:.2} M), {} bytes as {dtype}, sparsity {:.2}%",
        total,
        total as f64 / 1e6,
        total * 4,
        100.0 * zeros as f64 / total.max(1) as f64
    );
    println!(
        "\n{:<16} {:>12} {:>8} {:>9}",
        "role", "params", "share", "sparsity"
    );
    for (role, (n, z)) in &by_role {
        println!(
            "{:<16} {:>12} {:>7.1}% {:>8.2}%",
            role,
            n,
            100.0 * *n as f64 / total.max(1) as f64,
            100.0 * *z as f64 / (*n).max(1) as f64
        );
    }
    if args.tensors {
        println!("\n{:<48} {:>14} {:>9}", "tensor", "shape", "sparsity");
        for i in &infos {
            println!(
                "{:<48} {:>14} {:>8.2}%",
                i.name,
                format!("{:?}", i.shape),
                100.0 * i.zeros as f64 / i.numel.max(1) as f64
            );
        }
    }
    if let Some(meta) = &loaded.slm_meta {
        println!("\nslm.json    {}", serde_json::to_string_pretty(meta)?);
    }
    Ok(())
}
