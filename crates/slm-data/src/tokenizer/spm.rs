//! SentencePiece-style BPE, shared by the llama2.c and GGUF "llama" tokenizers.
//!
//! Owns two things both vocabularies agree on:
//! - the score-greedy merge: repeatedly join the adjacent pair whose concatenation is a
//!   piece with the highest score, the leftmost pair on ties, until no pair is a piece.
//!   llama2.c `run.c` does this with an O(n²) rescan per merge; SentencePiece and llama.cpp
//!   (`llm_tokenizer_spm`) with a priority queue. Both pick the same pair at every step, so
//!   the queue version here gives their output in O(n log n).
//! - byte pieces `<0xHH>`, the fallback for characters that are not pieces.
//!
//! Written here rather than taken from the `tokenizers` crate because its BPE merges by rank
//! of a merge list, not by piece score, and so does not reproduce these tokenizers exactly.

use std::cmp::Ordering;
use std::collections::BinaryHeap;

/// llama2.c only takes a merge whose score beats its initial best of -1e10.
const MIN_SCORE: f32 = -1e10;

/// One unit of text during merging: its bytes and, when known, its id.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Symbol {
    pub text: Vec<u8>,
    pub id: Option<u32>,
}

/// A possible merge of `left` with its right neighbour `right`, valid while the two still
/// have `len` bytes together.
struct Candidate {
    score: f32,
    left: usize,
    right: usize,
    len: usize,
    id: u32,
}

impl Ord for Candidate {
    /// Max-heap order: higher score first, then the leftmost pair.
    fn cmp(&self, other: &Self) -> Ordering {
        self.score
            .total_cmp(&other.score)
            .then_with(|| other.left.cmp(&self.left))
            .then_with(|| other.len.cmp(&self.len))
    }
}

impl PartialOrd for Candidate {
    fn partial_cmp(&self, other: &Self) -> Option<Ordering> {
        Some(self.cmp(other))
    }
}

impl PartialEq for Candidate {
    fn eq(&self, other: &Self) -> bool {
        self.cmp(other) == Ordering::Equal
    }
}

impl Eq for Candidate {}

/// A symbol in the doubly linked list being merged.
struct Node {
    sym: Symbol,
    prev: Option<usize>,
    next: Option<usize>,
    alive: bool,
}

/// Merges adjacent symbols by score until no adjacent pair concatenates to a piece.
/// `lookup(bytes)` gives `(id, score)` of a mergeable piece.
pub(crate) fn merge_by_score<F>(symbols: Vec<Symbol>, lookup: F) -> Vec<Symbol>
where
    F: Fn(&[u8]) -> Option<(u32, f32)>,
{
    let n = symbols.len();
    let mut nodes: Vec<Node> = symbols
        .into_iter()
        .enumerate()
        .map(|(i, sym)| Node {
            sym,
            prev: i.checked_sub(1),
            next: if i + 1 < n { Some(i + 1) } else { None },
            alive: true,
        })
        .collect();
    let mut heap = BinaryHeap::new();
    let mut buf = Vec::new();

    let try_add = |nodes: &[Node],
                   heap: &mut BinaryHeap<Candidate>,
                   buf: &mut Vec<u8>,
                   l: usize,
                   r: usize| {
        buf.clear();
        buf.extend_from_slice(&nodes[l].sym.text);
        buf.extend_from_slice(&nodes[r].sym.text);
        if let Some((id, score)) = lookup(buf) {
            // `>` also rejects NaN, as llama2.c's comparison does.
            if score > MIN_SCORE {
                heap.push(Candidate {
                    score,
                    left: l,
                    right: r,
                    len: buf.len(),
                    id,
                });
            }
        }
    };

    for i in 1..n {
        try_add(&nodes, &mut heap, &mut buf, i - 1, i);
    }

    while let Some(c) = heap.pop() {
        let (l, r) = (c.left, c.right);
        let valid = nodes[l].alive
            && nodes[r].alive
            && nodes[l].next == Some(r)
            && nodes[l].sym.text.len() + nodes[r].sym.text.len() == c.len;
        if !valid {
            continue;
        }
        let right_text = std::mem::take(&mut nodes[r].sym.text);
        nodes[l].sym.text.extend_from_slice(&right_text);
        nodes[l].sym.id = Some(c.id);
        nodes[r].alive = false;
        let after = nodes[r].next;
        nodes[l].next = after;
        if let Some(a) = after {
            nodes[a].prev = Some(l);
        }
        if let Some(p) = nodes[l].prev {
            try_add(&nodes, &mut heap, &mut buf, p, l);
        }
        if let Some(a) = after {
            try_add(&nodes, &mut heap, &mut buf, l, a);
        }
    }

    nodes
        .into_iter()
        .filter(|node| node.alive)
        .map(|node| node.sym)
        .collect()
}

/// The byte of a piece `<0xHH>` (hex digits in either case), as llama2.c's
/// `sscanf(piece, "<0x%02hhX>")` and SentencePiece's byte pieces.
pub(crate) fn parse_byte_piece(piece: &[u8]) -> Option<u8> {
    if piece.len() != 6 || !piece.starts_with(b"<0x") || piece[5] != b'>' {
        return None;
    }
    let hex = std::str::from_utf8(&piece[3..5]).ok()?;
    u8::from_str_radix(hex, 16).ok()
}

/// The piece `<0xHH>` of a byte (upper-case hex, as SentencePiece writes it).
pub(crate) fn byte_piece(byte: u8) -> String {
    format!("<0x{byte:02X}>")
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::HashMap;

    fn syms(s: &str) -> Vec<Symbol> {
        s.chars()
            .map(|c| Symbol {
                text: c.to_string().into_bytes(),
                id: None,
            })
            .collect()
    }

    /// The O(n²) rescan of llama2.c `run.c`, as the reference for the queue version.
    fn naive(mut symbols: Vec<Symbol>, vocab: &HashMap<Vec<u8>, (u32, f32)>) -> Vec<Symbol> {
        loop {
            let mut best: Option<(f32, usize, u32)> = None;
            for i in 0..symbols.len().saturating_sub(1) {
                let mut cat = symbols[i].text.clone();
                cat.extend_from_slice(&symbols[i + 1].text);
                if let Some(&(id, score)) = vocab.get(&cat) {
                    if score > best.map_or(MIN_SCORE, |b| b.0) {
                        best = Some((score, i, id));
                    }
                }
            }
            let Some((_, i, id)) = best else {
                return symbols;
            };
            let right = symbols.remove(i + 1);
            symbols[i].text.extend_from_slice(&right.text);
            symbols[i].id = Some(id);
        }
    }

    #[test]
    fn byte_pieces_round_trip() {
        for b in 0..=255u8 {
            assert_eq!(parse_byte_piece(byte_piece(b).as_bytes()), Some(b));
        }
        assert_eq!(parse_byte_piece(b"<0x0a>"), Some(10));
        assert_eq!(parse_byte_piece(b"<0x0G>"), None);
        assert_eq!(parse_byte_piece(b"<0x0A"), None);
        assert_eq!(parse_byte_piece(b"a"), None);
    }

    #[test]
    fn highest_score_then_leftmost() {
        // "ab" and "bc" compete in "abc": "bc" wins on score.
        let vocab: HashMap<Vec<u8>, (u32, f32)> =
            [(b"ab".to_vec(), (10, -2.0)), (b"bc".to_vec(), (11, -1.0))]
                .into_iter()
                .collect();
        let look = |t: &[u8]| vocab.get(t).copied();
        let out = merge_by_score(syms("abc"), look);
        assert_eq!(
            out.iter().map(|s| s.text.clone()).collect::<Vec<_>>(),
            [b"a".to_vec(), b"bc".to_vec()]
        );
        // Ties go to the leftmost pair: "aaa" -> "aa" + "a".
        let vocab: HashMap<Vec<u8>, (u32, f32)> =
            [(b"aa".to_vec(), (5, 0.0))].into_iter().collect();
        let out = merge_by_score(syms("aaa"), |t| vocab.get(t).copied());
        assert_eq!(out[0].text, b"aa");
        assert_eq!(out[1].text, b"a");
        assert_eq!(out[0].id, Some(5));
    }

    #[test]
    fn queue_matches_naive_rescan() {
        // A small vocabulary over {a, b, c} with every piece up to length 4 and pseudo-random
        // scores, some tied, checked on many strings.
        let mut vocab = HashMap::new();
        let mut state = 12345u64;
        let mut next = || {
            state = state
                .wrapping_mul(6364136223846793005)
                .wrapping_add(1442695040888963407);
            (state >> 33) as u32
        };
        let alphabet = [b'a', b'b', b'c'];
        let mut pieces: Vec<Vec<u8>> = vec![Vec::new()];
        for _ in 0..4 {
            let mut longer = Vec::new();
            for p in &pieces {
                for &c in &alphabet {
                    let mut q = p.clone();
                    q.push(c);
                    longer.push(q);
                }
            }
            for (i, p) in longer.iter().enumerate() {
                if p.len() >= 2 && next() % 3 != 0 {
                    vocab.insert(p.clone(), (i as u32, -((next() % 7) as f32)));
                }
            }
            pieces = longer;
        }
        for _ in 0..300 {
            let len = (next() % 24) as usize;
            let s: String = (0..len)
                .map(|_| alphabet[(next() % 3) as usize] as char)
                .collect();
            let fast = merge_by_score(syms(&s), |t| vocab.get(t).copied());
            let slow = naive(syms(&s), &vocab);
            assert_eq!(fast, slow, "input {s:?}");
        }
    }
}
