//! A user's multiple-choice task: a JSONL (or CSV/TSV with a header) file and a small TOML
//! that says how a document becomes a prompt and choices (`slm eval --task-file TASK.toml`).
//!
//! ```toml
//! name = "my_task"
//! data = "questions.jsonl"          # relative to this file
//! prompt = "Question: {question}\nAnswer:"   # {field} or {a.b} placeholders, {{ }} for braces
//! choices_field = "options"         # a field holding the list of choices, or
//! # choices = ["no", "yes"]         # the same choices for every document
//! answer = "label"                  # field: an index, the choice text, or a letter A, B, ...
//! num_fewshot = 0                   # default few-shot count (--num-fewshot overrides)
//! fewshot_data = "train.jsonl"      # optional; default: the data itself, the document excluded
//! target_delimiter = " "            # optional, the harness's default
//! fewshot_delimiter = "\n\n"        # optional
//! description = ""                  # optional text before the examples
//! acc_norm = true                   # optional, also report acc_norm
//! ```

use super::data::{read_docs, Doc};
use super::task::{Item, Sampler, Scoring, Subtask, Task};
use serde::Deserialize;
use serde_json::Value;
use slm_core::{Error, Result};
use std::path::Path;

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct TaskFile {
    name: String,
    data: String,
    prompt: String,
    #[serde(default)]
    choices: Option<Vec<String>>,
    #[serde(default)]
    choices_field: Option<String>,
    answer: String,
    #[serde(default)]
    num_fewshot: usize,
    #[serde(default)]
    fewshot_data: Option<String>,
    #[serde(default = "space")]
    target_delimiter: String,
    #[serde(default = "blank_line")]
    fewshot_delimiter: String,
    #[serde(default)]
    description: String,
    #[serde(default = "yes")]
    acc_norm: bool,
}

/// A document's choices.
type ChoicesOf = dyn Fn(&Doc) -> Result<Vec<String>> + Send + Sync;

fn space() -> String {
    " ".into()
}
fn blank_line() -> String {
    "\n\n".into()
}
fn yes() -> bool {
    true
}

/// A piece of a prompt template.
#[derive(Debug, Clone, PartialEq)]
enum Piece {
    Text(String),
    Field(String),
}

/// Splits `{field}` placeholders from text (`{{` and `}}` are literal braces).
fn parse_template(t: &str) -> std::result::Result<Vec<Piece>, String> {
    let mut out = Vec::new();
    let mut text = String::new();
    let mut chars = t.chars().peekable();
    while let Some(c) = chars.next() {
        match c {
            '{' if chars.peek() == Some(&'{') => {
                chars.next();
                text.push('{');
            }
            '}' if chars.peek() == Some(&'}') => {
                chars.next();
                text.push('}');
            }
            '{' => {
                let mut name = String::new();
                loop {
                    match chars.next() {
                        Some('}') => break,
                        Some(c) => name.push(c),
                        None => return Err(format!("`{{{name}` is never closed")),
                    }
                }
                let name = name.trim().to_string();
                if name.is_empty() {
                    return Err("an empty `{}` placeholder".into());
                }
                if !text.is_empty() {
                    out.push(Piece::Text(std::mem::take(&mut text)));
                }
                out.push(Piece::Field(name));
            }
            '}' => return Err("a `}` without its `{` (write `}}` for a brace)".into()),
            c => text.push(c),
        }
    }
    if !text.is_empty() {
        out.push(Piece::Text(text));
    }
    Ok(out)
}

fn render(pieces: &[Piece], doc: &Doc) -> Result<String> {
    let mut s = String::new();
    for p in pieces {
        match p {
            Piece::Text(t) => s += t,
            Piece::Field(f) => s += &doc.text(f)?,
        }
    }
    Ok(s)
}

/// Reads the task file `path` (its data paths relative to it). Malformed TOML, unknown or
/// missing keys and bad templates are errors naming the file (and TOML's line); a document
/// that lacks a field is an error naming the data file, line and field when it is read.
pub fn load_task_file(path: &Path) -> Result<Task> {
    let text = std::fs::read_to_string(path).map_err(|e| Error::io(path, e))?;
    let tf: TaskFile = toml::from_str(&text).map_err(|e| Error::format(path, e.to_string()))?;
    let bad = |msg: String| Error::format(path, msg);
    let pieces = parse_template(&tf.prompt).map_err(|m| bad(format!("`prompt`: {m}")))?;
    let choices_of: Box<ChoicesOf> = match (tf.choices.clone(), tf.choices_field.clone()) {
        (Some(c), None) if !c.is_empty() => Box::new(move |_| Ok(c.clone())),
        (None, Some(f)) => Box::new(move |d: &Doc| d.texts(&f)),
        (Some(_), Some(_)) => {
            return Err(bad("give `choices` or `choices_field`, not both".into()))
        }
        _ => {
            return Err(bad(
                "missing `choices` (a list) or `choices_field` (a field name)".into(),
            ))
        }
    };
    let base = path.parent().unwrap_or(Path::new("."));
    let docs = read_docs(&base.join(&tf.data))?;
    if docs.is_empty() {
        return Err(bad(format!("`data` {} holds no documents", tf.data)));
    }
    let pool = match &tf.fewshot_data {
        Some(p) => Some(read_docs(&base.join(p))?),
        None => None,
    };
    let answer = tf.answer.clone();
    let to_item = move |doc: &Doc| -> Result<Item> {
        let choices = choices_of(doc)?;
        if choices.len() < 2 {
            return Err(doc.error("fewer than two choices"));
        }
        let gold = gold_index(doc, &answer, &choices)?;
        Ok(Item::Choice {
            context: render(&pieces, doc)?,
            choices,
            gold,
        })
    };
    Ok(Task {
        name: tf.name.clone(),
        subtasks: vec![Subtask {
            name: tf.name.clone(),
            docs,
            pool,
            description: tf.description,
        }],
        to_item: Box::new(to_item),
        scoring: Scoring::MultipleChoice { norm: tf.acc_norm },
        sampler: Sampler::Random,
        default_fewshot: tf.num_fewshot,
        target_delimiter: tf.target_delimiter,
        fewshot_delimiter: tf.fewshot_delimiter,
        note: format!("task file {}", path.display()),
    })
}

/// The answer field as a choice index: a number, a choice's text, or a letter A, B, ...
fn gold_index(doc: &Doc, field: &str, choices: &[String]) -> Result<usize> {
    let v = doc.get(field)?;
    let idx = match v {
        Value::Number(n) => n.as_u64().map(|i| i as usize),
        Value::Bool(b) => Some(usize::from(*b)),
        Value::String(s) => choices
            .iter()
            .position(|c| c == s)
            .or_else(|| s.trim().parse::<usize>().ok())
            .or_else(|| {
                let b = s.trim().as_bytes();
                (b.len() == 1 && b[0].is_ascii_uppercase()).then(|| (b[0] - b'A') as usize)
            }),
        _ => None,
    };
    idx.filter(|&i| i < choices.len()).ok_or_else(|| {
        doc.error(format!(
            "answer field `{field}` = {v} is not a choice index, a choice or a letter for {} choices",
            choices.len()
        ))
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn write(dir: &Path, name: &str, text: &str) -> std::path::PathBuf {
        let p = dir.join(name);
        std::fs::write(&p, text).unwrap();
        p
    }

    #[test]
    fn a_task_file_builds_prompts_and_few_shot_examples() {
        let dir = tempfile::tempdir().unwrap();
        write(
            dir.path(),
            "q.jsonl",
            "{\"q\":\"Sky?\",\"opts\":[\"blue\",\"green\"],\"a\":0}\n{\"q\":\"Grass?\",\"opts\":[\"blue\",\"green\"],\"a\":\"green\"}\n{\"q\":\"Sun?\",\"opts\":[\"hot\",\"cold\"],\"a\":\"A\"}\n",
        );
        let t = write(
            dir.path(),
            "t.toml",
            "name = \"colours\"\ndata = \"q.jsonl\"\nprompt = \"Q: {q} {{x}}\\nA:\"\nchoices_field = \"opts\"\nanswer = \"a\"\nnum_fewshot = 1\n",
        );
        let task = load_task_file(&t).unwrap();
        assert_eq!(task.name, "colours");
        let p = task.prepare(0, None, None, 1234).unwrap();
        assert_eq!(
            p[1].item,
            Item::Choice {
                context: "Q: Grass? {x}\nA:".into(),
                choices: vec!["blue".into(), "green".into()],
                gold: 1
            }
        );
        let p = task.prepare(1, Some(1), None, 1234).unwrap();
        let Item::Choice { context, .. } = &p[0].item else {
            panic!()
        };
        assert!(context.ends_with("\n\nQ: Sky? {x}\nA:"), "{context}");
        assert!(
            !context.starts_with("Q: Sky?"),
            "the document itself is not its example"
        );
        // A held-out range: only documents 1..3, keeping their indices; `limit` within it.
        let p = task.prepare(0, None, Some(&(1..3)), 1234).unwrap();
        assert_eq!(p.iter().map(|d| d.doc).collect::<Vec<_>>(), [1, 2]);
        let p = task.prepare(0, Some(1), Some(&(1..3)), 1234).unwrap();
        assert_eq!(p.iter().map(|d| d.doc).collect::<Vec<_>>(), [1]);
        // The same documents solved as training pairs: context, delimiter + gold choice.
        let pairs = task.training_pairs(Some(&(1..3))).unwrap();
        assert_eq!(
            pairs,
            [
                ("Q: Grass? {x}\nA:".to_string(), " green".to_string()),
                ("Q: Sun? {x}\nA:".to_string(), " hot".to_string())
            ]
        );
        assert_eq!(task.training_pairs(None).unwrap().len(), 3);
        assert!(task.training_pairs(Some(&(5..9))).is_err());
    }

    #[test]
    fn bad_task_files_are_errors_that_say_where() {
        let dir = tempfile::tempdir().unwrap();
        write(
            dir.path(),
            "q.jsonl",
            "{\"q\":\"Sky?\",\"a\":0}\n{\"a\":1}\n",
        );
        let cases = [
            ("name = \"x\"\ndata = \"q.jsonl\"\nprompt = \"{q}\"\nchoices = [\"a\",\"b\"]\n", "answer"),
            ("name = \"x\"\ndata = \"q.jsonl\"\nprompt = \"{q\"\nchoices = [\"a\",\"b\"]\nanswer = \"a\"\n", "never closed"),
            ("name = \"x\"\ndata = \"q.jsonl\"\nprompt = \"{q}\"\nanswer = \"a\"\n", "choices"),
            ("name = \"x\"\ndata = \"q.jsonl\"\nprompt = \"{q}\"\nchoices = [\"a\",\"b\"]\nanswer = \"a\"\ncolour = 1\n", "colour"),
            ("name = \"x\"\ndata = \"q.jsonl\nprompt = 1\n", "line 2"),
            ("name = \"x\"\ndata = \"none.jsonl\"\nprompt = \"{q}\"\nchoices = [\"a\",\"b\"]\nanswer = \"a\"\n", "none.jsonl"),
        ];
        for (text, want) in cases {
            let t = write(dir.path(), "t.toml", text);
            let err = load_task_file(&t)
                .err()
                .map(|e| e.to_string())
                .unwrap_or_default();
            assert!(err.contains(want), "{text}: {err}");
        }
        // A document without the prompt's field: the data file, its line and the field.
        let t = write(
            dir.path(),
            "t.toml",
            "name = \"x\"\ndata = \"q.jsonl\"\nprompt = \"{q}\"\nchoices = [\"a\",\"b\"]\nanswer = \"a\"\n",
        );
        let task = load_task_file(&t).unwrap();
        let err = task.prepare(0, None, None, 1234).unwrap_err().to_string();
        assert!(
            err.contains("q.jsonl") && err.contains("line 2") && err.contains("`q`"),
            "{err}"
        );
    }
}
