//! Shared helpers for the slm-io integration tests: the shared-data location, deterministic
//! random numbers, and byte-level writers for llama2.c and GGUF files (test fixtures only).

#![allow(dead_code)]

use std::path::PathBuf;

use candle_core::{Device, Tensor};

/// `../shared/data`, or `None` (after printing the skip reason) when it is absent; under CI
/// a missing folder fails the test (`slm_core::testdata`).
pub fn shared_data() -> Option<PathBuf> {
    slm_core::testdata::shared_data("")
}

/// A small deterministic generator (xorshift), values in [-1, 1).
pub struct Rng(u64);

impl Rng {
    pub fn new(seed: u64) -> Self {
        Self(seed.wrapping_mul(0x9E37_79B9_7F4A_7C15) | 1)
    }
    pub fn next_f32(&mut self) -> f32 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        ((self.0 >> 40) as f32 / (1u64 << 24) as f32) * 2.0 - 1.0
    }
    pub fn vec(&mut self, n: usize) -> Vec<f32> {
        (0..n).map(|_| self.next_f32()).collect()
    }
    pub fn tensor(&mut self, shape: &[usize]) -> Tensor {
        let n = shape.iter().product();
        Tensor::from_vec(self.vec(n), shape, &Device::Cpu).unwrap()
    }
}

pub fn f32_bytes(v: &[f32]) -> Vec<u8> {
    v.iter().flat_map(|x| x.to_le_bytes()).collect()
}

pub fn assert_same(a: &Tensor, b: &Tensor, what: &str) {
    assert_eq!(a.dims(), b.dims(), "{what}: shapes differ");
    let a = a.flatten_all().unwrap().to_vec1::<f32>().unwrap();
    let b = b.flatten_all().unwrap().to_vec1::<f32>().unwrap();
    assert_eq!(a, b, "{what}: values differ");
}

pub fn assert_close(a: &Tensor, b: &Tensor, tol: f32, what: &str) {
    assert_eq!(a.dims(), b.dims(), "{what}: shapes differ");
    let a = a.flatten_all().unwrap().to_vec1::<f32>().unwrap();
    let b = b.flatten_all().unwrap().to_vec1::<f32>().unwrap();
    for (i, (x, y)) in a.iter().zip(&b).enumerate() {
        assert!((x - y).abs() <= tol, "{what}[{i}]: {x} vs {y}");
    }
}

/// A GGUF file assembled byte by byte (little-endian, version 3 unless changed).
pub struct GgufBuilder {
    pub version: u32,
    kv: Vec<u8>,
    n_kv: u64,
    tensors: Vec<(String, Vec<u64>, u32, Vec<u8>)>,
}

fn gguf_str(out: &mut Vec<u8>, s: &str) {
    out.extend_from_slice(&(s.len() as u64).to_le_bytes());
    out.extend_from_slice(s.as_bytes());
}

impl GgufBuilder {
    pub fn new() -> Self {
        Self {
            version: 3,
            kv: Vec::new(),
            n_kv: 0,
            tensors: Vec::new(),
        }
    }
    fn key(&mut self, k: &str, ty: u32) {
        gguf_str(&mut self.kv, k);
        self.kv.extend_from_slice(&ty.to_le_bytes());
        self.n_kv += 1;
    }
    pub fn u32(&mut self, k: &str, v: u32) -> &mut Self {
        self.key(k, 4);
        self.kv.extend_from_slice(&v.to_le_bytes());
        self
    }
    pub fn f32(&mut self, k: &str, v: f32) -> &mut Self {
        self.key(k, 6);
        self.kv.extend_from_slice(&v.to_le_bytes());
        self
    }
    pub fn bool(&mut self, k: &str, v: bool) -> &mut Self {
        self.key(k, 7);
        self.kv.push(v as u8);
        self
    }
    pub fn str(&mut self, k: &str, v: &str) -> &mut Self {
        self.key(k, 8);
        gguf_str(&mut self.kv, v);
        self
    }
    pub fn strs(&mut self, k: &str, v: &[String]) -> &mut Self {
        self.key(k, 9);
        self.kv.extend_from_slice(&8u32.to_le_bytes());
        self.kv.extend_from_slice(&(v.len() as u64).to_le_bytes());
        for s in v {
            gguf_str(&mut self.kv, s);
        }
        self
    }
    pub fn f32s(&mut self, k: &str, v: &[f32]) -> &mut Self {
        self.key(k, 9);
        self.kv.extend_from_slice(&6u32.to_le_bytes());
        self.kv.extend_from_slice(&(v.len() as u64).to_le_bytes());
        for x in v {
            self.kv.extend_from_slice(&x.to_le_bytes());
        }
        self
    }
    /// A tensor with `shape` outermost first (written innermost first), raw data bytes.
    pub fn tensor(
        &mut self,
        name: &str,
        shape: &[usize],
        ggml_type: u32,
        data: Vec<u8>,
    ) -> &mut Self {
        let dims = shape.iter().rev().map(|&d| d as u64).collect();
        self.tensors.push((name.to_string(), dims, ggml_type, data));
        self
    }
    /// An F32 tensor.
    pub fn f32_tensor(&mut self, name: &str, t: &Tensor) -> &mut Self {
        let v = t.flatten_all().unwrap().to_vec1::<f32>().unwrap();
        self.tensor(name, t.dims(), 0, f32_bytes(&v))
    }
    pub fn build(&self) -> Vec<u8> {
        let mut out = b"GGUF".to_vec();
        out.extend_from_slice(&self.version.to_le_bytes());
        out.extend_from_slice(&(self.tensors.len() as u64).to_le_bytes());
        out.extend_from_slice(&self.n_kv.to_le_bytes());
        out.extend_from_slice(&self.kv);
        let mut offset = 0u64;
        let mut offsets = Vec::new();
        for (name, dims, ty, data) in &self.tensors {
            gguf_str(&mut out, name);
            out.extend_from_slice(&(dims.len() as u32).to_le_bytes());
            for d in dims {
                out.extend_from_slice(&d.to_le_bytes());
            }
            out.extend_from_slice(&ty.to_le_bytes());
            out.extend_from_slice(&offset.to_le_bytes());
            offsets.push(offset);
            offset += (data.len() as u64).div_ceil(32) * 32;
        }
        let data_start = out.len().div_ceil(32) * 32;
        out.resize(data_start, 0);
        for ((_, _, _, data), off) in self.tensors.iter().zip(offsets) {
            out.resize(data_start + off as usize, 0);
            out.extend_from_slice(data);
        }
        out
    }
}

/// Weights of a tiny llama2.c model in Meta layout, per layer.
pub struct Llama2cWeights {
    pub p: [i32; 7], // dim, hidden, layers, heads, kv_heads, vocab (positive), seq_len
    pub emb: Vec<f32>,
    pub rms_att: Vec<Vec<f32>>,
    pub wq: Vec<Vec<f32>>,
    pub wk: Vec<Vec<f32>>,
    pub wv: Vec<Vec<f32>>,
    pub wo: Vec<Vec<f32>>,
    pub rms_ffn: Vec<Vec<f32>>,
    pub w1: Vec<Vec<f32>>,
    pub w2: Vec<Vec<f32>>,
    pub w3: Vec<Vec<f32>>,
    pub rms_final: Vec<f32>,
    pub wcls: Option<Vec<f32>>,
}

impl Llama2cWeights {
    pub fn random(p: [i32; 7], shared: bool, seed: u64) -> Self {
        let mut r = Rng::new(seed);
        let [d, h, l, nh, nkv, v, _] = p.map(|x| x as usize);
        let kv = nkv * (d / nh);
        let mut layers = |n: usize| (0..l).map(|_| r.vec(n)).collect::<Vec<_>>();
        let rms_att = layers(d);
        let wq = layers(d * d);
        let wk = layers(kv * d);
        let wv = layers(kv * d);
        let wo = layers(d * d);
        let rms_ffn = layers(d);
        let w1 = layers(h * d);
        let w2 = layers(d * h);
        let w3 = layers(h * d);
        Self {
            p,
            emb: r.vec(v * d),
            rms_att,
            wq,
            wk,
            wv,
            wo,
            rms_ffn,
            w1,
            w2,
            w3,
            rms_final: r.vec(d),
            wcls: if shared { None } else { Some(r.vec(v * d)) },
        }
    }

    fn cat(out: &mut Vec<u8>, vs: &[Vec<f32>]) {
        for v in vs {
            out.extend_from_slice(&f32_bytes(v));
        }
    }

    /// llama2.c `legacy_export` layout.
    pub fn v0_bytes(&self) -> Vec<u8> {
        let mut p = self.p;
        if self.wcls.is_some() {
            p[5] = -p[5];
        }
        let mut out: Vec<u8> = p.iter().flat_map(|x| x.to_le_bytes()).collect();
        out.extend_from_slice(&f32_bytes(&self.emb));
        Self::cat(&mut out, &self.rms_att);
        Self::cat(&mut out, &self.wq);
        Self::cat(&mut out, &self.wk);
        Self::cat(&mut out, &self.wv);
        Self::cat(&mut out, &self.wo);
        Self::cat(&mut out, &self.rms_ffn);
        Self::cat(&mut out, &self.w1);
        Self::cat(&mut out, &self.w2);
        Self::cat(&mut out, &self.w3);
        out.extend_from_slice(&f32_bytes(&self.rms_final));
        let hs = (self.p[0] / self.p[3]) as usize;
        let freq = vec![0.5f32; self.p[6] as usize * hs / 2];
        out.extend_from_slice(&f32_bytes(&freq)); // freq_cis_real
        out.extend_from_slice(&f32_bytes(&freq)); // freq_cis_imag
        if let Some(w) = &self.wcls {
            out.extend_from_slice(&f32_bytes(w));
        }
        out
    }

    /// llama2.c `version1_export` layout.
    pub fn v1_bytes(&self) -> Vec<u8> {
        let mut out = 0x616b3432u32.to_le_bytes().to_vec();
        out.extend_from_slice(&1i32.to_le_bytes());
        for x in self.p {
            out.extend_from_slice(&x.to_le_bytes());
        }
        out.push(self.wcls.is_none() as u8);
        out.resize(256, 0);
        Self::cat(&mut out, &self.rms_att);
        Self::cat(&mut out, &self.rms_ffn);
        out.extend_from_slice(&f32_bytes(&self.rms_final));
        out.extend_from_slice(&f32_bytes(&self.emb));
        Self::cat(&mut out, &self.wq);
        Self::cat(&mut out, &self.wk);
        Self::cat(&mut out, &self.wv);
        Self::cat(&mut out, &self.wo);
        Self::cat(&mut out, &self.w1);
        Self::cat(&mut out, &self.w2);
        Self::cat(&mut out, &self.w3);
        if let Some(w) = &self.wcls {
            out.extend_from_slice(&f32_bytes(w));
        }
        out
    }
}
