//! Token shards: the on-disk form of a tokenised corpus that training memory-maps.
//!
//! Layout (little-endian):
//! ```text
//! offset 0   magic  b"SLMTOKS\0"      8 bytes
//! offset 8   version u32 = 1
//! offset 12  dtype   u32 = 2 (u16 tokens) or 4 (u32 tokens)
//! offset 16  count   u64  number of tokens
//! offset 24  tokens  count × dtype bytes
//! ```
//! u16 is used whenever the vocabulary fits (< 65,536 ids), halving the bytes read.
//! Files are written atomically (temp file, fsync, rename) and checked on open: magic,
//! version, dtype and the exact file length.

use memmap2::Mmap;
use slm_core::{error::IoContext, Error, Result};
use std::fs::File;
use std::io::{BufWriter, Write};
use std::path::{Path, PathBuf};

pub const MAGIC: &[u8; 8] = b"SLMTOKS\0";
pub const VERSION: u32 = 1;
const HEADER: usize = 24;

/// Token width on disk.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TokenWidth {
    U16,
    U32,
}

impl TokenWidth {
    /// The narrowest width holding every id of a vocabulary of `vocab_size`.
    pub fn for_vocab(vocab_size: usize) -> Self {
        if vocab_size <= u16::MAX as usize + 1 {
            TokenWidth::U16
        } else {
            TokenWidth::U32
        }
    }

    fn bytes(self) -> usize {
        match self {
            TokenWidth::U16 => 2,
            TokenWidth::U32 => 4,
        }
    }
}

/// Writes tokens to a shard file; `finish` makes it visible atomically.
pub struct ShardWriter {
    tmp: PathBuf,
    path: PathBuf,
    out: BufWriter<File>,
    width: TokenWidth,
    count: u64,
}

impl ShardWriter {
    pub fn create(path: &Path, width: TokenWidth) -> Result<Self> {
        let tmp = path.with_extension("tmp-writing");
        let file = File::create(&tmp).with_path(&tmp)?;
        let mut out = BufWriter::new(file);
        // The count is patched in `finish`.
        let dtype = width.bytes() as u32;
        let mut header = Vec::with_capacity(HEADER);
        header.extend_from_slice(MAGIC);
        header.extend_from_slice(&VERSION.to_le_bytes());
        header.extend_from_slice(&dtype.to_le_bytes());
        header.extend_from_slice(&0u64.to_le_bytes());
        out.write_all(&header).with_path(&tmp)?;
        Ok(Self {
            tmp,
            path: path.to_path_buf(),
            out,
            width,
            count: 0,
        })
    }

    pub fn write(&mut self, tokens: &[u32]) -> Result<()> {
        match self.width {
            TokenWidth::U16 => {
                for &t in tokens {
                    let t16 = u16::try_from(t).map_err(|_| {
                        Error::invalid(format!("token id {t} does not fit a u16 shard"))
                    })?;
                    self.out
                        .write_all(&t16.to_le_bytes())
                        .with_path(&self.tmp)?;
                }
            }
            TokenWidth::U32 => {
                for &t in tokens {
                    self.out.write_all(&t.to_le_bytes()).with_path(&self.tmp)?;
                }
            }
        }
        self.count += tokens.len() as u64;
        Ok(())
    }

    pub fn count(&self) -> u64 {
        self.count
    }

    /// Patches the header, fsyncs and renames into place. Returns the token count.
    pub fn finish(self) -> Result<u64> {
        use std::io::{Seek, SeekFrom};
        let ShardWriter {
            tmp,
            path,
            out,
            count,
            ..
        } = self;
        let mut file = out
            .into_inner()
            .map_err(|e| Error::io(&tmp, e.into_error()))?;
        file.seek(SeekFrom::Start(16)).with_path(&tmp)?;
        file.write_all(&count.to_le_bytes()).with_path(&tmp)?;
        file.sync_all().with_path(&tmp)?;
        drop(file);
        std::fs::rename(&tmp, &path).with_path(&path)?;
        Ok(count)
    }
}

/// A memory-mapped shard.
pub struct Shard {
    path: PathBuf,
    map: Mmap,
    width: TokenWidth,
    count: usize,
}

impl Shard {
    pub fn open(path: &Path) -> Result<Self> {
        let file = File::open(path).with_path(path)?;
        // SAFETY: the file is opened read-only and shards are never modified in place
        // (writers rename a new file over the old one).
        let map = unsafe { Mmap::map(&file) }.with_path(path)?;
        if map.len() < HEADER || &map[..8] != MAGIC {
            return Err(Error::format(path, "not an slm token shard (bad magic)"));
        }
        let u32_at = |o: usize| u32::from_le_bytes([map[o], map[o + 1], map[o + 2], map[o + 3]]);
        let version = u32_at(8);
        if version != VERSION {
            return Err(Error::format(
                path,
                format!("shard version {version}, expected {VERSION}"),
            ));
        }
        let width = match u32_at(12) {
            2 => TokenWidth::U16,
            4 => TokenWidth::U32,
            d => return Err(Error::format(path, format!("unknown token width {d}"))),
        };
        let mut c = [0u8; 8];
        c.copy_from_slice(&map[16..24]);
        let count = u64::from_le_bytes(c);
        // Checked: a corrupt count must not wrap around to the file's length.
        let expected = usize::try_from(count)
            .ok()
            .and_then(|n| n.checked_mul(width.bytes()))
            .and_then(|n| n.checked_add(HEADER));
        if expected != Some(map.len()) {
            let expected = expected.map_or("more than addressable".to_string(), |e| e.to_string());
            return Err(Error::format(
                path,
                format!("truncated or corrupt: header says {count} tokens ({expected} bytes), file has {} bytes", map.len()),
            ));
        }
        let count = count as usize;
        Ok(Self {
            path: path.to_path_buf(),
            map,
            width,
            count,
        })
    }

    pub fn len(&self) -> usize {
        self.count
    }

    pub fn is_empty(&self) -> bool {
        self.count == 0
    }

    pub fn path(&self) -> &Path {
        &self.path
    }

    pub fn get(&self, i: usize) -> Option<u32> {
        if i >= self.count {
            return None;
        }
        let o = HEADER + i * self.width.bytes();
        let m = &self.map;
        Some(match self.width {
            TokenWidth::U16 => u16::from_le_bytes([m[o], m[o + 1]]) as u32,
            TokenWidth::U32 => u32::from_le_bytes([m[o], m[o + 1], m[o + 2], m[o + 3]]),
        })
    }

    /// Copies tokens `start..start+out.len()` into `out`.
    pub fn read_into(&self, start: usize, out: &mut [u32]) -> Result<()> {
        if start
            .checked_add(out.len())
            .is_none_or(|end| end > self.count)
        {
            return Err(Error::invalid(format!(
                "{}: read of {} tokens from {} beyond {} tokens",
                self.path.display(),
                out.len(),
                start,
                self.count
            )));
        }
        let w = self.width.bytes();
        let bytes = &self.map[HEADER + start * w..HEADER + (start + out.len()) * w];
        match self.width {
            TokenWidth::U16 => {
                for (o, c) in out.iter_mut().zip(bytes.chunks_exact(2)) {
                    *o = u16::from_le_bytes([c[0], c[1]]) as u32;
                }
            }
            TokenWidth::U32 => {
                for (o, c) in out.iter_mut().zip(bytes.chunks_exact(4)) {
                    *o = u32::from_le_bytes([c[0], c[1], c[2], c[3]]);
                }
            }
        }
        Ok(())
    }

    /// All tokens (small shards and tests).
    pub fn to_vec(&self) -> Result<Vec<u32>> {
        let mut v = vec![0; self.count];
        self.read_into(0, &mut v)?;
        Ok(v)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_trip_both_widths() {
        let dir = tempfile::tempdir().unwrap();
        for (width, max) in [(TokenWidth::U16, 65535u32), (TokenWidth::U32, 1_000_000)] {
            let p = dir.path().join(format!("{width:?}.bin"));
            let toks: Vec<u32> = (0..1000u32).map(|i| (i * 7919) % max).collect();
            let mut w = ShardWriter::create(&p, width).unwrap();
            w.write(&toks[..500]).unwrap();
            w.write(&toks[500..]).unwrap();
            assert_eq!(w.finish().unwrap(), 1000);
            let s = Shard::open(&p).unwrap();
            assert_eq!(s.to_vec().unwrap(), toks);
            assert_eq!(s.get(999), Some(toks[999]));
            assert_eq!(s.get(1000), None);
        }
    }

    #[test]
    fn u16_rejects_large_ids_and_truncation_is_detected() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("a.bin");
        let mut w = ShardWriter::create(&p, TokenWidth::U16).unwrap();
        assert!(w.write(&[70000]).is_err());
        w.write(&[1, 2, 3]).unwrap();
        w.finish().unwrap();
        let bytes = std::fs::read(&p).unwrap();
        std::fs::write(&p, &bytes[..bytes.len() - 1]).unwrap();
        let e = Shard::open(&p).err().unwrap().to_string();
        assert!(e.contains("truncated"), "{e}");
        std::fs::write(&p, b"hello world, not a shard at all").unwrap();
        assert!(Shard::open(&p).err().unwrap().to_string().contains("magic"));
        assert_eq!(TokenWidth::for_vocab(65536), TokenWidth::U16);
        assert_eq!(TokenWidth::for_vocab(65537), TokenWidth::U32);
    }
}
