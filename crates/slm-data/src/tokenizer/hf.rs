//! Hugging Face `tokenizer.json`, through the `tokenizers` crate.
//!
//! The crate does the encoding and decoding; this file owns what it leaves open: which ids
//! are BOS and EOS, and when BOS is added. BOS/EOS come, in order of precedence, from an
//! explicit [`SpecialTokens`] option, the leading special token of the post-processor's
//! single-sequence template (e.g. Llama's `<s> $A`), or well-known names (`<s>`,
//! `<|begin_of_text|>`, `</s>`, `<|endoftext|>`, `<|im_end|>`...).
//!
//! Whether BOS is added by default ([`Tokenizer::adds_bos`]) is decided as transformers
//! decides it: `tokenizer_config.json`'s `add_bos_token` when it says, else whether the
//! post-processor's template starts with a special token (no post-processor, or GPT-2's
//! `ByteLevel` one: no BOS).
//!
//! `encode` runs the pipeline without the post-processor (which may append EOS or
//! separators) and prepends BOS itself when asked and known, so `add_bos` gives exactly one
//! BOS whatever the template says. `decode` drops BOS, EOS and every added token marked
//! special.

use std::path::Path;

use slm_core::{Error, Result};

use super::{bad_id, Tokenizer};

/// Names tried for BOS when nothing else says, in order. GPT-2-style vocabularies use
/// `<|endoftext|>` for both.
const BOS_NAMES: &[&str] = &[
    "<s>",
    "<|begin_of_text|>",
    "<|startoftext|>",
    "<bos>",
    "[BOS]",
    "<|endoftext|>",
];
/// Names tried for EOS when nothing else says, in order.
const EOS_NAMES: &[&str] = &[
    "</s>",
    "<|end_of_text|>",
    "<|endoftext|>",
    "<|im_end|>",
    "<|eot_id|>",
    "<eos>",
    "[EOS]",
    "<|end|>",
];

/// How one special token is chosen.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub enum SpecialToken {
    /// Found from the post-processor template or well-known names.
    #[default]
    Auto,
    /// The tokenizer has none.
    None,
    /// This token (must be in the vocabulary or the added tokens).
    Token(String),
}

/// BOS/EOS choice for [`HfTokenizer`]; the default finds both automatically.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct SpecialTokens {
    pub bos: SpecialToken,
    pub eos: SpecialToken,
}

/// A `tokenizers::Tokenizer` with known BOS/EOS.
#[derive(Clone)]
pub struct HfTokenizer {
    inner: tokenizers::Tokenizer,
    bos: Option<u32>,
    eos: Option<u32>,
    vocab_size: usize,
    adds_bos: bool,
}

impl std::fmt::Debug for HfTokenizer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("HfTokenizer")
            .field("vocab_size", &self.vocab_size)
            .field("bos", &self.bos)
            .field("eos", &self.eos)
            .field("adds_bos", &self.adds_bos)
            .finish_non_exhaustive()
    }
}

impl HfTokenizer {
    /// Loads a `tokenizer.json`, finding BOS/EOS automatically.
    pub fn from_file(path: impl AsRef<Path>) -> Result<Self> {
        Self::from_file_with(path, &SpecialTokens::default())
    }

    /// Loads a `tokenizer.json` with BOS/EOS chosen by `specials`.
    pub fn from_file_with(path: impl AsRef<Path>, specials: &SpecialTokens) -> Result<Self> {
        let path = path.as_ref();
        // Read it ourselves so a missing file is an I/O error with its path.
        let bytes = std::fs::read(path).map_err(|e| Error::io(path, e))?;
        let inner = parse_json(&bytes).map_err(|e| Error::format(path, e))?;
        Self::from_tokenizer(inner, specials).map_err(|e| Error::format(path, e.to_string()))
    }

    /// Loads a `tokenizer.json` from its bytes, with BOS/EOS chosen by `specials`.
    pub fn from_bytes(bytes: &[u8], specials: &SpecialTokens) -> Result<Self> {
        let inner = parse_json(bytes).map_err(Error::Tokenizer)?;
        Self::from_tokenizer(inner, specials)
    }

    /// Loads a `tokenizer.json` with the settings of the `tokenizer_config.json` beside it, as
    /// transformers does: `bos_token`/`eos_token` name BOS/EOS (when in the vocabulary),
    /// `add_bos_token` says whether BOS is added by default.
    pub fn from_file_with_config(
        path: impl AsRef<Path>,
        config: Option<&serde_json::Value>,
    ) -> Result<Self> {
        let Some(config) = config else {
            return Self::from_file(path);
        };
        let path = path.as_ref();
        let bytes = std::fs::read(path).map_err(|e| Error::io(path, e))?;
        let inner = parse_json(&bytes).map_err(|e| Error::format(path, e))?;
        let named = |key: &str| {
            let v = &config[key];
            let name = v.as_str().or_else(|| v["content"].as_str())?;
            inner.token_to_id(name).map(|_| name.to_string())
        };
        let specials = SpecialTokens {
            bos: named("bos_token").map_or(SpecialToken::Auto, SpecialToken::Token),
            eos: named("eos_token").map_or(SpecialToken::Auto, SpecialToken::Token),
        };
        let t = Self::from_tokenizer(inner, &specials)
            .map_err(|e| Error::format(path, e.to_string()))?;
        Ok(match config["add_bos_token"].as_bool() {
            Some(b) => t.with_adds_bos(b),
            None => t,
        })
    }

    /// Wraps an already built `tokenizers::Tokenizer`.
    pub fn from_tokenizer(inner: tokenizers::Tokenizer, specials: &SpecialTokens) -> Result<Self> {
        let vocab = inner.get_vocab(true);
        let vocab_size = vocab.values().max().map_or(0, |&m| m as usize + 1);
        let template_bos = template_leading_special(&inner);
        let bos = resolve(
            &inner,
            &specials.bos,
            "BOS",
            template_bos.as_deref(),
            BOS_NAMES,
        )?;
        let eos = resolve(&inner, &specials.eos, "EOS", None, EOS_NAMES)?;
        Ok(Self {
            inner,
            bos,
            eos,
            vocab_size,
            adds_bos: template_bos.is_some(),
        })
    }

    /// The same tokenizer with BOS added by default (`true`) or not, whatever the
    /// post-processor says (e.g. from `tokenizer_config.json`'s `add_bos_token`).
    pub fn with_adds_bos(mut self, adds_bos: bool) -> Self {
        self.adds_bos = adds_bos;
        self
    }

    /// The wrapped `tokenizers::Tokenizer`.
    pub fn inner(&self) -> &tokenizers::Tokenizer {
        &self.inner
    }
}

/// The `tokenizers` tokenizer of a `tokenizer.json`'s bytes; the error is the message.
///
/// The JSON is parsed fully first: `tokenizers` 0.21 panics (`expect("Helper")` in its
/// decoder deserializer) on a syntax error inside the `"decoder"` object instead of returning
/// an error (found fuzzing, docs/FUZZING.md). On valid JSON that path cannot fail. A full
/// `Value` (not `IgnoredAny`, which skips string escapes unchecked): a lone surrogate
/// `"\ud800"` in the decoder panicked the same way.
fn parse_json(bytes: &[u8]) -> std::result::Result<tokenizers::Tokenizer, String> {
    serde_json::from_slice::<serde_json::Value>(bytes)
        .map_err(|e| format!("not a tokenizer.json: {e}"))?;
    tokenizers::Tokenizer::from_bytes(bytes).map_err(|e| format!("not a tokenizer.json: {e}"))
}

/// The id chosen for one special token.
fn resolve(
    inner: &tokenizers::Tokenizer,
    choice: &SpecialToken,
    what: &str,
    template: Option<&str>,
    names: &[&str],
) -> Result<Option<u32>> {
    match choice {
        SpecialToken::None => Ok(None),
        SpecialToken::Token(name) => inner.token_to_id(name).map(Some).ok_or_else(|| {
            Error::Tokenizer(format!("{what} token {name:?} is not in the vocabulary"))
        }),
        SpecialToken::Auto => Ok(template
            .and_then(|t| inner.token_to_id(t))
            .or_else(|| names.iter().find_map(|n| inner.token_to_id(n)))),
    }
}

/// The special token a `TemplateProcessing` post-processor puts before a single sequence
/// (`<s> $A` -> `<s>`), also inside a `Sequence` of processors. Read through the serialised
/// form, which is the stable part of the crate's API.
fn template_leading_special(inner: &tokenizers::Tokenizer) -> Option<String> {
    let value = serde_json::to_value(inner.get_post_processor()?).ok()?;
    leading_special(&value)
}

fn leading_special(pp: &serde_json::Value) -> Option<String> {
    match pp.get("type")?.as_str()? {
        "TemplateProcessing" => {
            let first = pp.get("single")?.as_array()?.first()?;
            Some(first.get("SpecialToken")?.get("id")?.as_str()?.to_string())
        }
        "Sequence" => pp
            .get("processors")?
            .as_array()?
            .iter()
            .find_map(leading_special),
        _ => None,
    }
}

impl Tokenizer for HfTokenizer {
    fn encode(&self, text: &str, add_bos: bool) -> Result<Vec<u32>> {
        let encoding = self
            .inner
            .encode_fast(text, false)
            .map_err(|e| Error::Tokenizer(format!("encode failed: {e}")))?;
        let ids = encoding.get_ids();
        let mut out = Vec::with_capacity(ids.len() + 1);
        if let (true, Some(bos)) = (add_bos, self.bos) {
            out.push(bos);
        }
        out.extend_from_slice(ids);
        Ok(out)
    }

    fn decode(&self, ids: &[u32]) -> Result<String> {
        let mut kept = Vec::with_capacity(ids.len());
        for &id in ids {
            if id as usize >= self.vocab_size {
                return Err(bad_id(id, self.vocab_size));
            }
            if Some(id) != self.bos && Some(id) != self.eos {
                kept.push(id);
            }
        }
        self.inner
            .decode(&kept, true)
            .map_err(|e| Error::Tokenizer(format!("decode failed: {e}")))
    }

    fn vocab_size(&self) -> usize {
        self.vocab_size
    }

    fn bos_id(&self) -> Option<u32> {
        self.bos
    }

    fn eos_id(&self) -> Option<u32> {
        self.eos
    }

    fn token_to_id(&self, piece: &str) -> Option<u32> {
        self.inner.token_to_id(piece)
    }

    fn id_to_piece(&self, id: u32) -> Option<String> {
        self.inner.id_to_token(id)
    }

    /// A whole-character token's decoded text; a partial one's raw bytes from its piece
    /// (`<0xHH>` byte fallback, or GPT-2's byte-level alphabet).
    fn token_bytes(&self, id: u32) -> Option<Vec<u8>> {
        let text = self.decode(&[id]).ok()?;
        if !text.contains('\u{FFFD}') {
            return Some(text.into_bytes());
        }
        let piece = self.id_to_piece(id)?;
        super::spm::parse_byte_piece(piece.as_bytes())
            .map(|b| vec![b])
            .or_else(|| byte_level_bytes(&piece))
    }

    fn adds_bos(&self) -> bool {
        self.adds_bos && self.bos.is_some()
    }

    fn kind(&self) -> &'static str {
        "hf"
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A word-level tokenizer.json with a Llama-like `<s> $A </s>` template.
    fn tiny_json() -> String {
        r#"{
          "version": "1.0",
          "added_tokens": [
            {"id": 0, "content": "<unk>", "single_word": false, "lstrip": false, "rstrip": false, "normalized": false, "special": true},
            {"id": 1, "content": "<bos>", "single_word": false, "lstrip": false, "rstrip": false, "normalized": false, "special": true},
            {"id": 2, "content": "</s>", "single_word": false, "lstrip": false, "rstrip": false, "normalized": false, "special": true}
          ],
          "normalizer": null,
          "pre_tokenizer": {"type": "Whitespace"},
          "post_processor": {
            "type": "TemplateProcessing",
            "single": [{"SpecialToken": {"id": "<bos>", "type_id": 0}}, {"Sequence": {"id": "A", "type_id": 0}}, {"SpecialToken": {"id": "</s>", "type_id": 0}}],
            "pair": [{"Sequence": {"id": "A", "type_id": 0}}, {"Sequence": {"id": "B", "type_id": 1}}],
            "special_tokens": {
              "<bos>": {"id": "<bos>", "ids": [1], "tokens": ["<bos>"]},
              "</s>": {"id": "</s>", "ids": [2], "tokens": ["</s>"]}
            }
          },
          "decoder": null,
          "model": {"type": "WordLevel", "vocab": {"<unk>": 0, "<bos>": 1, "</s>": 2, "hello": 3, "world": 4, "<s>": 5}, "unk_token": "<unk>"}
        }"#
        .to_string()
    }

    fn tiny(specials: &SpecialTokens) -> HfTokenizer {
        let inner = tokenizers::Tokenizer::from_bytes(tiny_json().as_bytes()).unwrap();
        HfTokenizer::from_tokenizer(inner, specials).unwrap()
    }

    #[test]
    fn bos_from_template_beats_names() {
        let t = tiny(&SpecialTokens::default());
        assert_eq!(t.bos_id(), Some(1));
        assert_eq!(t.eos_id(), Some(2));
        assert!(t.adds_bos(), "the template starts with <bos>");
        assert!(!t.clone().with_adds_bos(false).adds_bos());
        assert_eq!(t.encode("hello world", true).unwrap(), vec![1, 3, 4]);
        assert_eq!(t.encode("hello world", false).unwrap(), vec![3, 4]);
        assert_eq!(t.decode(&[1, 3, 4, 2]).unwrap(), "hello world");
        assert!(t.decode(&[99]).is_err());
    }

    #[test]
    fn explicit_specials() {
        let specials = SpecialTokens {
            bos: SpecialToken::Token("<s>".into()),
            eos: SpecialToken::None,
        };
        let t = tiny(&specials);
        assert_eq!(t.bos_id(), Some(5));
        assert_eq!(t.eos_id(), None);
        assert_eq!(t.encode("hello", true).unwrap(), vec![5, 3]);
        let bad = SpecialTokens {
            bos: SpecialToken::Token("<nope>".into()),
            ..Default::default()
        };
        let inner = tokenizers::Tokenizer::from_bytes(tiny_json().as_bytes()).unwrap();
        assert!(HfTokenizer::from_tokenizer(inner, &bad).is_err());
    }
}

/// The bytes a piece of GPT-2's byte-level alphabet stands for (`Ġ` is a space, `âĢ` the first
/// two bytes of `’`); `None` if a character is outside the alphabet.
pub(crate) fn byte_level_bytes(piece: &str) -> Option<Vec<u8>> {
    piece.chars().map(byte_level_byte).collect()
}

/// GPT-2's `bytes_to_unicode` backwards: printable bytes stand for themselves; the other 68
/// (controls, space, DEL, …) were given the characters U+0100, U+0101, … in byte order.
fn byte_level_byte(c: char) -> Option<u8> {
    let printable =
        |b: u32| (33..=126).contains(&b) || (161..=172).contains(&b) || (174..=255).contains(&b);
    let u = c as u32;
    if u < 256 {
        return printable(u).then_some(u as u8);
    }
    (0u32..256)
        .filter(|&b| !printable(b))
        .nth((u - 256) as usize)
        .map(|b| b as u8)
}

#[cfg(test)]
mod byte_level_tests {
    use super::byte_level_bytes;

    /// GPT-2's table forwards, as its encoder.py builds it.
    fn bytes_to_unicode() -> Vec<char> {
        let mut printable: Vec<u32> = (33..=126).chain(161..=172).chain(174..=255).collect();
        let mut chars = printable.clone();
        let mut n = 0;
        for b in 0..256u32 {
            if !printable.contains(&b) {
                printable.push(b);
                chars.push(256 + n);
                n += 1;
            }
        }
        let mut table = vec![' '; 256];
        for (b, c) in printable.iter().zip(chars) {
            table[*b as usize] = char::from_u32(c).unwrap();
        }
        table
    }

    #[test]
    fn every_byte_round_trips_through_the_byte_level_alphabet() {
        let table = bytes_to_unicode();
        for b in 0..=255u8 {
            assert_eq!(
                byte_level_bytes(&table[b as usize].to_string()),
                Some(vec![b])
            );
        }
        assert_eq!(byte_level_bytes("Ġthe"), Some(b" the".to_vec()));
        assert_eq!(byte_level_bytes("âĢ"), Some(vec![0xE2, 0x80]));
        assert_eq!(byte_level_bytes("▁the"), None);
    }
}
