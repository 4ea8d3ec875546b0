//! Training checkpoints: everything needed to continue a run exactly.
//!
//! Layout (little-endian):
//! ```text
//! b"SLMCKPT\0"  magic, 8 bytes
//! u32           version (1)
//! u64           header length H
//! H bytes       JSON header: step, optimiser step, data position, settings, parameter layout
//! n × f32       parameters (engine storage order)
//! n × f32       AdamW first moments
//! n × f32       AdamW second moments
//! ```
//! Written atomically (temp file, fsync, rename). Loading checks the magic, the version, the
//! exact length and that the parameter layout equals the engine's, naming the first mismatch.

use crate::engine::FastModel;
use crate::optim::AdamW;
use serde::{Deserialize, Serialize};
use slm_core::{error::IoContext, Error, Result};
use slm_data::batches::BatchPosition;
use std::io::Write;
use std::path::Path;

pub const MAGIC: &[u8; 8] = b"SLMCKPT\0";
pub const VERSION: u32 = 1;

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct ParamEntry {
    pub name: String,
    pub shape: Vec<usize>,
    pub offset: usize,
    pub len: usize,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct CheckpointHeader {
    /// Optimiser steps completed.
    pub step: u64,
    pub data_position: BatchPosition,
    pub tokens_seen: u64,
    /// The run's settings file (TOML); absent in checkpoints written before it was stored
    /// here (their settings are the run directory's `config.toml`).
    #[serde(default)]
    pub settings: Option<String>,
    pub model_config: serde_json::Value,
    pub adam_step: u64,
    pub params: Vec<ParamEntry>,
    pub num_values: usize,
}

fn write_f32s(w: &mut impl Write, xs: &[f32], path: &Path) -> Result<()> {
    let mut buf = Vec::with_capacity(64 * 1024);
    for chunk in xs.chunks(16 * 1024) {
        buf.clear();
        for x in chunk {
            buf.extend_from_slice(&x.to_le_bytes());
        }
        w.write_all(&buf).with_path(path)?;
    }
    Ok(())
}

pub fn save(path: &Path, header: &CheckpointHeader, model: &FastModel, opt: &AdamW) -> Result<()> {
    let json = serde_json::to_vec(header)?;
    slm_io::atomic::write_atomic_with(path, |w| {
        w.write_all(MAGIC).with_path(path)?;
        w.write_all(&VERSION.to_le_bytes()).with_path(path)?;
        w.write_all(&(json.len() as u64).to_le_bytes())
            .with_path(path)?;
        w.write_all(&json).with_path(path)?;
        write_f32s(w, model.trainable_params(), path)?;
        write_f32s(w, &opt.m, path)?;
        write_f32s(w, &opt.v, path)
    })
}

/// A checkpoint read from disk.
pub struct Checkpoint {
    pub header: CheckpointHeader,
    pub params: Vec<f32>,
    pub m: Vec<f32>,
    pub v: Vec<f32>,
}

fn f32s(bytes: &[u8]) -> Vec<f32> {
    bytes
        .chunks_exact(4)
        .map(|c| f32::from_le_bytes([c[0], c[1], c[2], c[3]]))
        .collect()
}

pub fn load(path: &Path) -> Result<Checkpoint> {
    let bytes = std::fs::read(path).with_path(path)?;
    if bytes.len() < 20 || &bytes[..8] != MAGIC {
        return Err(Error::format(path, "not an slm checkpoint (bad magic)"));
    }
    let version = u32::from_le_bytes([bytes[8], bytes[9], bytes[10], bytes[11]]);
    if version != VERSION {
        return Err(Error::format(
            path,
            format!("checkpoint version {version}, expected {VERSION}"),
        ));
    }
    let mut h = [0u8; 8];
    h.copy_from_slice(&bytes[12..20]);
    let hlen = u64::from_le_bytes(h) as usize;
    let body = 20usize
        .checked_add(hlen)
        .filter(|&e| e <= bytes.len())
        .ok_or_else(|| Error::format(path, "truncated checkpoint header"))?;
    let header: CheckpointHeader = serde_json::from_slice(&bytes[20..body])
        .map_err(|e| Error::format(path, format!("checkpoint header: {e}")))?;
    let n = header.num_values;
    let expected = body + 3 * 4 * n;
    if bytes.len() != expected {
        return Err(Error::format(
            path,
            format!(
                "truncated or corrupt: expected {expected} bytes, found {}",
                bytes.len()
            ),
        ));
    }
    let arr = |i: usize| f32s(&bytes[body + i * 4 * n..body + (i + 1) * 4 * n]);
    Ok(Checkpoint {
        params: arr(0),
        m: arr(1),
        v: arr(2),
        header,
    })
}

/// Entries describing the engine's layout (to store, and to compare on resume).
pub fn layout_entries(model: &FastModel) -> Vec<ParamEntry> {
    model
        .trainable_layout()
        .iter()
        .map(|p| ParamEntry {
            name: p.name.clone(),
            shape: p.shape.clone(),
            offset: p.offset,
            len: p.len,
        })
        .collect()
}

/// Checks that a checkpoint's layout equals the engine's; names the first difference.
pub fn check_layout(path: &Path, ckpt: &CheckpointHeader, model: &FastModel) -> Result<()> {
    let ours = layout_entries(model);
    if ckpt.params.len() != ours.len() {
        return Err(Error::format(
            path,
            format!(
                "checkpoint has {} parameter tensors, the model {}",
                ckpt.params.len(),
                ours.len()
            ),
        ));
    }
    for (a, b) in ckpt.params.iter().zip(&ours) {
        if a.name != b.name || a.offset != b.offset {
            return Err(Error::format(
                path,
                format!(
                    "parameter `{}` in the checkpoint where the model has `{}`",
                    a.name, b.name
                ),
            ));
        }
        if a.shape != b.shape {
            return Err(Error::ShapeMismatch {
                path: path.to_path_buf(),
                tensor: a.name.clone(),
                expected: b.shape.clone(),
                found: a.shape.clone(),
            });
        }
    }
    Ok(())
}
