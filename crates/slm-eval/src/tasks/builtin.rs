//! The built-in tasks: lm-evaluation-harness's definitions (lm-eval 0.4.9 task YAMLs and
//! `utils.py` files) over the files of `../shared/data/eval`, and which split stands in where
//! that data lacks the harness's (see docs/EVALUATION.md).

use super::data::{read_delimited, read_jsonl, read_table, Doc};
use super::task::{Item, Sampler, Scoring, Subtask, Task};
use serde_json::{Map, Value};
use slm_core::{Error, Result};
use std::path::Path;

/// Names `--tasks` accepts (`lambada_openai` is an alias of `lambada`).
pub const BUILTIN: &[&str] = &[
    "arc_easy",
    "arc_challenge",
    "boolq",
    "copa",
    "winogrande",
    "openbookqa",
    "lambada",
    "mmlu",
    "gsm8k",
];

/// The built-in task `name` reading its files under `data_dir` (the `eval/` directory).
/// `arc_easy:dev`, `arc_challenge:dev` and `openbookqa:dev` score the dev split instead of
/// test (examples still drawn from dev, the document itself excluded).
pub fn builtin(name: &str, data_dir: &Path) -> Result<Task> {
    if let Some((base, split)) = name.split_once(':') {
        if split != "dev" || !["arc_easy", "arc_challenge", "openbookqa"].contains(&base) {
            return Err(Error::invalid(format!(
                "unknown task `{name}`: only arc_easy, arc_challenge and openbookqa have a `:dev` variant"
            )));
        }
        let mut t = builtin(base, data_dir)?;
        let sub = &mut t.subtasks[0];
        sub.docs = sub.pool.take().unwrap_or_default();
        sub.name = name.to_string();
        t.name = name.to_string();
        t.note = "dev split (few-shot examples from dev itself, the document excluded)".into();
        return Ok(t);
    }
    let one = |docs: Vec<Doc>, pool: Option<Vec<Doc>>| {
        vec![Subtask {
            name: name.to_string(),
            docs,
            pool,
            description: String::new(),
        }]
    };
    let task = |subtasks, to_item: Box<super::task::ToItem>, scoring, note: &str| Task {
        name: name.to_string(),
        subtasks,
        to_item,
        scoring,
        sampler: Sampler::Random,
        default_fewshot: 0,
        target_delimiter: " ".into(),
        fewshot_delimiter: "\n\n".into(),
        note: note.into(),
    };
    let d = |rel: &str| data_dir.join(rel);
    Ok(match name {
        "arc_easy" | "arc_challenge" => {
            let set = if name == "arc_easy" { "ARC-Easy" } else { "ARC-Challenge" };
            task(
                one(
                    read_jsonl(&d(&format!("arc/{set}-Test.jsonl")))?,
                    Some(read_jsonl(&d(&format!("arc/{set}-Dev.jsonl")))?),
                ),
                Box::new(arc_item),
                Scoring::MultipleChoice { norm: true },
                "test split as the harness; few-shot examples from dev (the harness: train, absent here)",
            )
        }
        "boolq" => task(
            one(read_jsonl(&d("boolq/val.jsonl"))?, None),
            Box::new(|doc: &Doc| {
                Ok(Item::Choice {
                    context: format!(
                        "{}\nQuestion: {}?\nAnswer:",
                        doc.text("passage")?,
                        doc.text("question")?
                    ),
                    choices: vec!["no".into(), "yes".into()],
                    gold: usize::from(truth(doc, "label")?),
                })
            }),
            Scoring::MultipleChoice { norm: false },
            "validation split as the harness; few-shot examples from validation itself, the document excluded (the harness: train, absent here)",
        ),
        "copa" => task(
            one(read_jsonl(&d("copa/val.jsonl"))?, None),
            Box::new(copa_item),
            Scoring::MultipleChoice { norm: false },
            "validation split as the harness; few-shot examples from validation itself, the document excluded (the harness: train, absent here)",
        ),
        "winogrande" => task(
            one(
                read_jsonl(&d("winogrande/dev.jsonl"))?,
                Some(read_jsonl(&d("winogrande/train_xs.jsonl"))?),
            ),
            Box::new(winogrande_item),
            Scoring::MultipleInput,
            "validation (dev, winogrande_xl) as the harness; few-shot examples from train_xs (the harness: train_xl, absent here)",
        ),
        "openbookqa" => task(
            one(
                obqa(&d("openbookqa/test.tsv"))?,
                Some(obqa(&d("openbookqa/dev.tsv"))?),
            ),
            Box::new(|doc: &Doc| {
                let labels = doc.texts("choices.label")?;
                let key = doc.text("answerKey")?;
                Ok(Item::Choice {
                    context: doc.text("question_stem")?,
                    choices: doc.texts("choices.text")?,
                    gold: index_of(doc, &labels, key.trim_start())?,
                })
            }),
            Scoring::MultipleChoice { norm: true },
            "test split as the harness; few-shot examples from validation (the harness: train, absent here)",
        ),
        "lambada" | "lambada_openai" => {
            let mut t = task(
                one(read_jsonl(&d("lambada/lambada_test_openai.jsonl"))?, None),
                Box::new(|doc: &Doc| {
                    let text = doc.text("text")?;
                    let (ctx, last) = text.rsplit_once(' ').unwrap_or(("", text.as_str()));
                    Ok(Item::Cloze {
                        context: ctx.to_string(),
                        target: format!(" {last}"),
                    })
                }),
                Scoring::Cloze,
                "lambada_openai: OpenAI's test file, as the harness (few-shot from the test file itself, the document excluded)",
            );
            t.name = "lambada_openai".into();
            t
        }
        "mmlu" => mmlu(data_dir)?,
        "gsm8k" => {
            let mut t = task(
                one(
                    read_jsonl(&d("gsm8k/test.jsonl"))?,
                    Some(read_jsonl(&d("gsm8k/train.jsonl"))?),
                ),
                Box::new(|doc: &Doc| {
                    Ok(Item::Generate {
                        context: format!("Question: {}\nAnswer:", doc.text("question")?),
                        answer: doc.text("answer")?,
                    })
                }),
                Scoring::Gsm8k,
                "test split, 5 examples drawn from train: the harness's protocol and data",
            );
            t.default_fewshot = 5;
            t
        }
        other => {
            return Err(Error::invalid(format!(
                "unknown task `{other}`: built-in tasks are {} (or give --task-file TASK.toml)",
                BUILTIN.join(", ")
            )))
        }
    })
}

fn index_of(doc: &Doc, labels: &[String], key: &str) -> Result<usize> {
    labels.iter().position(|l| l == key).ok_or_else(|| {
        doc.error(format!(
            "answer `{key}` is not one of the labels {labels:?}"
        ))
    })
}

fn truth(doc: &Doc, field: &str) -> Result<bool> {
    match doc.get(field)? {
        Value::Bool(b) => Ok(*b),
        Value::Number(n) if n.as_u64() == Some(0) || n.as_u64() == Some(1) => {
            Ok(n.as_u64() == Some(1))
        }
        // SuperGLUE's BoolQ JSONL writes the label as "true"/"false".
        Value::String(s) if s == "true" || s == "false" => Ok(s == "true"),
        other => Err(doc.error(format!("field `{field}` is not a boolean: {other}"))),
    }
}

/// arc_easy.yaml: "Question: {{question}}\nAnswer:", choices.text, gold by answerKey's label.
fn arc_item(doc: &Doc) -> Result<Item> {
    let field = |c: &Value, name: &str| {
        c.get(name)
            .and_then(Value::as_str)
            .map(str::to_string)
            .ok_or_else(|| doc.error(format!("a choice without `{name}`")))
    };
    let (choices, labels) = match doc.get("question.choices")? {
        Value::Array(a) => (
            a.iter()
                .map(|c| field(c, "text"))
                .collect::<Result<Vec<_>>>()?,
            a.iter()
                .map(|c| field(c, "label"))
                .collect::<Result<Vec<_>>>()?,
        ),
        _ => return Err(doc.error("`question.choices` is not a list")),
    };
    let key = doc.text("answerKey")?;
    Ok(Item::Choice {
        context: format!("Question: {}\nAnswer:", doc.text("question.stem")?),
        choices,
        gold: index_of(doc, &labels, &key)?,
    })
}

/// super_glue/copa/utils.py: the premise without its period + " because"/" therefore"; the
/// choices " " + first letter lowered (after the target delimiter: two spaces, as the harness).
fn copa_item(doc: &Doc) -> Result<Item> {
    let lower = |s: String| {
        let mut c = s.chars();
        match c.next() {
            Some(f) => f.to_lowercase().collect::<String>() + c.as_str(),
            None => s,
        }
    };
    let premise = doc.text("premise")?;
    let premise = premise.trim();
    let mut cut = premise.chars();
    cut.next_back();
    let connector = match doc.text("question")?.as_str() {
        "cause" => "because",
        "effect" => "therefore",
        other => return Err(doc.error(format!("question `{other}` is neither cause nor effect"))),
    };
    let label = doc
        .get("label")?
        .as_u64()
        .filter(|&l| l < 2)
        .ok_or_else(|| doc.error("label is not 0 or 1"))?;
    Ok(Item::Choice {
        context: format!("{} {connector}", cut.as_str()),
        choices: vec![
            format!(" {}", lower(doc.text("choice1")?)),
            format!(" {}", lower(doc.text("choice2")?)),
        ],
        gold: label as usize,
    })
}

/// winogrande/preprocess_winogrande.py: contexts = the sentence up to "_" with each option,
/// target = the rest after "_", stripped.
fn winogrande_item(doc: &Doc) -> Result<Item> {
    let s = doc.text("sentence")?;
    let idx = s
        .find('_')
        .ok_or_else(|| doc.error("the sentence has no `_` blank"))?;
    let gold = match doc.text("answer")?.as_str() {
        "1" => 0,
        "2" => 1,
        other => return Err(doc.error(format!("answer `{other}` is not 1 or 2"))),
    };
    Ok(Item::Inputs {
        contexts: vec![
            format!("{}{}", &s[..idx], doc.text("option1")?),
            format!("{}{}", &s[..idx], doc.text("option2")?),
        ],
        target: s[idx + 1..].trim().to_string(),
        gold,
    })
}

/// OpenBookQA's TSV ("Question Stem", "Choices" as "(A) .. (B) .. (C) .. (D) ..", "Answer
/// Key") as the harness's fields (question_stem, choices.text/label, answerKey).
fn obqa(path: &Path) -> Result<Vec<Doc>> {
    read_table(path, '\t')?
        .into_iter()
        .map(|doc| {
            let s = doc.text("Choices")?;
            let labels = ["A", "B", "C", "D"];
            let mut marks = vec![s
                .find("(A) ")
                .ok_or_else(|| doc.error("`Choices` has no (A)"))?];
            for l in &labels[1..] {
                let from = marks[marks.len() - 1];
                let at = s[from..]
                    .find(&format!(" ({l}) "))
                    .ok_or_else(|| doc.error(format!("`Choices` has no ({l})")))?;
                marks.push(from + at);
            }
            let mut ends = marks[1..].to_vec();
            ends.push(s.len());
            let text: Vec<Value> = marks
                .iter()
                .zip(&ends)
                .map(|(&m, &e)| Value::String(s[m..e].trim_start()[4..].to_string()))
                .collect();
            let mut m = Map::new();
            m.insert(
                "question_stem".into(),
                Value::String(doc.text("Question Stem")?),
            );
            let mut ch = Map::new();
            ch.insert("text".into(), Value::Array(text));
            ch.insert(
                "label".into(),
                Value::Array(
                    labels
                        .iter()
                        .map(|l| Value::String(l.to_string()))
                        .collect(),
                ),
            );
            m.insert("choices".into(), Value::Object(ch));
            m.insert("answerKey".into(), Value::String(doc.text("Answer Key")?));
            Ok(Doc {
                fields: Value::Object(m),
                ..doc
            })
        })
        .collect()
}

/// MMLU: one subtask per subject (sorted), the test split scored, the dev split's first k as
/// examples (`first_n`), the description naming the subject. Rows: question, A, B, C, D,
/// answer letter (no header).
fn mmlu(data_dir: &Path) -> Result<Task> {
    let test_dir = data_dir.join("mmlu/test");
    let entries = std::fs::read_dir(&test_dir).map_err(|e| Error::io(&test_dir, e))?;
    let mut subjects: Vec<String> = entries
        .filter_map(|e| e.ok())
        .filter_map(|e| {
            e.file_name()
                .to_str()
                .and_then(|n| n.strip_suffix("_test.csv"))
                .map(str::to_string)
        })
        .collect();
    subjects.sort();
    let rows = |path: &Path| -> Result<Vec<Doc>> {
        read_delimited(path, ',')?
            .into_iter()
            .map(|(line, r)| {
                if r.len() != 6 {
                    return Err(Error::format(
                        path,
                        format!(
                            "line {line}: {} fields, expected 6 (question, A-D, answer)",
                            r.len()
                        ),
                    ));
                }
                let mut m = Map::new();
                m.insert("question".into(), Value::String(r[0].clone()));
                m.insert(
                    "choices".into(),
                    Value::Array(r[1..5].iter().cloned().map(Value::String).collect()),
                );
                m.insert("answer".into(), Value::String(r[5].trim().to_string()));
                Ok(Doc {
                    fields: Value::Object(m),
                    file: path.to_path_buf(),
                    line,
                })
            })
            .collect()
    };
    let mut subtasks = Vec::new();
    for s in subjects {
        subtasks.push(Subtask {
            name: format!("mmlu_{s}"),
            docs: rows(&test_dir.join(format!("{s}_test.csv")))?,
            pool: Some(rows(&data_dir.join(format!("mmlu/dev/{s}_dev.csv")))?),
            description: format!(
                "The following are multiple choice questions (with answers) about {}.\n\n",
                s.replace('_', " ")
            ),
        });
    }
    if subtasks.is_empty() {
        return Err(Error::format(&test_dir, "no *_test.csv files"));
    }
    Ok(Task {
        name: "mmlu".into(),
        subtasks,
        to_item: Box::new(|doc: &Doc| {
            let c = doc.texts("choices")?;
            let answer = doc.text("answer")?;
            let gold = ["A", "B", "C", "D"]
                .iter()
                .position(|l| *l == answer)
                .ok_or_else(|| doc.error(format!("answer `{answer}` is not A-D")))?;
            Ok(Item::Choice {
                context: format!(
                    "{}\nA. {}\nB. {}\nC. {}\nD. {}\nAnswer:",
                    doc.text("question")?.trim(),
                    c[0],
                    c[1],
                    c[2],
                    c[3]
                ),
                choices: ["A", "B", "C", "D"].iter().map(|s| s.to_string()).collect(),
                gold,
            })
        }),
        scoring: Scoring::MultipleChoice { norm: false },
        sampler: Sampler::FirstN,
        default_fewshot: 0,
        target_delimiter: " ".into(),
        fewshot_delimiter: "\n\n".into(),
        note: "57 subjects' test splits, accuracy over all questions (the harness's size-weighted group mean); examples: the dev split's first k".into(),
    })
}
