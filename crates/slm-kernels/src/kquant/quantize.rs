//! llama.cpp's quantisers for the k-quant and 5-bit blocks (placeholder: filled in next).
