//! The shape of a structurally pruned model: how many layers, hidden channels, query and KV
//! heads and MLP channels it keeps; its parameter count; the checks that refuse shapes the
//! architecture cannot hold; and the candidate shapes a parameter target is searched over.

use serde::{Deserialize, Serialize};
use slm_core::{Error, Result};
use slm_model::LlamaConfig;
use std::fmt;

/// What a pruned model keeps. `head_dim`, the vocabulary, RoPE and the context are the
/// parent's.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct Shape {
    pub layers: usize,
    pub hidden: usize,
    pub heads: usize,
    pub kv_heads: usize,
    pub mlp: usize,
}

impl fmt::Display for Shape {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "{} layers, hidden {}, {} heads / {} KV, MLP {}",
            self.layers, self.hidden, self.heads, self.kv_heads, self.mlp
        )
    }
}

impl Shape {
    /// The shape of `cfg` itself.
    pub fn of(cfg: &LlamaConfig) -> Self {
        Self {
            layers: cfg.num_hidden_layers,
            hidden: cfg.hidden_size,
            heads: cfg.num_attention_heads,
            kv_heads: cfg.num_key_value_heads,
            mlp: cfg.intermediate_size,
        }
    }

    /// Refuses a shape that is not a part of `parent` or breaks its attention: more of any
    /// unit than the parent has, none of one, query heads that do not divide into the kept
    /// KV heads, or KV groups larger than the parent's (query heads are kept within their
    /// group).
    pub fn check(&self, parent: &LlamaConfig) -> Result<()> {
        let p = Shape::of(parent);
        for (what, want, have) in [
            ("layers", self.layers, p.layers),
            ("hidden channels", self.hidden, p.hidden),
            ("query heads", self.heads, p.heads),
            ("KV heads", self.kv_heads, p.kv_heads),
            ("MLP channels", self.mlp, p.mlp),
        ] {
            if want == 0 {
                return Err(Error::invalid(format!(
                    "a model needs at least one of its {what}"
                )));
            }
            if want > have {
                return Err(Error::invalid(format!(
                    "{want} {what} asked for, but the model has {have}: pruning only removes"
                )));
            }
        }
        if !self.heads.is_multiple_of(self.kv_heads) {
            return Err(Error::invalid(format!(
                "{} query heads do not split evenly over {} KV heads (grouped-query attention needs the same number of query heads per KV head)",
                self.heads, self.kv_heads
            )));
        }
        let (group, parent_group) = (self.heads / self.kv_heads, p.heads / p.kv_heads);
        if group > parent_group {
            return Err(Error::invalid(format!(
                "{} query heads over {} KV heads is {group} per group, but the parent's groups hold {parent_group}: query heads are pruned within their KV group, so keep at most {} query heads with {} KV heads",
                self.heads,
                self.kv_heads,
                parent_group * self.kv_heads,
                self.kv_heads
            )));
        }
        Ok(())
    }

    /// The pruned model's configuration. When hidden channels go, `rms_norm_eps` is scaled
    /// by `d/d'` (and the norm weights by `√(d/d')`, see [`super::Plan::apply`]), so each
    /// RMSNorm of the smaller model computes exactly what the parent's computes on a residual
    /// stream whose removed channels are zero.
    pub fn config(&self, parent: &LlamaConfig) -> LlamaConfig {
        let mut c = parent.clone();
        c.num_hidden_layers = self.layers;
        c.hidden_size = self.hidden;
        c.num_attention_heads = self.heads;
        c.num_key_value_heads = self.kv_heads;
        c.intermediate_size = self.mlp;
        if self.hidden != parent.hidden_size {
            c.rms_norm_eps = parent.rms_norm_eps * parent.hidden_size as f64 / self.hidden as f64;
        }
        c
    }

    /// Parameters of one block.
    fn block_params(&self, parent: &LlamaConfig) -> usize {
        let (d, hd) = (self.hidden, parent.head_dim);
        let (q, kv) = (self.heads * hd, self.kv_heads * hd);
        let bias = if parent.qkv_bias { q + 2 * kv } else { 0 };
        d * (q + 2 * kv) + bias + q * d + 3 * d * self.mlp + 2 * d
    }

    /// Parameters outside the embedding and output head: blocks and the final norm.
    pub fn non_embedding_params(&self, parent: &LlamaConfig) -> usize {
        self.layers * self.block_params(parent) + self.hidden
    }

    /// Embedding parameters (and the output head's when it is not tied).
    pub fn embedding_params(&self, parent: &LlamaConfig) -> usize {
        let e = parent.vocab_size * self.hidden;
        if parent.tie_word_embeddings {
            e
        } else {
            2 * e
        }
    }

    pub fn total_params(&self, parent: &LlamaConfig) -> usize {
        self.non_embedding_params(parent) + self.embedding_params(parent)
    }
}

/// A parameter target: a count of non-embedding parameters (`53M`, `5.3e7`, `53000000`)
/// or, below 1, a fraction of the parent's non-embedding parameters (`0.5`).
pub fn parse_target(s: &str, parent: &LlamaConfig) -> Result<usize> {
    let t = s.trim();
    let (num, mult) = match t.chars().last() {
        Some('k' | 'K') => (&t[..t.len() - 1], 1e3),
        Some('m' | 'M') => (&t[..t.len() - 1], 1e6),
        Some('b' | 'B' | 'g' | 'G') => (&t[..t.len() - 1], 1e9),
        _ => (t, 1.0),
    };
    let v: f64 = num.parse().map_err(|_| {
        Error::invalid(format!(
            "target `{s}`: expected a parameter count (53M, 53000000) or a fraction of the parent's non-embedding parameters (0.5)"
        ))
    })?;
    let full = Shape::of(parent).non_embedding_params(parent);
    let target = if mult == 1.0 && v > 0.0 && v < 1.0 {
        (v * full as f64).round() as usize
    } else {
        (v * mult).round() as usize
    };
    if v.is_nan() || v <= 0.0 || target == 0 {
        return Err(Error::invalid(format!("target `{s}` must be positive")));
    }
    if target >= full {
        return Err(Error::invalid(format!(
            "target of {target} non-embedding parameters is not smaller than the model's {full}"
        )));
    }
    Ok(target)
}

/// Rounds `x` to a positive multiple of `m` (at least `m`, at most `max`).
fn round_to(x: f64, m: usize, max: usize) -> usize {
    let r = ((x / m as f64).round() as usize).max(1) * m;
    r.min(max)
}

/// The MLP width (a multiple of 32 where the parent's is) that brings `shape` closest to
/// `target` non-embedding parameters, or None when even the smallest MLP is too large.
fn fill_mlp(shape: Shape, parent: &LlamaConfig, target: usize) -> Option<Shape> {
    let mut s = shape;
    s.mlp = 0;
    let fixed = s.non_embedding_params(parent);
    let per_channel = 3 * s.hidden * s.layers;
    if fixed >= target || per_channel == 0 {
        return None;
    }
    let step = if parent.intermediate_size.is_multiple_of(32) {
        32
    } else {
        1
    };
    s.mlp = round_to(
        (target - fixed) as f64 / per_channel as f64,
        step,
        parent.intermediate_size,
    );
    Some(s)
}

/// Candidate shapes of about `target` non-embedding parameters, named by how they get there
/// (depth only, MLP width, attention and MLP width, hidden width, depth and width), as
/// Minitron's search compares depth against width. Widths stay multiples of 32 where the
/// parent's are (quantised blocks need it); duplicates are dropped.
pub fn candidates(parent: &LlamaConfig, target: usize) -> Vec<(String, Shape)> {
    let full = Shape::of(parent);
    let frac = target as f64 / full.non_embedding_params(parent) as f64;
    let mut out: Vec<(String, Shape)> = Vec::new();
    let mut push = |name: &str, s: Option<Shape>| {
        if let Some(s) = s {
            if s.check(parent).is_ok() && !out.iter().any(|(_, o)| *o == s) {
                out.push((name.to_string(), s));
            }
        }
    };
    // Depth only.
    let per_layer = full.non_embedding_params(parent) as f64 / full.layers as f64;
    let layers = ((target as f64 / per_layer).round() as usize).clamp(1, full.layers);
    push("depth", Some(Shape { layers, ..full }));
    // MLP width only.
    push("mlp", fill_mlp(full, parent, target));
    // Attention heads in proportion (whole query heads per group), then the MLP fills.
    let group = full.heads / full.kv_heads;
    let keep_group = ((group as f64 * frac).round() as usize).clamp(1, group);
    let heads_shape = Shape {
        heads: keep_group * full.kv_heads,
        ..full
    };
    push("heads+mlp", fill_mlp(heads_shape, parent, target));
    // Hidden width (the embedding shrinks too): d' such that the count matches, MLP kept in
    // proportion to the parent's ratio.
    let step = if parent.hidden_size.is_multiple_of(32) {
        32
    } else {
        1
    };
    let mut best: Option<Shape> = None;
    let mut h = step;
    while h <= full.hidden {
        let s = Shape { hidden: h, ..full };
        if s.non_embedding_params(parent) <= target {
            best = Some(s);
        }
        h += step;
    }
    push(
        "hidden",
        best.and_then(|s| fill_mlp(s, parent, target).or(Some(s))),
    );
    // Depth and width: 3/4 of the layers (Minitron found depth hurts more, so keep most), the
    // MLP fills the rest.
    let layers = ((full.layers as f64 * 0.75).round() as usize).max(1);
    push(
        "depth+mlp",
        fill_mlp(Shape { layers, ..full }, parent, target),
    );
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn smol() -> LlamaConfig {
        let mut c = slm_model::preset("260k").unwrap();
        c.vocab_size = 49152;
        c.hidden_size = 576;
        c.intermediate_size = 1536;
        c.num_hidden_layers = 30;
        c.num_attention_heads = 9;
        c.num_key_value_heads = 3;
        c.head_dim = 64;
        c.tie_word_embeddings = true;
        c.qkv_bias = false;
        c
    }

    #[test]
    fn parameter_counts_match_smollm2() {
        let c = smol();
        let s = Shape::of(&c);
        // SmolLM2-135M: 134,515,008 parameters, 28,311,552 of them the tied embedding.
        assert_eq!(s.total_params(&c), 134_515_008);
        assert_eq!(s.embedding_params(&c), 28_311_552);
    }

    #[test]
    fn shapes_that_break_attention_are_refused_with_the_reason() {
        let c = smol();
        let full = Shape::of(&c);
        let e = Shape { heads: 7, ..full }
            .check(&c)
            .unwrap_err()
            .to_string();
        assert!(e.contains("split evenly"), "{e}");
        let e = Shape {
            heads: 5,
            kv_heads: 2,
            ..full
        }
        .check(&c)
        .unwrap_err()
        .to_string();
        assert!(e.contains("split evenly"), "{e}");
        let e = Shape {
            heads: 8,
            kv_heads: 2,
            ..full
        }
        .check(&c)
        .unwrap_err()
        .to_string();
        assert!(e.contains("keep at most 6"), "{e}");
        let e = Shape {
            heads: 8,
            kv_heads: 1,
            ..full
        }
        .check(&c)
        .unwrap_err()
        .to_string();
        assert!(e.contains("within their KV group"), "{e}");
        let e = Shape { mlp: 2000, ..full }
            .check(&c)
            .unwrap_err()
            .to_string();
        assert!(e.contains("only removes"), "{e}");
        let e = Shape { layers: 0, ..full }
            .check(&c)
            .unwrap_err()
            .to_string();
        assert!(e.contains("at least one"), "{e}");
        Shape {
            heads: 6,
            kv_heads: 3,
            ..full
        }
        .check(&c)
        .unwrap();
        Shape {
            heads: 6,
            kv_heads: 2,
            ..full
        }
        .check(&c)
        .unwrap();
    }

    #[test]
    fn targets_parse_as_counts_or_fractions() {
        let c = smol();
        let full = Shape::of(&c).non_embedding_params(&c);
        assert_eq!(
            parse_target("0.5", &c).unwrap(),
            (full as f64 * 0.5).round() as usize
        );
        assert_eq!(parse_target("53M", &c).unwrap(), 53_000_000);
        assert_eq!(parse_target("5.3e7", &c).unwrap(), 53_000_000);
        assert!(parse_target("200M", &c)
            .unwrap_err()
            .to_string()
            .contains("not smaller"));
        assert!(parse_target("-1", &c).is_err());
        assert!(parse_target("lots", &c).is_err());
    }

    #[test]
    fn candidates_land_near_the_target() {
        let c = smol();
        let target = parse_target("0.5", &c).unwrap();
        let cands = candidates(&c, target);
        let names: Vec<&str> = cands.iter().map(|(n, _)| n.as_str()).collect();
        assert!(
            names.contains(&"depth") && names.contains(&"mlp"),
            "{names:?}"
        );
        for (name, s) in &cands {
            s.check(&c).unwrap();
            let p = s.non_embedding_params(&c) as f64 / target as f64;
            assert!((0.9..1.1).contains(&p), "{name}: {s} is {p} of the target");
            assert_eq!(s.mlp % 32, 0, "{name}");
            assert_eq!(s.hidden % 32, 0, "{name}");
        }
    }
}
