//! Test support for the `sft` unit tests: a byte tokenizer with special tokens and the ChatML
//! template.

use slm_core::{Error, Result};

use crate::tokenizer::Tokenizer;

/// SmolLM2's template without its default system prompt.
pub const CHATML: &str = "{% for message in messages %}{{'<|im_start|>' + message['role'] + '\\n' + message['content'] + '<|im_end|>' + '\\n'}}{% endfor %}{% if add_generation_prompt %}{{ '<|im_start|>assistant\\n' }}{% endif %}";

/// One token per byte (id `10 + byte`), special pieces parsed in text, optionally the merge
/// `ab` → [`Self::AB`] and a dummy-prefix token [`Self::PREFIX`] before the first plain
/// fragment of every call (as SentencePiece's `▁`). `decode` writes special pieces and skips
/// the prefix token.
#[derive(Debug, Clone, Default)]
pub struct ByteTok {
    pub merge_ab: bool,
    pub dummy_prefix: bool,
}

const SPECIAL: [(&str, u32); 4] = [
    ("<s>", 1),
    ("</s>", 2),
    ("<|im_start|>", 3),
    ("<|im_end|>", 4),
];

impl ByteTok {
    pub const BOS: u32 = 1;
    pub const EOS: u32 = 2;
    pub const PREFIX: u32 = 5;
    pub const AB: u32 = 300;

    fn plain(&self, text: &str, ids: &mut Vec<u32>) {
        let b = text.as_bytes();
        let mut i = 0;
        while i < b.len() {
            if self.merge_ab && b[i] == b'a' && b.get(i + 1) == Some(&b'b') {
                ids.push(Self::AB);
                i += 2;
            } else {
                ids.push(10 + u32::from(b[i]));
                i += 1;
            }
        }
    }
}

impl Tokenizer for ByteTok {
    fn encode(&self, text: &str, add_bos: bool) -> Result<Vec<u32>> {
        let mut ids = Vec::new();
        if add_bos {
            ids.push(Self::BOS);
        }
        let mut rest = text;
        let mut first_plain = true;
        while !rest.is_empty() {
            let next = SPECIAL
                .iter()
                .filter_map(|&(p, id)| rest.find(p).map(|at| (at, p, id)))
                .min_by_key(|&(at, _, _)| at);
            let (plain, special) = match next {
                Some((at, p, id)) => (&rest[..at], Some((p, id))),
                None => (rest, None),
            };
            if !plain.is_empty() {
                if self.dummy_prefix && first_plain {
                    ids.push(Self::PREFIX);
                }
                first_plain = false;
                self.plain(plain, &mut ids);
            }
            match special {
                Some((p, id)) => {
                    ids.push(id);
                    rest = &rest[plain.len() + p.len()..];
                }
                None => rest = "",
            }
        }
        Ok(ids)
    }

    fn decode(&self, ids: &[u32]) -> Result<String> {
        let mut bytes = Vec::new();
        for &id in ids {
            if let Some((p, _)) = SPECIAL.iter().find(|&&(_, s)| s == id) {
                bytes.extend_from_slice(p.as_bytes());
            } else if id == Self::AB {
                bytes.extend_from_slice(b"ab");
            } else if id == Self::PREFIX {
            } else if (10..266).contains(&id) {
                bytes.push((id - 10) as u8);
            } else {
                return Err(Error::Tokenizer(format!("bad id {id}")));
            }
        }
        Ok(String::from_utf8_lossy(&bytes).into_owned())
    }

    fn vocab_size(&self) -> usize {
        301
    }

    fn bos_id(&self) -> Option<u32> {
        Some(Self::BOS)
    }

    fn eos_id(&self) -> Option<u32> {
        Some(Self::EOS)
    }

    fn adds_bos(&self) -> bool {
        false
    }

    fn token_to_id(&self, piece: &str) -> Option<u32> {
        SPECIAL
            .iter()
            .find(|&&(p, _)| p == piece)
            .map(|&(_, id)| id)
    }

    fn id_to_piece(&self, id: u32) -> Option<String> {
        SPECIAL
            .iter()
            .find(|&&(_, s)| s == id)
            .map(|&(p, _)| p.to_string())
    }

    fn kind(&self) -> &'static str {
        "test-bytes"
    }
}
