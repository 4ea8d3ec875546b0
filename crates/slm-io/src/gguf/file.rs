//! The GGUF container: metadata values, the tensor table, GGML type ids, and decoding one
//! tensor to f32. Knows nothing about model architectures.
//!
//! Layout (all little-endian): `"GGUF"`, u32 version, u64 tensor count, u64 metadata count,
//! metadata `(string key, u32 type, value)*`, tensor infos `(string name, u32 n_dims,
//! u64 dims[n_dims] innermost first, u32 ggml type, u64 offset)*`, padding to
//! `general.alignment` (default 32), tensor data. Strings are `u64 len, bytes`.
//!
//! The parser is our own rather than candle's `gguf_file::Content`, so that every error names
//! the file and, for tensors, the tensor (candle's says "unknown dtype for tensor 99" without
//! saying which), and so that known-but-undecodable types are reported by name. Dequantisation
//! of block formats (Q4_0..Q8_0, K-quants) is candle's (`ggml_file::qtensor_from_ggml` +
//! `dequantize`); F32/F16/BF16/F64 are converted here.

use std::collections::BTreeMap;
use std::path::Path;

use candle_core::quantized::{ggml_file::qtensor_from_ggml, GgmlDType};
use candle_core::{Device, Tensor};
use slm_core::error::IoContext;
use slm_core::{Error, Result};
use slm_kernels::kquant::RowMatrix;

use crate::bytes::{bf16_from_le, f16_from_le, f32_from_le, f64_from_le, ByteReader};

/// The first four bytes of every GGUF file.
pub const MAGIC: &[u8; 4] = b"GGUF";
const DEFAULT_ALIGNMENT: u64 = 32;
const MAX_DIMS: u32 = 4;
const MAX_NESTING: usize = 8;

/// One metadata value.
#[derive(Debug, Clone, PartialEq)]
pub enum GgufValue {
    U8(u8),
    I8(i8),
    U16(u16),
    I16(i16),
    U32(u32),
    I32(i32),
    U64(u64),
    I64(i64),
    F32(f32),
    F64(f64),
    Bool(bool),
    String(String),
    Array(Vec<GgufValue>),
}

impl GgufValue {
    /// Any integer that is non-negative.
    pub fn as_u64(&self) -> Option<u64> {
        match *self {
            Self::U8(v) => Some(v.into()),
            Self::U16(v) => Some(v.into()),
            Self::U32(v) => Some(v.into()),
            Self::U64(v) => Some(v),
            Self::I8(v) => u64::try_from(v).ok(),
            Self::I16(v) => u64::try_from(v).ok(),
            Self::I32(v) => u64::try_from(v).ok(),
            Self::I64(v) => u64::try_from(v).ok(),
            _ => None,
        }
    }

    /// Any number; an f32 becomes the f64 of its shortest decimal form (1e-5f32 -> 1e-5).
    pub fn as_f64(&self) -> Option<f64> {
        match *self {
            Self::F32(v) => Some(f32_to_f64_decimal(v)),
            Self::F64(v) => Some(v),
            _ => self.as_u64().map(|v| v as f64),
        }
    }

    pub fn as_str(&self) -> Option<&str> {
        match self {
            Self::String(s) => Some(s),
            _ => None,
        }
    }

    pub fn as_bool(&self) -> Option<bool> {
        match *self {
            Self::Bool(b) => Some(b),
            _ => None,
        }
    }

    pub fn as_array(&self) -> Option<&[GgufValue]> {
        match self {
            Self::Array(a) => Some(a),
            _ => None,
        }
    }
}

/// The f64 closest to the shortest decimal that reads back as `v` (what a human wrote).
fn f32_to_f64_decimal(v: f32) -> f64 {
    format!("{v}").parse().unwrap_or(v as f64)
}

/// One entry of the tensor table.
#[derive(Debug, Clone, PartialEq)]
pub struct GgufTensorInfo {
    pub name: String,
    /// As stored: innermost dimension first (`ne[0]` = columns).
    pub dims: Vec<u64>,
    pub type_id: u32,
    /// Byte offset from the start of the data section.
    pub offset: u64,
}

impl GgufTensorInfo {
    /// The shape outermost first, as candle and PyTorch write it.
    pub fn shape(&self) -> Vec<usize> {
        self.dims.iter().rev().map(|&d| d as usize).collect()
    }

    /// The GGML type's name, e.g. `Q8_0`.
    pub fn type_name(&self) -> &'static str {
        ggml_type(self.type_id).map_or("unknown", |t| t.0)
    }
}

/// The parsed header of a GGUF file: everything but the tensor data.
#[derive(Debug, Clone)]
pub struct GgufHeader {
    pub version: u32,
    pub metadata: BTreeMap<String, GgufValue>,
    /// In file order.
    pub tensors: Vec<GgufTensorInfo>,
    pub alignment: u64,
    /// Absolute file offset of the data section.
    pub data_offset: u64,
}

/// How we turn a GGML type into f32.
#[derive(Debug, Clone, Copy)]
enum Kind {
    F32,
    F16,
    BF16,
    F64,
    Block(GgmlDType),
    /// Known to ggml, not decodable here.
    Unsupported,
}

/// Name and decoding of every GGML type id in ggml.h (removed ids are unknown).
fn ggml_type(id: u32) -> Option<(&'static str, Kind)> {
    use GgmlDType as G;
    use Kind::*;
    Some(match id {
        0 => ("F32", F32),
        1 => ("F16", F16),
        2 => ("Q4_0", Block(G::Q4_0)),
        3 => ("Q4_1", Block(G::Q4_1)),
        6 => ("Q5_0", Block(G::Q5_0)),
        7 => ("Q5_1", Block(G::Q5_1)),
        8 => ("Q8_0", Block(G::Q8_0)),
        9 => ("Q8_1", Unsupported),
        10 => ("Q2_K", Block(G::Q2K)),
        11 => ("Q3_K", Block(G::Q3K)),
        12 => ("Q4_K", Block(G::Q4K)),
        13 => ("Q5_K", Block(G::Q5K)),
        14 => ("Q6_K", Block(G::Q6K)),
        15 => ("Q8_K", Unsupported),
        16 => ("IQ2_XXS", Unsupported),
        17 => ("IQ2_XS", Unsupported),
        18 => ("IQ3_XXS", Unsupported),
        19 => ("IQ1_S", Unsupported),
        20 => ("IQ4_NL", Unsupported),
        21 => ("IQ3_S", Unsupported),
        22 => ("IQ2_S", Unsupported),
        23 => ("IQ4_XS", Unsupported),
        24 => ("I8", Unsupported),
        25 => ("I16", Unsupported),
        26 => ("I32", Unsupported),
        27 => ("I64", Unsupported),
        28 => ("F64", F64),
        29 => ("IQ1_M", Unsupported),
        30 => ("BF16", BF16),
        34 => ("TQ1_0", Unsupported),
        35 => ("TQ2_0", Unsupported),
        39 => ("MXFP4", Unsupported),
        _ => return None,
    })
}

/// (elements per block, bytes per block) for the types we decode.
fn block_layout(kind: Kind) -> Option<(u64, u64)> {
    match kind {
        Kind::F32 => Some((1, 4)),
        Kind::F16 | Kind::BF16 => Some((1, 2)),
        Kind::F64 => Some((1, 8)),
        Kind::Block(dt) => Some((dt.block_size() as u64, dt.type_size() as u64)),
        Kind::Unsupported => None,
    }
}

/// Reads only the header (metadata and tensor table) of a GGUF file.
pub fn read_header(path: &Path) -> Result<GgufHeader> {
    let file = std::fs::File::open(path).with_path(path)?;
    // SAFETY: read-only map dropped before returning; the file must not shrink meanwhile.
    let mmap = unsafe { memmap2::Mmap::map(&file) }.with_path(path)?;
    parse_header(path, &mmap)
}

/// Parses the header from the whole file's bytes and checks that every tensor of a known size
/// lies inside the file.
pub fn parse_header(path: &Path, bytes: &[u8]) -> Result<GgufHeader> {
    let mut r = ByteReader::new(path, bytes);
    if r.take(4, "magic")? != MAGIC {
        return Err(Error::format(path, "not a GGUF file (bad magic)"));
    }
    let version = r.u32("version")?;
    match version {
        2 | 3 => {}
        1 => {
            return Err(Error::Unsupported(format!(
                "{}: GGUF version 1; re-convert with a current llama.cpp",
                path.display()
            )))
        }
        v if v.swap_bytes() == 2 || v.swap_bytes() == 3 => {
            return Err(Error::Unsupported(format!(
                "{}: big-endian GGUF",
                path.display()
            )))
        }
        v => return Err(Error::format(path, format!("unknown GGUF version {v}"))),
    }
    let n_tensors = r.u64("tensor count")?;
    let n_kv = r.u64("metadata count")?;
    // Smallest possible entries: kv = key len + type + 1 byte; tensor = name len + n_dims + type + offset.
    let remaining = (bytes.len() - r.pos()) as u64;
    let needed = n_kv
        .saturating_mul(8 + 4 + 1)
        .saturating_add(n_tensors.saturating_mul(8 + 4 + 4 + 8));
    if needed > remaining {
        return Err(Error::format(
            path,
            format!(
                "truncated or corrupt: header declares {n_tensors} tensors and {n_kv} metadata entries, \
                 which need at least {needed} bytes, but only {remaining} remain"
            ),
        ));
    }

    let mut metadata = BTreeMap::new();
    for _ in 0..n_kv {
        let key = read_string(&mut r, "metadata key")?;
        let ty = r.u32("metadata value type")?;
        let value = read_value(&mut r, ty, &key, 0)?;
        if metadata.insert(key.clone(), value).is_some() {
            return Err(Error::format(
                path,
                format!("metadata key `{key}` appears twice"),
            ));
        }
    }

    let mut tensors = Vec::with_capacity(n_tensors as usize);
    let mut seen = std::collections::HashSet::new();
    for _ in 0..n_tensors {
        let name = read_string(&mut r, "tensor name")?;
        let n_dims = r.u32("tensor n_dims")?;
        if n_dims == 0 || n_dims > MAX_DIMS {
            return Err(Error::format(
                path,
                format!("tensor `{name}` has {n_dims} dimensions (1 to {MAX_DIMS} allowed)"),
            ));
        }
        let mut dims = Vec::with_capacity(n_dims as usize);
        for _ in 0..n_dims {
            dims.push(r.u64("tensor dimension")?);
        }
        let type_id = r.u32("tensor type")?;
        let offset = r.u64("tensor offset")?;
        if ggml_type(type_id).is_none() {
            return Err(Error::format(
                path,
                format!("tensor `{name}` has unknown GGML type id {type_id}"),
            ));
        }
        if !seen.insert(name.clone()) {
            return Err(Error::format(
                path,
                format!("tensor `{name}` appears twice"),
            ));
        }
        tensors.push(GgufTensorInfo {
            name,
            dims,
            type_id,
            offset,
        });
    }

    let alignment = match metadata.get("general.alignment") {
        None => DEFAULT_ALIGNMENT,
        Some(v) => match v.as_u64() {
            Some(a) if a.is_power_of_two() => a,
            _ => {
                return Err(Error::format(
                    path,
                    format!("general.alignment {v:?} is not a power of two"),
                ))
            }
        },
    };
    let data_offset = (r.pos() as u64).div_ceil(alignment) * alignment;
    let header = GgufHeader {
        version,
        metadata,
        tensors,
        alignment,
        data_offset,
    };
    for t in &header.tensors {
        if let Some((start, end)) = byte_range(path, &header, t)? {
            if end > bytes.len() as u64 {
                return Err(Error::format(
                    path,
                    format!(
                        "truncated: tensor `{}` ({} {:?}) needs bytes {start}..{end}, but the file is {} bytes",
                        t.name,
                        t.type_name(),
                        t.shape(),
                        bytes.len()
                    ),
                ));
            }
        }
    }
    Ok(header)
}

/// Absolute byte range of a tensor's data, or `None` for types we cannot size.
fn byte_range(path: &Path, h: &GgufHeader, t: &GgufTensorInfo) -> Result<Option<(u64, u64)>> {
    let Some((_, kind)) = ggml_type(t.type_id) else {
        return Err(Error::format(
            path,
            format!("tensor `{}` has unknown GGML type id {}", t.name, t.type_id),
        ));
    };
    let Some((block, block_bytes)) = block_layout(kind) else {
        return Ok(None);
    };
    let bad = |msg: String| Error::format(path, format!("tensor `{}`: {msg}", t.name));
    if !t.dims[0].is_multiple_of(block) {
        return Err(bad(format!(
            "innermost dimension {} is not a multiple of the {} block size {block}",
            t.dims[0],
            t.type_name()
        )));
    }
    let elems = t
        .dims
        .iter()
        .try_fold(1u64, |acc, &d| acc.checked_mul(d))
        .ok_or_else(|| bad(format!("dimensions {:?} overflow", t.dims)))?;
    let size = (elems / block)
        .checked_mul(block_bytes)
        .ok_or_else(|| bad("size overflows".into()))?;
    let start = h
        .data_offset
        .checked_add(t.offset)
        .ok_or_else(|| bad("offset overflows".into()))?;
    let end = start
        .checked_add(size)
        .ok_or_else(|| bad("offset overflows".into()))?;
    Ok(Some((start, end)))
}

fn read_string(r: &mut ByteReader<'_>, what: &str) -> Result<String> {
    let len = r.u64(what)?;
    let len = usize::try_from(len).unwrap_or(usize::MAX);
    let bytes = r.take(len, what)?;
    // GGUF strings should be UTF-8; some converters wrote invalid bytes in vocabularies.
    Ok(String::from_utf8_lossy(bytes).into_owned())
}

fn read_value(r: &mut ByteReader<'_>, ty: u32, key: &str, depth: usize) -> Result<GgufValue> {
    use GgufValue as V;
    let what = key;
    Ok(match ty {
        0 => V::U8(r.u8(what)?),
        1 => V::I8(r.i8(what)?),
        2 => V::U16(r.u16(what)?),
        3 => V::I16(r.i16(what)?),
        4 => V::U32(r.u32(what)?),
        5 => V::I32(r.i32(what)?),
        6 => V::F32(r.f32(what)?),
        7 => V::Bool(r.u8(what)? != 0),
        8 => V::String(read_string(r, what)?),
        9 => {
            if depth >= MAX_NESTING {
                return Err(r_err(
                    r,
                    format!("metadata `{key}`: arrays nested too deeply"),
                ));
            }
            let elem_ty = r.u32(what)?;
            let len = r.u64(what)?;
            let min = match elem_ty {
                0 | 1 | 7 => 1,
                2 | 3 => 2,
                4..=6 => 4,
                8 | 10..=12 => 8,
                9 => 12,
                t => {
                    return Err(r_err(
                        r,
                        format!("metadata `{key}`: unknown array element type {t}"),
                    ))
                }
            };
            if len.saturating_mul(min) > r.remaining() as u64 {
                return Err(r_err(
                    r,
                    format!("truncated: metadata `{key}` declares {len} array elements, more than the file holds"),
                ));
            }
            let mut items = Vec::with_capacity(len as usize);
            for _ in 0..len {
                items.push(read_value(r, elem_ty, key, depth + 1)?);
            }
            V::Array(items)
        }
        10 => V::U64(r.u64(what)?),
        11 => V::I64(r.i64(what)?),
        12 => V::F64(r.f64(what)?),
        t => {
            return Err(r_err(
                r,
                format!("metadata `{key}`: unknown value type {t}"),
            ))
        }
    })
}

fn r_err(r: &ByteReader<'_>, msg: String) -> Error {
    Error::format(r.path(), msg)
}

/// Decodes one tensor to f32, shape outermost first.
/// The stored bytes of tensor `t` (a type of known size) in the file's `bytes`.
pub fn tensor_bytes<'a>(
    path: &Path,
    bytes: &'a [u8],
    h: &GgufHeader,
    t: &GgufTensorInfo,
) -> Result<&'a [u8]> {
    let Some((start, end)) = byte_range(path, h, t)? else {
        return Err(Error::Unsupported(format!(
            "{}: tensor `{}` has GGML type {}, whose size slm does not know",
            path.display(),
            t.name,
            t.type_name()
        )));
    };
    bytes.get(start as usize..end as usize).ok_or_else(|| {
        Error::format(
            path,
            format!(
                "truncated: tensor `{}` runs past the end of the file",
                t.name
            ),
        )
    })
}

pub fn read_tensor(
    path: &Path,
    bytes: &[u8],
    h: &GgufHeader,
    t: &GgufTensorInfo,
) -> Result<Tensor> {
    let kind = ggml_type(t.type_id).map_or(Kind::Unsupported, |k| k.1);
    let unsupported = || {
        Error::Unsupported(format!(
            "{}: tensor `{}` has GGML type {} (id {}), which slm cannot dequantise",
            path.display(),
            t.name,
            t.type_name(),
            t.type_id
        ))
    };
    if byte_range(path, h, t)?.is_none() {
        return Err(unsupported());
    }
    let data = tensor_bytes(path, bytes, h, t)?;
    let shape = t.shape();
    let dev = &Device::Cpu;
    let wrap = |e: candle_core::Error| Error::format(path, format!("tensor `{}`: {e}", t.name));
    Ok(match kind {
        Kind::F32 => Tensor::from_vec(f32_from_le(data), shape, dev)?,
        Kind::F16 => Tensor::from_vec(f16_from_le(data), shape, dev)?,
        Kind::BF16 => Tensor::from_vec(bf16_from_le(data), shape, dev)?,
        Kind::F64 => Tensor::from_vec(f64_from_le(data), shape, dev)?,
        // The block types the decode engine also runs as stored: the same dequantiser, so
        // the values match the engine's blocks bit for bit.
        Kind::Block(_) if RowMatrix::block_values(t.type_name()).is_some() => {
            let (rows, cols) = match shape.as_slice() {
                [] => (1, 1),
                [c] => (1, *c),
                [r @ .., c] => (r.iter().product(), *c),
            };
            let m = RowMatrix::from_ggml(t.type_name(), data, rows, cols)
                .map_err(|e| Error::format(path, format!("tensor `{}`: {e}", t.name)))?;
            Tensor::from_vec(m.dequantize(), shape, dev)?
        }
        Kind::Block(dt) => {
            // candle reads the blocks through a typed pointer: hand it an 8-byte-aligned copy.
            let mut buf = vec![0u8; data.len() + 8];
            let off = buf.as_ptr().align_offset(8);
            if off > 8 {
                return Err(Error::msg("cannot align a buffer for dequantisation"));
            }
            buf[off..off + data.len()].copy_from_slice(data);
            let q = qtensor_from_ggml(dt, &buf[off..off + data.len()], shape, dev).map_err(wrap)?;
            q.dequantize(dev).map_err(wrap)?
        }
        Kind::Unsupported => return Err(unsupported()),
    })
}
