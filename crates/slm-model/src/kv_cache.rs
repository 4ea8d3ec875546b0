//! The key/value cache for incremental decoding.
//!
//! Holds, per layer, the rotated keys and the values of every position seen so far, shaped
//! [batch, kv_heads, positions, head_dim]. Decoding one token then costs one query against
//! the cache instead of a forward over the whole prefix.

use candle_core::Tensor;
use slm_core::{Error, Result};

#[derive(Debug, Clone)]
pub struct KvCache {
    layers: Vec<Option<(Tensor, Tensor)>>,
    len: usize,
    max_len: usize,
}

impl KvCache {
    /// An empty cache for `num_layers` layers holding at most `max_len` positions.
    pub fn new(num_layers: usize, max_len: usize) -> Self {
        Self {
            layers: vec![None; num_layers],
            len: 0,
            max_len,
        }
    }

    /// Number of positions stored.
    pub fn len(&self) -> usize {
        self.len
    }

    pub fn is_empty(&self) -> bool {
        self.len == 0
    }

    pub fn max_len(&self) -> usize {
        self.max_len
    }

    /// Forgets every position (a new sequence).
    pub fn reset(&mut self) {
        self.layers.iter_mut().for_each(|l| *l = None);
        self.len = 0;
    }

    /// Keeps only the first `len` positions (used to rewind to a shared prompt).
    pub fn truncate(&mut self, len: usize) -> Result<()> {
        if len >= self.len {
            return Ok(());
        }
        for (k, v) in self.layers.iter_mut().flatten() {
            *k = k.narrow(2, 0, len)?.contiguous()?;
            *v = v.narrow(2, 0, len)?.contiguous()?;
        }
        self.len = len;
        Ok(())
    }

    /// Appends `k`, `v` [batch, kv_heads, new, head_dim] for `layer`; returns the whole
    /// history [batch, kv_heads, len + new, head_dim]. The position count advances when
    /// the last layer appends.
    pub fn append(&mut self, layer: usize, k: &Tensor, v: &Tensor) -> Result<(Tensor, Tensor)> {
        let n_layers = self.layers.len();
        let new = k.dim(2)?;
        if self.len + new > self.max_len {
            return Err(Error::invalid(format!(
                "sequence of {} tokens exceeds the cache size of {}",
                self.len + new,
                self.max_len
            )));
        }
        let slot = self
            .layers
            .get_mut(layer)
            .ok_or_else(|| Error::invalid(format!("layer {layer} out of range")))?;
        let (k_all, v_all) = match slot.take() {
            None => (k.clone(), v.clone()),
            Some((pk, pv)) => (Tensor::cat(&[&pk, k], 2)?, Tensor::cat(&[&pv, v], 2)?),
        };
        *slot = Some((k_all.clone(), v_all.clone()));
        if layer + 1 == n_layers {
            self.len += new;
        }
        Ok((k_all, v_all))
    }
}
