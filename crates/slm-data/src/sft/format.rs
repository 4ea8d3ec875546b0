//! Supervised fine-tuning files: the five row formats users bring, read into one normalised
//! [`Example`].
//!
//! A file is JSONL (one JSON object per line, blank lines skipped) or a JSON array of objects
//! (its first non-space character is `[`). Its format is detected from its first row; every
//! other row must be of the same format. A row that fits no format, fits another format than
//! the file's, or has a key its format does not know is refused with where it is (`path:line`
//! for JSONL, `path: element N` for an array, both 1-based) and what is wrong. `id` is allowed
//! in every format and ignored.
//!
//! | format | keys | becomes |
//! |---|---|---|
//! | messages | `messages: [{role, content}]`, roles `system`/`user`/`assistant` | [`Example::Chat`] |
//! | prompt/completion | `prompt`, `completion`: two strings (TRL's standard form: plain text, no chat template) | [`Example::Completion`] |
//! | | ... or two arrays of messages (TRL's conversational form) | [`Example::ChatCompletion`] |
//! | Alpaca | `instruction`, `output`, optional `input` (may be `""`) and `system` | [`Example::Chat`]: [system], user = instruction (+ `"\n\n"` + input), assistant = output |
//! | ShareGPT | `conversations: [{from, value}]` (`human`/`user`, `gpt`/`assistant`, `system`), optional `system` | [`Example::Chat`] |
//! | text | `text` | [`Example::Text`] |
//!
//! A conversation needs at least one assistant turn and no assistant turn may be empty (it
//! would train the model to answer nothing).

use std::fmt;
use std::path::{Path, PathBuf};

use serde_json::{Map, Value};
use slm_core::error::IoContext;
use slm_core::{Error, Result};

use crate::chat::Message;

/// One training example, normalised from any [`Format`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Example {
    /// A conversation rendered with the chat template; the loss (by default) is on every
    /// assistant turn.
    Chat(Vec<Message>),
    /// TRL's conversational prompt-completion: rendered as the conversation `prompt ++
    /// completion`; the loss (by default) is on the assistant turns of `completion` only.
    ChatCompletion {
        prompt: Vec<Message>,
        completion: Vec<Message>,
    },
    /// Plain text, no template: `prompt` then `completion`; the loss (by default) is on the
    /// completion only.
    Completion { prompt: String, completion: String },
    /// Plain text, no template; the loss is on every token.
    Text(String),
}

/// The format of a file's rows (detected from its first row).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Format {
    Messages,
    PromptCompletion,
    Alpaca,
    ShareGpt,
    Text,
}

impl fmt::Display for Format {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Format::Messages => "messages",
            Format::PromptCompletion => "prompt/completion",
            Format::Alpaca => "Alpaca",
            Format::ShareGpt => "ShareGPT",
            Format::Text => "text",
        })
    }
}

/// What each format is recognised by, in the order tried.
const FORMATS: [(Format, &[&str]); 5] = [
    (Format::Messages, &["messages"]),
    (Format::PromptCompletion, &["prompt", "completion"]),
    (Format::Alpaca, &["instruction", "output"]),
    (Format::ShareGpt, &["conversations"]),
    (Format::Text, &["text"]),
];

/// The formats a user can write, for "fits no format" errors.
const EXPECTED: &str = "expected one of: {\"messages\"} | {\"prompt\", \"completion\"} | \
     Alpaca {\"instruction\", \"output\", \"input\"?, \"system\"?} | ShareGPT {\"conversations\", \
     \"system\"?} | {\"text\"} (each may also have \"id\")";

impl Format {
    /// Every key a row of this format may have.
    fn keys(self) -> &'static [&'static str] {
        match self {
            Format::Messages => &["messages", "id"],
            Format::PromptCompletion => &["prompt", "completion", "id"],
            Format::Alpaca => &["instruction", "input", "output", "system", "id"],
            Format::ShareGpt => &["conversations", "system", "id"],
            Format::Text => &["text", "id"],
        }
    }

    /// The format whose required keys `row` has (the first in [`FORMATS`]), if any.
    fn detect(row: &Map<String, Value>) -> Option<Format> {
        FORMATS
            .iter()
            .find(|(_, required)| required.iter().all(|k| row.contains_key(*k)))
            .map(|(f, _)| *f)
    }
}

/// Where a row is: a JSONL line or a JSON array element (1-based).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Location {
    Line(usize),
    Element(usize),
}

impl Location {
    /// The error for this row of `path`: `path:N: msg` or `path: element N: msg`.
    pub(crate) fn error(self, path: &Path, msg: impl fmt::Display) -> Error {
        match self {
            Location::Line(n) => Error::format(
                PathBuf::from(format!("{}:{n}", path.display())),
                msg.to_string(),
            ),
            Location::Element(n) => Error::format(path, format!("element {n}: {msg}")),
        }
    }
}

/// A file's examples with where each came from (for errors found later, when tokenising).
#[derive(Debug, Clone)]
pub struct SourceFile {
    pub path: PathBuf,
    pub format: Format,
    pub examples: Vec<Example>,
    /// `locations[i]` is where `examples[i]` is in the file.
    pub locations: Vec<Location>,
}

/// Reads a fine-tuning file: its format and its examples in file order.
pub fn read_examples(path: &Path) -> Result<(Format, Vec<Example>)> {
    let f = read_source(path)?;
    Ok((f.format, f.examples))
}

/// Reads a fine-tuning file keeping each example's location ([`read_examples`] without it).
pub fn read_source(path: &Path) -> Result<SourceFile> {
    let text = std::fs::read_to_string(path).with_path(path)?;
    let text = text.strip_prefix('\u{feff}').unwrap_or(&text);
    let rows: Vec<(Location, Value)> = if text.trim_start().starts_with('[') {
        let values: Vec<Value> = serde_json::from_str(text)
            .map_err(|e| Error::format(path, format!("not a JSON array of objects: {e}")))?;
        values
            .into_iter()
            .enumerate()
            .map(|(i, v)| (Location::Element(i + 1), v))
            .collect()
    } else {
        let mut rows = Vec::new();
        for (i, line) in text.lines().enumerate() {
            if line.trim().is_empty() {
                continue;
            }
            let loc = Location::Line(i + 1);
            let v: Value = serde_json::from_str(line)
                .map_err(|e| loc.error(path, format!("not a JSON object: {e}")))?;
            rows.push((loc, v));
        }
        rows
    };
    if rows.is_empty() {
        return Err(Error::format(
            path,
            "no rows (expected JSONL, one JSON object a line, or a JSON array of objects)",
        ));
    }
    let mut format = None;
    let mut examples = Vec::with_capacity(rows.len());
    let mut locations = Vec::with_capacity(rows.len());
    for (loc, value) in rows {
        let Value::Object(row) = value else {
            return Err(loc.error(path, format!("not a JSON object but {}", kind(&value))));
        };
        let found = Format::detect(&row);
        let fmt = match (format, found) {
            (_, None) => {
                return Err(loc.error(
                    path,
                    format!(
                        "fits no known format: keys found {}; {EXPECTED}",
                        key_list(&row)
                    ),
                ))
            }
            (None, Some(f)) => {
                format = Some(f);
                f
            }
            (Some(file), Some(f)) if f != file => {
                return Err(loc.error(
                    path,
                    format!(
                        "a {f} row (keys {}) in a file of {file} rows (the format of its first \
                         row); every row of a file must have the same format",
                        key_list(&row)
                    ),
                ))
            }
            (Some(_), Some(f)) => f,
        };
        let ex = parse_row(fmt, &row).map_err(|msg| loc.error(path, msg))?;
        examples.push(ex);
        locations.push(loc);
    }
    Ok(SourceFile {
        path: path.to_path_buf(),
        format: format.unwrap_or(Format::Text),
        examples,
        locations,
    })
}

/// `["a", "b"]` for a row's keys, as they appear.
fn key_list(row: &Map<String, Value>) -> String {
    let keys: Vec<String> = row.keys().map(|k| format!("{k:?}")).collect();
    format!("[{}]", keys.join(", "))
}

use slm_core::json_kind as kind;

type RowResult<T> = std::result::Result<T, String>;

/// A row of a known format to an [`Example`]; the error is the message for its location.
fn parse_row(format: Format, row: &Map<String, Value>) -> RowResult<Example> {
    let allowed = format.keys();
    let unknown: Vec<String> = row
        .keys()
        .filter(|k| !allowed.contains(&k.as_str()))
        .map(|k| format!("{k:?}"))
        .collect();
    if !unknown.is_empty() {
        let allowed: Vec<String> = allowed.iter().map(|k| format!("{k:?}")).collect();
        return Err(format!(
            "unknown key{} {} for the {format} format (its keys: {})",
            if unknown.len() > 1 { "s" } else { "" },
            unknown.join(", "),
            allowed.join(", ")
        ));
    }
    match format {
        Format::Messages => {
            let messages = messages(row, "messages")?;
            check_conversation(&messages, "messages")?;
            Ok(Example::Chat(messages))
        }
        Format::PromptCompletion => match (&row["prompt"], &row["completion"]) {
            (Value::String(p), Value::String(c)) => {
                if c.is_empty() {
                    return Err("\"completion\" is empty".into());
                }
                Ok(Example::Completion {
                    prompt: p.clone(),
                    completion: c.clone(),
                })
            }
            (Value::Array(_), Value::Array(_)) => {
                let prompt = messages(row, "prompt")?;
                let completion = messages(row, "completion")?;
                check_conversation(&completion, "completion")?;
                check_roles_nonempty_assistants(&prompt, "prompt")?;
                Ok(Example::ChatCompletion { prompt, completion })
            }
            (p, c) => Err(format!(
                "\"prompt\" and \"completion\" must both be strings (plain text) or both arrays \
                 of messages (conversational); found {} and {}",
                kind(p),
                kind(c)
            )),
        },
        Format::Alpaca => {
            let instruction = string(row, "instruction")?;
            let output = string(row, "output")?;
            let input = optional_string(row, "input")?.unwrap_or_default();
            let system = optional_string(row, "system")?.unwrap_or_default();
            if output.is_empty() {
                return Err("\"output\" (the assistant's answer) is empty".into());
            }
            let user = if input.is_empty() {
                instruction
            } else {
                format!("{instruction}\n\n{input}")
            };
            let mut m = Vec::with_capacity(3);
            if !system.is_empty() {
                m.push(Message::system(system));
            }
            m.push(Message::user(user));
            m.push(Message::assistant(output));
            Ok(Example::Chat(m))
        }
        Format::ShareGpt => {
            let Value::Array(turns) = &row["conversations"] else {
                return Err(format!(
                    "\"conversations\" is {}, not an array of {{\"from\", \"value\"}}",
                    kind(&row["conversations"])
                ));
            };
            let mut m = Vec::with_capacity(turns.len() + 1);
            if let Some(s) = optional_string(row, "system")? {
                if !s.is_empty() {
                    m.push(Message::system(s));
                }
            }
            for (i, t) in turns.iter().enumerate() {
                let what = format!("conversations[{i}]");
                let Value::Object(t) = t else {
                    return Err(format!("{what} is {}, not an object", kind(t)));
                };
                if let Some(k) = t.keys().find(|k| *k != "from" && *k != "value") {
                    return Err(format!(
                        "{what} has the unknown key {k:?} (a turn has \"from\" and \"value\")"
                    ));
                }
                let from = string(t, "from").map_err(|e| format!("{what}: {e}"))?;
                let value = string(t, "value").map_err(|e| format!("{what}: {e}"))?;
                let role = match from.as_str() {
                    "human" | "user" => "user",
                    "gpt" | "assistant" => "assistant",
                    "system" => "system",
                    other => {
                        return Err(format!(
                            "{what}: \"from\" is {other:?}; expected \"human\", \"user\", \"gpt\", \
                             \"assistant\" or \"system\""
                        ))
                    }
                };
                m.push(Message::new(role, value));
            }
            check_conversation(&m, "conversations")?;
            Ok(Example::Chat(m))
        }
        Format::Text => {
            let text = string(row, "text")?;
            if text.is_empty() {
                return Err("\"text\" is empty".into());
            }
            Ok(Example::Text(text))
        }
    }
}

fn string(row: &Map<String, Value>, key: &str) -> RowResult<String> {
    match row.get(key) {
        Some(Value::String(s)) => Ok(s.clone()),
        Some(v) => Err(format!("{key:?} is {}, not a string", kind(v))),
        None => Err(format!("{key:?} is missing")),
    }
}

fn optional_string(row: &Map<String, Value>, key: &str) -> RowResult<Option<String>> {
    match row.get(key) {
        None | Some(Value::Null) => Ok(None),
        Some(_) => string(row, key).map(Some),
    }
}

/// `row[key]`: an array of `{"role", "content"}` messages with known roles.
fn messages(row: &Map<String, Value>, key: &str) -> RowResult<Vec<Message>> {
    let Value::Array(items) = &row[key] else {
        return Err(format!(
            "{key:?} is {}, not an array of {{\"role\", \"content\"}} messages",
            kind(&row[key])
        ));
    };
    let mut out = Vec::with_capacity(items.len());
    for (i, item) in items.iter().enumerate() {
        let what = format!("{key}[{i}]");
        let Value::Object(m) = item else {
            return Err(format!("{what} is {}, not an object", kind(item)));
        };
        if let Some(k) = m.keys().find(|k| *k != "role" && *k != "content") {
            return Err(format!(
                "{what} has the unknown key {k:?} (a message has \"role\" and \"content\")"
            ));
        }
        let role = string(m, "role").map_err(|e| format!("{what}: {e}"))?;
        let content = string(m, "content").map_err(|e| format!("{what}: {e}"))?;
        out.push(Message::new(role, content));
    }
    Ok(out)
}

/// Known roles and no empty assistant turn.
fn check_roles_nonempty_assistants(m: &[Message], key: &str) -> RowResult<()> {
    for (i, msg) in m.iter().enumerate() {
        match msg.role.as_str() {
            "system" | "user" => {}
            "assistant" if msg.content.is_empty() => {
                return Err(format!("{key}[{i}] is an empty assistant turn"));
            }
            "assistant" => {}
            other => {
                return Err(format!(
                "{key}[{i}] has the role {other:?}; expected \"system\", \"user\" or \"assistant\""
            ))
            }
        }
    }
    Ok(())
}

/// [`check_roles_nonempty_assistants`] and at least one assistant turn.
fn check_conversation(m: &[Message], key: &str) -> RowResult<()> {
    check_roles_nonempty_assistants(m, key)?;
    if !m.iter().any(|msg| msg.role == "assistant") {
        return Err(format!(
            "{key:?} has no assistant turn (nothing to train on)"
        ));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn read(name: &str, text: &str) -> (tempfile::TempDir, Result<(Format, Vec<Example>)>) {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join(name);
        std::fs::write(&p, text).unwrap();
        let r = read_examples(&p);
        (dir, r)
    }

    fn ok(name: &str, text: &str) -> (Format, Vec<Example>) {
        read(name, text).1.unwrap()
    }

    fn err(name: &str, text: &str) -> String {
        read(name, text).1.unwrap_err().to_string()
    }

    #[test]
    fn every_format_from_jsonl() {
        let (f, ex) = ok(
            "m.jsonl",
            "{\"id\": 7, \"messages\": [{\"role\": \"system\", \"content\": \"S\"}, {\"role\": \"user\", \"content\": \"U\"}, {\"role\": \"assistant\", \"content\": \"A\"}]}\n\n",
        );
        assert_eq!(f, Format::Messages);
        assert_eq!(
            ex,
            vec![Example::Chat(vec![
                Message::system("S"),
                Message::user("U"),
                Message::assistant("A")
            ])]
        );

        let (f, ex) = ok(
            "p.jsonl",
            "{\"prompt\": \"2+2=\", \"completion\": \"4\"}\n{\"prompt\": [{\"role\": \"user\", \"content\": \"Q\"}], \"completion\": [{\"role\": \"assistant\", \"content\": \"A\"}]}\n",
        );
        assert_eq!(f, Format::PromptCompletion);
        assert_eq!(
            ex,
            vec![
                Example::Completion {
                    prompt: "2+2=".into(),
                    completion: "4".into()
                },
                Example::ChatCompletion {
                    prompt: vec![Message::user("Q")],
                    completion: vec![Message::assistant("A")]
                }
            ]
        );

        let (f, ex) = ok(
            "a.jsonl",
            "{\"instruction\": \"Do\", \"input\": \"\", \"output\": \"Done\"}\n{\"instruction\": \"Sum\", \"input\": \"1 2\", \"output\": \"3\", \"system\": \"Be exact.\"}\n",
        );
        assert_eq!(f, Format::Alpaca);
        assert_eq!(
            ex,
            vec![
                Example::Chat(vec![Message::user("Do"), Message::assistant("Done")]),
                Example::Chat(vec![
                    Message::system("Be exact."),
                    Message::user("Sum\n\n1 2"),
                    Message::assistant("3")
                ]),
            ]
        );

        let (f, ex) = ok(
            "s.jsonl",
            "{\"system\": \"Sys\", \"conversations\": [{\"from\": \"human\", \"value\": \"H\"}, {\"from\": \"gpt\", \"value\": \"G\"}, {\"from\": \"user\", \"value\": \"H2\"}, {\"from\": \"assistant\", \"value\": \"G2\"}]}\n",
        );
        assert_eq!(f, Format::ShareGpt);
        assert_eq!(
            ex,
            vec![Example::Chat(vec![
                Message::system("Sys"),
                Message::user("H"),
                Message::assistant("G"),
                Message::user("H2"),
                Message::assistant("G2"),
            ])]
        );

        let (f, ex) = ok(
            "t.jsonl",
            "{\"text\": \"hello\"}\r\n{\"text\": \"x\", \"id\": \"a\"}",
        );
        assert_eq!(f, Format::Text);
        assert_eq!(
            ex,
            vec![Example::Text("hello".into()), Example::Text("x".into())]
        );
    }

    #[test]
    fn json_arrays_and_display() {
        let (f, ex) = ok("a.json", "  [{\"text\": \"a\"}, {\"text\": \"b\"}]");
        assert_eq!(f, Format::Text);
        assert_eq!(ex.len(), 2);
        let names: Vec<String> = [
            Format::Messages,
            Format::PromptCompletion,
            Format::Alpaca,
            Format::ShareGpt,
            Format::Text,
        ]
        .iter()
        .map(|f| f.to_string())
        .collect();
        assert_eq!(
            names,
            [
                "messages",
                "prompt/completion",
                "Alpaca",
                "ShareGPT",
                "text"
            ]
        );
    }

    #[test]
    fn refusals_name_the_row_and_the_problem() {
        let cases: &[(&str, &str, &[&str])] = &[
            // Fits no format: line and keys.
            ("x.jsonl", "\n{\"question\": \"q\", \"turns\": []}\n", &["x.jsonl:2:", "fits no known format", "\"question\"", "\"turns\""]),
            // A row of another format than the first row's.
            ("x.jsonl", "{\"text\": \"a\"}\n{\"prompt\": \"p\", \"completion\": \"c\"}\n", &["x.jsonl:2:", "prompt/completion row", "file of text rows"]),
            // Unknown key.
            ("x.jsonl", "{\"text\": \"a\", \"meta\": 1}\n", &["x.jsonl:1:", "unknown key \"meta\"", "text format"]),
            ("x.jsonl", "{\"messages\": [], \"tools\": []}", &["unknown key \"tools\""]),
            // Role names, assistant turns.
            ("x.jsonl", "{\"messages\": [{\"role\": \"bot\", \"content\": \"x\"}]}", &["messages[0]", "\"bot\""]),
            ("x.jsonl", "{\"messages\": [{\"role\": \"user\", \"content\": \"x\"}]}", &["no assistant turn"]),
            ("x.jsonl", "{\"messages\": [{\"role\": \"user\", \"content\": \"x\"}, {\"role\": \"assistant\", \"content\": \"\"}]}", &["x.jsonl:1:", "messages[1] is an empty assistant turn"]),
            ("x.jsonl", "{\"messages\": [{\"role\": \"user\", \"content\": 3}]}", &["messages[0]", "\"content\" is a number"]),
            ("x.jsonl", "{\"messages\": [{\"role\": \"user\", \"content\": \"a\", \"name\": \"n\"}]}", &["unknown key \"name\""]),
            // Prompt/completion shapes.
            ("x.jsonl", "{\"prompt\": \"p\", \"completion\": [{\"role\": \"assistant\", \"content\": \"a\"}]}", &["must both be strings", "a string and an array"]),
            ("x.jsonl", "{\"prompt\": \"p\", \"completion\": \"\"}", &["\"completion\" is empty"]),
            // Alpaca and ShareGPT.
            ("x.jsonl", "{\"instruction\": \"i\", \"output\": \"\"}", &["\"output\"", "empty"]),
            ("x.jsonl", "{\"instruction\": \"i\", \"output\": \"o\", \"history\": []}", &["unknown key \"history\"", "Alpaca"]),
            ("x.jsonl", "{\"conversations\": [{\"from\": \"bot\", \"value\": \"v\"}]}", &["conversations[0]", "\"bot\""]),
            ("x.jsonl", "{\"conversations\": [{\"from\": \"human\", \"value\": \"v\"}]}", &["no assistant turn"]),
            // Not JSON, not an object, empty.
            ("x.jsonl", "{\"text\": \"a\"}\n{\"text\": \n", &["x.jsonl:2:", "not a JSON object"]),
            ("x.jsonl", "3\n", &["x.jsonl:1:", "a number"]),
            ("x.jsonl", "\n\n", &["no rows"]),
            ("x.json", "[{\"text\": \"a\"}, {\"txt\": \"b\"}]", &["x.json: element 2:", "\"txt\""]),
            ("x.json", "[{\"text\": \"a\"},", &["x.json:", "not a JSON array"]),
            ("x.json", "[]", &["no rows"]),
        ];
        for (name, text, want) in cases {
            let e = err(name, text);
            for w in *want {
                assert!(e.contains(w), "{text}: {e} (wanted {w:?})");
            }
        }
    }
}
