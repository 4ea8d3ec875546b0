//! A model's `generation_config.json` as sampling defaults.
//!
//! Owns: reading the keys `slm` honours ([`GenerationDefaults::from_json`]) and merging
//! three layers into one [`SamplerConfig`] ([`sampler_config`]): slm's own defaults, then
//! what the model's `generation_config.json` says, then the flags the user gave (flags win).
//!
//! Honoured keys: `do_sample` (false → greedy, whatever the temperature), `temperature`,
//! `top_p`, `top_k`, `repetition_penalty`, `max_new_tokens`, and `eos_token_id` (an integer or
//! a list: every id ends the generation). Keys absent from the file keep slm's defaults (not
//! transformers' class defaults such as top_k = 50). Other keys are ignored.

use crate::sampler::SamplerConfig;
use slm_core::{Error, Result};

/// What a `generation_config.json` asks for; `None` where the file is silent.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct GenerationDefaults {
    pub do_sample: Option<bool>,
    pub temperature: Option<f32>,
    pub top_p: Option<f32>,
    pub top_k: Option<usize>,
    pub repetition_penalty: Option<f32>,
    pub max_new_tokens: Option<usize>,
    /// `eos_token_id`, as a list (empty when absent).
    pub eos_token_ids: Vec<u32>,
}

impl GenerationDefaults {
    /// Reads the honoured keys of a `generation_config.json` object; a key of the wrong type
    /// is an error naming it (`null` counts as absent).
    pub fn from_json(v: &serde_json::Value) -> Result<Self> {
        let bad = |key: &str, want: &str| {
            Error::config(format!(
                "generation_config.json: `{key}` should be {want}, got {}",
                v[key]
            ))
        };
        let present = |key: &str| v.get(key).filter(|x| !x.is_null());
        let float = |key: &str| -> Result<Option<f32>> {
            present(key)
                .map(|x| {
                    x.as_f64()
                        .map(|f| f as f32)
                        .ok_or_else(|| bad(key, "a number"))
                })
                .transpose()
        };
        let uint = |key: &str| -> Result<Option<usize>> {
            present(key)
                .map(|x| {
                    x.as_u64()
                        .map(|n| n as usize)
                        .ok_or_else(|| bad(key, "a non-negative integer"))
                })
                .transpose()
        };
        let do_sample = present("do_sample")
            .map(|x| x.as_bool().ok_or_else(|| bad("do_sample", "true or false")))
            .transpose()?;
        let eos_token_ids = match present("eos_token_id") {
            None => Vec::new(),
            Some(serde_json::Value::Array(list)) => list
                .iter()
                .map(|x| {
                    x.as_u64()
                        .and_then(|n| u32::try_from(n).ok())
                        .ok_or_else(|| bad("eos_token_id", "an integer or a list of integers"))
                })
                .collect::<Result<_>>()?,
            Some(x) => vec![x
                .as_u64()
                .and_then(|n| u32::try_from(n).ok())
                .ok_or_else(|| bad("eos_token_id", "an integer or a list of integers"))?],
        };
        Ok(Self {
            do_sample,
            temperature: float("temperature")?,
            top_p: float("top_p")?,
            top_k: uint("top_k")?,
            repetition_penalty: float("repetition_penalty")?,
            max_new_tokens: uint("max_new_tokens")?,
            eos_token_ids,
        })
    }

    /// [`Self::from_json`] of an optional file's contents (`None`: all defaults).
    pub fn from_optional(v: Option<&serde_json::Value>) -> Result<Self> {
        v.map(Self::from_json)
            .transpose()
            .map(Option::unwrap_or_default)
    }
}

/// Sampling flags as the user gave them: `None` where the flag was not given.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct SamplerFlags {
    pub temperature: Option<f32>,
    pub top_k: Option<usize>,
    pub top_p: Option<f32>,
    pub repetition_penalty: Option<f32>,
    pub seed: u64,
}

/// slm's defaults ([`SamplerConfig::default`]), overridden by `gen` (with `do_sample: false`
/// meaning temperature 0), overridden by the user's `flags`.
pub fn sampler_config(gen: &GenerationDefaults, flags: &SamplerFlags) -> SamplerConfig {
    let base = SamplerConfig::default();
    let mut temperature = gen.temperature.unwrap_or(base.temperature);
    if gen.do_sample == Some(false) {
        temperature = 0.0;
    }
    SamplerConfig {
        temperature: flags.temperature.unwrap_or(temperature),
        top_k: flags.top_k.or(gen.top_k).unwrap_or(base.top_k),
        top_p: flags.top_p.or(gen.top_p).unwrap_or(base.top_p),
        repetition_penalty: flags
            .repetition_penalty
            .or(gen.repetition_penalty)
            .unwrap_or(base.repetition_penalty),
        seed: flags.seed,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn reads_the_honoured_keys() {
        let g = GenerationDefaults::from_json(&json!({
            "do_sample": true, "temperature": 0.6, "top_p": 0.9, "top_k": 20,
            "repetition_penalty": 1.1, "max_new_tokens": 64,
            "eos_token_id": [128001, 128009], "bos_token_id": 1, "transformers_version": "4.4"
        }))
        .unwrap();
        assert_eq!(
            g,
            GenerationDefaults {
                do_sample: Some(true),
                temperature: Some(0.6),
                top_p: Some(0.9),
                top_k: Some(20),
                repetition_penalty: Some(1.1),
                max_new_tokens: Some(64),
                eos_token_ids: vec![128001, 128009],
            }
        );
        let g = GenerationDefaults::from_json(&json!({"eos_token_id": 2, "top_p": null})).unwrap();
        assert_eq!(g.eos_token_ids, vec![2]);
        assert_eq!(g.top_p, None);
        for bad in [
            json!({"temperature": "hot"}),
            json!({"eos_token_id": "x"}),
            json!({"eos_token_id": [1, -2]}),
            json!({"do_sample": 1}),
            json!({"top_k": 1.5}),
        ] {
            let err = GenerationDefaults::from_json(&bad).unwrap_err().to_string();
            assert!(err.contains("generation_config.json"), "{err}");
        }
        assert_eq!(
            GenerationDefaults::from_optional(None).unwrap(),
            GenerationDefaults::default()
        );
    }

    #[test]
    fn flags_win_over_the_file_which_wins_over_defaults() {
        let none = SamplerFlags {
            seed: 7,
            ..Default::default()
        };
        // No file: slm's defaults.
        let c = sampler_config(&GenerationDefaults::default(), &none);
        assert_eq!(
            c,
            SamplerConfig {
                seed: 7,
                ..SamplerConfig::default()
            }
        );
        // The file's values.
        let gen = GenerationDefaults {
            temperature: Some(0.3),
            top_p: Some(0.8),
            top_k: Some(40),
            ..Default::default()
        };
        let c = sampler_config(&gen, &none);
        assert_eq!((c.temperature, c.top_p, c.top_k), (0.3, 0.8, 40));
        // do_sample = false: greedy, even with a temperature in the file.
        let greedy = GenerationDefaults {
            do_sample: Some(false),
            temperature: Some(0.7),
            ..Default::default()
        };
        assert_eq!(sampler_config(&greedy, &none).temperature, 0.0);
        // Flags win.
        let flags = SamplerFlags {
            temperature: Some(1.2),
            top_k: Some(5),
            top_p: None,
            repetition_penalty: Some(1.3),
            seed: 1,
        };
        let c = sampler_config(&greedy, &flags);
        assert_eq!(
            (c.temperature, c.top_k, c.repetition_penalty),
            (1.2, 5, 1.3)
        );
        let c = sampler_config(&gen, &flags);
        assert_eq!((c.temperature, c.top_p, c.top_k), (1.2, 0.8, 5));
    }
}
