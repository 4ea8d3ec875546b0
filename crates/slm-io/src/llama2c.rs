//! llama2.c checkpoints (karpathy/llama2.c `run.c` / `export.py`), read into Hugging Face names.
//!
//! Two fp32 layouts exist:
//!
//! * **v0** ("legacy_export"): a 28-byte header of 7 little-endian i32
//!   `(dim, hidden_dim, n_layers, n_heads, n_kv_heads, vocab_size, seq_len)`, a negative
//!   `vocab_size` meaning the classifier is *not* shared with the embedding; then
//!   `token_embedding [V,D]`, `rms_att [L,D]`, `wq [L,D,D]`, `wk [L,KV,D]`, `wv [L,KV,D]`,
//!   `wo [L,D,D]`, `rms_ffn [L,D]`, `w1 [L,H,D]`, `w2 [L,D,H]`, `w3 [L,H,D]`, `rms_final [D]`,
//!   `freq_cis_real [S*hs/2]`, `freq_cis_imag [S*hs/2]` (ignored), and `wcls [V,D]` if unshared.
//! * **v1** ("version1_export"): u32 magic `0x616b3432`, i32 version 1, the 7 params, a u8
//!   shared-classifier flag, zeros up to 256 bytes; then all `attention_norm`, all `ffn_norm`,
//!   the final norm, `tok_embeddings`, all `wq`, `wk`, `wv`, `wo`, `w1`, `w2`, `w3`, and the
//!   output weight if unshared.
//!
//! (`D` = dim, `H` = hidden_dim, `KV` = n_kv_heads * head_size, `S` = seq_len, `hs` = head size.)
//! The file must be exactly as long as its header implies. q/k rows are converted from the
//! interleaved RoPE layout to Hugging Face's with [`crate::permute::meta_to_hf`]. Version 2
//! (int8, `version2_export`) is reported as unsupported.

use std::path::{Path, PathBuf};

use candle_core::{Device, Tensor};
use slm_core::error::IoContext;
use slm_core::{Error, Result};

use crate::bytes::{f32_from_le, ByteReader};
use crate::permute::meta_to_hf;
use crate::{LoadedModel, ModelFormat, TokenizerSource};

/// The magic number of v1/v2 exports (`struct.pack("I", 0x616b3432)`).
pub const MAGIC: u32 = 0x616b3432;
/// Header size of v1/v2 exports.
pub const V1_HEADER_BYTES: usize = 256;
/// Header size of legacy v0 exports.
pub const V0_HEADER_BYTES: usize = 28;

/// The hyper-parameters in a llama2.c header.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Llama2cHeader {
    /// 0 (legacy) or 1.
    pub version: u32,
    pub dim: usize,
    pub hidden_dim: usize,
    pub n_layers: usize,
    pub n_heads: usize,
    pub n_kv_heads: usize,
    pub vocab_size: usize,
    pub seq_len: usize,
    pub shared_classifier: bool,
}

impl Llama2cHeader {
    pub fn head_size(&self) -> usize {
        self.dim / self.n_heads
    }

    pub fn kv_dim(&self) -> usize {
        self.n_kv_heads * self.head_size()
    }

    pub fn header_bytes(&self) -> usize {
        if self.version == 0 {
            V0_HEADER_BYTES
        } else {
            V1_HEADER_BYTES
        }
    }

    /// The exact file size this header implies, or `None` on overflow.
    pub fn file_bytes(&self) -> Option<u64> {
        let u = |x: usize| x as u64;
        let (d, h, l, v) = (
            u(self.dim),
            u(self.hidden_dim),
            u(self.n_layers),
            u(self.vocab_size),
        );
        let kv = u(self.kv_dim());
        let per_layer = d
            .checked_mul(2)? // rms_att, rms_ffn
            .checked_add(d.checked_mul(d)?.checked_mul(2)?)? // wq, wo
            .checked_add(kv.checked_mul(d)?.checked_mul(2)?)? // wk, wv
            .checked_add(h.checked_mul(d)?.checked_mul(3)?)?; // w1, w2, w3
        let mut floats = l
            .checked_mul(per_layer)?
            .checked_add(v.checked_mul(d)?)? // token embedding
            .checked_add(d)?; // final norm
        if self.version == 0 {
            // freq_cis_real + freq_cis_imag, each seq_len * head_size / 2
            floats = floats.checked_add(u(self.seq_len).checked_mul(u(self.head_size()))?)?;
        }
        if !self.shared_classifier {
            floats = floats.checked_add(v.checked_mul(d)?)?;
        }
        floats.checked_mul(4)?.checked_add(u(self.header_bytes()))
    }
}

/// Parses and sanity-checks the header at the start of `bytes` (the whole file).
pub fn parse_header(path: &Path, bytes: &[u8]) -> Result<Llama2cHeader> {
    let mut r = ByteReader::new(path, bytes);
    let first = r.u32("llama2.c header")?;
    let version = if first == MAGIC {
        let version = r.i32("llama2.c version")?;
        match version {
            1 => 1,
            2 => {
                return Err(Error::Unsupported(format!(
                "{}: llama2.c version 2 (int8-quantised) checkpoints; export with --version 0 or 1",
                path.display()
            )))
            }
            v => return Err(Error::format(path, format!("unknown llama2.c version {v}"))),
        }
    } else {
        r = ByteReader::new(path, bytes);
        0
    };
    let mut p = [0i32; 7];
    for (v, name) in p.iter_mut().zip([
        "dim",
        "hidden_dim",
        "n_layers",
        "n_heads",
        "n_kv_heads",
        "vocab_size",
        "seq_len",
    ]) {
        *v = r.i32(name)?;
    }
    let [dim, hidden, layers, heads, kv_heads, vocab, seq] = p;
    let shared_classifier = if version == 0 {
        vocab > 0
    } else {
        match r.u8("shared_classifier flag")? {
            0 => false,
            1 => true,
            b => {
                return Err(Error::format(
                    path,
                    format!("shared_classifier flag is {b}, expected 0 or 1"),
                ))
            }
        }
    };
    let implausible = dim <= 0
        || hidden <= 0
        || layers <= 0
        || heads <= 0
        || kv_heads <= 0
        || seq <= 0
        || vocab == 0
        || vocab == i32::MIN
        || (version == 1 && vocab < 0)
        || dim % heads != 0
        || heads % kv_heads != 0
        || (dim / heads) % 2 != 0;
    if implausible {
        return Err(Error::format(
            path,
            format!(
                "not a llama2.c checkpoint: implausible header (dim={dim} hidden_dim={hidden} n_layers={layers} \
                 n_heads={heads} n_kv_heads={kv_heads} vocab_size={vocab} seq_len={seq})"
            ),
        ));
    }
    Ok(Llama2cHeader {
        version,
        dim: dim as usize,
        hidden_dim: hidden as usize,
        n_layers: layers as usize,
        n_heads: heads as usize,
        n_kv_heads: kv_heads as usize,
        vocab_size: vocab.unsigned_abs() as usize,
        seq_len: seq as usize,
        shared_classifier,
    })
}

/// The Hugging Face `config.json` equivalent of a header.
pub fn config_json(h: &Llama2cHeader) -> serde_json::Value {
    serde_json::json!({
        "architectures": ["LlamaForCausalLM"],
        "model_type": "llama",
        "hidden_size": h.dim,
        "intermediate_size": h.hidden_dim,
        "num_hidden_layers": h.n_layers,
        "num_attention_heads": h.n_heads,
        "num_key_value_heads": h.n_kv_heads,
        "vocab_size": h.vocab_size,
        "max_position_embeddings": h.seq_len,
        "rms_norm_eps": 1e-5,
        "rope_theta": 10000.0,
        "tie_word_embeddings": h.shared_classifier,
        "bos_token_id": 1,
        "eos_token_id": 2,
        "hidden_act": "silu",
    })
}

/// Reads a llama2.c checkpoint; the tokenizer is looked for beside it ([`find_tokenizer`]).
pub fn read(path: &Path) -> Result<LoadedModel> {
    let file = std::fs::File::open(path).with_path(path)?;
    // SAFETY: read-only map dropped before returning; the file must not shrink meanwhile.
    let mmap = unsafe { memmap2::Mmap::map(&file) }.with_path(path)?;
    let mut model = read_bytes(path, &mmap)?;
    let vocab_size = model.config["vocab_size"].as_u64().unwrap_or(0) as usize;
    if let Some(p) = find_tokenizer(path, vocab_size) {
        model.tokenizer = TokenizerSource::Llama2c(p);
    }
    Ok(model)
}

/// [`read`] of a whole checkpoint's bytes already in memory, without looking for a tokenizer
/// (`tokenizer` is [`TokenizerSource::None`]); `path` only names the file in errors and in the
/// result's `source`.
pub fn read_bytes(path: &Path, bytes: &[u8]) -> Result<LoadedModel> {
    let h = parse_header(path, bytes)?;
    let expected = h.file_bytes().ok_or_else(|| {
        Error::format(
            path,
            "not a llama2.c checkpoint: header implies an impossible size",
        )
    })?;
    let found = bytes.len() as u64;
    if found < expected {
        return Err(Error::format(
            path,
            format!("truncated: expected {expected} bytes, found {found}"),
        ));
    }
    if found > expected {
        return Err(Error::format(
            path,
            format!(
                "expected {expected} bytes, found {found}: trailing data, so the header does not describe \
                 this file (not a llama2.c checkpoint, or a different version?)"
            ),
        ));
    }
    let mut r = ByteReader::new(path, bytes);
    r.take(h.header_bytes(), "header")?;
    let tensors = if h.version == 0 {
        read_v0(&mut r, &h)?
    } else {
        read_v1(&mut r, &h)?
    };
    Ok(LoadedModel {
        config: config_json(&h),
        tensors: tensors.into_iter().collect(),
        tokenizer: TokenizerSource::None,
        generation_config: None,
        tokenizer_config: None,
        slm_meta: None,
        source: path.to_path_buf(),
        format: ModelFormat::Llama2c,
        stored_types: Default::default(),
        stored_blocks: Default::default(),
    })
}

/// Reads the next `shape` f32 values.
fn take(r: &mut ByteReader<'_>, shape: &[usize], what: &str) -> Result<Tensor> {
    let n: usize = shape.iter().product();
    let bytes = r.take(n * 4, what)?;
    Ok(Tensor::from_vec(f32_from_le(bytes), shape, &Device::Cpu)?)
}

fn layer(l: usize, s: &str) -> String {
    format!("model.layers.{l}.{s}")
}

/// Reads one weight per layer, `L` consecutive `shape` blocks, under HF name `suffix`.
fn per_layer(
    r: &mut ByteReader<'_>,
    h: &Llama2cHeader,
    shape: &[usize],
    suffix: &str,
    out: &mut Vec<(String, Tensor)>,
) -> Result<()> {
    for l in 0..h.n_layers {
        let mut t = take(r, shape, suffix)?;
        // q/k rows: interleaved RoPE pairs -> HF rotate_half order
        if suffix == "self_attn.q_proj.weight" {
            t = meta_to_hf(&t, h.n_heads)?;
        } else if suffix == "self_attn.k_proj.weight" {
            t = meta_to_hf(&t, h.n_kv_heads)?;
        }
        out.push((layer(l, suffix), t));
    }
    Ok(())
}

fn read_v0(r: &mut ByteReader<'_>, h: &Llama2cHeader) -> Result<Vec<(String, Tensor)>> {
    let (d, hid, v, kv) = (h.dim, h.hidden_dim, h.vocab_size, h.kv_dim());
    let mut out = Vec::new();
    out.push((
        "model.embed_tokens.weight".to_string(),
        take(r, &[v, d], "token_embedding")?,
    ));
    per_layer(r, h, &[d], "input_layernorm.weight", &mut out)?;
    per_layer(r, h, &[d, d], "self_attn.q_proj.weight", &mut out)?;
    per_layer(r, h, &[kv, d], "self_attn.k_proj.weight", &mut out)?;
    per_layer(r, h, &[kv, d], "self_attn.v_proj.weight", &mut out)?;
    per_layer(r, h, &[d, d], "self_attn.o_proj.weight", &mut out)?;
    per_layer(r, h, &[d], "post_attention_layernorm.weight", &mut out)?;
    per_layer(r, h, &[hid, d], "mlp.gate_proj.weight", &mut out)?; // w1
    per_layer(r, h, &[d, hid], "mlp.down_proj.weight", &mut out)?; // w2
    per_layer(r, h, &[hid, d], "mlp.up_proj.weight", &mut out)?; // w3
    out.push(("model.norm.weight".to_string(), take(r, &[d], "rms_final")?));
    // freq_cis_real, freq_cis_imag: [seq_len * head_size / 2] each; recomputed by the model.
    r.take(h.seq_len * h.head_size() / 2 * 4 * 2, "freq_cis")?;
    if !h.shared_classifier {
        out.push(("lm_head.weight".to_string(), take(r, &[v, d], "wcls")?));
    }
    Ok(out)
}

fn read_v1(r: &mut ByteReader<'_>, h: &Llama2cHeader) -> Result<Vec<(String, Tensor)>> {
    let (d, hid, v, kv) = (h.dim, h.hidden_dim, h.vocab_size, h.kv_dim());
    let mut out = Vec::new();
    per_layer(r, h, &[d], "input_layernorm.weight", &mut out)?;
    per_layer(r, h, &[d], "post_attention_layernorm.weight", &mut out)?;
    out.push(("model.norm.weight".to_string(), take(r, &[d], "norm")?));
    out.push((
        "model.embed_tokens.weight".to_string(),
        take(r, &[v, d], "tok_embeddings")?,
    ));
    per_layer(r, h, &[d, d], "self_attn.q_proj.weight", &mut out)?;
    per_layer(r, h, &[kv, d], "self_attn.k_proj.weight", &mut out)?;
    per_layer(r, h, &[kv, d], "self_attn.v_proj.weight", &mut out)?;
    per_layer(r, h, &[d, d], "self_attn.o_proj.weight", &mut out)?;
    per_layer(r, h, &[hid, d], "mlp.gate_proj.weight", &mut out)?; // w1
    per_layer(r, h, &[d, hid], "mlp.down_proj.weight", &mut out)?; // w2
    per_layer(r, h, &[hid, d], "mlp.up_proj.weight", &mut out)?; // w3
    if !h.shared_classifier {
        out.push(("lm_head.weight".to_string(), take(r, &[v, d], "output")?));
    }
    Ok(out)
}

/// The llama2.c tokenizer beside `checkpoint` with exactly `vocab_size` entries:
/// `tok{vocab_size}.bin` first (llama2.c's name for custom vocabularies), then `tokenizer.bin`
/// (which in llama2.c's own tree is the 32000-entry Llama 2 vocabulary, hence the count check).
pub fn find_tokenizer(checkpoint: &Path, vocab_size: usize) -> Option<PathBuf> {
    let dir = match checkpoint.parent() {
        Some(p) if !p.as_os_str().is_empty() => p.to_path_buf(),
        _ => PathBuf::from("."),
    };
    [format!("tok{vocab_size}.bin"), "tokenizer.bin".to_string()]
        .into_iter()
        .map(|name| dir.join(name))
        .find(|p| p.is_file() && count_tokenizer_entries(p) == Some(vocab_size))
}

/// Number of entries in a llama2.c `tokenizer.bin` (`i32 max_token_length`, then per token
/// `f32 score, i32 len, len bytes`), or `None` if the file does not parse.
pub fn count_tokenizer_entries(path: &Path) -> Option<usize> {
    let bytes = std::fs::read(path).ok()?;
    let mut r = ByteReader::new(path, &bytes);
    r.i32("max_token_length").ok()?;
    let mut n = 0;
    while r.pos() < bytes.len() {
        r.f32("score").ok()?;
        let len = usize::try_from(r.i32("len").ok()?).ok()?;
        r.take(len, "token").ok()?;
        n += 1;
    }
    Some(n)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn v0_header(p: [i32; 7]) -> Vec<u8> {
        p.iter().flat_map(|x| x.to_le_bytes()).collect()
    }

    #[test]
    fn v0_header_and_size() {
        // stories260K: 1,056,540 bytes.
        let b = v0_header([64, 172, 5, 8, 4, 512, 512]);
        let h = parse_header(Path::new("s.bin"), &b).unwrap();
        assert!(h.shared_classifier);
        assert_eq!(h.kv_dim(), 32);
        assert_eq!(h.file_bytes(), Some(1_056_540));
        let b = v0_header([64, 172, 5, 8, 4, -512, 512]);
        let h2 = parse_header(Path::new("s.bin"), &b).unwrap();
        assert!(!h2.shared_classifier);
        assert_eq!(h2.vocab_size, 512);
        assert_eq!(h2.file_bytes(), Some(1_056_540 + 512 * 64 * 4));
    }

    #[test]
    fn implausible_headers_are_refused() {
        for p in [
            [64, 172, 5, 7, 4, 512, 512],
            [0, 1, 1, 1, 1, 1, 1],
            [64, 172, 5, 8, 3, 512, 512],
        ] {
            let err = parse_header(Path::new("x.bin"), &v0_header(p)).unwrap_err();
            assert!(
                err.to_string().contains("not a llama2.c checkpoint"),
                "{err}"
            );
        }
        let mut b = MAGIC.to_le_bytes().to_vec();
        b.extend_from_slice(&2i32.to_le_bytes());
        assert!(matches!(
            parse_header(Path::new("q.bin"), &b),
            Err(Error::Unsupported(_))
        ));
    }

    #[test]
    fn truncated_file_says_expected_and_found() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("t.bin");
        let mut b = v0_header([8, 16, 1, 2, 2, 4, 4]);
        let h = parse_header(&p, &b).unwrap();
        let full = h.file_bytes().unwrap() as usize;
        b.resize(full - 4, 0);
        std::fs::write(&p, &b).unwrap();
        let err = read(&p).unwrap_err().to_string();
        assert!(
            err.contains(&format!(
                "truncated: expected {full} bytes, found {}",
                full - 4
            )),
            "{err}"
        );
        assert!(err.contains("t.bin"), "{err}");
        b.resize(full + 4, 0);
        std::fs::write(&p, &b).unwrap();
        assert!(read(&p).unwrap_err().to_string().contains("trailing data"));
        b.resize(full, 0);
        std::fs::write(&p, &b).unwrap();
        let m = read(&p).unwrap();
        assert_eq!(m.tensors.len(), 2 + 9);
    }

    #[test]
    fn tokenizer_discovery_checks_the_entry_count() {
        let dir = tempfile::tempdir().unwrap();
        let ckpt = dir.path().join("m.bin");
        let tok = |n: usize| {
            let mut b = 3i32.to_le_bytes().to_vec();
            for i in 0..n {
                b.extend_from_slice(&(i as f32).to_le_bytes());
                b.extend_from_slice(&1i32.to_le_bytes());
                b.push(b'a');
            }
            b
        };
        std::fs::write(dir.path().join("tokenizer.bin"), tok(5)).unwrap();
        assert_eq!(find_tokenizer(&ckpt, 4), None);
        assert_eq!(
            find_tokenizer(&ckpt, 5),
            Some(dir.path().join("tokenizer.bin"))
        );
        std::fs::write(dir.path().join("tok5.bin"), tok(5)).unwrap();
        assert_eq!(find_tokenizer(&ckpt, 5), Some(dir.path().join("tok5.bin")));
    }
}
