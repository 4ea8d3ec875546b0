//! Parameter roles: what each named tensor of a Llama-family model does.
//!
//! Pruning, quantisation and reporting select tensors by role ("prune attention q/k/v/o and
//! MLP gate/up/down, keep embeddings dense"), never by string matching scattered through the
//! code. Names follow the Hugging Face Llama layout (`model.layers.3.mlp.down_proj.weight`).

use std::fmt;

/// The linear layers inside one decoder block.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum LinearRole {
    Q,
    K,
    V,
    O,
    Gate,
    Up,
    Down,
}

impl LinearRole {
    pub const ALL: [LinearRole; 7] = [
        LinearRole::Q,
        LinearRole::K,
        LinearRole::V,
        LinearRole::O,
        LinearRole::Gate,
        LinearRole::Up,
        LinearRole::Down,
    ];

    /// The Hugging Face module path of this linear inside block `layer`, without `.weight`.
    pub fn hf_prefix(self, layer: usize) -> String {
        let m = match self {
            LinearRole::Q => "self_attn.q_proj",
            LinearRole::K => "self_attn.k_proj",
            LinearRole::V => "self_attn.v_proj",
            LinearRole::O => "self_attn.o_proj",
            LinearRole::Gate => "mlp.gate_proj",
            LinearRole::Up => "mlp.up_proj",
            LinearRole::Down => "mlp.down_proj",
        };
        format!("model.layers.{layer}.{m}")
    }

    /// Short name used on the command line and in reports (`q`, `k`, ..., `down`).
    pub fn short(self) -> &'static str {
        match self {
            LinearRole::Q => "q",
            LinearRole::K => "k",
            LinearRole::V => "v",
            LinearRole::O => "o",
            LinearRole::Gate => "gate",
            LinearRole::Up => "up",
            LinearRole::Down => "down",
        }
    }

    pub fn parse(s: &str) -> Option<Self> {
        LinearRole::ALL.into_iter().find(|r| r.short() == s)
    }

    pub fn is_attention(self) -> bool {
        matches!(
            self,
            LinearRole::Q | LinearRole::K | LinearRole::V | LinearRole::O
        )
    }
}

impl fmt::Display for LinearRole {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.short())
    }
}

/// The role of any parameter tensor of the model.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum ParamRole {
    Embedding,
    /// Weight of a linear layer inside block `layer`.
    Linear {
        layer: usize,
        role: LinearRole,
    },
    /// Bias of a linear layer (Qwen2 q/k/v).
    Bias {
        layer: usize,
        role: LinearRole,
    },
    /// RMSNorm gains (block norms and the final norm).
    Norm,
    /// The output projection (when not tied to the embedding).
    LmHead,
}

impl ParamRole {
    /// Classifies a Hugging Face Llama parameter name; `None` for names outside the layout.
    pub fn of(name: &str) -> Option<Self> {
        match name {
            "model.embed_tokens.weight" => return Some(ParamRole::Embedding),
            "lm_head.weight" => return Some(ParamRole::LmHead),
            "model.norm.weight" => return Some(ParamRole::Norm),
            _ => {}
        }
        let rest = name.strip_prefix("model.layers.")?;
        let (layer, rest) = rest.split_once('.')?;
        let layer: usize = layer.parse().ok()?;
        if rest == "input_layernorm.weight" || rest == "post_attention_layernorm.weight" {
            return Some(ParamRole::Norm);
        }
        for role in LinearRole::ALL {
            let prefix = role.hf_prefix(layer);
            match name.strip_prefix(&prefix) {
                Some(".weight") => return Some(ParamRole::Linear { layer, role }),
                Some(".bias") => return Some(ParamRole::Bias { layer, role }),
                _ => {}
            }
        }
        None
    }

    /// The name used for the role in parameter-count reports.
    pub fn group(&self) -> String {
        match self {
            ParamRole::Embedding => "embedding".into(),
            ParamRole::LmHead => "lm_head".into(),
            ParamRole::Norm => "norm".into(),
            ParamRole::Linear { role, .. } => format!("linear.{role}"),
            ParamRole::Bias { role, .. } => format!("bias.{role}"),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn classifies_hf_names() {
        assert_eq!(
            ParamRole::of("model.embed_tokens.weight"),
            Some(ParamRole::Embedding)
        );
        assert_eq!(
            ParamRole::of("model.layers.12.mlp.down_proj.weight"),
            Some(ParamRole::Linear {
                layer: 12,
                role: LinearRole::Down
            })
        );
        assert_eq!(
            ParamRole::of("model.layers.0.self_attn.k_proj.bias"),
            Some(ParamRole::Bias {
                layer: 0,
                role: LinearRole::K
            })
        );
        assert_eq!(
            ParamRole::of("model.layers.1.input_layernorm.weight"),
            Some(ParamRole::Norm)
        );
        assert_eq!(ParamRole::of("model.layers.x.mlp.up_proj.weight"), None);
        assert_eq!(ParamRole::of("something.else"), None);
    }
}
