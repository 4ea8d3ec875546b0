//! llama2.c `tokenizer.bin`, read natively and used exactly as llama2.c `run.c` does.
//!
//! File layout (little-endian): `i32 max_token_length`, then for every token `f32 score`,
//! `i32 length`, `length` bytes of piece. The file does not store the number of tokens
//! (`run.c` takes it from the checkpoint); we read records until the end of the file.
//! Ids 0, 1, 2 are `<unk>`, BOS and EOS; ids 3..=258 are the byte pieces `<0x00>`..`<0xFF>`;
//! spaces are plain `' '` in pieces (the exporter replaced SentencePiece's `▁`).
//!
//! Encoding follows `run.c` `encode`: optional BOS, the dummy-prefix piece `" "` when the
//! text is not empty, one piece per UTF-8 character or its bytes as byte pieces (the id of
//! byte `b` is `b + 3`), then score-greedy merges (`spm.rs`). One deliberate difference: `run.c` also lets
//! BOS take part in merges (its piece `"\n<s>\n"` never joins anything in real vocabularies);
//! here BOS stays out of them. Decoding follows `run.c` `decode`: after BOS one leading
//! space of a piece is dropped; `<0xHH>` pieces become raw bytes; the bytes become UTF-8,
//! with U+FFFD only for invalid sequences.

use std::collections::HashMap;
use std::path::Path;

use slm_core::error::IoContext;
use slm_core::{Error, Result};

use super::spm::{merge_by_score, parse_byte_piece, Symbol};
use super::{bad_id, Tokenizer};

/// BOS id of every llama2.c vocabulary.
pub const LLAMA2C_BOS: u32 = 1;
/// EOS id of every llama2.c vocabulary.
pub const LLAMA2C_EOS: u32 = 2;
/// Byte `b` has id `b + BYTE_OFFSET`.
const BYTE_OFFSET: u32 = 3;
/// Longest piece accepted when reading, far above any real vocabulary (llama 2: 48 bytes).
const MAX_PIECE_LEN: i32 = 1 << 16;

/// A llama2.c vocabulary: pieces (raw bytes), their scores, and a piece -> id map.
#[derive(Debug, Clone)]
pub struct Llama2cTokenizer {
    pieces: Vec<Vec<u8>>,
    scores: Vec<f32>,
    max_token_length: u32,
    ids: HashMap<Vec<u8>, u32>,
}

impl Llama2cTokenizer {
    /// The pieces (raw bytes; llama2.c writes SentencePiece's `▁` as a space), by id.
    pub fn pieces(&self) -> &[Vec<u8>] {
        &self.pieces
    }

    /// The merge scores, by id.
    pub fn scores(&self) -> &[f32] {
        &self.scores
    }

    /// Reads a `tokenizer.bin`.
    pub fn from_file(path: impl AsRef<Path>) -> Result<Self> {
        let path = path.as_ref();
        let bytes = std::fs::read(path).with_path(path)?;
        Self::parse(&bytes)
            .map_err(|msg| Error::format(path, format!("not a llama2.c tokenizer.bin: {msg}")))
    }

    /// Parses the bytes of a `tokenizer.bin`.
    pub fn from_bytes(bytes: &[u8]) -> Result<Self> {
        Self::parse(bytes)
            .map_err(|msg| Error::Tokenizer(format!("not a llama2.c tokenizer.bin: {msg}")))
    }

    /// Builds a vocabulary from pieces and scores (ids are positions). Needs at least the
    /// three special pieces; byte fallback needs ids 3..=258 to be the byte pieces.
    pub fn from_pieces(pieces: Vec<Vec<u8>>, scores: Vec<f32>) -> Result<Self> {
        if pieces.len() != scores.len() {
            return Err(Error::Tokenizer(format!(
                "{} pieces but {} scores",
                pieces.len(),
                scores.len()
            )));
        }
        if pieces.len() < 3 {
            return Err(Error::Tokenizer(format!(
                "a llama2.c vocabulary needs at least <unk>, BOS and EOS; got {} pieces",
                pieces.len()
            )));
        }
        if u32::try_from(pieces.len()).is_err() {
            return Err(Error::Tokenizer("vocabulary larger than u32 ids".into()));
        }
        let max_token_length = pieces.iter().map(Vec::len).max().unwrap_or(0) as u32;
        let mut ids = HashMap::with_capacity(pieces.len());
        for (id, piece) in pieces.iter().enumerate() {
            // The first of duplicate pieces wins (run.c's bsearch picks an unspecified one).
            ids.entry(piece.clone()).or_insert(id as u32);
        }
        Ok(Self {
            pieces,
            scores,
            max_token_length,
            ids,
        })
    }

    fn parse(bytes: &[u8]) -> std::result::Result<Self, String> {
        let mut reader = Reader { bytes, pos: 0 };
        let max_len = reader.i32().ok_or("file shorter than its 4-byte header")?;
        if !(1..=MAX_PIECE_LEN).contains(&max_len) {
            return Err(format!(
                "max_token_length {max_len} is not in 1..={MAX_PIECE_LEN}"
            ));
        }
        let mut pieces = Vec::new();
        let mut scores = Vec::new();
        while reader.pos < bytes.len() {
            let at = pieces.len();
            let score = reader
                .f32()
                .ok_or_else(|| format!("token {at}: truncated score"))?;
            let len = reader
                .i32()
                .ok_or_else(|| format!("token {at}: truncated length"))?;
            if !score.is_finite() {
                return Err(format!("token {at}: score {score} is not finite"));
            }
            if !(0..=max_len).contains(&len) {
                return Err(format!(
                    "token {at}: length {len} is not in 0..={max_len} (max_token_length)"
                ));
            }
            let piece = reader
                .take(len as usize)
                .ok_or_else(|| format!("token {at}: piece runs past the end of the file"))?;
            pieces.push(piece.to_vec());
            scores.push(score);
        }
        let tok = Self::from_pieces(pieces, scores).map_err(|e| e.to_string())?;
        Ok(Self {
            max_token_length: max_len as u32,
            ..tok
        })
    }

    /// `max_token_length` from the file header (or the longest piece).
    pub fn max_token_length(&self) -> u32 {
        self.max_token_length
    }

    /// Score of a piece (higher merges first).
    pub fn score(&self, id: u32) -> Option<f32> {
        self.scores.get(id as usize).copied()
    }

    /// Raw bytes of a piece.
    pub fn piece_bytes(&self, id: u32) -> Option<&[u8]> {
        self.pieces.get(id as usize).map(Vec::as_slice)
    }

    /// The symbol for bytes that are a piece, else their byte pieces.
    fn push_symbols(&self, text: &[u8], out: &mut Vec<Symbol>) -> Result<()> {
        if let Some(&id) = self.ids.get(text) {
            out.push(Symbol {
                text: text.to_vec(),
                id: Some(id),
            });
            return Ok(());
        }
        for &b in text {
            let id = u32::from(b) + BYTE_OFFSET;
            let piece = self.pieces.get(id as usize).ok_or_else(|| {
                Error::Tokenizer(format!(
                    "byte {b:#04x} needs byte-fallback id {id}, but the vocabulary has {} pieces",
                    self.pieces.len()
                ))
            })?;
            out.push(Symbol {
                text: piece.clone(),
                id: Some(id),
            });
        }
        Ok(())
    }
}

impl Tokenizer for Llama2cTokenizer {
    fn encode(&self, text: &str, add_bos: bool) -> Result<Vec<u32>> {
        let mut ids = Vec::with_capacity(text.len() + 2);
        if add_bos {
            ids.push(LLAMA2C_BOS);
        }
        if text.is_empty() {
            return Ok(ids);
        }
        let mut symbols = Vec::with_capacity(text.len() + 1);
        self.push_symbols(b" ", &mut symbols)?;
        let mut buf = [0u8; 4];
        for ch in text.chars() {
            self.push_symbols(ch.encode_utf8(&mut buf).as_bytes(), &mut symbols)?;
        }
        let merged = merge_by_score(symbols, |piece| {
            let id = *self.ids.get(piece)?;
            Some((id, self.scores[id as usize]))
        });
        for sym in merged {
            let id = sym
                .id
                .ok_or_else(|| Error::Tokenizer("internal: merged symbol without an id".into()))?;
            ids.push(id);
        }
        Ok(ids)
    }

    fn decode(&self, ids: &[u32]) -> Result<String> {
        let mut bytes = Vec::with_capacity(ids.len() * 4);
        let mut prev = None;
        for &id in ids {
            let piece = self
                .pieces
                .get(id as usize)
                .ok_or_else(|| bad_id(id, self.pieces.len()))?;
            let after_bos = prev == Some(LLAMA2C_BOS);
            prev = Some(id);
            if id == LLAMA2C_BOS || id == LLAMA2C_EOS {
                continue;
            }
            let mut piece = piece.as_slice();
            if after_bos && piece.first() == Some(&b' ') {
                piece = &piece[1..];
            }
            match parse_byte_piece(piece) {
                Some(b) => bytes.push(b),
                None => bytes.extend_from_slice(piece),
            }
        }
        Ok(String::from_utf8_lossy(&bytes).into_owned())
    }

    fn token_bytes(&self, id: u32) -> Option<Vec<u8>> {
        let piece = self.pieces.get(id as usize)?;
        if id == LLAMA2C_BOS || id == LLAMA2C_EOS {
            return Some(Vec::new());
        }
        Some(match parse_byte_piece(piece) {
            Some(b) => vec![b],
            None => piece.clone(),
        })
    }

    fn vocab_size(&self) -> usize {
        self.pieces.len()
    }

    fn bos_id(&self) -> Option<u32> {
        Some(LLAMA2C_BOS)
    }

    fn eos_id(&self) -> Option<u32> {
        Some(LLAMA2C_EOS)
    }

    fn token_to_id(&self, piece: &str) -> Option<u32> {
        self.ids.get(piece.as_bytes()).copied()
    }

    fn id_to_piece(&self, id: u32) -> Option<String> {
        self.pieces
            .get(id as usize)
            .map(|p| String::from_utf8_lossy(p).into_owned())
    }

    fn adds_bos(&self) -> bool {
        true // llama2.c run.c always starts a prompt with BOS
    }

    fn kind(&self) -> &'static str {
        "llama2c"
    }
}

/// Little-endian cursor over the file bytes.
struct Reader<'a> {
    bytes: &'a [u8],
    pos: usize,
}

impl<'a> Reader<'a> {
    fn take(&mut self, n: usize) -> Option<&'a [u8]> {
        let end = self.pos.checked_add(n)?;
        let out = self.bytes.get(self.pos..end)?;
        self.pos = end;
        Some(out)
    }

    fn array4(&mut self) -> Option<[u8; 4]> {
        self.take(4)?.try_into().ok()
    }

    fn i32(&mut self) -> Option<i32> {
        self.array4().map(i32::from_le_bytes)
    }

    fn f32(&mut self) -> Option<f32> {
        self.array4().map(f32::from_le_bytes)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A tiny vocabulary in llama2.c's layout: specials, 256 byte pieces, then pieces.
    fn tiny() -> Llama2cTokenizer {
        let mut pieces: Vec<Vec<u8>> =
            vec![b"<unk>".to_vec(), b"\n<s>\n".to_vec(), b"\n</s>\n".to_vec()];
        pieces.extend((0..=255u8).map(|b| super::super::spm::byte_piece(b).into_bytes()));
        let mut scores = vec![0.0; pieces.len()];
        for (i, p) in [
            " h", "he", " he", "ll", "llo", " hello", "o", "l", "h", "e", " ", "é",
        ]
        .iter()
        .enumerate()
        {
            pieces.push(p.as_bytes().to_vec());
            scores.push(-(i as f32));
        }
        Llama2cTokenizer::from_pieces(pieces, scores).unwrap()
    }

    #[test]
    fn encode_merges_and_falls_back_to_bytes() {
        let t = tiny();
        let hello = t.token_to_id(" hello").unwrap();
        assert_eq!(t.encode("hello", true).unwrap(), vec![1, hello]);
        assert_eq!(t.encode("", true).unwrap(), vec![1]);
        assert!(t.encode("", false).unwrap().is_empty());
        // 'z' is not a piece: its byte 0x7a has id 0x7a + 3.
        let ids = t.encode("z", false).unwrap();
        assert_eq!(ids, vec![t.token_to_id(" ").unwrap(), 0x7a + 3]);
    }

    #[test]
    fn decode_strips_space_after_bos_only() {
        let t = tiny();
        let hello = t.token_to_id(" hello").unwrap();
        assert_eq!(t.decode(&[1, hello, hello]).unwrap(), "hello hello");
        assert_eq!(t.decode(&[hello]).unwrap(), " hello");
        assert_eq!(t.decode(&[1, hello, 2, 1, hello]).unwrap(), "hellohello");
        assert!(t.decode(&[9999]).is_err());
    }

    #[test]
    fn round_trip_with_bytes() {
        let t = tiny();
        for s in ["hello wörld\n€ 🦀", "  two  spaces ", "é"] {
            let ids = t.encode(s, true).unwrap();
            assert_eq!(t.decode(&ids).unwrap(), s);
        }
    }

    #[test]
    fn rejects_garbage() {
        assert!(Llama2cTokenizer::from_bytes(b"").is_err());
        assert!(Llama2cTokenizer::from_bytes(b"{\"version\": 1}").is_err());
        let mut bytes = 4i32.to_le_bytes().to_vec();
        bytes.extend_from_slice(&0f32.to_le_bytes());
        bytes.extend_from_slice(&9i32.to_le_bytes()); // longer than max_token_length
        bytes.extend_from_slice(b"123456789");
        assert!(Llama2cTokenizer::from_bytes(&bytes).is_err());
    }
}
