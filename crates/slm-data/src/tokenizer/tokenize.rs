//! `slm tokenize`'s work, like llama.cpp's `llama-tokenize`: a text's ids with their pieces,
//! printed one per line or as one JSON object.

use serde::Serialize;
use slm_core::Result;

use super::Tokenizer;

/// One token of a tokenised text.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct TokenRow {
    pub id: u32,
    /// The piece as stored in the vocabulary (`Ġthe`, `▁the`, `<0x0A>`, `<|im_start|>`).
    pub piece: String,
    /// What the token alone decodes to (empty for control tokens such as BOS).
    pub text: String,
}

/// A tokenised text.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct TokenizeReport {
    /// Tokenizer implementation (`Tokenizer::kind`).
    pub tokenizer: &'static str,
    /// Whether BOS was put first.
    pub bos: bool,
    pub count: usize,
    pub ids: Vec<u32>,
    pub tokens: Vec<TokenRow>,
}

/// Tokenises `text`; `add_bos: None` does what the model's tokenizer does by default
/// ([`Tokenizer::adds_bos`]).
pub fn tokenize(tok: &dyn Tokenizer, text: &str, add_bos: Option<bool>) -> Result<TokenizeReport> {
    let bos = add_bos.unwrap_or_else(|| tok.adds_bos());
    let ids = tok.encode(text, bos)?;
    let tokens = ids
        .iter()
        .map(|&id| {
            Ok(TokenRow {
                id,
                piece: tok.id_to_piece(id).unwrap_or_default(),
                text: tok.decode(&[id])?,
            })
        })
        .collect::<Result<Vec<_>>>()?;
    Ok(TokenizeReport {
        tokenizer: tok.kind(),
        bos: bos && tok.bos_id().is_some(),
        count: ids.len(),
        ids,
        tokens,
    })
}

impl TokenizeReport {
    /// One line per token, `id -> 'text'` (`llama-tokenize`'s layout) with the raw piece when
    /// it differs, then the count.
    pub fn to_text(&self) -> String {
        let mut out = String::new();
        for t in &self.tokens {
            let shown = if t.text.is_empty() { &t.piece } else { &t.text };
            out.push_str(&format!("{:>6} -> {:?}", t.id, shown));
            if !t.text.is_empty() && t.piece != t.text {
                out.push_str(&format!("  [{}]", t.piece));
            }
            out.push('\n');
        }
        out.push_str(&format!("{} tokens\n", self.count));
        out
    }

    /// Only the ids, as `[1, 2, 3]` (`llama-tokenize --ids`).
    pub fn ids_line(&self) -> String {
        let ids: Vec<String> = self.ids.iter().map(u32::to_string).collect();
        format!("[{}]", ids.join(", "))
    }

    /// One JSON object: tokenizer, bos, count, ids, tokens (id, piece, text).
    pub fn to_json(&self) -> Result<String> {
        Ok(serde_json::to_string(self)?)
    }
}
