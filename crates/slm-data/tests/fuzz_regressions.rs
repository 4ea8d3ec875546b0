//! Inputs that crashed, hung or over-allocated in a loader (found fuzzing or reviewing the
//! fuzz targets, docs/FUZZING.md); each must now be a clean error (or load).

use std::path::Path;

use slm_data::chat::{ChatTemplate, Message};
use slm_data::kd_cache::KdCache;
use slm_data::shards::Shard;
use slm_data::tokenizer::{HfTokenizer, SpecialTokens};

fn write(dir: &Path, name: &str, bytes: &[u8]) -> std::path::PathBuf {
    let p = dir.join(name);
    std::fs::write(&p, bytes).unwrap();
    p
}

fn shard_bytes(dtype: u32, count: u64, tokens: &[u8]) -> Vec<u8> {
    let mut b = b"SLMTOKS\0".to_vec();
    b.extend_from_slice(&1u32.to_le_bytes());
    b.extend_from_slice(&dtype.to_le_bytes());
    b.extend_from_slice(&count.to_le_bytes());
    b.extend_from_slice(tokens);
    b
}

/// `count × width` used to wrap: 2^63 + 1 u16 tokens "needed" 2 bytes, so a 26-byte file
/// opened and `get(1)` read past the map.
#[test]
fn shard_count_that_wraps_is_refused() {
    let dir = tempfile::tempdir().unwrap();
    for (dtype, count) in [
        (2u32, (1u64 << 63) + 1),
        (4, (1u64 << 62) + 1),
        (2, u64::MAX),
    ] {
        let p = write(
            dir.path(),
            "s.tokens",
            &shard_bytes(dtype, count, &[1, 0, 0, 0]),
        );
        let e = Shard::open(&p)
            .err()
            .expect("a corrupt count must not open");
        assert!(e.to_string().contains("truncated or corrupt"), "{e}");
    }
    // The honest file still opens.
    let p = write(dir.path(), "ok.tokens", &shard_bytes(2, 2, &[1, 0, 2, 0]));
    let s = Shard::open(&p).unwrap();
    assert_eq!(s.to_vec().unwrap(), vec![1, 2]);
    let mut buf = [0u32; 2];
    assert!(s.read_into(usize::MAX, &mut buf).is_err());
}

fn kdc_bytes(header: &str, records: &[u8]) -> Vec<u8> {
    let mut b = b"SLMKDC\0\0".to_vec();
    b.extend_from_slice(&1u32.to_le_bytes());
    b.extend_from_slice(&(header.len() as u32).to_le_bytes());
    b.extend_from_slice(header.as_bytes());
    b.extend_from_slice(records);
    b
}

/// `windows × seq_len × bytes_per_token` used to overflow (a panic with overflow checks, a
/// wrapped size that could match the file without them).
#[test]
fn kd_cache_sizes_that_overflow_are_refused() {
    let dir = tempfile::tempdir().unwrap();
    for (k, seq, windows) in [
        (1usize, 1usize, usize::MAX),
        (usize::MAX / 2, 1, 1),
        (2, usize::MAX / 4, 3),
    ] {
        let h = format!(
            r#"{{"k":{k},"vocab_size":{},"seq_len":{seq},"windows":{windows},"shard_tokens":1,"teacher":"t"}}"#,
            usize::MAX
        );
        let p = write(dir.path(), "c.kdc", &kdc_bytes(&h, &[0; 16]));
        let e = KdCache::open(&p)
            .err()
            .expect("an overflowing header must not open");
        assert!(
            e.to_string().contains("bad cache header") || e.to_string().contains("truncated"),
            "{e}"
        );
    }
}

fn conversation() -> Vec<Message> {
    vec![
        Message::system("s"),
        Message::user("hi"),
        Message::assistant("yo"),
    ]
}

/// `tojson(indent=N)` allocated `N × depth` spaces for any N.
#[test]
fn tojson_with_a_huge_indent_is_an_error() {
    let t = ChatTemplate::new("{{ messages | tojson(indent=1000000000000) }}", "t").unwrap();
    let e = t.render(&conversation(), false).unwrap_err().to_string();
    assert!(e.contains("indent"), "{e}");
    let t = ChatTemplate::new("{{ messages[1] | tojson(indent=2) }}", "t").unwrap();
    assert_eq!(
        t.render(&conversation(), false).unwrap(),
        "{\n  \"role\": \"user\",\n  \"content\": \"hi\"\n}"
    );
}

/// Nested loops (10^10 iterations) and unbounded recursion ran for hours; fuel and the
/// recursion limit make them errors.
#[test]
fn runaway_templates_stop_with_an_error() {
    let start = std::time::Instant::now();
    for src in [
        "{% for i in range(100000) %}{% for j in range(100000) %}{{ j }}{% endfor %}{% endfor %}",
        "{% macro f(n) %}{{ f(n + 1) }}{% endmacro %}{{ f(0) }}",
    ] {
        let t = ChatTemplate::new(src, "t").unwrap();
        assert!(t.render(&conversation(), false).is_err(), "{src}");
    }
    assert!(start.elapsed().as_secs() < 60, "{:?}", start.elapsed());
}

/// `tokenizers` 0.21 panicked (`expect("Helper")`) on a JSON syntax error inside the
/// `"decoder"` object (found by the `tokenizer_json` target, 29 artifacts, all this one bug).
#[test]
fn tokenizer_json_with_a_syntax_error_in_the_decoder_is_an_error() {
    let found = std::fs::read(
        Path::new(env!("CARGO_MANIFEST_DIR"))
            .join("tests/fuzz_regressions/tokenizer_json_decoder_syntax_error.json"),
    )
    .unwrap();
    let minimal: &[u8] = br#"{"decoder": {"type": "ByteLevel",}}"#;
    // Found by the run after the first fix: an escape that is not a code point.
    let surrogate: &[u8] = br#"{"decoder": {"type": "ByteLevel", "x": "\ud800"}}"#;
    for bytes in [&found[..], minimal, surrogate] {
        let e = HfTokenizer::from_bytes(bytes, &SpecialTokens::default()).unwrap_err();
        assert!(e.to_string().contains("not a tokenizer.json"), "{e}");
    }
    let dir = tempfile::tempdir().unwrap();
    let p = write(dir.path(), "tokenizer.json", minimal);
    let e = HfTokenizer::from_file(&p).unwrap_err().to_string();
    assert!(
        e.contains("tokenizer.json") && e.contains("not a tokenizer.json"),
        "{e}"
    );
}
