//! The linear-layer slot of the model.
//!
//! Every projection of a decoder block (q, k, v, o, gate, up, down) is a `Linear`, whose
//! weights live in a `LinearWeights` slot. Today the slot holds dense weights; masked-sparse,
//! quantised and LoRA variants are added here as new cases so the model code never changes.
//! Weights are stored `[out_features, in_features]` like PyTorch.

use candle_core::{DType, Module, Tensor};
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
        let Some(&in_f) = dims.last() else {
            return Err(slm_core::Error::invalid(
                "linear layer input must have at least one dimension",
            ));
        };
        let rows: usize = dims[..dims.len() - 1].iter().product();
        if rows <= slm_kernels::matvec::MAX_ROWS {
            if let Some(y) = self.forward_matvec(x, rows, in_f)? {
                let mut out_dims = dims;
                let last = out_dims.len() - 1;
                out_dims[last] = w.dims()[0];
                return Ok(y.reshape(out_dims)?);
            }
        }
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

impl Linear {
    /// Decoding path: a few input rows, weights streamed once by `slm_kernels::matvec`.
    /// `None` when it does not apply (gradients tracked, not f32 on the CPU): the caller then
    /// uses the general matmul, which is the reference this path is tested against.
    fn forward_matvec(&self, x: &Tensor, rows: usize, in_f: usize) -> Result<Option<Tensor>> {
        let w = self.weight();
        if w.track_op()
            || x.track_op()
            || !x.device().is_cpu()
            || w.dtype() != DType::F32
            || x.dtype() != DType::F32
        {
            return Ok(None);
        }
        if self
            .bias
            .as_ref()
            .is_some_and(|b| b.track_op() || b.dtype() != DType::F32)
        {
            return Ok(None);
        }
        let out_f = w.dims()[0];
        let xs = x.flatten_all()?.to_vec1::<f32>()?;
        let bias = match &self.bias {
            Some(b) => Some(b.to_vec1::<f32>()?),
            None => None,
        };
        let mut y = vec![0f32; rows * out_f];
        let (storage, layout) = w.storage_and_layout();
        let candle_core::Storage::Cpu(cpu) = &*storage else {
            return Ok(None);
        };
        let Some((start, end)) = layout.contiguous_offsets() else {
            return Ok(None);
        };
        let ws = &cpu.as_slice::<f32>()?[start..end];
        slm_kernels::matvec::matvec(ws, bias.as_deref(), &xs, rows, in_f, out_f, &mut y)?;
        drop(storage);
        Ok(Some(Tensor::from_vec(y, (rows, out_f), x.device())?))
    }
}

impl Module for Linear {
    fn forward(&self, x: &Tensor) -> candle_core::Result<Tensor> {
        Linear::forward(self, x).map_err(|e| candle_core::Error::Msg(e.to_string()))
    }
}
