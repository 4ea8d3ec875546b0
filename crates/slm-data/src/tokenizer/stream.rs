//! Streaming detokenization: text for printing generated tokens one at a time.
//!
//! Decoding token by token is wrong in two ways: a character split over byte-fallback tokens
//! (`<0xE2><0x96><0x81>`) prints as U+FFFD pieces, and SentencePiece's "drop the leading
//! space of the first piece" rule would apply to every token. [`StreamDecoder`] instead
//! keeps a short window of ids and decodes it twice, with and without the newest tokens:
//! what the newest tokens add is the difference. It waits while the window's text ends in
//! U+FFFD (an incomplete character) and moves the window on once a piece of text is out.
//! Since both decodes start at the same token, any rule about the first piece (or about the
//! token after BOS) treats them alike and cancels out of the difference.
//!
//! For tokenizers whose text is the concatenation of per-token bytes, with at most the
//! previous token as context (llama2.c, SentencePiece, byte-level BPE), the concatenation
//! of everything `push` returned and `finish` equals `decode` of all ids. This is the
//! approach of Hugging Face's text-generation-inference, with any `&dyn Tokenizer`.

use slm_core::Result;

use super::Tokenizer;

const REPLACEMENT: char = '\u{FFFD}';

/// Turns ids into text incrementally; see the module docs.
pub struct StreamDecoder<'a> {
    tokenizer: &'a dyn Tokenizer,
    /// Ids from the start of the window on; earlier ones are no longer needed.
    ids: Vec<u32>,
    /// `ids[..read]` is text already returned (the window's first part, for context).
    read: usize,
}

impl<'a> StreamDecoder<'a> {
    pub fn new(tokenizer: &'a dyn Tokenizer) -> Self {
        Self {
            tokenizer,
            ids: Vec::new(),
            read: 0,
        }
    }

    /// Adds one id; returns the text it completes, if any.
    pub fn push(&mut self, id: u32) -> Result<Option<String>> {
        self.ids.push(id);
        let (prefix, full) = self.decode_window()?;
        if full.len() <= prefix.len() || full.ends_with(REPLACEMENT) {
            return Ok(None);
        }
        let Some(new) = full.strip_prefix(prefix.as_str()) else {
            // Decoding is not local for this tokenizer here: wait, `finish` flushes.
            return Ok(None);
        };
        let new = new.to_string();
        // The tokens not yet returned become the window's context part.
        self.ids.drain(..self.read);
        self.read = self.ids.len();
        Ok(Some(new))
    }

    /// Returns the text still held back (an incomplete character at the very end, as
    /// U+FFFD) and resets the decoder for a new sequence.
    pub fn finish(&mut self) -> Result<Option<String>> {
        let (prefix, full) = self.decode_window()?;
        self.ids.clear();
        self.read = 0;
        let rest = match full.strip_prefix(prefix.as_str()) {
            Some(rest) => rest.to_string(),
            None => {
                // Best effort for non-local decoders: what follows the common prefix.
                let common = prefix
                    .char_indices()
                    .zip(full.chars())
                    .find(|((_, a), b)| a != b)
                    .map_or(prefix.len().min(full.len()), |((i, _), _)| i);
                full.get(common..).unwrap_or_default().to_string()
            }
        };
        Ok(if rest.is_empty() { None } else { Some(rest) })
    }

    /// Text of the window without and with the ids not yet returned.
    fn decode_window(&self) -> Result<(String, String)> {
        let prefix = self.tokenizer.decode(&self.ids[..self.read])?;
        let full = self.tokenizer.decode(&self.ids)?;
        Ok((prefix, full))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::tokenizer::GgufTokenizer;

    /// SentencePiece-like vocabulary with byte pieces, for the stream tests.
    fn spm() -> GgufTokenizer {
        let mut tokens: Vec<String> = vec!["<unk>".into(), "<s>".into(), "</s>".into()];
        tokens.extend((0..=255u8).map(|b| format!("<0x{b:02X}>")));
        tokens.extend(["▁a", "b", "▁", "ab", "▁ab"].iter().map(|s| s.to_string()));
        GgufTokenizer::new(
            "llama",
            tokens,
            vec![],
            vec![],
            vec![],
            Some(1),
            Some(2),
            Some(0),
            true,
        )
        .unwrap()
    }

    fn stream_all(t: &dyn Tokenizer, ids: &[u32]) -> String {
        let mut d = StreamDecoder::new(t);
        let mut out = String::new();
        for &id in ids {
            if let Some(s) = d.push(id).unwrap() {
                assert!(!s.is_empty());
                out.push_str(&s);
            }
        }
        out.push_str(&d.finish().unwrap().unwrap_or_default());
        out
    }

    #[test]
    fn holds_back_split_characters() {
        let t = spm();
        let ids = t.encode("a €b", true).unwrap();
        let mut d = StreamDecoder::new(&t);
        let outs: Vec<Option<String>> = ids.iter().map(|&id| d.push(id).unwrap()).collect();
        // "€" is three byte tokens: nothing comes out until the third.
        let euro: Vec<usize> = ids
            .iter()
            .enumerate()
            .filter(|(_, &id)| (3..259).contains(&id))
            .map(|(i, _)| i)
            .collect();
        assert_eq!(euro.len(), 3);
        assert_eq!(outs[euro[0]], None);
        assert_eq!(outs[euro[1]], None);
        assert_eq!(outs[euro[2]].as_deref(), Some("€"));
        assert_eq!(stream_all(&t, &ids), "a €b");
    }

    #[test]
    fn leading_space_rule_matches_decode() {
        let t = spm();
        let a = t.token_to_id("▁a").unwrap();
        for ids in [
            vec![1, a, a],
            vec![a, a],
            vec![1, a, 2, 1, a],
            vec![2, a],
            vec![1, 1, a],
        ] {
            assert_eq!(stream_all(&t, &ids), t.decode(&ids).unwrap(), "{ids:?}");
        }
    }

    #[test]
    fn incomplete_tail_is_flushed() {
        let t = spm();
        let ids = [1, 0xE2 + 3, 0x82 + 3];
        assert_eq!(stream_all(&t, &ids), t.decode(&ids).unwrap());
        assert_eq!(stream_all(&t, &ids), "\u{FFFD}");
    }
}
