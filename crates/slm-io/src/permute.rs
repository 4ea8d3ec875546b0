//! The row permutation between the two RoPE layouts of query/key projections.
//!
//! Meta's Llama code, llama2.c and llama.cpp's GGUF (for the `llama` architecture) rotate
//! *interleaved* pairs of a head's channels, (0,1), (2,3), ...; Hugging Face's Llama uses
//! `rotate_half`, pairing channel `i` with channel `i + head_dim/2`. The same model therefore
//! stores q_proj/k_proj with the rows of every head in a different order:
//!
//! ```text
//! HF row  h*hd + j*hd/2 + i   ==   Meta row  h*hd + 2*i + j      (i < hd/2, j in {0,1})
//! ```
//!
//! [`meta_to_hf`] is exactly `permute` from transformers'
//! `convert_llama_weights_to_hf.py`; [`hf_to_meta`] is its inverse, `permute` from llama.cpp's
//! `convert_hf_to_gguf.py`. Biases (rank 1) are permuted the same way.

use candle_core::Tensor;
use slm_core::{Error, Result};

/// Meta/llama2.c/GGUF interleaved layout -> Hugging Face rotate_half layout.
///
/// `w` is `[n_heads * head_dim, in]` (or `[n_heads * head_dim]` for a bias).
pub fn meta_to_hf(w: &Tensor, n_heads: usize) -> Result<Tensor> {
    let (rows, cols, half) = split(w, n_heads)?;
    // [rows, cols] -> [n_heads, hd/2, 2, cols]: Meta row = h*hd + 2*i + j
    let t = w.reshape((n_heads, half, 2, cols))?;
    // -> [n_heads, 2, hd/2, cols]: HF row = h*hd + j*hd/2 + i
    let t = t.transpose(1, 2)?.contiguous()?;
    Ok(t.reshape(restore(w, rows, cols))?)
}

/// [`meta_to_hf`] on a matrix of `rows` rows stored as bytes (quantised blocks: each row's
/// blocks move as a whole).
pub fn meta_to_hf_rows(raw: &[u8], rows: usize, n_heads: usize) -> Result<Vec<u8>> {
    if rows == 0
        || n_heads == 0
        || !rows.is_multiple_of(2 * n_heads)
        || !raw.len().is_multiple_of(rows)
    {
        return Err(Error::invalid(format!(
            "RoPE permutation of {} bytes as {rows} rows for {n_heads} heads",
            raw.len()
        )));
    }
    let (row_bytes, hd) = (raw.len() / rows, rows / n_heads);
    let half = hd / 2;
    let mut out = Vec::with_capacity(raw.len());
    for h in 0..n_heads {
        for j in 0..2 {
            for i in 0..half {
                // HF row h·hd + j·hd/2 + i is Meta row h·hd + 2i + j.
                let meta = h * hd + 2 * i + j;
                out.extend_from_slice(&raw[meta * row_bytes..][..row_bytes]);
            }
        }
    }
    Ok(out)
}

/// Hugging Face rotate_half layout -> Meta/llama2.c/GGUF interleaved layout.
pub fn hf_to_meta(w: &Tensor, n_heads: usize) -> Result<Tensor> {
    let (rows, cols, half) = split(w, n_heads)?;
    // [rows, cols] -> [n_heads, 2, hd/2, cols]: HF row = h*hd + j*hd/2 + i
    let t = w.reshape((n_heads, 2, half, cols))?;
    // -> [n_heads, hd/2, 2, cols]: Meta row = h*hd + 2*i + j
    let t = t.transpose(1, 2)?.contiguous()?;
    Ok(t.reshape(restore(w, rows, cols))?)
}

/// Checks the shape and returns (rows, cols, head_dim / 2).
fn split(w: &Tensor, n_heads: usize) -> Result<(usize, usize, usize)> {
    let (rows, cols) = match w.dims() {
        [r] => (*r, 1),
        [r, c] => (*r, *c),
        d => {
            return Err(Error::invalid(format!(
                "RoPE permutation needs a matrix or a vector, got shape {d:?}"
            )))
        }
    };
    if n_heads == 0 || rows % (2 * n_heads) != 0 {
        return Err(Error::invalid(format!(
            "RoPE permutation: {rows} rows cannot be split into {n_heads} heads of even size"
        )));
    }
    Ok((rows, cols, rows / n_heads / 2))
}

fn restore(w: &Tensor, rows: usize, cols: usize) -> Vec<usize> {
    if w.rank() == 1 {
        vec![rows]
    } else {
        vec![rows, cols]
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use candle_core::Device;

    /// A [rows, cols] matrix whose entry (r, c) is r*100 + c, so rows can be identified.
    fn indexed(rows: usize, cols: usize) -> Tensor {
        let v: Vec<f32> = (0..rows * cols)
            .map(|k| ((k / cols) * 100 + k % cols) as f32)
            .collect();
        Tensor::from_vec(v, (rows, cols), &Device::Cpu).unwrap()
    }

    #[test]
    fn byte_rows_move_as_the_matrix_rows_do() {
        let (rows, cols, heads) = (24, 3, 3);
        let w = indexed(rows, cols);
        let bytes: Vec<u8> = w
            .flatten_all()
            .unwrap()
            .to_vec1::<f32>()
            .unwrap()
            .iter()
            .flat_map(|v| v.to_le_bytes())
            .collect();
        let moved: Vec<f32> = meta_to_hf_rows(&bytes, rows, heads)
            .unwrap()
            .chunks_exact(4)
            .map(|b| f32::from_le_bytes([b[0], b[1], b[2], b[3]]))
            .collect();
        let want = meta_to_hf(&w, heads)
            .unwrap()
            .flatten_all()
            .unwrap()
            .to_vec1::<f32>()
            .unwrap();
        assert_eq!(moved, want);
        assert!(meta_to_hf_rows(&bytes, 25, heads).is_err());
        assert!(meta_to_hf_rows(&bytes[1..], rows, heads).is_err());
    }

    #[test]
    fn matches_the_index_formula() {
        let (n_heads, hd, cols) = (3, 8, 2);
        let meta = indexed(n_heads * hd, cols);
        let hf = meta_to_hf(&meta, n_heads)
            .unwrap()
            .to_vec2::<f32>()
            .unwrap();
        for h in 0..n_heads {
            for i in 0..hd / 2 {
                for j in 0..2 {
                    let hf_row = h * hd + j * hd / 2 + i;
                    let meta_row = h * hd + 2 * i + j;
                    assert_eq!(hf[hf_row][1], (meta_row * 100 + 1) as f32);
                }
            }
        }
    }

    #[test]
    fn inverse_round_trips_and_handles_bias() {
        let w = indexed(16, 3);
        let back = hf_to_meta(&meta_to_hf(&w, 2).unwrap(), 2).unwrap();
        assert_eq!(back.to_vec2::<f32>().unwrap(), w.to_vec2::<f32>().unwrap());
        let b = Tensor::arange(0f32, 8., &Device::Cpu).unwrap();
        let hf = meta_to_hf(&b, 1).unwrap();
        assert_eq!(
            hf.to_vec1::<f32>().unwrap(),
            vec![0., 2., 4., 6., 1., 3., 5., 7.]
        );
        assert_eq!(
            hf_to_meta(&hf, 1).unwrap().to_vec1::<f32>().unwrap(),
            b.to_vec1::<f32>().unwrap()
        );
    }

    #[test]
    fn rejects_odd_heads() {
        assert!(meta_to_hf(&indexed(6, 2), 2).is_err());
    }
}
