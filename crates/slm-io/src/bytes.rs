//! Bounds-checked little-endian decoding shared by the binary readers (GGUF, llama2.c).
//!
//! Owns one idea: reading numbers out of a byte slice (usually a memory map) so that running
//! off the end is an [`Error::Format`] naming the file, the offset and what was being read,
//! never a panic. Also the element conversions (f16/bf16/f64 to f32) used by every reader.

use std::path::Path;

use slm_core::{Error, Result};

/// A cursor over the bytes of one file.
pub(crate) struct ByteReader<'a> {
    path: &'a Path,
    buf: &'a [u8],
    pos: usize,
}

impl<'a> ByteReader<'a> {
    pub(crate) fn new(path: &'a Path, buf: &'a [u8]) -> Self {
        Self { path, buf, pos: 0 }
    }

    /// The file being read.
    pub(crate) fn path(&self) -> &'a Path {
        self.path
    }

    /// Bytes left after the cursor.
    pub(crate) fn remaining(&self) -> usize {
        self.buf.len() - self.pos
    }

    /// Current offset from the start of the file.
    pub(crate) fn pos(&self) -> usize {
        self.pos
    }

    /// The next `n` bytes; `what` names the field for the error message.
    pub(crate) fn take(&mut self, n: usize, what: &str) -> Result<&'a [u8]> {
        let end = self.pos.checked_add(n).filter(|&end| end <= self.buf.len());
        match end {
            Some(end) => {
                let bytes = &self.buf[self.pos..end];
                self.pos = end;
                Ok(bytes)
            }
            None => Err(Error::format(
                self.path,
                format!(
                    "truncated: {what} needs {n} bytes at offset {}, but the file is {} bytes",
                    self.pos,
                    self.buf.len()
                ),
            )),
        }
    }

    fn array<const N: usize>(&mut self, what: &str) -> Result<[u8; N]> {
        let bytes = self.take(N, what)?;
        let mut out = [0u8; N];
        out.copy_from_slice(bytes);
        Ok(out)
    }

    pub(crate) fn u8(&mut self, what: &str) -> Result<u8> {
        Ok(self.array::<1>(what)?[0])
    }
    pub(crate) fn i8(&mut self, what: &str) -> Result<i8> {
        Ok(i8::from_le_bytes(self.array(what)?))
    }
    pub(crate) fn u16(&mut self, what: &str) -> Result<u16> {
        Ok(u16::from_le_bytes(self.array(what)?))
    }
    pub(crate) fn i16(&mut self, what: &str) -> Result<i16> {
        Ok(i16::from_le_bytes(self.array(what)?))
    }
    pub(crate) fn u32(&mut self, what: &str) -> Result<u32> {
        Ok(u32::from_le_bytes(self.array(what)?))
    }
    pub(crate) fn i32(&mut self, what: &str) -> Result<i32> {
        Ok(i32::from_le_bytes(self.array(what)?))
    }
    pub(crate) fn u64(&mut self, what: &str) -> Result<u64> {
        Ok(u64::from_le_bytes(self.array(what)?))
    }
    pub(crate) fn i64(&mut self, what: &str) -> Result<i64> {
        Ok(i64::from_le_bytes(self.array(what)?))
    }
    pub(crate) fn f32(&mut self, what: &str) -> Result<f32> {
        Ok(f32::from_le_bytes(self.array(what)?))
    }
    pub(crate) fn f64(&mut self, what: &str) -> Result<f64> {
        Ok(f64::from_le_bytes(self.array(what)?))
    }
}

/// Little-endian f32 values; `bytes.len()` must be a multiple of 4 (a trailing remainder is ignored).
pub(crate) fn f32_from_le(bytes: &[u8]) -> Vec<f32> {
    bytes
        .chunks_exact(4)
        .map(|c| f32::from_le_bytes([c[0], c[1], c[2], c[3]]))
        .collect()
}

/// Little-endian IEEE half floats, widened to f32.
pub(crate) fn f16_from_le(bytes: &[u8]) -> Vec<f32> {
    bytes
        .chunks_exact(2)
        .map(|c| half::f16::from_bits(u16::from_le_bytes([c[0], c[1]])).to_f32())
        .collect()
}

/// Little-endian bfloat16 values, widened to f32.
pub(crate) fn bf16_from_le(bytes: &[u8]) -> Vec<f32> {
    bytes
        .chunks_exact(2)
        .map(|c| half::bf16::from_bits(u16::from_le_bytes([c[0], c[1]])).to_f32())
        .collect()
}

/// Little-endian f64 values, narrowed to f32.
pub(crate) fn f64_from_le(bytes: &[u8]) -> Vec<f32> {
    bytes
        .chunks_exact(8)
        .map(|c| {
            let mut a = [0u8; 8];
            a.copy_from_slice(c);
            f64::from_le_bytes(a) as f32
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_numbers_and_reports_truncation() {
        let path = Path::new("x.bin");
        let mut bytes = Vec::new();
        bytes.extend_from_slice(&7u32.to_le_bytes());
        bytes.extend_from_slice(&(-3i64).to_le_bytes());
        bytes.extend_from_slice(&1.5f32.to_le_bytes());
        let mut r = ByteReader::new(path, &bytes);
        assert_eq!(r.u32("a").unwrap(), 7);
        assert_eq!(r.i64("b").unwrap(), -3);
        assert_eq!(r.f32("c").unwrap(), 1.5);
        let err = r.u8("d").unwrap_err().to_string();
        assert!(
            err.contains("x.bin") && err.contains("truncated") && err.contains("d"),
            "{err}"
        );
    }

    #[test]
    fn converts_half_types() {
        let h = half::f16::from_f32(0.5).to_bits().to_le_bytes();
        let b = half::bf16::from_f32(-2.0).to_bits().to_le_bytes();
        assert_eq!(f16_from_le(&h), vec![0.5]);
        assert_eq!(bf16_from_le(&b), vec![-2.0]);
        assert_eq!(f64_from_le(&0.25f64.to_le_bytes()), vec![0.25]);
    }
}
