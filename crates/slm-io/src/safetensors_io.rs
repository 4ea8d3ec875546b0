//! One `.safetensors` file: memory-mapped reading into CPU tensors, and atomic streaming writes.
//!
//! Reading uses the `safetensors` crate, which validates the header against the file size, so
//! a truncated or corrupt file is an [`Error::Format`] naming the file. Floating-point tensors
//! (F16, BF16, F64) are widened/narrowed to F32; U8, U32 and I64 tensors (masks, indices) keep
//! their type; anything else is [`Error::Unsupported`] naming the tensor.
//!
//! Writing is done here rather than with the crate's `serialize_to_file`: that function takes
//! tensors through `View::data()`, which cannot report an error, so it would force us to copy
//! every tensor to bytes up front (twice the memory for a large teacher). The format is an
//! 8-byte little-endian header length, a JSON header padded with spaces to a multiple of 8, then
//! the raw little-endian tensor bytes in header order; we stream one tensor at a time through
//! [`crate::atomic`]. The tests read every written file back with the crate.

use std::collections::{HashMap, HashSet};
use std::fs::File;
use std::io::Write;
use std::path::Path;

use candle_core::{DType, Device, Tensor};
use safetensors::tensor::{Dtype, SafeTensorError, SafeTensors, TensorView};
use slm_core::error::IoContext;
use slm_core::{Error, Result};

use crate::atomic::write_atomic_with;
use crate::bytes::{bf16_from_le, f16_from_le, f32_from_le, f64_from_le};

/// Reads every tensor of a safetensors file onto the CPU, floats as F32.
pub fn read_safetensors(path: &Path) -> Result<HashMap<String, Tensor>> {
    let file = File::open(path).with_path(path)?;
    let len = file.metadata().with_path(path)?.len();
    if len < 8 {
        return Err(too_short(path, len));
    }
    // SAFETY: the map is read-only and dropped before we return; like every mmap-based model
    // loader we assume nobody truncates the file while we read it.
    let mmap = unsafe { memmap2::Mmap::map(&file) }.with_path(path)?;
    parse_safetensors(path, &mmap)
}

fn too_short(path: &Path, len: u64) -> Error {
    Error::format(
        path,
        format!(
            "truncated: {len} bytes, but a safetensors file starts with an 8-byte header length"
        ),
    )
}

/// [`read_safetensors`] of a whole file's bytes already in memory; `path` only names the file
/// in errors.
pub fn parse_safetensors(path: &Path, bytes: &[u8]) -> Result<HashMap<String, Tensor>> {
    let len = bytes.len() as u64;
    if len < 8 {
        return Err(too_short(path, len));
    }
    let st = SafeTensors::deserialize(bytes).map_err(|e| describe(path, len, e))?;
    let mut out = HashMap::with_capacity(st.len());
    for (name, view) in st.iter() {
        out.insert(name.to_string(), view_to_tensor(path, name, &view)?);
    }
    Ok(out)
}

fn describe(path: &Path, len: u64, e: SafeTensorError) -> Error {
    let msg = match e {
        SafeTensorError::MetadataIncompleteBuffer => format!(
            "truncated or corrupt: the tensors listed in the header do not end exactly at the end of the file ({len} bytes)"
        ),
        SafeTensorError::InvalidHeaderLength => format!(
            "truncated or corrupt: the header length runs past the end of the file ({len} bytes)"
        ),
        e => format!("not a valid safetensors file: {e}"),
    };
    Error::format(path, msg)
}

fn view_to_tensor(path: &Path, name: &str, view: &TensorView<'_>) -> Result<Tensor> {
    let shape = view.shape().to_vec();
    let data = view.data();
    let dev = &Device::Cpu;
    let t = match view.dtype() {
        Dtype::F32 => Tensor::from_vec(f32_from_le(data), shape, dev)?,
        Dtype::F16 => Tensor::from_vec(f16_from_le(data), shape, dev)?,
        Dtype::BF16 => Tensor::from_vec(bf16_from_le(data), shape, dev)?,
        Dtype::F64 => Tensor::from_vec(f64_from_le(data), shape, dev)?,
        Dtype::U8 => Tensor::from_vec(data.to_vec(), shape, dev)?,
        Dtype::U32 => {
            let v: Vec<u32> = data
                .chunks_exact(4)
                .map(|c| u32::from_le_bytes([c[0], c[1], c[2], c[3]]))
                .collect();
            Tensor::from_vec(v, shape, dev)?
        }
        Dtype::I64 => {
            let v: Vec<i64> = data
                .chunks_exact(8)
                .map(|c| {
                    let mut a = [0u8; 8];
                    a.copy_from_slice(c);
                    i64::from_le_bytes(a)
                })
                .collect();
            Tensor::from_vec(v, shape, dev)?
        }
        other => {
            return Err(Error::Unsupported(format!(
                "{}: tensor `{name}` has dtype {other}, which slm cannot load",
                path.display()
            )))
        }
    };
    Ok(t)
}

/// The safetensors name and byte width of a candle dtype we can write.
fn st_dtype(dtype: DType) -> Option<(&'static str, usize)> {
    Some(match dtype {
        DType::F32 => ("F32", 4),
        DType::F16 => ("F16", 2),
        DType::BF16 => ("BF16", 2),
        DType::F64 => ("F64", 8),
        DType::U8 => ("U8", 1),
        DType::U32 => ("U32", 4),
        DType::I64 => ("I64", 8),
        _ => return None,
    })
}

/// Writes `tensors` to `path` atomically, each in its own dtype (F32, F16, BF16, F64, U8, U32
/// or I64), with `{"format": "pt"}` metadata so transformers accepts the file.
pub fn write_safetensors(path: &Path, tensors: &[(String, Tensor)]) -> Result<()> {
    let mut seen = HashSet::new();
    let mut header = serde_json::Map::new();
    header.insert(
        "__metadata__".to_string(),
        serde_json::json!({ "format": "pt" }),
    );
    let mut offset = 0usize;
    for (name, t) in tensors {
        if name.is_empty() || name == "__metadata__" || !seen.insert(name.as_str()) {
            return Err(Error::invalid(format!(
                "{}: tensor name `{name}` is empty, reserved or repeated",
                path.display()
            )));
        }
        let (dtype, width) = st_dtype(t.dtype()).ok_or_else(|| {
            Error::Unsupported(format!(
                "{}: tensor `{name}` has dtype {:?}, which safetensors output does not support here",
                path.display(),
                t.dtype()
            ))
        })?;
        let end = offset + t.elem_count() * width;
        header.insert(
            name.clone(),
            serde_json::json!({ "dtype": dtype, "shape": t.dims(), "data_offsets": [offset, end] }),
        );
        offset = end;
    }
    let mut header = serde_json::to_vec(&serde_json::Value::Object(header))?;
    // Pad with spaces so the data starts 8-byte aligned (as the reference writer does).
    while header.len() % 8 != 0 {
        header.push(b' ');
    }
    write_atomic_with(path, |w| {
        w.write_all(&(header.len() as u64).to_le_bytes())
            .with_path(path)?;
        w.write_all(&header).with_path(path)?;
        for (_, t) in tensors {
            w.write_all(&tensor_le_bytes(t)?).with_path(path)?;
        }
        Ok(())
    })
}

/// The raw little-endian bytes of a tensor in row-major order.
fn tensor_le_bytes(t: &Tensor) -> Result<Vec<u8>> {
    let flat = t.flatten_all()?;
    Ok(match t.dtype() {
        DType::F32 => flat
            .to_vec1::<f32>()?
            .iter()
            .flat_map(|x| x.to_le_bytes())
            .collect(),
        DType::F16 => flat
            .to_vec1::<half::f16>()?
            .iter()
            .flat_map(|x| x.to_bits().to_le_bytes())
            .collect(),
        DType::BF16 => flat
            .to_vec1::<half::bf16>()?
            .iter()
            .flat_map(|x| x.to_bits().to_le_bytes())
            .collect(),
        DType::F64 => flat
            .to_vec1::<f64>()?
            .iter()
            .flat_map(|x| x.to_le_bytes())
            .collect(),
        DType::U8 => flat.to_vec1::<u8>()?,
        DType::U32 => flat
            .to_vec1::<u32>()?
            .iter()
            .flat_map(|x| x.to_le_bytes())
            .collect(),
        DType::I64 => flat
            .to_vec1::<i64>()?
            .iter()
            .flat_map(|x| x.to_le_bytes())
            .collect(),
        other => {
            return Err(Error::Unsupported(format!(
                "writing a tensor of dtype {other:?} to safetensors"
            )))
        }
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sample() -> Vec<(String, Tensor)> {
        let dev = &Device::Cpu;
        let a = Tensor::arange(0f32, 6., dev)
            .unwrap()
            .reshape((2, 3))
            .unwrap();
        vec![
            ("a".to_string(), a.clone()),
            ("b16".to_string(), a.to_dtype(DType::F16).unwrap()),
            ("bb16".to_string(), a.to_dtype(DType::BF16).unwrap()),
            ("mask".to_string(), Tensor::new(&[1u8, 0, 1], dev).unwrap()),
            ("scalar".to_string(), Tensor::new(2.5f32, dev).unwrap()),
        ]
    }

    #[test]
    fn round_trip_widens_halves() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("m.safetensors");
        write_safetensors(&p, &sample()).unwrap();
        // The crate itself accepts what we wrote, with the metadata transformers wants.
        let bytes = std::fs::read(&p).unwrap();
        let (_, meta) = SafeTensors::read_metadata(&bytes).unwrap();
        assert_eq!(meta.metadata().as_ref().unwrap()["format"], "pt");
        let back = read_safetensors(&p).unwrap();
        let want = vec![vec![0f32, 1., 2.], vec![3., 4., 5.]];
        for n in ["a", "b16", "bb16"] {
            assert_eq!(back[n].dtype(), DType::F32);
            assert_eq!(back[n].to_vec2::<f32>().unwrap(), want);
        }
        assert_eq!(back["mask"].to_vec1::<u8>().unwrap(), vec![1, 0, 1]);
        assert_eq!(back["scalar"].to_scalar::<f32>().unwrap(), 2.5);
    }

    #[test]
    fn every_truncation_is_a_format_error() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("m.safetensors");
        write_safetensors(&p, &sample()).unwrap();
        let bytes = std::fs::read(&p).unwrap();
        let q = dir.path().join("cut.safetensors");
        for cut in 0..bytes.len() {
            std::fs::write(&q, &bytes[..cut]).unwrap();
            match read_safetensors(&q) {
                Err(Error::Format { path, .. }) => assert_eq!(path, q),
                other => panic!("cut at {cut}: expected a format error, got {other:?}"),
            }
        }
    }

    #[test]
    fn repeated_names_are_refused() {
        let dir = tempfile::tempdir().unwrap();
        let t = Tensor::new(&[1f32], &Device::Cpu).unwrap();
        let r = write_safetensors(
            &dir.path().join("x.safetensors"),
            &[("a".into(), t.clone()), ("a".into(), t)],
        );
        assert!(matches!(r, Err(Error::InvalidArgument(_))));
    }
}
