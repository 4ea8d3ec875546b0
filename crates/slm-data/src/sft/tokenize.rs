//! One [`Example`] to token ids with its loss mask: which tokens the model is trained to
//! predict.
//!
//! `trained[i]` says whether predicting `ids[i]` from the tokens before it is in the loss;
//! `trained[0]` is always false (nothing comes before it). What is trained, by [`TrainOn`]:
//!
//! - conversations (rendered with the chat template, as inference renders them): with
//!   `Completion`, the assistant turns, each with the end-of-turn text the template writes
//!   after it (`<|im_end|>\n` for ChatML), so the model learns to stop; with `All`, every token.
//! - prompt/completion (plain text, no template): `encode(prompt) ++ encode(completion)` and
//!   EOS after the completion unless it already ends with EOS (TRL appends EOS to
//!   prompt-completion rows); with `Completion`, the completion and that EOS are trained.
//! - text: `encode(text) ++ [EOS]` (again unless already there), every token trained.
//!
//! Finding the assistant turns: for assistant message `i`, `P = render(messages[..i],
//! add_generation_prompt)` and `Q = render(messages[..=i])` are prefixes of the whole
//! conversation `F = render(messages)`; the turn is `F[len(P)..len(Q)]`. A template that does
//! not render conversations as growing prefixes (one that rewrites earlier turns) is refused
//! with `Completion` (`All` needs no spans).
//!
//! Tokenising `F` with the spans: the text between span boundaries is encoded piece by piece
//! and concatenated, so no token straddles a boundary. When that differs from encoding `F` in
//! one call (a SentencePiece tokenizer's dummy-prefix `▁` starts every call) and every
//! boundary falls between the tokens of the one-call encoding (`encode(F[..b])` is a prefix of
//! `encode(F)`), the one-call ids are used: they are what inference sees, since `slm chat`
//! encodes the whole rendered prompt. Either way the prompt of the first assistant turn is
//! exactly `encode(P)`.
//!
//! BOS: `add_bos` (the caller passes `Tokenizer::adds_bos()` unless told otherwise) puts the
//! tokenizer's BOS first, except when the text already starts with the BOS piece (templates
//! that render `{{ bos_token }}` themselves). SmolLM2 (ChatML) adds none: its GGUF says
//! `add_bos_token = false`.

use slm_core::{Error, Result};

use super::format::Example;
use crate::chat::{ChatTemplate, Message};
use crate::tokenizer::Tokenizer;

/// Which tokens are in the loss.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum TrainOn {
    /// The assistant turns of a conversation, the completion of a prompt/completion row, all
    /// of a text row.
    #[default]
    Completion,
    /// Every token (but the first, which nothing predicts).
    All,
}

/// Token ids and the loss mask of one example (`ids.len() == trained.len()`).
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct TokenizedExample {
    pub ids: Vec<u32>,
    /// `trained[i]`: predicting `ids[i]` from `ids[..i]` is in the loss; `trained[0]` is false.
    pub trained: Vec<bool>,
}

impl TokenizedExample {
    /// How many tokens are trained.
    pub fn trained_count(&self) -> usize {
        self.trained.iter().filter(|&&t| t).count()
    }
}

/// Tokenises `ex` with its loss mask (see the module documentation). Conversations need
/// `template`.
pub fn tokenize_example(
    ex: &Example,
    tok: &dyn Tokenizer,
    template: Option<&ChatTemplate>,
    train_on: TrainOn,
    add_bos: bool,
) -> Result<TokenizedExample> {
    let mut out = match ex {
        Example::Chat(messages) => chat(messages, 0, tok, template, train_on, add_bos)?,
        Example::ChatCompletion { prompt, completion } => {
            let all: Vec<Message> = prompt.iter().chain(completion).cloned().collect();
            chat(&all, prompt.len(), tok, template, train_on, add_bos)?
        }
        Example::Completion { prompt, completion } => {
            let mut ids: Vec<u32> = bos(tok, prompt, add_bos).into_iter().collect();
            ids.extend(tok.encode(prompt, false)?);
            let prompt_len = ids.len();
            ids.extend(tok.encode(completion, false)?);
            push_eos(tok, &mut ids);
            let from = match train_on {
                TrainOn::Completion => prompt_len,
                TrainOn::All => 1,
            };
            let trained = (0..ids.len()).map(|i| i >= from).collect();
            TokenizedExample { ids, trained }
        }
        Example::Text(text) => {
            let mut ids: Vec<u32> = bos(tok, text, add_bos).into_iter().collect();
            ids.extend(tok.encode(text, false)?);
            push_eos(tok, &mut ids);
            let trained = (0..ids.len()).map(|i| i >= 1).collect();
            TokenizedExample { ids, trained }
        }
    };
    if let Some(first) = out.trained.first_mut() {
        *first = false;
    }
    Ok(out)
}

/// The BOS id to put before `text`: when asked, the tokenizer has one, and `text` does not
/// already start with its piece.
fn bos(tok: &dyn Tokenizer, text: &str, add_bos: bool) -> Option<u32> {
    let id = tok.bos_id().filter(|_| add_bos)?;
    match tok.id_to_piece(id) {
        Some(p) if !p.is_empty() && text.starts_with(&p) => None,
        _ => Some(id),
    }
}

/// Appends EOS unless `ids` already ends with it (or the tokenizer has none).
fn push_eos(tok: &dyn Tokenizer, ids: &mut Vec<u32>) {
    if let Some(eos) = tok.eos_id() {
        if ids.last() != Some(&eos) {
            ids.push(eos);
        }
    }
}

/// A conversation; the assistant turns from message `first_trained` on are trained (with
/// [`TrainOn::Completion`]).
fn chat(
    messages: &[Message],
    first_trained: usize,
    tok: &dyn Tokenizer,
    template: Option<&ChatTemplate>,
    train_on: TrainOn,
    add_bos: bool,
) -> Result<TokenizedExample> {
    let t = template.ok_or_else(|| {
        Error::invalid(
            "conversation data needs a chat template and the model has none; pass \
             --chat-template FILE",
        )
    })?;
    let full = t.render(messages, false)?;
    let bos = bos(tok, &full, add_bos);
    let (mut ids, mut trained) = match train_on {
        TrainOn::All => {
            let ids = tok.encode(&full, false)?;
            let trained = vec![true; ids.len()];
            (ids, trained)
        }
        TrainOn::Completion => {
            let spans = assistant_spans(t, messages, first_trained, &full)?;
            encode_spans(tok, &full, &spans)?
        }
    };
    if let Some(b) = bos {
        ids.insert(0, b);
        trained.insert(0, false);
    }
    Ok(TokenizedExample { ids, trained })
}

/// Byte ranges of `full` (the rendered conversation) holding the assistant turns from message
/// `first` on, in order and disjoint.
fn assistant_spans(
    t: &ChatTemplate,
    messages: &[Message],
    first: usize,
    full: &str,
) -> Result<Vec<(usize, usize)>> {
    let mut spans: Vec<(usize, usize)> = Vec::new();
    for (i, m) in messages.iter().enumerate().skip(first) {
        if m.role != "assistant" {
            continue;
        }
        let p = t.render(&messages[..i], true)?;
        let q = t.render(&messages[..=i], false)?;
        let after_previous = spans.last().is_none_or(|&(_, end)| p.len() >= end);
        if !(full.starts_with(&q) && q.starts_with(&p) && after_previous) {
            return Err(Error::invalid(format!(
                "the chat template ({}) does not render conversations as growing prefixes \
                 (rendering the messages up to assistant turn {i}, with the generation prompt \
                 and with that turn, does not give prefixes of the whole conversation), so the \
                 assistant turns cannot be found for the loss; use --train-on all",
                t.origin()
            )));
        }
        spans.push((p.len(), q.len()));
    }
    Ok(spans)
}

/// Encodes `text` with `spans` trained: piece by piece, or in one call when that differs and
/// every span boundary falls between its tokens (see the module documentation).
fn encode_spans(
    tok: &dyn Tokenizer,
    text: &str,
    spans: &[(usize, usize)],
) -> Result<(Vec<u32>, Vec<bool>)> {
    // Pieces: (start, end, trained), covering `text`.
    let mut pieces = Vec::with_capacity(2 * spans.len() + 1);
    let mut at = 0;
    for &(s, e) in spans {
        pieces.push((at, s, false));
        pieces.push((s, e, true));
        at = e;
    }
    pieces.push((at, text.len(), false));
    let mut ids = Vec::new();
    let mut trained = Vec::new();
    // cuts[k]: the token count before piece k's end.
    let mut cuts = Vec::with_capacity(pieces.len());
    for &(s, e, tr) in &pieces {
        if s < e {
            let piece = tok.encode(&text[s..e], false)?;
            trained.extend(std::iter::repeat_n(tr, piece.len()));
            ids.extend(piece);
        }
        cuts.push(ids.len());
    }
    let whole = tok.encode(text, false)?;
    if whole == ids {
        return Ok((ids, trained));
    }
    // The one-call ids, if every boundary is a token boundary of them.
    let mut whole_trained = vec![false; whole.len()];
    let mut start = 0;
    for &(_, e, tr) in &pieces {
        let end = if e == text.len() {
            whole.len()
        } else {
            let prefix = tok.encode(&text[..e], false)?;
            if !whole.starts_with(&prefix) || prefix.len() < start {
                return Ok((ids, trained));
            }
            prefix.len()
        };
        whole_trained[start..end].fill(tr);
        start = end;
    }
    Ok((whole, whole_trained))
}

#[cfg(test)]
mod tests {
    use super::super::testutil::{ByteTok, CHATML};
    use super::*;

    fn chatml() -> ChatTemplate {
        ChatTemplate::new(CHATML, "chatml").unwrap()
    }

    /// The text of the trained tokens, run by run.
    fn trained_runs(tok: &ByteTok, t: &TokenizedExample) -> Vec<String> {
        let mut runs = Vec::new();
        let mut cur: Vec<u32> = Vec::new();
        for (&id, &tr) in t.ids.iter().zip(&t.trained) {
            if tr {
                cur.push(id);
            } else if !cur.is_empty() {
                runs.push(tok.decode(&cur).unwrap());
                cur.clear();
            }
        }
        if !cur.is_empty() {
            runs.push(tok.decode(&cur).unwrap());
        }
        runs
    }

    fn conversation() -> Vec<Message> {
        vec![
            Message::system("S"),
            Message::user("Hi"),
            Message::assistant("Hello!"),
            Message::user("Bye"),
            Message::assistant("See you."),
        ]
    }

    #[test]
    fn chat_trains_assistant_turns_with_their_end_of_turn() {
        let tok = ByteTok::default();
        let t = chatml();
        let m = conversation();
        let ex = Example::Chat(m.clone());
        let out = tokenize_example(&ex, &tok, Some(&t), TrainOn::Completion, false).unwrap();
        assert_eq!(out.ids.len(), out.trained.len());
        assert_eq!(tok.decode(&out.ids).unwrap(), t.render(&m, false).unwrap());
        assert_eq!(
            trained_runs(&tok, &out),
            ["Hello!<|im_end|>\n", "See you.<|im_end|>\n"]
        );
        // The prompt of the first answer is what inference encodes.
        let p = tok
            .encode(&t.render(&m[..2], true).unwrap(), false)
            .unwrap();
        assert_eq!(&out.ids[..p.len()], &p[..]);
        assert!(out.trained[..p.len()].iter().all(|&x| !x));
        assert!(out.trained[p.len()]);

        let all = tokenize_example(&ex, &tok, Some(&t), TrainOn::All, false).unwrap();
        assert_eq!(all.ids, out.ids);
        assert!(!all.trained[0]);
        assert!(all.trained[1..].iter().all(|&x| x));

        // Conversational prompt/completion: only the completion's assistant turns.
        let ex = Example::ChatCompletion {
            prompt: m[..3].to_vec(),
            completion: m[3..].to_vec(),
        };
        let cc = tokenize_example(&ex, &tok, Some(&t), TrainOn::Completion, false).unwrap();
        assert_eq!(cc.ids, out.ids);
        assert_eq!(trained_runs(&tok, &cc), ["See you.<|im_end|>\n"]);
    }

    #[test]
    fn chat_needs_a_template_that_renders_growing_prefixes() {
        let tok = ByteTok::default();
        let ex = Example::Chat(conversation());
        let e = tokenize_example(&ex, &tok, None, TrainOn::Completion, false)
            .unwrap_err()
            .to_string();
        assert!(e.contains("--chat-template"), "{e}");
        // Marks the last message: the prefixes change as the conversation grows.
        let t = ChatTemplate::new(
            "{% for m in messages %}{% if loop.last %}LAST {% endif %}{{ m.role }}: {{ m.content }}\n{% endfor %}",
            "odd.jinja",
        )
        .unwrap();
        let e = tokenize_example(&ex, &tok, Some(&t), TrainOn::Completion, false)
            .unwrap_err()
            .to_string();
        assert!(e.contains("growing prefixes"), "{e}");
        assert!(e.contains("--train-on all"), "{e}");
        assert!(e.contains("odd.jinja"), "{e}");
        // --train-on all needs no spans.
        let all = tokenize_example(&ex, &tok, Some(&t), TrainOn::All, false).unwrap();
        assert_eq!(all.trained_count(), all.ids.len() - 1);
    }

    #[test]
    fn bos_is_added_once() {
        let tok = ByteTok::default();
        let plain = ChatTemplate::new(CHATML, "t").unwrap();
        let ex = Example::Chat(conversation());
        let with = tokenize_example(&ex, &tok, Some(&plain), TrainOn::Completion, true).unwrap();
        let without =
            tokenize_example(&ex, &tok, Some(&plain), TrainOn::Completion, false).unwrap();
        assert_eq!(with.ids[0], ByteTok::BOS);
        assert_eq!(&with.ids[1..], &without.ids[..]);
        assert_eq!(&with.trained[1..], &without.trained[..]);
        // A template that renders the BOS token itself gets no second one.
        let own = ChatTemplate::new(format!("{{{{ bos_token }}}}{CHATML}"), "t")
            .unwrap()
            .with_special_tokens(Some("<s>".into()), None);
        let r = tokenize_example(&ex, &tok, Some(&own), TrainOn::Completion, true).unwrap();
        assert_eq!(r.ids[0], ByteTok::BOS);
        assert_ne!(r.ids[1], ByteTok::BOS);
        assert_eq!(&r.ids[1..], &without.ids[..]);
        assert_eq!(&r.trained[1..], &without.trained[..]);
    }

    #[test]
    fn completion_and_text_rows() {
        let tok = ByteTok::default();
        let ex = Example::Completion {
            prompt: "2+2=".into(),
            completion: "4".into(),
        };
        let out = tokenize_example(&ex, &tok, None, TrainOn::Completion, true).unwrap();
        let want: Vec<u32> = [ByteTok::BOS]
            .into_iter()
            .chain(tok.encode("2+2=4", false).unwrap())
            .chain([ByteTok::EOS])
            .collect();
        assert_eq!(out.ids, want);
        assert_eq!(out.trained, [false, false, false, false, false, true, true]);
        let all = tokenize_example(&ex, &tok, None, TrainOn::All, false).unwrap();
        assert_eq!(all.ids, &want[1..]);
        assert_eq!(all.trained, [false, true, true, true, true, true]);
        // A completion that ends with EOS gets no second one.
        let ex = Example::Completion {
            prompt: "a".into(),
            completion: "b</s>".into(),
        };
        let out = tokenize_example(&ex, &tok, None, TrainOn::Completion, false).unwrap();
        assert_eq!(out.ids.iter().filter(|&&i| i == ByteTok::EOS).count(), 1);
        assert_eq!(out.trained, [false, true, true]);
        // An empty prompt: the first completion token is not trained (nothing predicts it).
        let ex = Example::Completion {
            prompt: String::new(),
            completion: "xy".into(),
        };
        let out = tokenize_example(&ex, &tok, None, TrainOn::Completion, false).unwrap();
        assert_eq!(out.trained, [false, true, true]);

        let out = tokenize_example(
            &Example::Text("abc".into()),
            &tok,
            None,
            TrainOn::Completion,
            true,
        )
        .unwrap();
        assert_eq!(out.ids.len(), 5);
        assert_eq!(out.ids[4], ByteTok::EOS);
        assert_eq!(out.trained, [false, true, true, true, true]);
    }

    #[test]
    fn pieces_straddling_a_boundary_and_dummy_prefixes() {
        // A template that ends the prompt with "a" before an answer starting with "b": with
        // the `ab` merge, one call would make a token straddling the boundary.
        let t = ChatTemplate::new(
            "{% for m in messages %}{% if m.role == 'user' %}Q:{{ m.content }}a{% else %}{{ m.content }}<|im_end|>{% endif %}{% endfor %}{% if add_generation_prompt %}{% endif %}",
            "t",
        )
        .unwrap();
        let m = vec![Message::user("x"), Message::assistant("bc")];
        let ex = Example::Chat(m.clone());
        let tok = ByteTok {
            merge_ab: true,
            ..ByteTok::default()
        };
        // One call would merge the "a" of the prompt and the "b" of the answer: the pieces
        // are kept apart so that the answer's tokens are all trained and none of the prompt's.
        let out = tokenize_example(&ex, &tok, Some(&t), TrainOn::Completion, false).unwrap();
        assert_eq!(
            out.ids,
            tok.encode("Q:xa", false)
                .unwrap()
                .into_iter()
                .chain(tok.encode("bc<|im_end|>", false).unwrap())
                .collect::<Vec<_>>()
        );
        assert_eq!(trained_runs(&tok, &out), ["bc<|im_end|>"]);
        assert_ne!(out.ids, tok.encode("Q:xabc<|im_end|>", false).unwrap());

        // A dummy prefix starts every call: pieces would put one before the answer, which the
        // one-call encoding (what inference sees) does not have, and whose boundaries align.
        let tok = ByteTok {
            dummy_prefix: true,
            ..ByteTok::default()
        };
        let t = chatml();
        let m = conversation();
        let out = tokenize_example(
            &Example::Chat(m.clone()),
            &tok,
            Some(&t),
            TrainOn::Completion,
            false,
        )
        .unwrap();
        let full = t.render(&m, false).unwrap();
        assert_eq!(out.ids, tok.encode(&full, false).unwrap());
        assert_eq!(
            trained_runs(&tok, &out),
            ["Hello!<|im_end|>\n", "See you.<|im_end|>\n"]
        );
    }
}
