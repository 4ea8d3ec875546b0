//! Vocabularies embedded in GGUF files (`tokenizer.ggml.*` metadata).
//!
//! - `"llama"`: SentencePiece BPE as llama.cpp's `llm_tokenizer_spm`. Spaces are `▁` (U+2581)
//!   in pieces and a dummy-prefix `▁` starts non-empty text; characters are merged by piece
//!   score (`spm.rs`); a character that is no piece becomes its UTF-8 bytes as `<0xHH>`
//!   pieces (token type 6), or `<unk>` when the vocabulary has no byte pieces. Only normal
//!   (type 1) and user-defined (type 4) pieces take part in merges, so text never turns
//!   into control tokens such as `<s>`. Decoding maps `▁` to a space, byte pieces to raw
//!   bytes, drops control tokens (BOS, EOS...) and strips one leading space from the first
//!   piece of the sequence and from a piece right after BOS (SentencePiece's rule, so that
//!   `decode(encode(x)) == x` with or without BOS).
//! - `"gpt2"`: byte-level BPE run by the `tokenizers` crate on the `tokenizer.json` that
//!   `hf_json.rs` writes for the vocabulary: the pre-tokenizer `tokenizer.ggml.pre` names
//!   (llama.cpp's regex list for that type; an unknown type is an error), merges, control
//!   tokens (type 3) as special added tokens, user-defined ones (type 4) as plain added tokens.
//!
//! Reading the GGUF file is `slm-io`'s job; this file takes the plain values.

use std::collections::HashMap;

use slm_core::{Error, Result};

use super::hf::{HfTokenizer, SpecialToken, SpecialTokens};
use super::spm::{byte_piece, merge_by_score, parse_byte_piece, Symbol};
use super::{bad_id, Tokenizer};

/// GGUF token types (llama.cpp `llama_token_type`).
const TYPE_NORMAL: i32 = 1;
const TYPE_UNKNOWN: i32 = 2;
const TYPE_CONTROL: i32 = 3;
const TYPE_USER_DEFINED: i32 = 4;
const TYPE_BYTE: i32 = 6;

/// SentencePiece's space marker.
const SPACE_MARK: char = '\u{2581}';

/// A tokenizer built from a GGUF vocabulary.
#[derive(Debug, Clone)]
pub struct GgufTokenizer {
    inner: Inner,
    add_bos: bool,
}

#[derive(Debug, Clone)]
enum Inner {
    // Both boxed: each is over a kilobyte inline (byte table; tokenizers' pipeline).
    Spm(Box<SpmVocab>),
    Gpt2(Box<HfTokenizer>),
}

/// A SentencePiece vocabulary as llama.cpp reads it.
#[derive(Debug, Clone)]
struct SpmVocab {
    pieces: Vec<String>,
    scores: Vec<f32>,
    /// Token type of every id (filled in when the file had none).
    types: Vec<i32>,
    /// Normal and user-defined pieces: what text may turn into.
    mergeable: HashMap<Vec<u8>, u32>,
    /// Every piece, for `token_to_id`.
    all: HashMap<String, u32>,
    byte_ids: [Option<u32>; 256],
    bos: Option<u32>,
    eos: Option<u32>,
    unk: Option<u32>,
}

impl GgufTokenizer {
    /// Builds the tokenizer from a GGUF file's `tokenizer.ggml.*` values (see
    /// [`slm_io::GgufVocab`]); `tokenizer.ggml.pre` picks the BPE pre-tokenizer.
    pub fn from_vocab(v: &slm_io::GgufVocab) -> Result<Self> {
        let n = v.tokens.len();
        if n == 0 {
            return Err(Error::Tokenizer("GGUF vocabulary has no tokens".into()));
        }
        if u32::try_from(n).is_err() {
            return Err(Error::Tokenizer(
                "GGUF vocabulary larger than u32 ids".into(),
            ));
        }
        check_len("tokenizer.ggml.scores", v.scores.len(), n)?;
        check_len("tokenizer.ggml.token_type", v.token_types.len(), n)?;
        for (what, id) in [("bos", v.bos_id), ("eos", v.eos_id), ("unknown", v.unk_id)] {
            if let Some(id) = id {
                if id as usize >= n {
                    return Err(Error::Tokenizer(format!(
                        "GGUF {what} token id {id} is outside the vocabulary of {n} tokens"
                    )));
                }
            }
        }
        let inner = match v.model.as_str() {
            "llama" => Inner::Spm(Box::new(SpmVocab::new(
                v.tokens.clone(),
                v.scores.clone(),
                v.token_types.clone(),
                v.bos_id,
                v.eos_id,
                v.unk_id,
            ))),
            "gpt2" => Inner::Gpt2(Box::new(build_gpt2(v)?)),
            other => {
                return Err(Error::Unsupported(format!(
                    "GGUF tokenizer model {other:?} (supported: \"llama\", \"gpt2\")"
                )))
            }
        };
        Ok(Self {
            inner,
            add_bos: v.add_bos,
        })
    }

    /// [`Self::from_vocab`] from the plain values: `model` is `tokenizer.ggml.model`
    /// (`"llama"` or `"gpt2"`); `scores`, `token_types` and `merges` may be empty when the
    /// file has none; `add_bos` is `tokenizer.ggml.add_bos_token`. No `tokenizer.ggml.pre`:
    /// a BPE vocabulary gets llama.cpp's "default" pre-tokenizer.
    #[allow(clippy::too_many_arguments)] // mirrors the GGUF keys one to one
    pub fn new(
        model: &str,
        tokens: Vec<String>,
        scores: Vec<f32>,
        token_types: Vec<i32>,
        merges: Vec<String>,
        bos: Option<u32>,
        eos: Option<u32>,
        unk: Option<u32>,
        add_bos: bool,
    ) -> Result<Self> {
        Self::from_vocab(&slm_io::GgufVocab {
            model: model.to_string(),
            tokens,
            scores,
            token_types,
            merges,
            bos_id: bos,
            eos_id: eos,
            unk_id: unk,
            add_bos,
            add_eos: false,
            pre: None,
            chat_template: None,
        })
    }

    /// Whether the file asks for BOS at the start of a prompt (`tokenizer.ggml.add_bos_token`).
    pub fn add_bos(&self) -> bool {
        self.add_bos
    }
}

fn check_len(key: &str, len: usize, n: usize) -> Result<()> {
    if len != 0 && len != n {
        return Err(Error::Tokenizer(format!(
            "GGUF {key} has {len} entries for {n} tokens"
        )));
    }
    Ok(())
}

impl SpmVocab {
    /// Token `id`'s bytes in a text: a byte token's byte, a piece with `▁` as spaces (with its
    /// leading space, which `decode` drops at the start of a text), nothing for control tokens.
    fn token_bytes(&self, id: u32) -> Option<Vec<u8>> {
        let piece = self.pieces.get(id as usize)?;
        let ty = self.types[id as usize];
        if Some(id) == self.bos || Some(id) == self.eos || ty == TYPE_CONTROL {
            return Some(Vec::new());
        }
        if ty == TYPE_BYTE {
            if let Some(b) = parse_byte_piece(piece.as_bytes()) {
                return Some(vec![b]);
            }
        }
        Some(piece.replace(SPACE_MARK, " ").into_bytes())
    }

    fn new(
        pieces: Vec<String>,
        scores: Vec<f32>,
        token_types: Vec<i32>,
        bos: Option<u32>,
        eos: Option<u32>,
        unk: Option<u32>,
    ) -> Self {
        let n = pieces.len();
        let scores = if scores.is_empty() {
            vec![0.0; n]
        } else {
            scores
        };
        let types = if token_types.is_empty() {
            // Without types: byte pieces by their shape, BOS/EOS as control, the rest normal.
            (0..n)
                .map(|id| {
                    let id32 = id as u32;
                    if Some(id32) == bos || Some(id32) == eos {
                        TYPE_CONTROL
                    } else if Some(id32) == unk {
                        TYPE_UNKNOWN
                    } else if parse_byte_piece(pieces[id].as_bytes()).is_some() {
                        TYPE_BYTE
                    } else {
                        TYPE_NORMAL
                    }
                })
                .collect()
        } else {
            token_types
        };
        let mut mergeable = HashMap::with_capacity(n);
        let mut all = HashMap::with_capacity(n);
        let mut byte_ids = [None; 256];
        for (id, piece) in pieces.iter().enumerate() {
            let id32 = id as u32;
            all.entry(piece.clone()).or_insert(id32);
            match types[id] {
                TYPE_NORMAL | TYPE_USER_DEFINED => {
                    mergeable.entry(piece.as_bytes().to_vec()).or_insert(id32);
                }
                TYPE_BYTE => {
                    if let Some(b) = parse_byte_piece(piece.as_bytes()) {
                        byte_ids[b as usize].get_or_insert(id32);
                    }
                }
                _ => {}
            }
        }
        Self {
            pieces,
            scores,
            types,
            mergeable,
            all,
            byte_ids,
            bos,
            eos,
            unk,
        }
    }

    fn encode(&self, text: &str, add_bos: bool) -> Result<Vec<u32>> {
        let mut ids = Vec::with_capacity(text.len() + 2);
        if let (true, Some(bos)) = (add_bos, self.bos) {
            ids.push(bos);
        }
        if text.is_empty() {
            return Ok(ids);
        }
        let mut escaped = String::with_capacity(text.len() + 3);
        escaped.push(SPACE_MARK);
        escaped.extend(text.chars().map(|c| if c == ' ' { SPACE_MARK } else { c }));
        let symbols = escaped
            .char_indices()
            .map(|(i, c)| {
                let bytes = escaped.as_bytes()[i..i + c.len_utf8()].to_vec();
                let id = self.mergeable.get(&bytes).copied();
                Symbol { text: bytes, id }
            })
            .collect();
        let merged = merge_by_score(symbols, |piece| {
            let id = *self.mergeable.get(piece)?;
            Some((id, self.scores[id as usize]))
        });
        for sym in merged {
            match sym.id {
                Some(id) => ids.push(id),
                None => {
                    for &b in &sym.text {
                        let id = self.byte_ids[b as usize].or(self.unk).ok_or_else(|| {
                            Error::Tokenizer(format!(
                                "no piece for byte {b:#04x} ({}) and no <unk> token",
                                byte_piece(b)
                            ))
                        })?;
                        ids.push(id);
                    }
                }
            }
        }
        Ok(ids)
    }

    fn decode(&self, ids: &[u32]) -> Result<String> {
        let n = self.pieces.len();
        let mut bytes = Vec::with_capacity(ids.len() * 4);
        // Strip one leading space from the next text piece: at the start and after BOS.
        let mut strip = true;
        for &id in ids {
            let piece = self.pieces.get(id as usize).ok_or_else(|| bad_id(id, n))?;
            let ty = self.types[id as usize];
            if Some(id) == self.bos {
                strip = true;
                continue;
            }
            if Some(id) == self.eos || ty == TYPE_CONTROL {
                continue;
            }
            if ty == TYPE_BYTE {
                if let Some(b) = parse_byte_piece(piece.as_bytes()) {
                    bytes.push(b);
                    strip = false;
                    continue;
                }
            }
            let text = piece.replace(SPACE_MARK, " ");
            let text = match (strip, text.strip_prefix(' ')) {
                (true, Some(rest)) => rest,
                _ => text.as_str(),
            };
            bytes.extend_from_slice(text.as_bytes());
            strip = false;
        }
        Ok(String::from_utf8_lossy(&bytes).into_owned())
    }
}

/// A byte-level BPE tokenizer from the vocabulary's `tokenizer.json` (`hf_json.rs`).
fn build_gpt2(v: &slm_io::GgufVocab) -> Result<HfTokenizer> {
    let inner = super::hf_json::build(&super::hf_json::tokenizer_json(v)?)?;
    let by_id = |id: Option<u32>| match id {
        Some(id) => SpecialToken::Token(v.tokens[id as usize].clone()),
        None => SpecialToken::None,
    };
    let t = HfTokenizer::from_tokenizer(
        inner,
        &SpecialTokens {
            bos: by_id(v.bos_id),
            eos: by_id(v.eos_id),
        },
    )?;
    Ok(t.with_adds_bos(v.add_bos))
}

impl Tokenizer for GgufTokenizer {
    fn encode(&self, text: &str, add_bos: bool) -> Result<Vec<u32>> {
        match &self.inner {
            Inner::Spm(v) => v.encode(text, add_bos),
            Inner::Gpt2(t) => t.encode(text, add_bos),
        }
    }

    fn decode(&self, ids: &[u32]) -> Result<String> {
        match &self.inner {
            Inner::Spm(v) => v.decode(ids),
            Inner::Gpt2(t) => t.decode(ids),
        }
    }

    fn vocab_size(&self) -> usize {
        match &self.inner {
            Inner::Spm(v) => v.pieces.len(),
            Inner::Gpt2(t) => t.vocab_size(),
        }
    }

    fn bos_id(&self) -> Option<u32> {
        match &self.inner {
            Inner::Spm(v) => v.bos,
            Inner::Gpt2(t) => t.bos_id(),
        }
    }

    fn eos_id(&self) -> Option<u32> {
        match &self.inner {
            Inner::Spm(v) => v.eos,
            Inner::Gpt2(t) => t.eos_id(),
        }
    }

    fn token_to_id(&self, piece: &str) -> Option<u32> {
        match &self.inner {
            Inner::Spm(v) => v.all.get(piece).copied(),
            Inner::Gpt2(t) => t.token_to_id(piece),
        }
    }

    fn id_to_piece(&self, id: u32) -> Option<String> {
        match &self.inner {
            Inner::Spm(v) => v.pieces.get(id as usize).cloned(),
            Inner::Gpt2(t) => t.id_to_piece(id),
        }
    }

    fn token_bytes(&self, id: u32) -> Option<Vec<u8>> {
        match &self.inner {
            Inner::Spm(v) => v.token_bytes(id),
            Inner::Gpt2(t) => t.token_bytes(id),
        }
    }

    fn adds_bos(&self) -> bool {
        self.add_bos
    }

    fn kind(&self) -> &'static str {
        match &self.inner {
            Inner::Spm(_) => "gguf-llama",
            Inner::Gpt2(_) => "gguf-gpt2",
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A tiny Llama-style vocabulary: <unk>, <s>, </s>, 256 byte pieces, then pieces.
    fn tiny_spm(with_types: bool) -> GgufTokenizer {
        let mut tokens: Vec<String> = vec!["<unk>".into(), "<s>".into(), "</s>".into()];
        let mut types = vec![TYPE_UNKNOWN, TYPE_CONTROL, TYPE_CONTROL];
        for b in 0..=255u8 {
            tokens.push(byte_piece(b));
            types.push(TYPE_BYTE);
        }
        let mut scores = vec![0.0; tokens.len()];
        for (i, p) in [
            "▁h", "el", "lo", "▁hel", "▁hello", "h", "e", "l", "o", "▁", "<", "s", ">", "<s",
        ]
        .iter()
        .enumerate()
        {
            tokens.push(p.to_string());
            types.push(TYPE_NORMAL);
            scores.push(-(i as f32));
        }
        let types = if with_types { types } else { Vec::new() };
        GgufTokenizer::new(
            "llama",
            tokens,
            scores,
            types,
            Vec::new(),
            Some(1),
            Some(2),
            Some(0),
            true,
        )
        .unwrap()
    }

    #[test]
    fn spm_encode_decode() {
        for with_types in [true, false] {
            let t = tiny_spm(with_types);
            let hello = t.token_to_id("▁hello").unwrap();
            assert_eq!(t.encode("hello", true).unwrap(), vec![1, hello]);
            assert_eq!(t.encode("hello hello", false).unwrap(), vec![hello, hello]);
            assert_eq!(t.decode(&[1, hello, hello, 2]).unwrap(), "hello hello");
            assert_eq!(t.decode(&[hello]).unwrap(), "hello");
            // "<s>" in text is not BOS: control pieces never come out of merges.
            let ids = t.encode("<s>", false).unwrap();
            assert!(!ids.contains(&1), "{ids:?}");
            for s in ["hello wörld\n€ 🦀", "  two  spaces ", "<s>", ""] {
                for bos in [true, false] {
                    let ids = t.encode(s, bos).unwrap();
                    assert_eq!(t.decode(&ids).unwrap(), s, "{s:?} bos={bos} ids={ids:?}");
                }
            }
            assert!(t.decode(&[100_000]).is_err());
        }
    }

    #[test]
    fn gpt2_from_tokens_and_merges() {
        // Byte-level pieces: 'Ġ' is the space byte.
        let tokens: Vec<String> = ["<|endoftext|>", "h", "i", "Ġ", "hi", "Ġhi"]
            .iter()
            .map(|s| s.to_string())
            .collect();
        let types = vec![TYPE_CONTROL, 1, 1, 1, 1, 1];
        let merges = vec!["h i".to_string(), "Ġ hi".to_string()];
        let t = GgufTokenizer::new(
            "gpt2",
            tokens,
            Vec::new(),
            types,
            merges,
            Some(0),
            Some(0),
            None,
            false,
        )
        .unwrap();
        assert_eq!(t.kind(), "gguf-gpt2");
        assert_eq!(t.encode("hi hi", true).unwrap(), vec![0, 4, 5]);
        assert_eq!(t.decode(&[0, 4, 5, 0]).unwrap(), "hi hi");
        assert!(!t.add_bos());
    }

    #[test]
    fn rejects_bad_inputs() {
        let toks = || vec!["a".to_string(), "b".to_string()];
        assert!(GgufTokenizer::new(
            "bert",
            toks(),
            vec![],
            vec![],
            vec![],
            None,
            None,
            None,
            false
        )
        .is_err());
        assert!(GgufTokenizer::new(
            "llama",
            toks(),
            vec![0.0],
            vec![],
            vec![],
            None,
            None,
            None,
            false
        )
        .is_err());
        assert!(GgufTokenizer::new(
            "llama",
            toks(),
            vec![],
            vec![],
            vec![],
            Some(5),
            None,
            None,
            false
        )
        .is_err());
        assert!(GgufTokenizer::new(
            "gpt2",
            toks(),
            vec![],
            vec![],
            vec!["ab".into()],
            None,
            None,
            None,
            false
        )
        .is_err());
    }
}
