//! A GGUF vocabulary (`slm_io::GgufVocab`) as a Hugging Face `tokenizer.json` and
//! `tokenizer_config.json`: the one pipeline slm encodes byte-level BPE GGUF vocabularies with
//! ([`super::GgufTokenizer`] loads this JSON into the `tokenizers` crate) and the files
//! `slm export hf` writes, so slm, transformers and llama.cpp see the same ids.
//!
//! Byte-level BPE (`tokenizer.ggml.model = "gpt2"`): `tokenizer.ggml.pre` picks the
//! pre-tokenizer, each written as the `tokenizers` pipeline (Split regex, Digits, ByteLevel)
//! that reproduces llama.cpp's `llm_tokenizer_bpe` regex list for that type (`llama-vocab.cpp`:
//! each regex splits every piece of the previous one into matches and the text between them,
//! which is `Split` with `Isolated` behaviour) and the Hugging Face `pre_tokenizer` of those
//! models. Unknown types are refused with an error naming them ([`BpePre::from_gguf`]).
//!
//! SentencePiece (`"llama"`): a Llama-style `tokenizer.json` (BPE with byte fallback, merges
//! derived from the piece scores, `Prepend("▁")` + `Replace(" ", "▁")` normalizer). Its BPE
//! merges a leading space into the dummy prefix (`▁▁`) as llama.cpp does, so it gives
//! llama.cpp's ids (transformers' own GGUF conversion differs from llama.cpp for text that
//! starts with a space). slm itself keeps encoding SentencePiece GGUF vocabularies with its
//! llama.cpp transcription (`gguf.rs`).

use serde_json::{json, Map, Value};
use slm_core::{Error, Result};
use slm_io::GgufVocab;

/// GGUF token types (llama.cpp `llama_token_type`).
const TYPE_NORMAL: i32 = 1;
const TYPE_CONTROL: i32 = 3;
const TYPE_USER_DEFINED: i32 = 4;

/// GPT-2's split regex, as llama.cpp writes it (HF's ByteLevel adds a final `|\s+`, which
/// only matches text llama.cpp keeps as an unmatched piece anyway).
const GPT2_RE: &str = r"'s|'t|'re|'ve|'m|'ll|'d| ?\p{L}+| ?\p{N}+| ?[^\s\p{L}\p{N}]+|\s+(?!\S)";
/// Llama 3's split regex (its tokenizer.json; llama.cpp spells `(?i:...)` out by hand).
const LLAMA3_RE: &str = r"(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}{1,3}| ?[^\s\p{L}\p{N}]+[\r\n]*|\s*[\r\n]+|\s+(?!\S)|\s+";
/// Qwen2's split regex: Llama 3's with single digits.
const QWEN2_RE: &str = r"(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}| ?[^\s\p{L}\p{N}]+[\r\n]*|\s*[\r\n]+|\s+(?!\S)|\s+";
/// Mistral's Tekken regex (its tokenizer.json; llama.cpp rewrites the letter classes).
const TEKKEN_RE: &str = r"[^\r\n\p{L}\p{N}]?[\p{Lu}\p{Lt}\p{Lm}\p{Lo}\p{M}]*[\p{Ll}\p{Lm}\p{Lo}\p{M}]+|[^\r\n\p{L}\p{N}]?[\p{Lu}\p{Lt}\p{Lm}\p{Lo}\p{M}]+[\p{Ll}\p{Lm}\p{Lo}\p{M}]*|\p{N}| ?[^\s\p{L}\p{N}]+[\r\n/]*|\s*[\r\n]+|\s+(?!\S)|\s+";
/// DeepSeek LLM's letter class (llama.cpp `LLAMA_VOCAB_PRE_TYPE_DEEPSEEK_LLM`). The six
/// characters that Unicode normalisation would replace (U+1F7D, U+1FBE, U+1FD3, U+1FDB,
/// U+2126, U+212A) are escaped so that no editor can silently change the ranges.
const DEEPSEEK_LETTERS_RE: &str = r"\s?[A-Za-zµÀ-ÖØ-öø-ƺƼ-ƿǄ-ʓʕ-ʯͰ-ͳͶͷͻ-ͽͿΆΈ-ΊΌΎ-ΡΣ-ϵϷ-ҁҊ-ԯԱ-ՖႠ-ჅᎠ-Ᏽᏸ-ᏽᲐ-ᲺᲽ-Ჿᴀ-ᴫᵫ-ᵷᵹ-ᶚḀ-ἕἘ-Ἕἠ-ὅὈ-Ὅὐ-ὗὙὛὝὟ-\x{1F7D}ᾀ-ᾴᾶ-ᾼ\x{1FBE}ῂ-ῄῆ-ῌῐ-\x{1FD3}ῖ-\x{1FDB}ῠ-Ῥῲ-ῴῶ-ῼℂℇℊ-ℓℕℙ-ℝℤ\x{2126}ℨ\x{212A}-ℭℯ-ℴℹℼ-ℿⅅ-ⅉⅎↃↄⰀ-ⱻⱾ-ⳤⳫ-ⳮⳲⳳꙀ-ꙭꚀ-ꚛꜢ-ꝯꝱ-ꞇꞋ-ꞎꭰ-ꮿﬀ-ﬆﬓ-ﬗＡ-Ｚａ-ｚ𐐀-𐑏𐒰-𐓓𐓘-𐓻𐲀-𐲲𐳀-𐳲𑢠-𑣟𞤀-𞥃]+";
const CJK_RE: &str = r"[一-龥ࠀ-一가-퟿]+";

/// The byte-level BPE pre-tokenizers slm knows, by llama.cpp's `LLAMA_VOCAB_PRE_TYPE_*`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum BpePre {
    /// No `tokenizer.ggml.pre`, or `"default"`: punctuation runs, GPT-2's regex, number runs,
    /// three-digit groups.
    Default,
    /// GPT-2's regex alone (`gpt-2`, `mpt`, `olmo`, `phi-2`, `jais`...).
    Gpt2,
    /// Each digit alone, then GPT-2's regex (`smollm`, `starcoder`, `refact`, `command-r`...).
    Smollm,
    /// Llama 3's regex, 1–3 digit groups; whole words in the vocabulary skip merges
    /// (`llama-bpe`, `llama3`, `llama-v3`, `dbrx`, `smaug-bpe`, `falcon3`, `pixtral`).
    Llama3,
    /// Llama 3's regex with single digits (`qwen2`, `deepseek-r1-qwen`, `stablelm2`, `megrez`).
    Qwen2,
    /// DeepSeek LLM's five regexes (`deepseek-llm`).
    DeepseekLlm,
    /// DeepSeek Coder's (`deepseek-coder`).
    DeepseekCoder,
    /// Falcon's (`falcon`).
    Falcon,
    /// Mistral's Tekken regex; whole words skip merges (`tekken`).
    Tekken,
}

impl BpePre {
    /// The pre-tokenizer llama.cpp uses for `tokenizer.ggml.pre` (`None`: the key is absent,
    /// llama.cpp's "default"). Unknown names are an error naming them: slm never tokenises
    /// with a different split than the model's.
    pub fn from_gguf(pre: Option<&str>) -> Result<Self> {
        let Some(name) = pre else {
            return Ok(Self::Default);
        };
        Ok(match name {
            "default" => Self::Default,
            "gpt-2" | "gpt2" | "phi-2" | "mpt" | "olmo" | "jais" | "jina-es" | "jina-de"
            | "jina-v2-es" | "jina-v2-de" | "gigachat" | "trillion" | "exaone4" | "mellum"
            | "a.x-4.0" => Self::Gpt2,
            "smollm" | "starcoder" | "refact" | "command-r" | "codeshell" | "exaone"
            | "minerva-7b" => Self::Smollm,
            "llama-bpe" | "llama3" | "llama-v3" | "dbrx" | "smaug-bpe" | "falcon3"
            | "falcon-h1" | "pixtral" => Self::Llama3,
            "qwen2" | "deepseek-r1-qwen" | "stablelm2" | "megrez" | "hunyuan" => Self::Qwen2,
            "deepseek-llm" => Self::DeepseekLlm,
            "deepseek-coder" => Self::DeepseekCoder,
            "falcon" => Self::Falcon,
            "tekken" => Self::Tekken,
            other => {
                return Err(Error::Unsupported(format!(
                    "GGUF pre-tokenizer type tokenizer.ggml.pre = {other:?} (slm knows: default, \
                     gpt-2, smollm/starcoder/refact/command-r, llama-bpe/llama3/dbrx/smaug-bpe, \
                     qwen2/stablelm2, deepseek-llm, deepseek-coder, falcon, tekken)"
                )))
            }
        })
    }

    /// The name written as `tokenizer.ggml.pre` (one llama.cpp accepts).
    pub fn gguf_name(self) -> &'static str {
        match self {
            Self::Default => "default",
            Self::Gpt2 => "gpt-2",
            Self::Smollm => "smollm",
            Self::Llama3 => "llama-bpe",
            Self::Qwen2 => "qwen2",
            Self::DeepseekLlm => "deepseek-llm",
            Self::DeepseekCoder => "deepseek-coder",
            Self::Falcon => "falcon",
            Self::Tekken => "tekken",
        }
    }

    /// Every known type, for finding the one a `tokenizer.json` pre-tokenizer equals.
    pub const ALL: [BpePre; 9] = [
        Self::Gpt2,
        Self::Smollm,
        Self::Llama3,
        Self::Qwen2,
        Self::Default,
        Self::DeepseekLlm,
        Self::DeepseekCoder,
        Self::Falcon,
        Self::Tekken,
    ];

    /// Whether a pre-tokenized word that is itself in the vocabulary is taken whole, without
    /// merges (llama.cpp's `ignore_merges`, HF BPE's `ignore_merges`).
    pub fn ignore_merges(self) -> bool {
        matches!(self, Self::Llama3 | Self::Tekken)
    }

    /// The HF `pre_tokenizer` object.
    pub fn pre_tokenizer(self) -> Value {
        let split = |re: &str| json!({"type": "Split", "pattern": {"Regex": re}, "behavior": "Isolated", "invert": false});
        let byte_level = |use_regex: bool| json!({"type": "ByteLevel", "add_prefix_space": false, "trim_offsets": true, "use_regex": use_regex});
        let seq = |mut v: Vec<Value>| {
            v.push(byte_level(false));
            json!({"type": "Sequence", "pretokenizers": v})
        };
        match self {
            Self::Gpt2 => byte_level(true),
            Self::Smollm => json!({"type": "Sequence", "pretokenizers": [
                {"type": "Digits", "individual_digits": true},
                byte_level(true),
            ]}),
            Self::Llama3 => seq(vec![split(LLAMA3_RE)]),
            Self::Qwen2 => seq(vec![split(QWEN2_RE)]),
            Self::Tekken => seq(vec![split(TEKKEN_RE)]),
            Self::Default => seq(vec![
                split(r"[\p{P}\$\+<=>\^~\|]+"),
                split(GPT2_RE),
                split(r"\p{N}+"),
                split("[0-9][0-9][0-9]"),
            ]),
            Self::Falcon => seq(vec![
                split(r"[\p{P}\$\+<=>\^~\|`]+"),
                split(GPT2_RE),
                split("[0-9][0-9][0-9]"),
            ]),
            Self::DeepseekLlm => seq(vec![
                split("[\r\n]"),
                split(DEEPSEEK_LETTERS_RE),
                split(r"\s?[!-/:-~！-／：-～‘-‟　-。]+"),
                split(r"\s+$"),
                split(CJK_RE),
                split(r"\p{N}+"),
            ]),
            Self::DeepseekCoder => seq(vec![
                split("[\r\n]"),
                split(r"\s?\p{L}+"),
                split(r"\s?\p{P}+"),
                split(CJK_RE),
                split(r"\p{N}"),
            ]),
        }
    }

    /// The known type whose pipeline a `tokenizer.json` `pre_tokenizer` is (a GPT-2 style
    /// `ByteLevel` with its own regex counts as `gpt-2` whatever its other flags).
    pub fn from_pre_tokenizer(pre: &Value) -> Option<Self> {
        if let Some(t) = Self::ALL.into_iter().find(|t| &t.pre_tokenizer() == pre) {
            return Some(t);
        }
        if pre["type"] == "ByteLevel" && pre["use_regex"] != false {
            return Some(Self::Gpt2);
        }
        None
    }
}

fn added_token(id: usize, content: &str, special: bool) -> Value {
    json!({
        "id": id, "content": content, "single_word": false, "lstrip": false, "rstrip": false,
        "normalized": false, "special": special,
    })
}

/// The `TemplateProcessing` that adds BOS (and EOS when asked), or `None` when neither.
fn post_processor(v: &GgufVocab) -> Option<Value> {
    let bos = v.bos_id.filter(|_| v.add_bos);
    let eos = v.eos_id.filter(|_| v.add_eos);
    if bos.is_none() && eos.is_none() {
        return None;
    }
    let mut single = Vec::new();
    let mut pair = Vec::new();
    let mut specials = Map::new();
    let mut special = |id: u32| -> Value {
        let tok = &v.tokens[id as usize];
        specials.insert(
            tok.clone(),
            json!({"id": tok, "ids": [id], "tokens": [tok]}),
        );
        json!({"SpecialToken": {"id": tok, "type_id": 0}})
    };
    let bos_item = bos.map(&mut special);
    let eos_item = eos.map(&mut special);
    for (seq, type_id) in [("A", 0), ("B", 1)] {
        let items = if seq == "A" { &mut single } else { &mut pair };
        if let Some(b) = &bos_item {
            items.push(b.clone());
        }
        items.push(json!({"Sequence": {"id": seq, "type_id": type_id}}));
        if let Some(e) = &eos_item {
            items.push(e.clone());
        }
    }
    let pair = [single.clone(), pair].concat();
    Some(json!({
        "type": "TemplateProcessing", "single": single, "pair": pair, "special_tokens": specials,
    }))
}

fn check_ids(v: &GgufVocab) -> Result<()> {
    let n = v.tokens.len();
    for (what, id) in [("bos", v.bos_id), ("eos", v.eos_id), ("unknown", v.unk_id)] {
        if let Some(id) = id {
            if id as usize >= n {
                return Err(Error::Tokenizer(format!(
                    "GGUF {what} token id {id} is outside the vocabulary of {n} tokens"
                )));
            }
        }
    }
    if !v.token_types.is_empty() && v.token_types.len() != n {
        return Err(Error::Tokenizer(format!(
            "GGUF tokenizer.ggml.token_type has {} entries for {n} tokens",
            v.token_types.len()
        )));
    }
    Ok(())
}

/// Token type of `id`, with llama.cpp's defaults when the file has no types.
fn token_type(v: &GgufVocab, id: usize) -> i32 {
    match v.token_types.get(id) {
        Some(&t) => t,
        None if Some(id as u32) == v.bos_id || Some(id as u32) == v.eos_id => TYPE_CONTROL,
        None => TYPE_NORMAL,
    }
}

/// Added tokens: control tokens (and BOS/EOS) as special, user-defined ones as plain.
fn added_tokens(v: &GgufVocab) -> Vec<Value> {
    let mut out = Vec::new();
    for (id, tok) in v.tokens.iter().enumerate() {
        match token_type(v, id) {
            TYPE_CONTROL => out.push(added_token(id, tok, true)),
            TYPE_USER_DEFINED => out.push(added_token(id, tok, false)),
            _ if Some(id as u32) == v.bos_id || Some(id as u32) == v.eos_id => {
                out.push(added_token(id, tok, true))
            }
            _ => {}
        }
    }
    out
}

/// The vocabulary as an HF `model.vocab` object; a token spelled twice keeps its first id.
fn vocab_map(v: &GgufVocab) -> Map<String, Value> {
    let mut vocab = Map::with_capacity(v.tokens.len());
    for (id, tok) in v.tokens.iter().enumerate() {
        vocab.entry(tok.clone()).or_insert(json!(id));
    }
    vocab
}

/// The `tokenizer.json` of a GGUF vocabulary (byte-level BPE or SentencePiece).
pub fn tokenizer_json(v: &GgufVocab) -> Result<Value> {
    check_ids(v)?;
    match v.model.as_str() {
        "gpt2" => bpe_json(v),
        "llama" => spm_json(v),
        other => Err(Error::Unsupported(format!(
            "GGUF tokenizer model {other:?} (supported: \"llama\", \"gpt2\")"
        ))),
    }
}

fn bpe_json(v: &GgufVocab) -> Result<Value> {
    let pre = BpePre::from_gguf(v.pre.as_deref())?;
    let mut merges = Vec::with_capacity(v.merges.len());
    for (i, m) in v.merges.iter().enumerate() {
        let (a, b) = m.split_once(' ').ok_or_else(|| {
            Error::Tokenizer(format!(
                "GGUF merge {i} ({m:?}) is not two tokens separated by a space"
            ))
        })?;
        merges.push(json!([a, b]));
    }
    Ok(json!({
        "version": "1.0",
        "truncation": null,
        "padding": null,
        "added_tokens": added_tokens(v),
        "normalizer": null,
        "pre_tokenizer": pre.pre_tokenizer(),
        "post_processor": post_processor(v)
            .unwrap_or_else(|| json!({"type": "ByteLevel", "add_prefix_space": true, "trim_offsets": false, "use_regex": true})),
        "decoder": {"type": "ByteLevel", "add_prefix_space": true, "trim_offsets": true, "use_regex": true},
        "model": {
            "type": "BPE", "dropout": null, "unk_token": null, "continuing_subword_prefix": null,
            "end_of_word_suffix": null, "fuse_unk": false, "byte_fallback": false,
            "ignore_merges": pre.ignore_merges(),
            "vocab": vocab_map(v), "merges": merges,
        },
    }))
}

/// SentencePiece BPE as HF's Llama tokenizers write it: merges are every split of a normal
/// piece into two pieces, ranked by the merged piece's score (higher first), as transformers'
/// `SentencePieceExtractor` does.
fn spm_json(v: &GgufVocab) -> Result<Value> {
    let n = v.tokens.len();
    let scores: Vec<f32> = if v.scores.is_empty() {
        vec![0.0; n]
    } else if v.scores.len() == n {
        v.scores.clone()
    } else {
        return Err(Error::Tokenizer(format!(
            "GGUF tokenizer.ggml.scores has {} entries for {n} tokens",
            v.scores.len()
        )));
    };
    let vocab = vocab_map(v);
    let id_of = |s: &str| vocab.get(s).and_then(Value::as_u64);
    let mut merges: Vec<(f32, u64, u64, u64, &str, &str)> = Vec::new();
    for (id, tok) in v.tokens.iter().enumerate() {
        if token_type(v, id) != TYPE_NORMAL && token_type(v, id) != TYPE_USER_DEFINED {
            continue;
        }
        for (i, _) in tok.char_indices().skip(1) {
            let (a, b) = tok.split_at(i);
            if let (Some(ia), Some(ib)) = (id_of(a), id_of(b)) {
                merges.push((scores[id], id as u64, ia, ib, a, b));
            }
        }
    }
    merges.sort_by(|x, y| {
        y.0.total_cmp(&x.0)
            .then(x.1.cmp(&y.1))
            .then(x.2.cmp(&y.2))
            .then(x.3.cmp(&y.3))
    });
    let merges: Vec<Value> = merges.iter().map(|m| json!([m.4, m.5])).collect();
    let unk = v.unk_id.map(|id| v.tokens[id as usize].clone());
    Ok(json!({
        "version": "1.0",
        "truncation": null,
        "padding": null,
        "added_tokens": added_tokens(v),
        "normalizer": {"type": "Sequence", "normalizers": [
            {"type": "Prepend", "prepend": "\u{2581}"},
            {"type": "Replace", "pattern": {"String": " "}, "content": "\u{2581}"},
        ]},
        "pre_tokenizer": null,
        "post_processor": post_processor(v),
        "decoder": {"type": "Sequence", "decoders": [
            {"type": "Replace", "pattern": {"String": "\u{2581}"}, "content": " "},
            {"type": "ByteFallback"},
            {"type": "Fuse"},
            {"type": "Strip", "content": " ", "start": 1, "stop": 0},
        ]},
        "model": {
            "type": "BPE", "dropout": null, "unk_token": unk, "continuing_subword_prefix": null,
            "end_of_word_suffix": null, "fuse_unk": true, "byte_fallback": true,
            "ignore_merges": false, "vocab": vocab, "merges": merges,
        },
    }))
}

/// The `tokenizer_config.json` transformers reads beside a converted `tokenizer.json`:
/// BOS/EOS/UNK names, whether BOS/EOS are added, the chat template, the tokenizer class.
pub fn tokenizer_config_json(v: &GgufVocab) -> Value {
    let name = |id: Option<u32>| id.and_then(|i| v.tokens.get(i as usize)).cloned();
    let mut c = json!({
        "add_bos_token": v.add_bos,
        "add_eos_token": v.add_eos,
        "bos_token": name(v.bos_id),
        "eos_token": name(v.eos_id),
        "unk_token": name(v.unk_id),
        "clean_up_tokenization_spaces": false,
        "model_max_length": 1_000_000_000_000_000_000u64,
        // The generic class: transformers then runs tokenizer.json as written instead of
        // rebuilding a class-specific pipeline around the vocabulary.
        "tokenizer_class": "PreTrainedTokenizerFast",
    });
    if let Some(t) = &v.chat_template {
        c["chat_template"] = json!(t);
    }
    c
}

/// Builds the `tokenizers` pipeline from [`tokenizer_json`].
pub(crate) fn build(json: &Value) -> Result<tokenizers::Tokenizer> {
    let bytes = serde_json::to_vec(json)?;
    tokenizers::Tokenizer::from_bytes(&bytes)
        .map_err(|e| Error::Tokenizer(format!("building the GGUF vocabulary's pipeline: {e}")))
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The pieces `pre`'s pipeline splits `text` into (byte-level characters).
    fn split(pre: BpePre, text: &str) -> Vec<String> {
        use tokenizers::{PreTokenizedString, PreTokenizer, PreTokenizerWrapper};
        let p: PreTokenizerWrapper = serde_json::from_value(pre.pre_tokenizer()).unwrap();
        let mut s = PreTokenizedString::from(text);
        p.pre_tokenize(&mut s).unwrap();
        s.get_splits(
            tokenizers::OffsetReferential::Original,
            tokenizers::OffsetType::Byte,
        )
        .into_iter()
        .map(|(piece, _, _)| piece.to_string())
        .collect()
    }

    #[test]
    fn digits_per_type() {
        // smollm, qwen2, tekken: one digit each; llama3: groups of up to three; gpt-2: a run.
        assert_eq!(split(BpePre::Smollm, "12345"), ["1", "2", "3", "4", "5"]);
        assert_eq!(split(BpePre::Qwen2, "12345"), ["1", "2", "3", "4", "5"]);
        assert_eq!(split(BpePre::Tekken, "12345"), ["1", "2", "3", "4", "5"]);
        assert_eq!(split(BpePre::Llama3, "12345"), ["123", "45"]);
        assert_eq!(split(BpePre::Gpt2, "12345"), ["12345"]);
        assert_eq!(split(BpePre::Gpt2, "a 12345"), ["a", "Ġ12345"]);
        // default: the run, then groups of three from the left.
        assert_eq!(split(BpePre::Default, "12345"), ["123", "45"]);
        assert_eq!(split(BpePre::DeepseekLlm, "12345"), ["12345"]);
        assert_eq!(split(BpePre::DeepseekCoder, "123"), ["1", "2", "3"]);
    }

    #[test]
    fn words_spaces_contractions() {
        // GPT-2: the space joins the next word; runs of spaces keep their last one for it.
        assert_eq!(
            split(BpePre::Gpt2, "Hello  world's"),
            ["Hello", "Ġ", "Ġworld", "'s"]
        );
        // Llama 3: case-insensitive contractions, punctuation takes following newlines.
        assert_eq!(split(BpePre::Llama3, "DON'T"), ["DON", "'T"]);
        assert_eq!(split(BpePre::Gpt2, "DON'T"), ["DON", "'", "T"]);
        assert_eq!(split(BpePre::Llama3, "hi!\n\nyo"), ["hi", "!ĊĊ", "yo"]);
        // Llama 3 / Qwen2: a non-letter prefix joins a word.
        assert_eq!(split(BpePre::Qwen2, "(hello"), ["(hello"]);
        assert_eq!(split(BpePre::Gpt2, "(hello"), ["(", "hello"]);
        // Tekken: case changes split words.
        assert_eq!(split(BpePre::Tekken, "HelloWorld"), ["Hello", "World"]);
        // default: punctuation runs are pieces of their own.
        assert_eq!(split(BpePre::Default, "a, b"), ["a", ",", "Ġb"]);
    }

    #[test]
    fn names() {
        assert_eq!(BpePre::from_gguf(None).unwrap(), BpePre::Default);
        assert_eq!(BpePre::from_gguf(Some("smollm")).unwrap(), BpePre::Smollm);
        assert_eq!(
            BpePre::from_gguf(Some("llama-bpe")).unwrap(),
            BpePre::Llama3
        );
        assert_eq!(BpePre::from_gguf(Some("gpt-2")).unwrap(), BpePre::Gpt2);
        let err = BpePre::from_gguf(Some("chatglm-bpe")).unwrap_err();
        assert!(err.to_string().contains("\"chatglm-bpe\""), "{err}");
        for t in BpePre::ALL {
            assert_eq!(BpePre::from_gguf(Some(t.gguf_name())).unwrap(), t);
            assert_eq!(BpePre::from_pre_tokenizer(&t.pre_tokenizer()), Some(t));
        }
    }
}
