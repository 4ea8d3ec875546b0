//! Writing GGUF v3 files: metadata key/values, tensor infos, 32-byte-aligned tensor data.
//!
//! Layout (little-endian): `b"GGUF"`, version u32 = 3, tensor count u64, metadata count u64,
//! the metadata (key string, value type u32, value), the tensor infos (name, n_dims u32, dims
//! u64 innermost first, ggml type u32, offset u64 from the data start), padding to
//! `general.alignment` (32), then each tensor's bytes at its offset. Strings are a u64 length
//! and UTF-8 bytes. The caller supplies tensor bytes already encoded (f32, f16 or ggml blocks),
//! so this module knows nothing of quantisation.

use slm_core::{error::IoContext, Error, Result};
use std::io::Write;
use std::path::Path;

/// ggml tensor type ids written by slm.
pub const GGML_F32: u32 = 0;
pub const GGML_F16: u32 = 1;
pub const GGML_Q4_0: u32 = 2;
pub const GGML_Q4_1: u32 = 3;
pub const GGML_Q5_0: u32 = 6;
pub const GGML_Q5_1: u32 = 7;
pub const GGML_Q8_0: u32 = 8;
pub const GGML_Q4_K: u32 = 12;
pub const GGML_Q5_K: u32 = 13;
pub const GGML_Q6_K: u32 = 14;

const ALIGNMENT: usize = 32;

/// A metadata value (the GGUF value types slm writes).
#[derive(Debug, Clone, PartialEq)]
pub enum MetaValue {
    U32(u32),
    I32(i32),
    F32(f32),
    Bool(bool),
    Str(String),
    StrArray(Vec<String>),
    F32Array(Vec<f32>),
    I32Array(Vec<i32>),
}

/// One tensor to write: GGUF name, dims innermost first, ggml type and encoded bytes.
#[derive(Debug, Clone)]
pub struct TensorOut {
    pub name: String,
    pub dims: Vec<u64>,
    pub ggml_type: u32,
    pub data: Vec<u8>,
}

fn put_str(buf: &mut Vec<u8>, s: &str) {
    buf.extend_from_slice(&(s.len() as u64).to_le_bytes());
    buf.extend_from_slice(s.as_bytes());
}

fn put_value(buf: &mut Vec<u8>, v: &MetaValue) {
    // GGUF value type ids: u32 4, i32 5, f32 6, bool 7, string 8, array 9.
    let array = |buf: &mut Vec<u8>, elem: u32, n: usize| {
        buf.extend_from_slice(&9u32.to_le_bytes());
        buf.extend_from_slice(&elem.to_le_bytes());
        buf.extend_from_slice(&(n as u64).to_le_bytes());
    };
    match v {
        MetaValue::U32(x) => {
            buf.extend_from_slice(&4u32.to_le_bytes());
            buf.extend_from_slice(&x.to_le_bytes());
        }
        MetaValue::I32(x) => {
            buf.extend_from_slice(&5u32.to_le_bytes());
            buf.extend_from_slice(&x.to_le_bytes());
        }
        MetaValue::F32(x) => {
            buf.extend_from_slice(&6u32.to_le_bytes());
            buf.extend_from_slice(&x.to_le_bytes());
        }
        MetaValue::Bool(x) => {
            buf.extend_from_slice(&7u32.to_le_bytes());
            buf.push(u8::from(*x));
        }
        MetaValue::Str(s) => {
            buf.extend_from_slice(&8u32.to_le_bytes());
            put_str(buf, s);
        }
        MetaValue::StrArray(xs) => {
            array(buf, 8, xs.len());
            xs.iter().for_each(|s| put_str(buf, s));
        }
        MetaValue::F32Array(xs) => {
            array(buf, 6, xs.len());
            xs.iter()
                .for_each(|x| buf.extend_from_slice(&x.to_le_bytes()));
        }
        MetaValue::I32Array(xs) => {
            array(buf, 5, xs.len());
            xs.iter()
                .for_each(|x| buf.extend_from_slice(&x.to_le_bytes()));
        }
    }
}

/// Bytes a tensor of `elements` values takes in `ggml_type`.
pub fn tensor_bytes(ggml_type: u32, elements: u64) -> Result<u64> {
    match ggml_type {
        GGML_F32 => Ok(4 * elements),
        GGML_F16 => Ok(2 * elements),
        GGML_Q8_0 if elements.is_multiple_of(32) => Ok(elements / 32 * 34),
        GGML_Q4_0 if elements.is_multiple_of(32) => Ok(elements / 32 * 18),
        GGML_Q4_1 if elements.is_multiple_of(32) => Ok(elements / 32 * 20),
        GGML_Q5_0 if elements.is_multiple_of(32) => Ok(elements / 32 * 22),
        GGML_Q5_1 if elements.is_multiple_of(32) => Ok(elements / 32 * 24),
        GGML_Q4_K if elements.is_multiple_of(256) => Ok(elements / 256 * 144),
        GGML_Q5_K if elements.is_multiple_of(256) => Ok(elements / 256 * 176),
        GGML_Q6_K if elements.is_multiple_of(256) => Ok(elements / 256 * 210),
        GGML_Q8_0 | GGML_Q4_0 | GGML_Q4_1 | GGML_Q5_0 | GGML_Q5_1 => Err(Error::invalid(format!(
            "{elements} values do not fill 32-value blocks"
        ))),
        GGML_Q4_K | GGML_Q5_K | GGML_Q6_K => Err(Error::invalid(format!(
            "{elements} values do not fill 256-value blocks"
        ))),
        other => Err(Error::Unsupported(format!("writing ggml type {other}"))),
    }
}

/// Writes `metadata` and `tensors` to `path` atomically (temp file, then rename).
pub fn write(path: &Path, metadata: &[(String, MetaValue)], tensors: &[TensorOut]) -> Result<()> {
    let mut head = Vec::new();
    head.extend_from_slice(b"GGUF");
    head.extend_from_slice(&3u32.to_le_bytes());
    head.extend_from_slice(&(tensors.len() as u64).to_le_bytes());
    head.extend_from_slice(&(metadata.len() as u64).to_le_bytes());
    for (k, v) in metadata {
        put_str(&mut head, k);
        put_value(&mut head, v);
    }
    let mut offset = 0u64;
    let mut offsets = Vec::with_capacity(tensors.len());
    for t in tensors {
        let elements: u64 = t.dims.iter().product();
        let want = tensor_bytes(t.ggml_type, elements)?;
        if want != t.data.len() as u64 {
            return Err(Error::invalid(format!(
                "tensor `{}`: {} bytes for {elements} values of ggml type {} (expected {want})",
                t.name,
                t.data.len(),
                t.ggml_type
            )));
        }
        put_str(&mut head, &t.name);
        head.extend_from_slice(&(t.dims.len() as u32).to_le_bytes());
        for d in &t.dims {
            head.extend_from_slice(&d.to_le_bytes());
        }
        head.extend_from_slice(&t.ggml_type.to_le_bytes());
        head.extend_from_slice(&offset.to_le_bytes());
        offsets.push(offset);
        offset = (offset + want).next_multiple_of(ALIGNMENT as u64);
    }
    head.resize(head.len().next_multiple_of(ALIGNMENT), 0);
    crate::atomic::write_atomic_with(path, |w| {
        w.write_all(&head).with_path(path)?;
        let mut written = 0u64;
        for (t, &off) in tensors.iter().zip(&offsets) {
            let pad = (off - written) as usize;
            w.write_all(&vec![0u8; pad]).with_path(path)?;
            w.write_all(&t.data).with_path(path)?;
            written = off + t.data.len() as u64;
        }
        Ok(())
    })
}
