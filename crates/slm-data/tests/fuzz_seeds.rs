//! Writes the seed inputs of the `llama2c_tokenizer`, `tokenizer_json`, `shards`, `kd_cache`
//! and `chat_template` fuzz targets (`fuzz/seeds/<target>/`, docs/FUZZING.md) with our own
//! writers. Ignored by default:
//! `SLM_FUZZ_SEEDS=$PWD/fuzz/seeds cargo test -p slm-data --test fuzz_seeds -- --ignored`.

use std::path::{Path, PathBuf};

use slm_data::kd_cache::{KdCacheHeader, KdCacheWriter};
use slm_data::shards::{ShardWriter, TokenWidth};
use slm_data::tokenizer::train::{save, train_bpe, BpeTrainOptions};

fn out_dir(target: &str) -> Option<PathBuf> {
    let root = std::env::var_os("SLM_FUZZ_SEEDS")?;
    let dir = Path::new(&root).join(target);
    std::fs::create_dir_all(&dir).unwrap();
    Some(dir)
}

const TEXT: &[&str] = &[
    "Once upon a time there was a little cat.",
    "The cat sat on the mat, and the dog sat on the log.",
    "Hello, wörld! 12 34",
];

#[test]
#[ignore = "writes fuzz seeds; set SLM_FUZZ_SEEDS"]
fn write_fuzz_seeds() {
    if let Some(dir) = out_dir("llama2c_tokenizer") {
        // <unk>, BOS, EOS, the 256 byte pieces, then a few merges (run.c's layout).
        let mut pieces: Vec<Vec<u8>> =
            vec![b"<unk>".to_vec(), b"\n<s>\n".to_vec(), b"\n</s>\n".to_vec()];
        pieces.extend((0..=255u8).map(|b| format!("<0x{b:02X}>").into_bytes()));
        for p in [" ", "a", "t", "at", " c", " cat", "on", " on", "ce", "e"] {
            pieces.push(p.as_bytes().to_vec());
        }
        let mut bytes = 8i32.to_le_bytes().to_vec();
        for (i, p) in pieces.iter().enumerate() {
            let score = if i < 259 { 0.0f32 } else { -((i - 259) as f32) };
            bytes.extend_from_slice(&score.to_le_bytes());
            bytes.extend_from_slice(&(p.len() as i32).to_le_bytes());
            bytes.extend_from_slice(p);
        }
        std::fs::write(dir.join("tok.bin"), bytes).unwrap();
    }
    if let Some(dir) = out_dir("tokenizer_json") {
        let opts = BpeTrainOptions {
            vocab_size: 270,
            min_frequency: 1,
            special_tokens: vec!["<|endoftext|>".into()],
        };
        let tok = train_bpe(TEXT.iter(), &opts).unwrap();
        save(&tok, &dir.join("bpe.json")).unwrap();
    }
    if let Some(dir) = out_dir("shards") {
        for (name, width) in [
            ("u16.tokens", TokenWidth::U16),
            ("u32.tokens", TokenWidth::U32),
        ] {
            let mut w = ShardWriter::create(&dir.join(name), width).unwrap();
            w.write(&[1, 2, 3, 500, 65535]).unwrap();
            w.finish().unwrap();
        }
    }
    if let Some(dir) = out_dir("kd_cache") {
        for (name, vocab) in [("narrow.kdc", 1000usize), ("wide.kdc", 100_000)] {
            let header = KdCacheHeader {
                k: 2,
                vocab_size: vocab,
                seq_len: 2,
                windows: 2,
                shard_tokens: 6,
                teacher: "t".into(),
            };
            let mut w = KdCacheWriter::create(&dir.join(name), header).unwrap();
            w.write_window(&[1, 2, 3, 4], &[-0.1, -2.0, -0.5, -1.0], &[0.1, 0.2])
                .unwrap();
            w.write_window(&[5, 6, 7, 8], &[-0.2, -3.0, -0.7, -1.5], &[0.0, 0.3])
                .unwrap();
            w.finish().unwrap();
        }
    }
    if let Some(dir) = out_dir("chat_template") {
        let templates = [
            ("chatml.jinja", "{% for message in messages %}{{'<|im_start|>' + message['role'] + '\\n' + message['content'] + '<|im_end|>' + '\\n'}}{% endfor %}{% if add_generation_prompt %}{{ '<|im_start|>assistant\\n' }}{% endif %}"),
            ("llama2.jinja", "{% if messages[0]['role'] == 'system' %}{% set loop_messages = messages[1:] %}{% set system_message = messages[0]['content'] %}{% else %}{% set loop_messages = messages %}{% set system_message = false %}{% endif %}{% for message in loop_messages %}{% if (message['role'] == 'user') != (loop.index0 % 2 == 0) %}{{ raise_exception('Conversation roles must alternate user/assistant/user/assistant/...') }}{% endif %}{% if loop.index0 == 0 and system_message != false %}{% set content = '<<SYS>>\\n' + system_message + '\\n<</SYS>>\\n\\n' + message['content'] %}{% else %}{% set content = message['content'] %}{% endif %}{% if message['role'] == 'user' %}{{ bos_token + '[INST] ' + content.strip() + ' [/INST]' }}{% elif message['role'] == 'assistant' %}{{ ' '  + content.strip() + ' ' + eos_token }}{% endif %}{% endfor %}"),
            ("tools.jinja", "{%- set ns = namespace(n=0) -%}{%- macro show(m, depth) -%}{{ m | tojson(indent=2) }}{%- if depth > 0 %}{{ show(m, depth - 1) }}{% endif -%}{%- endmacro -%}{%- for m in messages | selectattr('role', 'equalto', 'user') -%}{%- set ns.n = ns.n + 1 -%}{{ show(m, 2) }}{{ strftime_now('%Y-%m-%d') }}{%- endfor -%}{{ ns.n }}{{ range(3) | list | join(',') }}{{ messages[-1].content | upper | replace('A', 'b') }}"),
        ];
        for (name, t) in templates {
            std::fs::write(dir.join(name), t).unwrap();
        }
    }
}
