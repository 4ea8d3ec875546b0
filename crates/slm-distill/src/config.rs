//! A run's settings file: one table per concern, each rejecting unknown keys.
//!
//! ```toml
//! [train]                  # slm_train::TrainConfig: data, model size, batches, optimiser, ...
//! data = "data/"
//! steps = 2000
//! [prune]                  # slm_train::PruneConfig: masks held, gradual pruning
//! sparsity = 0.5
//! [distill]                # DistillConfig: teacher or cache, loss, weight, temperature
//! teacher = "runs/teacher"
//! loss = "jsd:0.5"
//! [distill.on_policy]      # OnPolicyConfig: GKD's student-generated batches
//! lambda = 0.5
//! [distill.hidden]         # HiddenConfig: hidden-state matching
//! kind = "cosine"
//! ```
//!
//! Settings come from, in order: defaults, a TOML file, typed values the caller sets (the
//! command line's options), `--set key=value` overrides (each value parsed as TOML, so
//! `--set train.lr=3e-4` is a float and `--set train.preset="15m"` a string; a bare word is a
//! string). The resolved file is written to the run directory as `config.toml` and into
//! every checkpoint, which `--resume` reads back.
//!
//! Before the split the file was one flat table; its keys keep working wherever a key is
//! read (a file, an old run's `config.toml`, `--set`) and are moved to their table
//! ([`new_place`]): `lr` → `train.lr`, `kd_weight` → `distill.weight`, `prune_sparsity` →
//! `prune.sparsity`, ...

use crate::hidden_match::HiddenMatch;
use crate::loss::{DistillSpec, KdLoss};
use serde::{Deserialize, Serialize};
use slm_core::{Error, Result};
use slm_train::{PruneConfig, TrainConfig};

/// The whole settings file of a training or distillation run.
#[derive(Debug, Clone, PartialEq, Default, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct RunConfig {
    pub train: TrainConfig,
    pub prune: PruneConfig,
    pub distill: DistillConfig,
}

/// The `[distill]` table. Distillation is on when it names a `teacher` or a `cache`: the
/// loss becomes (1 − weight)·CE + weight·T²·D(teacher ‖ student).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct DistillConfig {
    /// Distil from this model (HF directory, GGUF, llama2.c); for pruning recovery, the
    /// dense parent.
    pub teacher: Option<String>,
    /// Distil offline from this teacher cache (`slm distill cache`) instead of a live
    /// teacher: sparse forward KL over the cached top-k plus a tail bucket, at T = 1.
    pub cache: Option<String>,
    /// The divergence D: `fkl`, `rkl`, `jsd:β`, `skl:α`, `srkl:α` or `tvd` ([`crate::loss`]).
    #[serde(with = "crate::loss::by_name")]
    pub loss: KdLoss,
    /// Weight of the teacher term, in [0, 1].
    pub weight: f64,
    /// Softening temperature T for teacher and student.
    pub temperature: f64,
    pub on_policy: OnPolicyConfig,
    pub hidden: HiddenConfig,
}

/// The `[distill.on_policy]` table: on-policy distillation ([`crate::on_policy`]).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct OnPolicyConfig {
    /// GKD's λ: the probability that a micro-batch is replaced by the student's own
    /// continuations of its windows' first `prompt` tokens, scored by the live teacher (loss
    /// on the generated tokens only). 0 = off.
    pub lambda: f64,
    /// Prompt tokens kept from each window (default `train.seq_len` / 2).
    pub prompt: Option<usize>,
    /// Sampling temperature of the student's continuations.
    pub temperature: f64,
    /// Nucleus (top-p) cut of the student's continuations: 1 samples the whole tempered
    /// distribution, as GKD does; lower keeps only the most likely tokens.
    pub top_p: f64,
}

/// The `[distill.hidden]` table: hidden-state distillation ([`crate::hidden`]), live
/// teacher only.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct HiddenConfig {
    /// `cosine` or `mse` between mapped student and teacher block outputs, through a learned
    /// projection when the widths differ. Unset = off.
    pub kind: Option<HiddenMatch>,
    /// Weight of the hidden-state loss (added to the logit loss).
    pub weight: f64,
    /// Layer map `student:teacher,...` (0-based blocks); default: student block i ↔
    /// teacher block ⌈(i+1)·L_t/L_s⌉ − 1.
    pub layers: Option<String>,
}

impl Default for DistillConfig {
    fn default() -> Self {
        Self {
            teacher: None,
            cache: None,
            loss: KdLoss::ForwardKl,
            weight: 1.0,
            temperature: 1.0,
            on_policy: OnPolicyConfig::default(),
            hidden: HiddenConfig::default(),
        }
    }
}

impl Default for OnPolicyConfig {
    fn default() -> Self {
        Self {
            lambda: 0.0,
            prompt: None,
            temperature: 1.0,
            top_p: 1.0,
        }
    }
}

impl Default for HiddenConfig {
    fn default() -> Self {
        Self {
            kind: None,
            weight: 1.0,
            layers: None,
        }
    }
}

/// The keys of the `[train]` table (the flat file's keys that moved there unchanged).
const TRAIN_KEYS: [&str; 26] = [
    "data",
    "preset",
    "init",
    "layers",
    "dim",
    "heads",
    "kv_heads",
    "hidden",
    "context",
    "seq_len",
    "batch_size",
    "grad_accum",
    "steps",
    "lr",
    "min_lr",
    "warmup_steps",
    "weight_decay",
    "beta1",
    "beta2",
    "eps",
    "grad_clip",
    "eval_every",
    "eval_windows",
    "checkpoint_every",
    "seed",
    "activation_checkpointing",
];

/// The flat file's other keys and their place now.
const MOVED: [(&str, &str); 18] = [
    ("hold_masks", "prune.hold_masks"),
    ("prune_sparsity", "prune.sparsity"),
    ("prune_initial", "prune.initial"),
    ("prune_start", "prune.start"),
    ("prune_end", "prune.end"),
    ("prune_every", "prune.every"),
    ("teacher", "distill.teacher"),
    ("kd_cache", "distill.cache"),
    ("kd_loss", "distill.loss"),
    ("kd_weight", "distill.weight"),
    ("kd_temperature", "distill.temperature"),
    ("on_policy", "distill.on_policy.lambda"),
    ("on_policy_prompt", "distill.on_policy.prompt"),
    ("on_policy_temperature", "distill.on_policy.temperature"),
    ("on_policy_top_p", "distill.on_policy.top_p"),
    ("kd_hidden", "distill.hidden.kind"),
    ("kd_hidden_weight", "distill.hidden.weight"),
    ("kd_hidden_layers", "distill.hidden.layers"),
];

/// Where a key of the old flat settings file lives now (`kd_weight` → `distill.weight`),
/// or `None` for a key that was never one.
pub fn new_place(flat_key: &str) -> Option<String> {
    if TRAIN_KEYS.contains(&flat_key) {
        return Some(format!("train.{flat_key}"));
    }
    MOVED
        .iter()
        .find(|(old, _)| *old == flat_key)
        .map(|(_, new)| new.to_string())
}

/// Sets `value` at the dotted `path` of `table`, creating tables on the way.
fn insert(table: &mut toml::Table, path: &str, value: toml::Value) -> Result<()> {
    let (parents, leaf) = match path.rsplit_once('.') {
        Some((p, l)) => (p.split('.').collect::<Vec<_>>(), l),
        None => (Vec::new(), path),
    };
    let mut t = table;
    for (i, k) in parents.iter().enumerate() {
        let entry = t
            .entry(k.to_string())
            .or_insert_with(|| toml::Value::Table(toml::Table::new()));
        t = entry.as_table_mut().ok_or_else(|| {
            Error::config(format!(
                "`{}` is a value, not a table: `{path}` cannot be set",
                parents[..=i].join(".")
            ))
        })?;
    }
    t.insert(leaf.to_string(), value);
    Ok(())
}

impl RunConfig {
    /// Reads a settings file (old flat keys moved to their tables). Not validated: the
    /// caller may still set values; [`RunConfig::validate`] checks the result.
    pub fn from_toml(text: &str) -> Result<Self> {
        let mut table: toml::Table = text
            .parse()
            .map_err(|e| Error::config(format!("settings: {e}")))?;
        let flat: Vec<String> = table
            .keys()
            .filter(|k| new_place(k).is_some())
            .cloned()
            .collect();
        for key in flat {
            let (Some(value), Some(place)) = (table.remove(&key), new_place(&key)) else {
                continue;
            };
            let (head, rest) = place.split_once('.').unwrap_or((&place, ""));
            let taken = table
                .get(head)
                .and_then(|t| rest.split('.').try_fold(t, |t, k| t.get(k)))
                .is_some();
            if taken {
                return Err(Error::config(format!(
                    "`{key}` is now `{place}`, and both are set: keep `{place}`"
                )));
            }
            insert(&mut table, &place, value)?;
        }
        if let Some(k) = table
            .keys()
            .find(|k| !matches!(k.as_str(), "train" | "prune" | "distill"))
        {
            return Err(Error::config(format!(
                "unknown field `{k}`: no setting has that name (settings go in [train], [prune] and [distill])"
            )));
        }
        toml::Value::Table(table)
            .try_into()
            .map_err(|e: toml::de::Error| Error::config(format!("settings: {e}")))
    }

    /// Applies `key=value` overrides (`distill.weight=0.5`, or an old flat key such as
    /// `kd_weight=0.5`), then validates.
    pub fn with_overrides(self, overrides: &[String]) -> Result<Self> {
        let mut table =
            toml::Table::try_from(&self).map_err(|e| Error::config(format!("settings: {e}")))?;
        for o in overrides {
            let (k, v) = o
                .split_once('=')
                .ok_or_else(|| Error::config(format!("--set `{o}`: expected key=value")))?;
            let k = k.trim();
            // Parse the value as TOML; a bare word is taken as a string.
            let value = format!("v = {}", v.trim())
                .parse::<toml::Table>()
                .ok()
                .and_then(|mut t| t.remove("v"))
                .unwrap_or_else(|| toml::Value::String(v.trim().to_string()));
            let path = match new_place(k) {
                Some(p) => p,
                None if k.contains('.') => k.to_string(),
                None => {
                    return Err(Error::config(format!(
                        "--set `{o}`: no setting `{k}` (keys are `train.*`, `prune.*` and \
                         `distill.*`; see `slm train --help`)"
                    )))
                }
            };
            insert(&mut table, &path, value)?;
        }
        let cfg: RunConfig = toml::Value::Table(table)
            .try_into()
            .map_err(|e: toml::de::Error| Error::config(format!("--set: {e}")))?;
        cfg.validate()?;
        Ok(cfg)
    }

    /// Defaults, then the TOML text, then `key=value` overrides; validated.
    pub fn resolve(toml_text: Option<&str>, overrides: &[String]) -> Result<Self> {
        Self::from_toml(toml_text.unwrap_or(""))?.with_overrides(overrides)
    }

    pub fn to_toml(&self) -> Result<String> {
        toml::to_string_pretty(self).map_err(|e| Error::config(e.to_string()))
    }

    pub fn validate(&self) -> Result<()> {
        if self.train.data.is_empty() {
            return Err(Error::config(
                "no training data: set `train.data` (a folder made by `slm data prepare`)",
            ));
        }
        self.train.validate()?;
        self.prune.validate(self.train.steps)?;
        self.distill.validate(&self.train)
    }
}

impl DistillConfig {
    /// Whether a teacher or a teacher cache is set.
    pub fn is_on(&self) -> bool {
        self.teacher.is_some() || self.cache.is_some()
    }

    /// The distillation loss when a teacher or a teacher cache is set.
    pub fn spec(&self) -> Result<Option<DistillSpec>> {
        if self.teacher.is_some() && self.cache.is_some() {
            return Err(Error::config(
                "set `distill.teacher` (online) or `distill.cache` (offline), not both",
            ));
        }
        if !self.is_on() {
            return Ok(None);
        }
        let spec = DistillSpec {
            loss: self.loss,
            temperature: self.temperature as f32,
            kd_weight: self.weight as f32,
        };
        spec.validate().map_err(|e| Error::config(e.to_string()))?;
        if self.cache.is_some() && (spec.loss != KdLoss::ForwardKl || spec.temperature != 1.0) {
            return Err(Error::config(format!(
                "a teacher cache holds the teacher's top-k at T = 1 and trains with forward KL: \
                 `distill.loss` `{}` at temperature {} needs the live teacher (`distill.teacher`)",
                crate::loss::name(self.loss),
                self.temperature
            )));
        }
        Ok(Some(spec))
    }

    /// Checks the table against the run's `[train]` settings.
    pub fn validate(&self, train: &TrainConfig) -> Result<()> {
        self.spec()?;
        let h = &self.hidden;
        if h.kind.is_some() {
            if self.teacher.is_none() {
                return Err(Error::config(
                    "`distill.hidden` (hidden-state distillation) needs the live teacher \
                     (`distill.teacher`): a teacher cache holds only log-probs",
                ));
            }
            if !(h.weight.is_finite() && h.weight >= 0.0) {
                return Err(Error::config("`distill.hidden.weight` must be ≥ 0"));
            }
            if let Some(map) = &h.layers {
                crate::hidden::parse_pairs(map)?;
            }
        } else if h.layers.is_some() {
            return Err(Error::config(
                "`distill.hidden.layers` is set but `distill.hidden.kind` is not: set it to \
                 \"cosine\" or \"mse\"",
            ));
        }
        let p = &self.on_policy;
        if !(0.0..=1.0).contains(&p.lambda) {
            return Err(Error::config(
                "`distill.on_policy.lambda` must be in [0, 1]",
            ));
        }
        if p.lambda > 0.0 {
            if self.teacher.is_none() {
                return Err(Error::config(
                    "on-policy batches need a live `distill.teacher` to score the student's \
                     samples",
                ));
            }
            let n = p.prompt.unwrap_or(train.seq_len / 2);
            if n == 0 || n > train.seq_len {
                return Err(Error::config(format!(
                    "`distill.on_policy.prompt` ({n}) must be in 1..={}",
                    train.seq_len
                )));
            }
            if p.temperature.is_nan() || p.temperature < 0.0 {
                return Err(Error::config("`distill.on_policy.temperature` must be ≥ 0"));
            }
            if !(p.top_p > 0.0 && p.top_p <= 1.0) {
                return Err(Error::config("`distill.on_policy.top_p` must be in (0, 1]"));
            }
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn overrides_are_typed_and_unknown_keys_rejected() {
        let c = RunConfig::resolve(
            Some("[train]\nsteps = 20\npreset = \"1m\"\ndata = \"d\"\n"),
            &[
                "train.lr=3e-4".into(),
                "batch_size = 4".into(),
                "init=runs/x".into(),
            ],
        )
        .unwrap();
        let t = &c.train;
        assert_eq!(
            (t.steps, t.lr, t.batch_size, t.preset.as_str()),
            (20, 3e-4, 4, "1m")
        );
        assert_eq!(t.init.as_deref(), Some("runs/x"));
        let e = RunConfig::resolve(None, &["data=d".into(), "learning_rate=1".into()])
            .unwrap_err()
            .to_string();
        assert!(e.contains("learning_rate"), "{e}");
        let e = RunConfig::resolve(None, &["data=d".into(), "distill.wieght=1".into()])
            .unwrap_err()
            .to_string();
        assert!(e.contains("wieght"), "{e}");
        let e = RunConfig::resolve(None, &["data=d".into(), "steps=\"many\"".into()])
            .unwrap_err()
            .to_string();
        assert!(e.contains("steps") || e.contains("invalid type"), "{e}");
        assert!(RunConfig::resolve(None, &["data=d".into(), "min_lr=1".into()]).is_err());
        assert!(RunConfig::resolve(None, &[])
            .unwrap_err()
            .to_string()
            .contains("data"));
        let back = RunConfig::resolve(Some(&c.to_toml().unwrap()), &[]).unwrap();
        assert_eq!(back, c);
        // On-policy sampling settings are checked when on-policy batches are on.
        let on = |top_p: &str| {
            RunConfig::resolve(
                None,
                &[
                    "data=d".into(),
                    "distill.teacher=t".into(),
                    "distill.on_policy.lambda=0.5".into(),
                    format!("distill.on_policy.top_p={top_p}"),
                ],
            )
        };
        assert_eq!(on("0.9").unwrap().distill.on_policy.top_p, 0.9);
        for bad in ["0", "1.5", "-0.1"] {
            let e = on(bad).unwrap_err().to_string();
            assert!(e.contains("distill.on_policy.top_p"), "{bad}: {e}");
        }
    }

    #[test]
    fn old_flat_keys_move_to_their_tables() {
        let flat = "data = \"d\"\nsteps = 20\nteacher = \"t\"\nkd_loss = \"jsd:0.3\"\n\
                    kd_weight = 0.5\nkd_temperature = 2.0\non_policy = 0.25\n\
                    on_policy_top_p = 0.9\nkd_hidden = \"mse\"\nkd_hidden_layers = \"0:1\"\n\
                    hold_masks = true\nprune_sparsity = 0.5\nprune_end = 10\n";
        let c = RunConfig::resolve(Some(flat), &[]).unwrap();
        let d = &c.distill;
        assert_eq!(c.train.steps, 20);
        assert_eq!(d.teacher.as_deref(), Some("t"));
        assert_eq!(d.loss, KdLoss::Jsd { beta: 0.3 });
        assert_eq!((d.weight, d.temperature), (0.5, 2.0));
        assert_eq!((d.on_policy.lambda, d.on_policy.top_p), (0.25, 0.9));
        assert_eq!(d.hidden.kind, Some(HiddenMatch::Mse));
        assert_eq!(d.hidden.layers.as_deref(), Some("0:1"));
        assert!(c.prune.hold_masks);
        assert_eq!((c.prune.sparsity, c.prune.end), (0.5, Some(10)));
        // The same through --set, old and new keys alike.
        let sets: Vec<String> = [
            "data=d",
            "steps=20",
            "teacher=t",
            "kd_loss=\"jsd:0.3\"",
            "distill.weight=0.5",
            "kd_temperature=2",
            "on_policy=0.25",
            "distill.on_policy.top_p=0.9",
            "kd_hidden=mse",
            "distill.hidden.layers=\"0:1\"",
            "hold_masks=true",
            "prune.sparsity=0.5",
            "prune_end=10",
        ]
        .map(String::from)
        .to_vec();
        assert_eq!(RunConfig::resolve(None, &sets).unwrap(), c);
        // An old key beside its new place is ambiguous.
        let e = RunConfig::resolve(Some("kd_weight = 0.5\n[distill]\nweight = 0.2\n"), &[])
            .unwrap_err()
            .to_string();
        assert!(e.contains("`kd_weight` is now `distill.weight`"), "{e}");
        // Every [train] key is listed as a flat key.
        let full = TrainConfig {
            init: Some("i".into()),
            layers: Some(1),
            dim: Some(1),
            heads: Some(1),
            kv_heads: Some(1),
            hidden: Some(1),
            context: Some(1),
            ..TrainConfig::default()
        };
        let keys = toml::Table::try_from(&full).unwrap();
        assert_eq!(keys.len(), TRAIN_KEYS.len());
        assert!(keys.keys().all(|k| TRAIN_KEYS.contains(&k.as_str())));
    }

    #[test]
    fn distillation_checks_name_the_new_keys() {
        let e = |sets: &[&str]| {
            let mut all = vec!["data=d".to_string()];
            all.extend(sets.iter().map(|s| s.to_string()));
            RunConfig::resolve(None, &all).unwrap_err().to_string()
        };
        assert!(e(&["distill.teacher=t", "distill.cache=c"]).contains("not both"));
        let m = e(&["distill.cache=c", "distill.hidden.kind=cosine"]);
        assert!(m.contains("live teacher"), "{m}");
        let m = e(&["distill.cache=c", "distill.loss=rkl"]);
        assert!(m.contains("live teacher") && m.contains("rkl"), "{m}");
        let m = e(&["distill.teacher=t", "distill.hidden.layers=\"0:1\""]);
        assert!(m.contains("distill.hidden.kind"), "{m}");
        let m = e(&["distill.teacher=t", "distill.loss=kl2"]);
        assert!(m.contains("kl2"), "{m}");
        let m = e(&["distill.on_policy.lambda=0.5"]);
        assert!(m.contains("distill.teacher"), "{m}");
        let m = e(&["prune.sparsity=0.5", "prune.end=2000"]);
        assert!(m.contains("prune.end"), "{m}");
    }
}
