//! Inputs that crashed, hung or over-allocated in a loader (found fuzzing or reviewing the
//! fuzz targets, docs/FUZZING.md); each must now be a clean error (or load).

use std::path::Path;

use slm_io::gguf;

/// A GGUF v3 file from raw metadata entries `(key, type id, value bytes)` and tensor infos
/// `(name, dims, ggml type, offset)`, data section `data` after 32-byte alignment.
fn gguf_bytes(
    kv: &[(&str, u32, Vec<u8>)],
    tensors: &[(&str, &[u64], u32, u64)],
    data: &[u8],
) -> Vec<u8> {
    let s = |b: &mut Vec<u8>, x: &str| {
        b.extend_from_slice(&(x.len() as u64).to_le_bytes());
        b.extend_from_slice(x.as_bytes());
    };
    let mut b = b"GGUF".to_vec();
    b.extend_from_slice(&3u32.to_le_bytes());
    b.extend_from_slice(&(tensors.len() as u64).to_le_bytes());
    b.extend_from_slice(&(kv.len() as u64).to_le_bytes());
    for (k, ty, v) in kv {
        s(&mut b, k);
        b.extend_from_slice(&ty.to_le_bytes());
        b.extend_from_slice(v);
    }
    for (name, dims, ty, off) in tensors {
        s(&mut b, name);
        b.extend_from_slice(&(dims.len() as u32).to_le_bytes());
        dims.iter()
            .for_each(|d| b.extend_from_slice(&d.to_le_bytes()));
        b.extend_from_slice(&ty.to_le_bytes());
        b.extend_from_slice(&off.to_le_bytes());
    }
    while !b.len().is_multiple_of(32) {
        b.push(0);
    }
    b.extend_from_slice(data);
    b
}

fn string(x: &str) -> Vec<u8> {
    let mut b = (x.len() as u64).to_le_bytes().to_vec();
    b.extend_from_slice(x.as_bytes());
    b
}

fn llama_kv(layers: u64, heads: u64, key_length: Option<u64>) -> Vec<(&'static str, u32, Vec<u8>)> {
    let u64v = |x: u64| x.to_le_bytes().to_vec();
    let mut kv = vec![
        ("general.architecture", 8, string("llama")),
        ("llama.embedding_length", 10, u64v(8)),
        ("llama.block_count", 10, u64v(layers)),
        ("llama.feed_forward_length", 10, u64v(16)),
        ("llama.attention.head_count", 10, u64v(heads)),
        ("llama.context_length", 10, u64v(64)),
        ("llama.vocab_size", 10, u64v(8)),
    ];
    if let Some(k) = key_length {
        kv.push(("llama.attention.key_length", 10, u64v(k)));
    }
    kv
}

/// `block_count` 2^40 made `read` list 10^13 required tensor names (out of memory / hang).
#[test]
fn gguf_huge_block_count_is_an_error() {
    let path = Path::new("x.gguf");
    let bytes = gguf_bytes(
        &llama_kv(1 << 40, 2, None),
        &[("output_norm.weight", &[8], 0, 0)],
        &[0; 32],
    );
    let e = gguf::read_bytes(path, &bytes).unwrap_err().to_string();
    assert!(e.contains("block_count"), "{e}");
}

/// `head_count × key_length` overflowed (a panic with overflow checks).
#[test]
fn gguf_head_dim_overflow_is_an_error() {
    let path = Path::new("x.gguf");
    let bytes = gguf_bytes(
        &llama_kv(0, 2, Some(u64::MAX / 2 + 1)),
        &[("output_norm.weight", &[8], 0, 0)],
        &[0; 32],
    );
    let e = gguf::read_bytes(path, &bytes).unwrap_err().to_string();
    assert!(e.contains("implausible"), "{e}");
}

/// The committed seeds are valid files, so the fuzzers start past the headers.
#[test]
fn fuzz_seeds_load() {
    let seeds = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../fuzz/seeds");
    for name in ["llama_f32.gguf", "qwen2_f16_gpt2.gguf"] {
        let m = gguf::read(&seeds.join("gguf").join(name)).unwrap();
        assert_eq!(m.tensors.len(), 11, "{name}");
    }
    for name in ["v0_shared.bin", "v1_unshared.bin"] {
        let m = slm_io::llama2c::read(&seeds.join("llama2c").join(name)).unwrap();
        assert!(m.tensors.len() >= 11, "{name}");
    }
    let t = slm_io::read_safetensors(&seeds.join("safetensors/tiny.safetensors")).unwrap();
    assert_eq!(t.len(), 5);
}
