//! What a model is made of: parameters and sparsity by role and by tensor, as `slm inspect`
//! prints them.

use slm_core::{ParamRole, Result};
use slm_model::LoadedLlama;
use std::collections::BTreeMap;
use std::fmt::Write as _;

/// One tensor's shape and zeros.
pub struct TensorInfo {
    pub name: String,
    pub shape: Vec<usize>,
    pub numel: usize,
    pub zeros: usize,
}

/// Every tensor, and (parameters, zeros) by role group.
pub struct Summary {
    pub tensors: Vec<TensorInfo>,
    pub by_role: BTreeMap<String, (usize, usize)>,
    pub total: usize,
    pub zeros: usize,
}

/// Counts the parameters and zeros of `loaded`.
pub fn summarize(loaded: &LoadedLlama) -> Result<Summary> {
    let mut tensors = Vec::new();
    for (name, t) in loaded.model.tensors() {
        let v = t.flatten_all()?.to_vec1::<f32>()?;
        let zeros = v.iter().filter(|x| **x == 0.0).count();
        tensors.push(TensorInfo {
            name,
            shape: t.dims().to_vec(),
            numel: v.len(),
            zeros,
        });
    }
    let mut by_role: BTreeMap<String, (usize, usize)> = BTreeMap::new();
    for i in &tensors {
        let group = ParamRole::of(&i.name)
            .map(|r| r.group())
            .unwrap_or_else(|| "other".into());
        let e = by_role.entry(group).or_default();
        e.0 += i.numel;
        e.1 += i.zeros;
    }
    let total = tensors.iter().map(|i| i.numel).sum();
    let zeros = tensors.iter().map(|i| i.zeros).sum();
    Ok(Summary {
        tensors,
        by_role,
        total,
        zeros,
    })
}

impl Summary {
    /// One JSON object: source, format, config, parameters, bytes, sparsity, roles, tensors, slm.json.
    pub fn to_json(&self, loaded: &LoadedLlama) -> serde_json::Value {
        let share = |z: usize, n: usize| z as f64 / n.max(1) as f64;
        let tensors: Vec<_> = self.tensors.iter()
            .map(|i| serde_json::json!({"name": i.name, "shape": i.shape, "sparsity": share(i.zeros, i.numel)}))
            .collect();
        let roles: BTreeMap<_, _> = self
            .by_role
            .iter()
            .map(|(k, (n, z))| {
                (
                    k.clone(),
                    serde_json::json!({"params": n, "sparsity": share(*z, *n)}),
                )
            })
            .collect();
        serde_json::json!({
            "source": loaded.source.display().to_string(),
            "format": format!("{:?}", loaded.format),
            "config": loaded.model.config.to_hf_json(),
            "parameters": self.total,
            "bytes": self.total * 4,
            "dtype": "f32",
            "sparsity": share(self.zeros, self.total),
            "roles": roles,
            "tensors": tensors,
            "slm": loaded.slm_meta,
        })
    }

    /// The text report; `tensors`: list every tensor too.
    pub fn to_text(&self, loaded: &LoadedLlama, tensors: bool) -> Result<String> {
        let cfg = &loaded.model.config;
        let (total, pct) = (self.total, |z: usize, n: usize| {
            100.0 * z as f64 / n.max(1) as f64
        });
        let mut s = String::new();
        let _ = writeln!(
            s,
            "model       {} ({:?})",
            loaded.source.display(),
            loaded.format
        );
        let _ = writeln!(s,
            "arch        {:?}: {} layers, hidden {}, MLP {}, heads {} (kv {}), head_dim {}, vocab {}, context {}",
            cfg.model_type, cfg.num_hidden_layers, cfg.hidden_size, cfg.intermediate_size,
            cfg.num_attention_heads, cfg.num_key_value_heads, cfg.head_dim, cfg.vocab_size,
            cfg.max_position_embeddings
        );
        let _ = writeln!(
            s,
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
        let _ = writeln!(
            s,
            "parameters  {total} ({:.2} M), {} bytes as f32, sparsity {:.2}%",
            total as f64 / 1e6,
            total * 4,
            pct(self.zeros, total)
        );
        let _ = writeln!(
            s,
            "\n{:<16} {:>12} {:>8} {:>9}",
            "role", "params", "share", "sparsity"
        );
        for (role, (n, z)) in &self.by_role {
            let _ = writeln!(
                s,
                "{role:<16} {n:>12} {:>7.1}% {:>8.2}%",
                pct(*n, total),
                pct(*z, *n)
            );
        }
        if tensors {
            let _ = writeln!(s, "\n{:<48} {:>14} {:>9}", "tensor", "shape", "sparsity");
            for i in &self.tensors {
                let _ = writeln!(
                    s,
                    "{:<48} {:>14} {:>8.2}%",
                    i.name,
                    format!("{:?}", i.shape),
                    pct(i.zeros, i.numel)
                );
            }
        }
        if let Some(meta) = &loaded.slm_meta {
            let _ = writeln!(s, "\nslm.json    {}", serde_json::to_string_pretty(meta)?);
        }
        Ok(s)
    }
}
