//! Picks the tokenizer implementation: for what a model loader found
//! ([`load_tokenizer`], from `slm_io::TokenizerSource`) or for a file on disk
//! ([`load_tokenizer_file`]).
//!
//! `*.json` is a Hugging Face `tokenizer.json` (its `tokenizer_config.json` beside it is read
//! too); a file starting with the GGUF magic is a GGUF model whose vocabulary is read from
//! its metadata; anything else is read as a llama2.c `tokenizer.bin`, which checks its own
//! layout strictly enough to reject other files.

use std::io::Read;
use std::path::Path;

use slm_core::{Error, Result};

use slm_io::TokenizerSource;

use super::{GgufTokenizer, HfTokenizer, Llama2cTokenizer, Tokenizer};

/// Builds the tokenizer a model came with (`slm_io::LoadedModel::tokenizer`), without its
/// `tokenizer_config.json` (see [`load_tokenizer_with_config`]).
pub fn load_tokenizer(source: &TokenizerSource) -> Result<Box<dyn Tokenizer>> {
    load_tokenizer_with_config(source, None)
}

/// Builds the tokenizer a model came with, with the HF directory's `tokenizer_config.json`
/// (`slm_io::LoadedModel::tokenizer_config`) deciding BOS/EOS and whether BOS is added.
pub fn load_tokenizer_with_config(
    source: &TokenizerSource,
    tokenizer_config: Option<&serde_json::Value>,
) -> Result<Box<dyn Tokenizer>> {
    match source {
        TokenizerSource::HfJson(path) => Ok(Box::new(HfTokenizer::from_file_with_config(
            path,
            tokenizer_config,
        )?)),
        TokenizerSource::Llama2c(path) => Ok(Box::new(Llama2cTokenizer::from_file(path)?)),
        TokenizerSource::Gguf(v) => Ok(Box::new(GgufTokenizer::from_vocab(v)?)),
        TokenizerSource::None => Err(Error::Tokenizer(
            "the model carries no tokenizer; name one (tokenizer.json or tokenizer.bin)".into(),
        )),
    }
}

/// Loads `tokenizer.json` (by extension, with the `tokenizer_config.json` beside it), the
/// vocabulary of a GGUF model (by its magic) or a llama2.c `tokenizer.bin` (anything else).
pub fn load_tokenizer_file(path: &Path) -> Result<Box<dyn Tokenizer>> {
    if !path.exists() {
        return Err(Error::io(
            path,
            std::io::Error::new(std::io::ErrorKind::NotFound, "tokenizer file not found"),
        ));
    }
    if path.is_dir() {
        return Err(Error::format(
            path,
            "is a directory; expected tokenizer.json or a llama2.c tokenizer.bin",
        ));
    }
    let is_json = path
        .extension()
        .and_then(|e| e.to_str())
        .is_some_and(|e| e.eq_ignore_ascii_case("json"));
    if is_json {
        let config_path = path.with_file_name(slm_io::hf_dir::TOKENIZER_CONFIG);
        let config = if config_path.is_file() && config_path != path {
            let text =
                std::fs::read_to_string(&config_path).map_err(|e| Error::io(&config_path, e))?;
            Some(
                serde_json::from_str::<serde_json::Value>(&text)
                    .map_err(|e| Error::format(&config_path, format!("not JSON: {e}")))?,
            )
        } else {
            None
        };
        return Ok(Box::new(HfTokenizer::from_file_with_config(
            path,
            config.as_ref(),
        )?));
    }
    if starts_with_gguf_magic(path)? {
        let header = slm_io::gguf::read_header(path)?;
        let vocab = slm_io::gguf::vocab(path, &header)?.ok_or_else(|| {
            Error::format(
                path,
                "is a GGUF file without a vocabulary (tokenizer.ggml.tokens)",
            )
        })?;
        return Ok(Box::new(
            GgufTokenizer::from_vocab(&vocab).map_err(|e| Error::format(path, e.to_string()))?,
        ));
    }
    Ok(Box::new(Llama2cTokenizer::from_file(path)?))
}

/// What a model carries for its tokenizer, read without the weights: the source (a GGUF
/// vocabulary, tokenizer.json, ...), a directory's `tokenizer_config.json` and the model's path
/// (what `slm_data::chat::ChatTemplate::resolve` needs to find the chat template).
#[derive(Debug, Clone)]
pub struct ModelTokenizerFiles {
    pub source: TokenizerSource,
    pub config: Option<serde_json::Value>,
    pub path: std::path::PathBuf,
}

/// The tokenizer files of the model `spec` names (as `slm_io::load_model` reads it: a Hugging
/// Face directory with its `tokenizer_config.json`, an HF cache id, a GGUF file), without
/// reading the weights. A llama2.c checkpoint carries no tokenizer ([`TokenizerSource::None`]).
pub fn model_tokenizer_files(spec: &str) -> Result<ModelTokenizerFiles> {
    let path = Path::new(spec);
    let dir = if path.is_dir() {
        path.to_path_buf()
    } else if path.is_file() {
        let source = if starts_with_gguf_magic(path)? {
            let header = slm_io::gguf::read_header(path)?;
            slm_io::gguf::vocab(path, &header)?.map_or(TokenizerSource::None, TokenizerSource::Gguf)
        } else {
            TokenizerSource::None
        };
        return Ok(ModelTokenizerFiles {
            source,
            config: None,
            path: path.to_path_buf(),
        });
    } else if slm_io::hf_cache::looks_like_repo_id(spec) {
        slm_io::hf_cache::resolve(spec)?
    } else {
        return Err(Error::io(
            path,
            std::io::Error::new(
                std::io::ErrorKind::NotFound,
                "no such model file or directory",
            ),
        ));
    };
    let source = slm_io::hf_dir::tokenizer_source(&dir)?;
    let config_path = dir.join(slm_io::hf_dir::TOKENIZER_CONFIG);
    let config = if config_path.is_file() {
        let text = std::fs::read_to_string(&config_path).map_err(|e| Error::io(&config_path, e))?;
        Some(
            serde_json::from_str::<serde_json::Value>(&text)
                .map_err(|e| Error::format(&config_path, format!("not JSON: {e}")))?,
        )
    } else {
        None
    };
    Ok(ModelTokenizerFiles {
        source,
        config,
        path: dir,
    })
}

/// The tokenizer of the model `spec` names ([`model_tokenizer_files`]), without reading the
/// weights; `tokenizer` (the CLI's `--tokenizer`) replaces it. A llama2.c checkpoint carries no
/// tokenizer: name one.
pub fn load_model_tokenizer(spec: &str, tokenizer: Option<&Path>) -> Result<Box<dyn Tokenizer>> {
    if let Some(t) = tokenizer {
        return load_tokenizer_file(t);
    }
    let files = model_tokenizer_files(spec)?;
    load_tokenizer_with_config(&files.source, files.config.as_ref()).map_err(|e| match e {
        Error::Tokenizer(m) if matches!(files.source, TokenizerSource::None) => {
            Error::Tokenizer(format!(
                "{} carries no tokenizer ({m}); name one with --tokenizer",
                files.path.display()
            ))
        }
        e => e,
    })
}

fn starts_with_gguf_magic(path: &Path) -> Result<bool> {
    let mut file = std::fs::File::open(path).map_err(|e| Error::io(path, e))?;
    let mut magic = [0u8; 4];
    match file.read_exact(&mut magic) {
        Ok(()) => Ok(&magic == b"GGUF"),
        Err(e) if e.kind() == std::io::ErrorKind::UnexpectedEof => Ok(false),
        Err(e) => Err(Error::io(path, e)),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn source_none_is_a_clear_error() {
        let err = load_tokenizer(&TokenizerSource::None).err().unwrap();
        assert!(err.to_string().contains("no tokenizer"), "{err}");
        let vocab = slm_io::GgufVocab {
            model: "llama".into(),
            tokens: vec!["<unk>".into(), "<s>".into(), "</s>".into(), "▁a".into()],
            scores: vec![],
            token_types: vec![],
            merges: vec![],
            bos_id: Some(1),
            eos_id: Some(2),
            unk_id: Some(0),
            add_bos: true,
            add_eos: false,
            pre: None,
            chat_template: None,
        };
        let t = load_tokenizer(&TokenizerSource::Gguf(vocab)).unwrap();
        assert_eq!(t.kind(), "gguf-llama");
        assert_eq!(t.encode("a", true).unwrap(), vec![1, 3]);
    }

    #[test]
    fn clear_errors() {
        let dir = tempfile::tempdir().unwrap();
        let missing = dir.path().join("nope.bin");
        let err = load_tokenizer_file(&missing).err().unwrap();
        assert!(matches!(err, Error::Io { .. }), "{err}");
        assert!(err.to_string().contains("nope.bin"));

        let json = dir.path().join("tokenizer.json");
        std::fs::write(&json, "{\"hello\": 1}").unwrap();
        let err = load_tokenizer_file(&json).err().unwrap();
        assert!(matches!(err, Error::Format { .. }), "{err}");

        let gguf = dir.path().join("model.gguf");
        std::fs::write(&gguf, b"GGUF\x03\0\0\0").unwrap();
        let err = load_tokenizer_file(&gguf).err().unwrap();
        assert!(err.to_string().contains("model.gguf"), "{err}");

        let text = dir.path().join("notes.txt");
        std::fs::write(&text, "just some text, not a tokenizer at all").unwrap();
        let err = load_tokenizer_file(&text).err().unwrap();
        assert!(
            err.to_string().contains("not a llama2.c tokenizer.bin"),
            "{err}"
        );

        assert!(load_tokenizer_file(dir.path()).is_err());
    }

    #[test]
    fn loads_a_written_tokenizer_bin() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("tok.bin");
        let pieces: [&[u8]; 4] = [b"<unk>", b"\n<s>\n", b"\n</s>\n", b" a"];
        let mut bytes = 6i32.to_le_bytes().to_vec();
        for (i, p) in pieces.iter().enumerate() {
            bytes.extend_from_slice(&(-(i as f32)).to_le_bytes());
            bytes.extend_from_slice(&(p.len() as i32).to_le_bytes());
            bytes.extend_from_slice(p);
        }
        std::fs::write(&path, bytes).unwrap();
        let t = load_tokenizer_file(&path).unwrap();
        assert_eq!(t.kind(), "llama2c");
        assert_eq!(t.vocab_size(), 4);
        assert_eq!(t.decode(&[1, 3, 3]).unwrap(), "a a");
    }
}
