//! Offline teacher caches: a teacher's top-k log-probabilities for every position of every
//! training window of a token shard, so logit distillation can train without running the
//! teacher (arcee-ai DistillKit's offline mode).
//!
//! Windows are the ones [`crate::batches::BatchStream`] draws: window w holds tokens
//! `w·(seq+1) .. (w+1)·(seq+1)` of the shard, and the cache has one record per window in
//! that order, so the trainer looks records up by the window ids of each batch.
//!
//! Layout (little-endian):
//! ```text
//! offset 0        magic b"SLMKDC\0\0"                8 bytes
//! offset 8        version u32 = 1
//! offset 12       header length H u32
//! offset 16       header, JSON (KdCacheHeader)       H bytes
//! offset 16 + H   records, one per window:
//!                   ids   [seq, k]  u16 (vocabulary ≤ 65,536) or u32
//!                   logp  [seq, k]  f16  log-probabilities at T = 1, best first
//!                   tail  [seq]     f32  probability mass outside the k ids
//! ```
//! Bytes per token: k·(2 or 4) + 2k + 4 (k = 8: 36 bytes with u16 ids). Files are written
//! atomically and checked on open (magic, version, header, exact length).

use half::f16;
use memmap2::Mmap;
use slm_core::{error::IoContext, Error, Result};
use std::fs::File;
use std::io::{BufWriter, Write};
use std::path::{Path, PathBuf};

pub const MAGIC: &[u8; 8] = b"SLMKDC\0\0";
pub const VERSION: u32 = 1;

/// What a cache holds and where it came from.
#[derive(Debug, Clone, PartialEq, serde::Serialize, serde::Deserialize)]
#[serde(deny_unknown_fields)]
pub struct KdCacheHeader {
    /// Log-probabilities kept per position.
    pub k: usize,
    pub vocab_size: usize,
    /// Positions per window (the training `seq_len`).
    pub seq_len: usize,
    /// Windows cached (all the shard has at this `seq_len`).
    pub windows: usize,
    /// Tokens in the shard the windows were cut from (checked against the training shard).
    pub shard_tokens: usize,
    /// The teacher, as given on the command line.
    pub teacher: String,
}

impl KdCacheHeader {
    fn id_bytes(&self) -> usize {
        if self.vocab_size <= u16::MAX as usize + 1 {
            2
        } else {
            4
        }
    }

    /// Bytes per cached position.
    pub fn bytes_per_token(&self) -> usize {
        self.k * (self.id_bytes() + 2) + 4
    }

    fn record_bytes(&self) -> usize {
        self.seq_len * self.bytes_per_token()
    }

    /// Bytes of all records, or `None` when that overflows (a corrupt header).
    fn data_bytes(&self) -> Option<usize> {
        self.k
            .checked_mul(self.id_bytes() + 2)?
            .checked_add(4)?
            .checked_mul(self.seq_len)?
            .checked_mul(self.windows)
    }

    fn validate(&self, path: &Path) -> Result<()> {
        if self.data_bytes().is_none() {
            return Err(Error::format(
                path,
                format!(
                    "bad cache header: {} windows of {} positions × k {} overflow the address space",
                    self.windows, self.seq_len, self.k
                ),
            ));
        }
        if self.k == 0 || self.k > self.vocab_size || self.seq_len == 0 {
            return Err(Error::format(
                path,
                format!(
                    "bad cache header: k {} of a {}-token vocabulary, seq_len {}",
                    self.k, self.vocab_size, self.seq_len
                ),
            ));
        }
        Ok(())
    }
}

/// Writes a cache window by window; `finish` makes it visible atomically.
pub struct KdCacheWriter {
    tmp: PathBuf,
    path: PathBuf,
    out: BufWriter<File>,
    header: KdCacheHeader,
    written: usize,
}

impl KdCacheWriter {
    pub fn create(path: &Path, header: KdCacheHeader) -> Result<Self> {
        header.validate(path)?;
        let tmp = path.with_extension("tmp-writing");
        let file = File::create(&tmp).with_path(&tmp)?;
        let mut out = BufWriter::new(file);
        let json = serde_json::to_vec(&header)?;
        out.write_all(MAGIC).with_path(&tmp)?;
        out.write_all(&VERSION.to_le_bytes()).with_path(&tmp)?;
        out.write_all(&(json.len() as u32).to_le_bytes())
            .with_path(&tmp)?;
        out.write_all(&json).with_path(&tmp)?;
        Ok(Self {
            tmp,
            path: path.to_path_buf(),
            out,
            header,
            written: 0,
        })
    }

    /// Appends the next window: `ids`, `logp` [seq, k] and `tail` [seq].
    pub fn write_window(&mut self, ids: &[u32], logp: &[f32], tail: &[f32]) -> Result<()> {
        let h = &self.header;
        let (n, k) = (h.seq_len, h.k);
        if ids.len() != n * k || logp.len() != n * k || tail.len() != n {
            return Err(Error::invalid(format!(
                "cache window: {} ids, {} log-probs, {} tails for seq {n} × k {k}",
                ids.len(),
                logp.len(),
                tail.len()
            )));
        }
        if self.written == h.windows {
            return Err(Error::invalid(format!(
                "cache already holds its {} windows",
                h.windows
            )));
        }
        let wide = h.id_bytes() == 4;
        let mut buf = Vec::with_capacity(self.header.record_bytes());
        for &i in ids {
            if i as usize >= h.vocab_size {
                return Err(Error::invalid(format!(
                    "cache id {i} is outside the vocabulary of {}",
                    h.vocab_size
                )));
            }
            if wide {
                buf.extend_from_slice(&i.to_le_bytes());
            } else {
                buf.extend_from_slice(&(i as u16).to_le_bytes());
            }
        }
        for &l in logp {
            buf.extend_from_slice(&f16::from_f32(l).to_le_bytes());
        }
        for &t in tail {
            buf.extend_from_slice(&t.to_le_bytes());
        }
        self.out.write_all(&buf).with_path(&self.tmp)?;
        self.written += 1;
        Ok(())
    }

    /// Checks every window was written, fsyncs and renames into place.
    pub fn finish(self) -> Result<()> {
        if self.written != self.header.windows {
            return Err(Error::invalid(format!(
                "cache has {} of its {} windows",
                self.written, self.header.windows
            )));
        }
        let file = self
            .out
            .into_inner()
            .map_err(|e| Error::io(&self.tmp, e.into_error()))?;
        file.sync_all().with_path(&self.tmp)?;
        drop(file);
        std::fs::rename(&self.tmp, &self.path).with_path(&self.path)
    }
}

/// A memory-mapped cache.
pub struct KdCache {
    path: PathBuf,
    map: Mmap,
    header: KdCacheHeader,
    data: usize,
}

impl KdCache {
    pub fn open(path: &Path) -> Result<Self> {
        let file = File::open(path).with_path(path)?;
        // SAFETY: the file is opened read-only and caches are written once (temp file,
        // rename); nothing maps it writable.
        let map = unsafe { Mmap::map(&file) }.with_path(path)?;
        let bad = |m: String| Error::format(path, m);
        if map.len() < 16 || &map[..8] != MAGIC {
            return Err(bad("not an slm teacher cache (bad magic)".into()));
        }
        let u32_at = |o: usize| u32::from_le_bytes([map[o], map[o + 1], map[o + 2], map[o + 3]]);
        let version = u32_at(8);
        if version != VERSION {
            return Err(bad(format!(
                "cache version {version}; this build reads {VERSION}"
            )));
        }
        let hlen = u32_at(12) as usize;
        let data = 16 + hlen;
        if map.len() < data {
            return Err(bad("truncated header".into()));
        }
        let header: KdCacheHeader = serde_json::from_slice(&map[16..data])
            .map_err(|e| bad(format!("cache header: {e}")))?;
        header.validate(path)?;
        // `validate` checked that the records' size does not overflow.
        let expected = header
            .data_bytes()
            .and_then(|n| n.checked_add(data))
            .unwrap_or(usize::MAX);
        if map.len() != expected {
            return Err(bad(format!(
                "{} bytes, the header implies {expected} (truncated or corrupt)",
                map.len()
            )));
        }
        Ok(Self {
            path: path.to_path_buf(),
            map,
            header,
            data,
        })
    }

    pub fn header(&self) -> &KdCacheHeader {
        &self.header
    }

    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Fills `ids`, `logp` ([rows·seq, k]) and `tail` ([rows·seq]) with the records of
    /// `windows`, in order (one batch's rows).
    pub fn gather(
        &self,
        windows: &[u32],
        ids: &mut Vec<u32>,
        logp: &mut Vec<f32>,
        tail: &mut Vec<f32>,
    ) -> Result<()> {
        let h = &self.header;
        let (n, k, ib) = (h.seq_len, h.k, h.id_bytes());
        ids.clear();
        logp.clear();
        tail.clear();
        for &w in windows {
            let w = w as usize;
            if w >= h.windows {
                return Err(Error::invalid(format!(
                    "window {w} is beyond the cache's {} windows ({})",
                    h.windows,
                    self.path.display()
                )));
            }
            let rec = &self.map[self.data + w * h.record_bytes()..][..h.record_bytes()];
            let (id_part, rest) = rec.split_at(n * k * ib);
            let (lp_part, tail_part) = rest.split_at(n * k * 2);
            if ib == 2 {
                ids.extend(
                    id_part
                        .chunks_exact(2)
                        .map(|b| u16::from_le_bytes([b[0], b[1]]) as u32),
                );
            } else {
                ids.extend(
                    id_part
                        .chunks_exact(4)
                        .map(|b| u32::from_le_bytes([b[0], b[1], b[2], b[3]])),
                );
            }
            logp.extend(
                lp_part
                    .chunks_exact(2)
                    .map(|b| f16::from_le_bytes([b[0], b[1]]).to_f32()),
            );
            tail.extend(
                tail_part
                    .chunks_exact(4)
                    .map(|b| f32::from_le_bytes([b[0], b[1], b[2], b[3]])),
            );
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn header(vocab: usize, windows: usize) -> KdCacheHeader {
        KdCacheHeader {
            k: 3,
            vocab_size: vocab,
            seq_len: 2,
            windows,
            shard_tokens: 100,
            teacher: "t".into(),
        }
    }

    #[test]
    fn round_trips_narrow_and_wide_ids_and_rejects_damage() {
        let dir = tempfile::tempdir().unwrap();
        for vocab in [1000usize, 100_000] {
            let p = dir.path().join(format!("c{vocab}.kdc"));
            let mut w = KdCacheWriter::create(&p, header(vocab, 2)).unwrap();
            let ids0 = [5u32, 7, 9, 1, 2, 999];
            let ids1 = [0u32, 3, 4, 8, 6, (vocab - 1) as u32];
            let lp0 = [-0.1f32, -2.5, -3.0, -0.01, -5.0, -7.5];
            let lp1 = [-1.0f32, -1.5, -2.0, -0.5, -0.75, -1.25];
            w.write_window(&ids0, &lp0, &[0.05, 0.001]).unwrap();
            w.write_window(&ids1, &lp1, &[0.2, 0.0]).unwrap();
            assert!(w.write_window(&ids1, &lp1, &[0.2, 0.0]).is_err());
            w.finish().unwrap();
            let c = KdCache::open(&p).unwrap();
            assert_eq!(
                c.header().bytes_per_token(),
                if vocab == 1000 { 16 } else { 22 }
            );
            let (mut ids, mut lp, mut tail) = (vec![], vec![], vec![]);
            c.gather(&[1, 0, 1], &mut ids, &mut lp, &mut tail).unwrap();
            assert_eq!(&ids[..6], &ids1);
            assert_eq!(&ids[6..12], &ids0);
            assert_eq!(tail, vec![0.2, 0.0, 0.05, 0.001, 0.2, 0.0]);
            for (a, b) in lp[6..12].iter().zip(&lp0) {
                assert!((a - b).abs() <= 2e-3 * b.abs().max(1.0), "{a} vs {b}");
            }
            assert!(c.gather(&[2], &mut ids, &mut lp, &mut tail).is_err());
            // Truncation is caught on open.
            let bytes = std::fs::read(&p).unwrap();
            std::fs::write(&p, &bytes[..bytes.len() - 1]).unwrap();
            let e = KdCache::open(&p).err().unwrap().to_string();
            assert!(e.contains("truncated"), "{e}");
        }
        // Bad headers, ids and missing windows are errors.
        let p = dir.path().join("bad.kdc");
        assert!(KdCacheWriter::create(
            &p,
            KdCacheHeader {
                k: 0,
                ..header(10, 1)
            }
        )
        .is_err());
        let mut w = KdCacheWriter::create(&p, header(10, 2)).unwrap();
        assert!(w
            .write_window(&[1, 2, 10, 1, 2, 3], &[0.0; 6], &[0.0; 2])
            .is_err());
        w.write_window(&[1, 2, 3, 1, 2, 3], &[0.0; 6], &[0.0; 2])
            .unwrap();
        assert!(w.finish().is_err());
        std::fs::write(&p, b"SLMTOKS\0garbage").unwrap();
        assert!(KdCache::open(&p).is_err());
    }
}
