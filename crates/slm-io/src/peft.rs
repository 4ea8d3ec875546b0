//! LoRA adapters in the directory layout PEFT writes: read, checked, written back.
//!
//! ```text
//! adapter_config.json          PEFT's LoraConfig (peft_type "LORA", r, lora_alpha, target_modules, ...)
//! adapter_model.safetensors    base_model.model.model.layers.{i}.self_attn.{q,k,v,o}_proj.lora_A.weight  [r, in]
//!                              base_model.model.model.layers.{i}.self_attn.{q,k,v,o}_proj.lora_B.weight  [out, r]
//!                              base_model.model.model.layers.{i}.mlp.{gate,up,down}_proj.lora_{A,B}.weight
//! ```
//!
//! The adapted weight is `W + scaling · B·A` with `scaling = lora_alpha / r`
//! (`lora_alpha / √r` with `use_rslora`); `slm_model::lora` merges it. Rows are in Hugging
//! Face order (q/k in the rotate_half RoPE layout), which is the order of every model slm
//! holds in memory, whatever file it came from.
//!
//! PEFT's `adapter_config.json` carries many keys. Those that only describe how the adapter
//! was trained or initialised are accepted and ignored; those that change what the adapter
//! computes and that slm does not implement (DoRA, per-module rank or alpha patterns,
//! `fan_in_fan_out`, extra trained modules, LoRA biases, layer selection or replication,
//! activated LoRA, ...) are refused by name, as are initialisations that rewrote the base
//! model's weights (PiSSA, OLoRA, CorDA, LoftQ, LoRA-GA: such an adapter belongs to a base
//! that is not the original one). Only safetensors weights are read (`adapter_model.bin`, a
//! pickle, is refused). Writing produces the keys a current PEFT writes (`task_type`
//! CAUSAL_LM, `inference_mode` true) and f32 tensors, so `PeftModel.from_pretrained` loads it.

use std::collections::BTreeMap;
use std::path::Path;

use candle_core::{DType, Device, Tensor};
use serde::Deserialize;
use serde_json::{json, Map, Value};
use slm_core::error::IoContext;
use slm_core::{Error, LinearRole, Result};

use crate::atomic::write_atomic;
use crate::safetensors_io::{read_safetensors, write_safetensors};

/// The adapter's configuration file.
pub const CONFIG_FILE: &str = "adapter_config.json";
/// The adapter's weights (the only weight file read).
pub const WEIGHTS_FILE: &str = "adapter_model.safetensors";
/// PEFT's pickled weights, refused with a message.
pub const PICKLE_FILE: &str = "adapter_model.bin";
/// What PEFT puts before a Hugging Face parameter name of a `PeftModelForCausalLM`
/// (`base_model.model.` + `model.layers.0.self_attn.q_proj` + `.lora_A.weight`).
pub const TENSOR_PREFIX: &str = "base_model.model.";

/// The two factors of a LoRA pair.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Factor {
    /// `lora_A`, [r, in]: the input projection.
    A,
    /// `lora_B`, [out, r]: the output projection.
    B,
}

impl Factor {
    fn peft(self) -> &'static str {
        match self {
            Factor::A => "lora_A",
            Factor::B => "lora_B",
        }
    }
}

/// PEFT's name of the tensor holding `factor` of the pair on `role` in block `layer`, e.g.
/// `base_model.model.model.layers.0.self_attn.q_proj.lora_A.weight`.
pub fn tensor_name(layer: usize, role: LinearRole, factor: Factor) -> String {
    format!(
        "{TENSOR_PREFIX}{}.{}.weight",
        role.hf_prefix(layer),
        factor.peft()
    )
}

/// PEFT's (and transformers') module name of a projection: `q_proj`, ..., `down_proj`.
pub fn module_name(role: LinearRole) -> &'static str {
    match role {
        LinearRole::Q => "q_proj",
        LinearRole::K => "k_proj",
        LinearRole::V => "v_proj",
        LinearRole::O => "o_proj",
        LinearRole::Gate => "gate_proj",
        LinearRole::Up => "up_proj",
        LinearRole::Down => "down_proj",
    }
}

/// The projection PEFT's module name `name` denotes.
pub fn role_of_module(name: &str) -> Option<LinearRole> {
    LinearRole::ALL
        .into_iter()
        .find(|r| module_name(*r) == name)
}

/// The (layer, role, factor) a PEFT tensor name denotes; `None` for any other name.
pub fn parse_tensor_name(name: &str) -> Option<(usize, LinearRole, Factor)> {
    let rest = name.strip_prefix(TENSOR_PREFIX)?;
    let rest = rest.strip_prefix("model.layers.")?;
    let (layer, rest) = rest.split_once('.')?;
    if layer.is_empty() || !layer.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    let layer: usize = layer.parse().ok()?;
    let (module, factor) = if let Some(m) = rest.strip_suffix(".lora_A.weight") {
        (m, Factor::A)
    } else {
        (rest.strip_suffix(".lora_B.weight")?, Factor::B)
    };
    let role = LinearRole::ALL
        .into_iter()
        .find(|r| r.hf_prefix(layer) == format!("model.layers.{layer}.{module}"))?;
    Some((layer, role, factor))
}

/// The part of PEFT's `LoraConfig` that decides what an adapter computes.
#[derive(Debug, Clone, PartialEq)]
pub struct LoraConfig {
    /// The rank: A is [r, in], B is [out, r].
    pub r: usize,
    pub lora_alpha: f64,
    /// Dropout on the adapter's input during training (no effect on a merged model).
    pub lora_dropout: f64,
    /// The adapted projections, in `LinearRole::ALL` order without repeats (PEFT writes
    /// them as module names: `q_proj`, ..., `down_proj`).
    pub target_modules: Vec<LinearRole>,
    /// Rank-stabilised scaling, alpha / √r.
    pub use_rslora: bool,
    /// The base model the adapter was trained on, as PEFT records it.
    pub base_model_name_or_path: Option<String>,
}

/// The fields we read; everything else is looked at only by [`refusal`] or ignored.
#[derive(Deserialize)]
struct RawConfig {
    r: usize,
    lora_alpha: f64,
    #[serde(default)]
    lora_dropout: f64,
    #[serde(default)]
    target_modules: Value,
    #[serde(default)]
    use_rslora: bool,
    #[serde(default)]
    base_model_name_or_path: Option<String>,
}

impl LoraConfig {
    /// A plain LoRA configuration on `targets` (no dropout, alpha/r scaling).
    pub fn new(r: usize, lora_alpha: f64, targets: &[LinearRole]) -> Self {
        Self {
            r,
            lora_alpha,
            lora_dropout: 0.0,
            target_modules: canonical_roles(targets.iter().copied()),
            use_rslora: false,
            base_model_name_or_path: None,
        }
    }

    /// The factor of B·A in the adapted weight: alpha / r, or alpha / √r with rsLoRA.
    pub fn scaling(&self) -> f32 {
        let r = self.r as f64;
        let s = if self.use_rslora {
            self.lora_alpha / r.sqrt()
        } else {
            self.lora_alpha / r
        };
        s as f32
    }

    /// Parses an `adapter_config.json` object; `source` names the file in errors. Keys PEFT
    /// writes that do not change the math are ignored; those that do and that slm does not
    /// implement are refused ([`Error::Unsupported`], naming the key).
    pub fn from_json(v: &Value, source: &Path) -> Result<Self> {
        let obj = v
            .as_object()
            .ok_or_else(|| Error::format(source, "an adapter config must be a JSON object"))?;
        if let Some(why) = refusal(obj) {
            return Err(Error::Unsupported(format!("{}: {why}", source.display())));
        }
        let raw: RawConfig = serde_json::from_value(v.clone())
            .map_err(|e| Error::format(source, format!("not a PEFT LoRA config: {e}")))?;
        if raw.r == 0 {
            return Err(Error::format(
                source,
                "r is 0: a LoRA rank must be at least 1",
            ));
        }
        if !raw.lora_alpha.is_finite() {
            return Err(Error::format(source, "lora_alpha is not a finite number"));
        }
        let target_modules =
            parse_targets(&raw.target_modules).map_err(|e| Error::format(source, e))?;
        Ok(Self {
            r: raw.r,
            lora_alpha: raw.lora_alpha,
            lora_dropout: raw.lora_dropout,
            target_modules,
            use_rslora: raw.use_rslora,
            base_model_name_or_path: raw.base_model_name_or_path,
        })
    }

    /// The `adapter_config.json` object: every key PEFT 0.21 writes for a LoRA adapter (its
    /// defaults where slm has nothing to say; `peft_version` left out, PEFT fills it in).
    pub fn to_json(&self) -> Value {
        let alpha = if self.lora_alpha.fract() == 0.0 && self.lora_alpha.abs() < 1e15 {
            json!(self.lora_alpha as i64)
        } else {
            json!(self.lora_alpha)
        };
        // PEFT writes a set; sorted names make the file reproducible.
        let mut targets: Vec<&str> = self
            .target_modules
            .iter()
            .map(|r| module_name(*r))
            .collect();
        targets.sort_unstable();
        targets.dedup();
        json!({
            "alora_invocation_tokens": null,
            "alpha_pattern": {},
            "arrow_config": null,
            "auto_mapping": null,
            "base_model_name_or_path": self.base_model_name_or_path,
            "bias": "none",
            "corda_config": null,
            "ensure_weight_tying": false,
            "eva_config": null,
            "exclude_modules": null,
            "fan_in_fan_out": false,
            "inference_mode": true,
            "init_lora_weights": true,
            "kasa_config": null,
            "layer_replication": null,
            "layers_pattern": null,
            "layers_to_transform": null,
            "loftq_config": {},
            "lora_alpha": alpha,
            "lora_bias": false,
            "lora_dropout": self.lora_dropout,
            "lora_ga_config": null,
            "megatron_config": null,
            "megatron_core": "megatron.core",
            "modules_to_save": null,
            "monteclora_config": null,
            "peft_type": "LORA",
            "qalora_group_size": 16,
            "r": self.r,
            "rank_pattern": {},
            "revision": null,
            "target_modules": targets,
            "target_parameters": null,
            "task_type": "CAUSAL_LM",
            "trainable_token_indices": null,
            "use_bdlora": null,
            "use_dora": false,
            "use_qalora": false,
            "use_rslora": self.use_rslora,
            "velora_config": null,
        })
    }
}

/// `roles` in `LinearRole::ALL` order without repeats.
fn canonical_roles(roles: impl IntoIterator<Item = LinearRole>) -> Vec<LinearRole> {
    let set: std::collections::BTreeSet<LinearRole> = roles.into_iter().collect();
    set.into_iter().collect()
}

fn parse_targets(v: &Value) -> std::result::Result<Vec<LinearRole>, String> {
    let names = match v {
        Value::Array(items) => items,
        Value::String(s) => {
            return Err(format!(
                "target_modules is the pattern {s:?}: slm reads adapters whose target_modules is \
                 a list of module names (q_proj, k_proj, v_proj, o_proj, gate_proj, up_proj, down_proj)"
            ))
        }
        Value::Null => return Err("target_modules is missing".into()),
        other => return Err(format!("target_modules must be a list of module names, got {other}")),
    };
    let mut roles = Vec::with_capacity(names.len());
    for n in names {
        let name = n
            .as_str()
            .ok_or_else(|| format!("target_modules must hold module names, got {n}"))?;
        roles.push(role_of_module(name).ok_or_else(|| {
            format!(
                "target_modules names `{name}`: slm adapts only the decoder projections q_proj, \
                 k_proj, v_proj, o_proj, gate_proj, up_proj and down_proj"
            )
        })?);
    }
    if roles.is_empty() {
        return Err("target_modules is empty".into());
    }
    Ok(canonical_roles(roles))
}

/// Why the config asks for something slm does not compute, or `None`.
fn refusal(obj: &Map<String, Value>) -> Option<String> {
    let get = |k: &str| obj.get(k).filter(|v| !v.is_null());
    let is_true = |k: &str| get(k).and_then(Value::as_bool) == Some(true);
    let non_empty = |k: &str| match get(k) {
        None => false,
        Some(Value::Object(m)) => !m.is_empty(),
        Some(Value::Array(a)) => !a.is_empty(),
        Some(Value::String(s)) => !s.is_empty(),
        Some(_) => true,
    };
    match obj.get("peft_type").and_then(Value::as_str) {
        Some("LORA") => {}
        Some(other) => {
            return Some(format!(
                "peft_type is {other:?}: slm reads LoRA adapters (peft_type \"LORA\") only"
            ))
        }
        None => return Some("no peft_type \"LORA\": not a PEFT LoRA adapter config".into()),
    }
    if let Some(t) = get("task_type").and_then(Value::as_str) {
        if t != "CAUSAL_LM" {
            return Some(format!(
                "task_type is {t:?}: slm reads adapters of causal language models (CAUSAL_LM)"
            ));
        }
    }
    if let Some(b) = get("bias").and_then(Value::as_str) {
        if b != "none" {
            return Some(format!(
                "bias is {b:?}: the adapter trains the base model's biases, which slm does not \
                 apply (only bias \"none\" is read)"
            ));
        }
    }
    let flags: [(&str, &str); 4] = [
        (
            "use_dora",
            "DoRA (weight-decomposed LoRA) is not implemented in slm",
        ),
        (
            "fan_in_fan_out",
            "its weights are stored transposed (Conv1D layout), which slm does not read",
        ),
        ("lora_bias", "LoRA B biases are not applied by slm"),
        (
            "use_qalora",
            "QA-LoRA's input pooling is not implemented in slm",
        ),
    ];
    for (key, why) in flags {
        if is_true(key) {
            return Some(format!("{key} is true: {why}"));
        }
    }
    let patterns: [(&str, &str); 4] = [
        (
            "rank_pattern",
            "per-module ranks are not read by slm (one r for every module)",
        ),
        (
            "alpha_pattern",
            "per-module alphas are not read by slm (one lora_alpha for every module)",
        ),
        (
            "modules_to_save",
            "the adapter carries fully trained copies of other modules, which slm does not apply",
        ),
        (
            "target_parameters",
            "LoRA on raw parameters (not modules) is not implemented in slm",
        ),
    ];
    for (key, why) in patterns {
        if non_empty(key) {
            return Some(format!("{key} is set: {why}"));
        }
    }
    let set: [(&str, &str); 8] = [
        (
            "layers_to_transform",
            "adapters on a subset of layers are not read by slm",
        ),
        (
            "layer_replication",
            "it rebuilds the layer stack, which slm does not do",
        ),
        (
            "trainable_token_indices",
            "it trains embedding rows, which slm does not apply",
        ),
        (
            "alora_invocation_tokens",
            "activated LoRA applies the adapter from an invocation onwards and cannot be merged",
        ),
        (
            "kasa_config",
            "KaSA changes the base weights and the adapter's form",
        ),
        (
            "use_bdlora",
            "block-diagonal LoRA factors are not read by slm",
        ),
        (
            "arrow_config",
            "Arrow routing between adapters is not implemented in slm",
        ),
        (
            "monteclora_config",
            "MonteCLoRA's sampled adapters are not implemented in slm",
        ),
    ];
    for (key, why) in set {
        if get(key).is_some() {
            return Some(format!("{key} is set: {why}"));
        }
    }
    if let Some(init) = get("init_lora_weights").and_then(Value::as_str) {
        let rewrites_base = ["olora", "corda", "loftq", "lora_ga"].contains(&init)
            || init == "pissa"
            || init.starts_with("pissa_niter_");
        if rewrites_base {
            return Some(format!(
                "init_lora_weights is {init:?}: that initialisation rewrote the base model's \
                 weights, so the adapter does not apply to the original base (convert it with \
                 PEFT's path_initial_model_for_weight_conversion when saving)"
            ));
        }
    }
    None
}

/// One adapted projection: the adapted weight is `W + scaling · B·A`.
#[derive(Debug, Clone, PartialEq)]
pub struct LoraPair {
    /// [r, in], row-major.
    pub a: Vec<f32>,
    /// [out, r], row-major.
    pub b: Vec<f32>,
    pub in_features: usize,
    pub out_features: usize,
}

impl LoraPair {
    /// The rank, from A's size (`a.len() / in_features`).
    pub fn rank(&self) -> usize {
        self.a.len().checked_div(self.in_features).unwrap_or(0)
    }
}

/// The shapes of the base model an adapter is checked against (plain numbers: slm-io sits
/// below the model's typed config).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct BaseShapes {
    pub layers: usize,
    pub hidden: usize,
    /// Query heads × head_dim.
    pub q_dim: usize,
    /// KV heads × head_dim.
    pub kv_dim: usize,
    pub intermediate: usize,
}

impl BaseShapes {
    /// (out, in) of the projection `role`.
    pub fn linear(&self, role: LinearRole) -> (usize, usize) {
        let d = self.hidden;
        match role {
            LinearRole::Q => (self.q_dim, d),
            LinearRole::K | LinearRole::V => (self.kv_dim, d),
            LinearRole::O => (d, self.q_dim),
            LinearRole::Gate | LinearRole::Up => (self.intermediate, d),
            LinearRole::Down => (d, self.intermediate),
        }
    }
}

/// A LoRA adapter: its configuration and one pair per adapted (layer, projection).
#[derive(Debug, Clone, PartialEq)]
pub struct LoraAdapter {
    pub config: LoraConfig,
    pub pairs: BTreeMap<(usize, LinearRole), LoraPair>,
}

impl LoraAdapter {
    /// Reads a PEFT adapter directory (`adapter_config.json` + `adapter_model.safetensors`).
    pub fn read(dir: &Path) -> Result<Self> {
        if !dir.is_dir() {
            return Err(Error::io(
                dir,
                std::io::Error::new(
                    std::io::ErrorKind::NotFound,
                    "not a directory (an adapter is the directory PEFT's save_pretrained writes)",
                ),
            ));
        }
        let cfg_path = dir.join(CONFIG_FILE);
        let bytes = std::fs::read(&cfg_path).with_path(&cfg_path)?;
        let v: Value = serde_json::from_slice(&bytes)
            .map_err(|e| Error::format(&cfg_path, format!("not valid JSON: {e}")))?;
        let config = LoraConfig::from_json(&v, &cfg_path)?;
        let weights = dir.join(WEIGHTS_FILE);
        if !weights.is_file() {
            let pickle = dir.join(PICKLE_FILE);
            if pickle.is_file() {
                return Err(Error::Unsupported(format!(
                    "{}: slm reads adapter weights from {WEIGHTS_FILE} only, not from a pickle \
                     (save the adapter with PEFT's save_pretrained(..., safe_serialization=True))",
                    pickle.display()
                )));
            }
            return Err(Error::io(
                &weights,
                std::io::Error::new(std::io::ErrorKind::NotFound, "adapter weights not found"),
            ));
        }
        let tensors = read_safetensors(&weights)?;
        let pairs = pairs_from_tensors(&config, tensors, &weights)?;
        Ok(Self { config, pairs })
    }

    /// Writes the adapter into `dir` (created if needed): the weights as f32 safetensors under
    /// PEFT's names, then `adapter_config.json`, each file atomically.
    pub fn write(&self, dir: &Path) -> Result<()> {
        self.check_pairs()?;
        std::fs::create_dir_all(dir).with_path(dir)?;
        let dev = &Device::Cpu;
        let mut tensors = Vec::with_capacity(2 * self.pairs.len());
        for (&(layer, role), p) in &self.pairs {
            let r = self.config.r;
            tensors.push((
                tensor_name(layer, role, Factor::A),
                Tensor::from_slice(&p.a, (r, p.in_features), dev)?,
            ));
            tensors.push((
                tensor_name(layer, role, Factor::B),
                Tensor::from_slice(&p.b, (p.out_features, r), dev)?,
            ));
        }
        write_safetensors(&dir.join(WEIGHTS_FILE), &tensors)?;
        let mut text = serde_json::to_string_pretty(&self.config.to_json())?;
        text.push('\n');
        write_atomic(&dir.join(CONFIG_FILE), text.as_bytes())
    }

    /// Checks that the adapter fits a base model of `base`'s shapes: every layer index in
    /// range and every A [r, in] / B [out, r] matching the projection it adapts.
    pub fn check_against(&self, base: &BaseShapes) -> Result<()> {
        self.check_pairs()?;
        let r = self.config.r;
        for (&(layer, role), p) in &self.pairs {
            if layer >= base.layers {
                return Err(Error::invalid(format!(
                    "adapter tensor `{}` adapts layer {layer}, but the model has {} layers: the \
                     adapter was trained on another base model",
                    tensor_name(layer, role, Factor::A),
                    base.layers
                )));
            }
            let (out, inp) = base.linear(role);
            let checks = [
                (Factor::A, [r, p.in_features], [r, inp]),
                (Factor::B, [p.out_features, r], [out, r]),
            ];
            for (factor, found, expected) in checks {
                if found != expected {
                    return Err(Error::invalid(format!(
                        "adapter tensor `{}` has shape {found:?}, but the model's {} in layer \
                         {layer} is [{out}, {inp}] (out, in), so it must be {expected:?}: the \
                         adapter was trained on another base model",
                        tensor_name(layer, role, factor),
                        module_name(role)
                    )));
                }
            }
        }
        Ok(())
    }

    /// Every pair's buffers match its declared sizes and the config's rank, and its
    /// projection is one of the config's targets.
    fn check_pairs(&self) -> Result<()> {
        let r = self.config.r;
        for (&(layer, role), p) in &self.pairs {
            if !self.config.target_modules.contains(&role) {
                return Err(Error::invalid(format!(
                    "the adapter has a pair on layer {layer}'s {} but its target_modules do not \
                     name it",
                    module_name(role)
                )));
            }
            let sizes = [
                (Factor::A, p.a.len(), r * p.in_features),
                (Factor::B, p.b.len(), p.out_features * r),
            ];
            for (factor, len, want) in sizes {
                if len != want {
                    return Err(Error::invalid(format!(
                        "adapter tensor `{}` holds {len} values, but r = {r} and the pair is \
                         {} → {} need {want}",
                        tensor_name(layer, role, factor),
                        p.in_features,
                        p.out_features
                    )));
                }
            }
        }
        Ok(())
    }
}

/// The pairs of a PEFT weight file, checked against the config.
fn pairs_from_tensors(
    config: &LoraConfig,
    tensors: std::collections::HashMap<String, Tensor>,
    path: &Path,
) -> Result<BTreeMap<(usize, LinearRole), LoraPair>> {
    type Half = (
        Option<(Vec<f32>, [usize; 2])>,
        Option<(Vec<f32>, [usize; 2])>,
    );
    let mut halves: BTreeMap<(usize, LinearRole), Half> = BTreeMap::new();
    // In name order, so the first bad tensor reported is the same on every run.
    let tensors: BTreeMap<String, Tensor> = tensors.into_iter().collect();
    for (name, t) in tensors {
        let Some((layer, role, factor)) = parse_tensor_name(&name) else {
            return Err(Error::format(
                path,
                format!(
                    "tensor `{name}` is not the lora_A or lora_B of a decoder projection (expected \
                     {TENSOR_PREFIX}model.layers.{{i}}.self_attn.{{q,k,v,o}}_proj.lora_{{A,B}}.weight \
                     or {TENSOR_PREFIX}model.layers.{{i}}.mlp.{{gate,up,down}}_proj.lora_{{A,B}}.weight)"
                ),
            ));
        };
        if !config.target_modules.contains(&role) {
            return Err(Error::format(
                path,
                format!(
                    "tensor `{name}` adapts {}, which target_modules in {CONFIG_FILE} does not name",
                    module_name(role)
                ),
            ));
        }
        let [rows, cols] = match t.dims() {
            [a, b] => [*a, *b],
            d => {
                return Err(Error::format(
                    path,
                    format!("tensor `{name}` has shape {d:?}: a LoRA factor is a matrix"),
                ))
            }
        };
        if t.dtype() != DType::F32 {
            return Err(Error::format(
                path,
                format!(
                    "tensor `{name}` has dtype {:?}: LoRA factors are floats",
                    t.dtype()
                ),
            ));
        }
        let rank = match factor {
            Factor::A => rows,
            Factor::B => cols,
        };
        if rank != config.r {
            return Err(Error::format(
                path,
                format!(
                    "tensor `{name}` has shape [{rows}, {cols}], i.e. rank {rank}, but {CONFIG_FILE} \
                     says r = {}",
                    config.r
                ),
            ));
        }
        let values = t.flatten_all()?.to_vec1::<f32>()?;
        let half = halves.entry((layer, role)).or_default();
        match factor {
            Factor::A => half.0 = Some((values, [rows, cols])),
            Factor::B => half.1 = Some((values, [rows, cols])),
        }
    }
    let mut pairs = BTreeMap::new();
    for ((layer, role), half) in halves {
        let no_partner = |has: Factor, lacks: Factor| {
            Error::format(
                path,
                format!(
                    "tensor `{}` has no partner `{}`",
                    tensor_name(layer, role, has),
                    tensor_name(layer, role, lacks)
                ),
            )
        };
        let (a, b) = match half {
            (Some(a), Some(b)) => (a, b),
            (Some(_), None) => return Err(no_partner(Factor::A, Factor::B)),
            (None, Some(_)) => return Err(no_partner(Factor::B, Factor::A)),
            (None, None) => continue,
        };
        pairs.insert(
            (layer, role),
            LoraPair {
                a: a.0,
                b: b.0,
                in_features: a.1[1],
                out_features: b.1[0],
            },
        );
    }
    if pairs.is_empty() {
        return Err(Error::format(path, "holds no LoRA tensors"));
    }
    Ok(pairs)
}
