//! The linear-layer slot of the model.
//!
//! Every projection of a decoder block (q, k, v, o, gate, up, down) is a `Linear`, whose
//! weights live in a `LinearWeights` slot. Today the slot holds dense weights; masked-sparse,
//! quantised and LoRA variants are added here as new cases so the model code never changes.
//! Weights are stored `[out_features, in_features]` like PyTorch.

use candle_core::{Module, Tensor};
use slm_core::Result;

#[derive(Debug, Clone)]
#[non_exhaustive]
pub enum LinearWeights {
    /// A plain dense matrix [out, in].
    Dense(Tensor),
}

#[derive(Debug, Clone)]
pub struct Linear {
    pub weights: LinearWeights,
    /// [out]
    pub bias: Option<Tensor>,
}

impl Linear {
    pub fn dense(weight: Tensor, bias: Option<Tensor>) -> Self {
        Self {
            weights: LinearWeights::Dense(weight),
            bias,
        }
    }

    /// The effective dense weight [out, in] (materialised for non-dense slots).
    pub fn weight(&self) -> &Tensor {
        match &self.weights {
            LinearWeights::Dense(w) => w,
        }
    }

    pub fn in_features(&self) -> usize {
        self.weight().dims().get(1).copied().unwrap_or(0)
    }

    pub fn out_features(&self) -> usize {
        self.weight().dims().first().copied().unwrap_or(0)
    }

    /// y = x Wᵀ + b for x [..., in] -> [..., out].
    pub fn forward(&self, x: &Tensor) -> Result<Tensor> {
        let w = self.weight();
        let dims = x.dims().to_vec();
        let in_f = dims[dims.len() - 1];
        let rows: usize = dims[..dims.len() - 1].iter().product();
        // [..., in] -> [rows, in] @ [in, out] -> [rows, out] -> [..., out]
        let y = x.reshape((rows, in_f))?.matmul(&w.t()?)?;
        let y = match &self.bias {
            Some(b) => y.broadcast_add(b)?,
            None => y,
        };
        let mut out_dims = dims;
        let last = out_dims.len() - 1;
        out_dims[last] = w.dims()[0];
        Ok(y.reshape(out_dims)?)
    }
}

impl Module for Linear {
    fn forward(&self, x: &Tensor) -> candle_core::Result<Tensor> {
        Linear::forward(self, x).map_err(|e| candle_core::Error::Msg(e.to_string()))
    }
}
