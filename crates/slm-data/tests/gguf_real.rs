//! GGUF vocabularies on real data: the Llama 2 vocabulary of `llama-2-tiny-random.gguf`
//! ("llama" model) and GPT-2's vocabulary and merges ("gpt2" model).
//!
//! `slm-io` owns GGUF reading; this test carries a minimal metadata reader of its own
//! (GGUF v2/v3 key-value section only) so that slm-data does not depend on it.

mod common;

use std::collections::HashMap;

use slm_data::{GgufTokenizer, StreamDecoder, Tokenizer};

/// One GGUF metadata value.
#[derive(Debug, Clone)]
enum Value {
    Int(i64),
    Float(f64),
    Bool(bool),
    Str(String),
    Array(Vec<Value>),
}

struct Reader<'a> {
    b: &'a [u8],
    pos: usize,
}

impl<'a> Reader<'a> {
    fn take(&mut self, n: usize) -> &'a [u8] {
        let out = &self.b[self.pos..self.pos + n];
        self.pos += n;
        out
    }
    fn u32(&mut self) -> u32 {
        u32::from_le_bytes(self.take(4).try_into().unwrap())
    }
    fn u64(&mut self) -> u64 {
        u64::from_le_bytes(self.take(8).try_into().unwrap())
    }
    fn string(&mut self) -> String {
        let n = self.u64() as usize;
        String::from_utf8(self.take(n).to_vec()).unwrap()
    }
    fn value(&mut self, ty: u32) -> Value {
        match ty {
            0 => Value::Int(self.take(1)[0] as i64),
            1 => Value::Int(self.take(1)[0] as i8 as i64),
            2 => Value::Int(u16::from_le_bytes(self.take(2).try_into().unwrap()) as i64),
            3 => Value::Int(i16::from_le_bytes(self.take(2).try_into().unwrap()) as i64),
            4 => Value::Int(self.u32() as i64),
            5 => Value::Int(self.u32() as i32 as i64),
            6 => Value::Float(f32::from_le_bytes(self.take(4).try_into().unwrap()) as f64),
            7 => Value::Bool(self.take(1)[0] != 0),
            8 => Value::Str(self.string()),
            9 => {
                let elem = self.u32();
                let n = self.u64() as usize;
                Value::Array((0..n).map(|_| self.value(elem)).collect())
            }
            10 => Value::Int(self.u64() as i64),
            11 => Value::Int(self.u64() as i64),
            12 => Value::Float(f64::from_le_bytes(self.take(8).try_into().unwrap())),
            other => panic!("unknown GGUF value type {other}"),
        }
    }
}

/// The metadata key-value pairs of a GGUF file.
fn gguf_metadata(bytes: &[u8]) -> HashMap<String, Value> {
    let mut r = Reader { b: bytes, pos: 0 };
    assert_eq!(r.take(4), b"GGUF");
    let version = r.u32();
    assert!(version == 2 || version == 3, "GGUF version {version}");
    let _n_tensors = r.u64();
    let n_kv = r.u64();
    (0..n_kv)
        .map(|_| {
            let key = r.string();
            let ty = r.u32();
            (key, r.value(ty))
        })
        .collect()
}

fn strings(v: Option<&Value>) -> Vec<String> {
    match v {
        Some(Value::Array(a)) => a
            .iter()
            .map(|x| match x {
                Value::Str(s) => s.clone(),
                other => panic!("{other:?}"),
            })
            .collect(),
        _ => Vec::new(),
    }
}

fn numbers(v: Option<&Value>) -> Vec<f64> {
    match v {
        Some(Value::Array(a)) => a
            .iter()
            .map(|x| match x {
                Value::Int(i) => *i as f64,
                Value::Float(f) => *f,
                other => panic!("{other:?}"),
            })
            .collect(),
        _ => Vec::new(),
    }
}

fn id(v: Option<&Value>) -> Option<u32> {
    match v {
        Some(Value::Int(i)) => Some(*i as u32),
        _ => None,
    }
}

fn llama2_vocab() -> Option<GgufTokenizer> {
    let path = common::data_file("gguf/llama-2-tiny-random.gguf")?;
    let meta = gguf_metadata(&std::fs::read(path).unwrap());
    let model = match meta.get("tokenizer.ggml.model") {
        Some(Value::Str(s)) => s.clone(),
        other => panic!("tokenizer.ggml.model: {other:?}"),
    };
    let add_bos = matches!(
        meta.get("tokenizer.ggml.add_bos_token"),
        Some(Value::Bool(true))
    );
    let t = GgufTokenizer::new(
        &model,
        strings(meta.get("tokenizer.ggml.tokens")),
        numbers(meta.get("tokenizer.ggml.scores"))
            .into_iter()
            .map(|x| x as f32)
            .collect(),
        numbers(meta.get("tokenizer.ggml.token_type"))
            .into_iter()
            .map(|x| x as i32)
            .collect(),
        strings(meta.get("tokenizer.ggml.merges")),
        id(meta.get("tokenizer.ggml.bos_token_id")),
        id(meta.get("tokenizer.ggml.eos_token_id")),
        id(meta.get("tokenizer.ggml.unknown_token_id")),
        add_bos,
    )
    .unwrap();
    Some(t)
}

fn stream(t: &dyn Tokenizer, ids: &[u32]) -> String {
    let mut d = StreamDecoder::new(t);
    let mut out = String::new();
    for &id in ids {
        out.push_str(&d.push(id).unwrap().unwrap_or_default());
    }
    out.push_str(&d.finish().unwrap().unwrap_or_default());
    out
}

#[test]
fn llama2_hello_world() {
    let Some(t) = llama2_vocab() else { return };
    assert_eq!(t.kind(), "gguf-llama");
    assert_eq!(t.vocab_size(), 32000);
    assert_eq!((t.bos_id(), t.eos_id()), (Some(1), Some(2)));
    assert_eq!(t.encode("Hello world", true).unwrap(), vec![1, 15043, 3186]);
    assert_eq!(t.decode(&[1, 15043, 3186, 2]).unwrap(), "Hello world");
    assert_eq!(t.token_to_id("▁Hello"), Some(15043));
    assert_eq!(t.id_to_piece(3186).as_deref(), Some("▁world"));
}

#[test]
fn llama2_round_trips_non_ascii_and_newlines() {
    let Some(t) = llama2_vocab() else { return };
    let newline = t.token_to_id("<0x0A>").unwrap();
    for text in [
        "Grüße aus München!\nZweite Zeile, naïve café. 🦀",
        "日本語のテキスト\n\n  indented line",
        " leading space and trailing space ",
    ] {
        for bos in [true, false] {
            let ids = t.encode(text, bos).unwrap();
            assert_eq!(t.decode(&ids).unwrap(), text, "bos={bos} ids={ids:?}");
            assert_eq!(stream(&t, &ids), text, "streamed, bos={bos}");
        }
    }
    assert!(t.encode("a\nb", false).unwrap().contains(&newline));
    // The crab is not a piece: byte fallback, four byte tokens.
    let crab = t.encode("🦀", false).unwrap();
    assert_eq!(crab.len(), 5, "{crab:?}"); // "▁" + 4 bytes
}

#[test]
fn llama2_stories_round_trip() {
    let (Some(t), Some(stories)) = (llama2_vocab(), common::cs336_stories()) else {
        return;
    };
    for story in stories {
        let ids = t.encode(&story, true).unwrap();
        assert_eq!(t.decode(&ids).unwrap(), story);
        assert_eq!(stream(&t, &ids), story);
    }
}

#[test]
fn gpt2_vocab_and_merges() {
    let (Some(vocab_path), Some(merges_path)) = (
        common::data_file("tokenizers/gpt2/vocab.json"),
        common::data_file("tokenizers/gpt2/merges.txt"),
    ) else {
        return;
    };
    let vocab: HashMap<String, u32> =
        serde_json::from_str(&std::fs::read_to_string(vocab_path).unwrap()).unwrap();
    let mut tokens = vec![String::new(); vocab.len()];
    for (tok, id) in vocab {
        tokens[id as usize] = tok;
    }
    let merges: Vec<String> = std::fs::read_to_string(merges_path)
        .unwrap()
        .lines()
        .filter(|l| !l.starts_with("#version") && !l.is_empty())
        .map(str::to_string)
        .collect();
    let n = tokens.len();
    let mut types = vec![1; n];
    types[50256] = 3;
    let t = GgufTokenizer::new(
        "gpt2",
        tokens,
        vec![],
        types,
        merges,
        Some(50256),
        Some(50256),
        None,
        false,
    )
    .unwrap();
    assert_eq!(t.kind(), "gguf-gpt2");
    assert_eq!(t.vocab_size(), 50257);
    assert_eq!(t.encode("Hello world", false).unwrap(), vec![15496, 995]);
    assert_eq!(
        t.encode("Hello world", true).unwrap(),
        vec![50256, 15496, 995]
    );
    let Some(german) = common::data_file("tokenizers/bpe_train_test/german.txt") else {
        return;
    };
    let text = std::fs::read_to_string(german).unwrap();
    let ids = t.encode(&text, true).unwrap();
    assert_eq!(t.decode(&ids).unwrap(), text);
    assert_eq!(stream(&t, &ids), text);
}

#[test]
fn llama2_stream_matches_decode_on_random_ids() {
    let Some(t) = llama2_vocab() else { return };
    let mut state = 0x2545F4914F6CDD1Du64;
    let mut next = move || {
        state ^= state << 13;
        state ^= state >> 7;
        state ^= state << 17;
        state
    };
    for _ in 0..500 {
        let len = (next() % 40) as usize;
        let ids: Vec<u32> = (0..len)
            .map(|_| match next() % 6 {
                0 => 1,
                1 => 2,
                // Byte pieces, UTF-8 lead and continuation bytes included.
                2 | 3 => 3 + (next() % 256) as u32,
                _ => (next() % 32000) as u32,
            })
            .collect();
        assert_eq!(stream(&t, &ids), t.decode(&ids).unwrap(), "{ids:?}");
    }
}
