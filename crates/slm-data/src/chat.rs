//! Chat templates: a conversation (`[Message]`) to the one prompt string an instruction-tuned
//! model was trained on, rendered as transformers' `apply_chat_template(..., tokenize=False)`
//! renders it.
//!
//! Owns: the [`Message`] type and messages files ([`load_messages`]), finding a model's
//! template ([`ChatTemplate::from_loaded`], [`ChatTemplate::from_file`],
//! [`ChatTemplate::resolve`]), rendering it ([`ChatTemplate::render`]) and the end-of-turn
//! tokens that stop an answer ([`ChatTemplate::stop_token_ids`]).
//!
//! Rendering follows transformers' Jinja environment (`chat_template_utils.py`):
//! `trim_blocks` and `lstrip_blocks` on, loop controls (`break`/`continue`), context
//! `messages`, `add_generation_prompt`, `bos_token`, `eos_token` (tools and documents absent,
//! so `none`), `raise_exception(msg)` (a render error carrying `msg`), `strftime_now(fmt)`, a
//! `tojson` filter formatted as Python's `json.dumps` (`", "` and `": "` separators, non-ASCII
//! kept, `indent=`, `sort_keys=`), and Python string/dict/list methods (`.strip()`,
//! `.startswith()`, `.split()`, `.items()`...) through `minijinja-contrib`'s pycompat layer.
//! The engine is minijinja; tests compare it with transformers' output on the templates in
//! `tools/reference/fixtures_chat/` (made by `tools/reference/make_chat_fixtures.py`).
//!
//! Where a template comes from, first found wins: a file the user names (`--chat-template`),
//! `chat_template.jinja` in a Hugging Face directory, `chat_template` in its
//! `tokenizer_config.json` (a string, or a list of `{name, template}` of which "default" is
//! taken), then a GGUF file's `tokenizer.chat_template`.

use std::path::{Path, PathBuf};

use minijinja::value::{Kwargs, Value, ValueKind};
use minijinja::{Environment, ErrorKind};
use serde::{Deserialize, Serialize};
use slm_core::error::IoContext;
use slm_core::{Error, Result};
use slm_io::TokenizerSource;

use crate::tokenizer::Tokenizer;

/// The file name transformers saves a chat template under, beside `tokenizer_config.json`.
pub const CHAT_TEMPLATE_FILE: &str = "chat_template.jinja";

/// Pieces that end a turn in common templates. One counts as a stop token when the
/// vocabulary has it and the template text names it (besides the EOS token, always a stop).
pub const END_OF_TURN_PIECES: &[&str] = &[
    "<|im_end|>",
    "<|eot_id|>",
    "<|eom_id|>",
    "<|end|>",
    "<end_of_turn>",
    "<|endoftext|>",
    "<|end_of_text|>",
    "</s>",
    "<|END_OF_TURN_TOKEN|>",
];

/// One turn of a conversation: `role` is usually `system`, `user` or `assistant`; which roles
/// a model knows is its template's business.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Message {
    pub role: String,
    pub content: String,
}

impl Message {
    pub fn new(role: impl Into<String>, content: impl Into<String>) -> Self {
        Self {
            role: role.into(),
            content: content.into(),
        }
    }
    pub fn system(content: impl Into<String>) -> Self {
        Self::new("system", content)
    }
    pub fn user(content: impl Into<String>) -> Self {
        Self::new("user", content)
    }
    pub fn assistant(content: impl Into<String>) -> Self {
        Self::new("assistant", content)
    }
}

/// Reads a messages file: a JSON array of `{"role": ..., "content": ...}` objects.
pub fn load_messages(path: &Path) -> Result<Vec<Message>> {
    let text = std::fs::read_to_string(path).with_path(path)?;
    let messages: Vec<Message> = serde_json::from_str(&text).map_err(|e| {
        Error::format(
            path,
            format!("expected a JSON array of {{\"role\": ..., \"content\": ...}} messages: {e}"),
        )
    })?;
    if messages.is_empty() {
        return Err(Error::format(path, "the messages array is empty"));
    }
    Ok(messages)
}

/// A compiled chat template with the special tokens it is rendered with.
#[derive(Clone)]
pub struct ChatTemplate {
    env: Environment<'static>,
    source: String,
    origin: String,
    bos_token: String,
    eos_token: String,
}

impl std::fmt::Debug for ChatTemplate {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ChatTemplate")
            .field("origin", &self.origin)
            .field("bos_token", &self.bos_token)
            .field("eos_token", &self.eos_token)
            .field("source_chars", &self.source.len())
            .finish()
    }
}

const NAME: &str = "chat_template";

/// Instructions one render may run. Real templates take a few hundred per message, so this
/// is far above any conversation; it stops a template that loops (nested `range`s, recursive
/// macros) with an error instead of hanging.
pub const RENDER_FUEL: u64 = 5_000_000;
/// Nesting depth of template recursion (macros calling themselves, nested blocks); minijinja's
/// own default, stated so it does not silently change.
pub const RECURSION_LIMIT: usize = 500;

impl ChatTemplate {
    /// Compiles `source`; `origin` names where it came from in every error (a path, "GGUF
    /// metadata of X"...). The special tokens start empty ([`Self::with_special_tokens`]).
    pub fn new(source: impl Into<String>, origin: impl Into<String>) -> Result<Self> {
        let source = source.into();
        let origin = origin.into();
        let mut env = Environment::new();
        env.set_trim_blocks(true);
        env.set_lstrip_blocks(true);
        env.set_fuel(Some(RENDER_FUEL));
        env.set_recursion_limit(RECURSION_LIMIT);
        env.set_unknown_method_callback(minijinja_contrib::pycompat::unknown_method_callback);
        env.add_function("raise_exception", raise_exception);
        env.add_function("strftime_now", strftime_now);
        env.add_filter("tojson", tojson);
        env.add_template_owned(NAME, source.clone())
            .map_err(|e| jinja_error(&origin, &source, &e, "does not parse"))?;
        Ok(Self {
            env,
            source,
            origin,
            bos_token: String::new(),
            eos_token: String::new(),
        })
    }

    /// Reads a Jinja template file (`--chat-template FILE`).
    pub fn from_file(path: &Path) -> Result<Self> {
        let text = std::fs::read_to_string(path).with_path(path)?;
        Self::new(text, path.display().to_string())
    }

    /// The template a model came with, if any: `chat_template.jinja` beside a Hugging Face
    /// directory's files (`model_path` is the directory), `chat_template` in its
    /// `tokenizer_config.json`, or a GGUF vocabulary's `tokenizer.chat_template`. The BOS and
    /// EOS tokens come from `tokenizer_config.json` (`bos_token`, `eos_token`) or the GGUF
    /// vocabulary; [`Self::with_tokenizer_tokens`] fills in what is still missing.
    pub fn from_loaded(
        tokenizer_source: &TokenizerSource,
        tokenizer_config: Option<&serde_json::Value>,
        model_path: &Path,
    ) -> Result<Option<Self>> {
        let (bos, eos) = special_tokens(tokenizer_source, tokenizer_config);
        let jinja = model_path.join(CHAT_TEMPLATE_FILE);
        let found = if model_path.is_dir() && jinja.is_file() {
            Some(Self::from_file(&jinja)?)
        } else if let Some(t) = tokenizer_config.and_then(|c| c.get("chat_template")) {
            let origin = format!(
                "{}",
                model_path.join(slm_io::hf_dir::TOKENIZER_CONFIG).display()
            );
            Some(Self::new(config_template(t, &origin)?, origin)?)
        } else if let TokenizerSource::Gguf(v) = tokenizer_source {
            match &v.chat_template {
                Some(t) => Some(Self::new(
                    t.clone(),
                    format!("tokenizer.chat_template of {}", model_path.display()),
                )?),
                None => None,
            }
        } else {
            None
        };
        Ok(found.map(|t| t.with_special_tokens(bos, eos)))
    }

    /// The template for a model: `file` when given, else the model's own
    /// ([`Self::from_loaded`]); an error that says how to give one when there is none. BOS and
    /// EOS missing from the configuration are taken from `tokenizer`.
    pub fn resolve(
        file: Option<&Path>,
        tokenizer_source: &TokenizerSource,
        tokenizer_config: Option<&serde_json::Value>,
        model_path: &Path,
        tokenizer: &dyn Tokenizer,
    ) -> Result<Self> {
        let found = match file {
            Some(f) => {
                let (bos, eos) = special_tokens(tokenizer_source, tokenizer_config);
                Some(Self::from_file(f)?.with_special_tokens(bos, eos))
            }
            None => Self::from_loaded(tokenizer_source, tokenizer_config, model_path)?,
        };
        let t = found.ok_or_else(|| {
            Error::invalid(format!(
                "{} has no chat template (no chat_template.jinja, no chat_template in \
                 tokenizer_config.json, no tokenizer.chat_template in GGUF metadata); give one \
                 with --chat-template FILE (a Jinja file, e.g. a model card's template), or use \
                 the model without the chat format",
                model_path.display()
            ))
        })?;
        Ok(t.with_tokenizer_tokens(tokenizer))
    }

    /// Sets the `bos_token` and `eos_token` strings the template sees (`None` keeps the
    /// current value).
    pub fn with_special_tokens(mut self, bos: Option<String>, eos: Option<String>) -> Self {
        if let Some(b) = bos {
            self.bos_token = b;
        }
        if let Some(e) = eos {
            self.eos_token = e;
        }
        self
    }

    /// Fills an empty `bos_token` / `eos_token` with the tokenizer's BOS / EOS pieces.
    pub fn with_tokenizer_tokens(mut self, tokenizer: &dyn Tokenizer) -> Self {
        if self.bos_token.is_empty() {
            if let Some(p) = tokenizer.bos_id().and_then(|id| tokenizer.id_to_piece(id)) {
                self.bos_token = p;
            }
        }
        if self.eos_token.is_empty() {
            if let Some(p) = tokenizer.eos_id().and_then(|id| tokenizer.id_to_piece(id)) {
                self.eos_token = p;
            }
        }
        self
    }

    /// Where the template came from (used in errors).
    pub fn origin(&self) -> &str {
        &self.origin
    }

    /// The Jinja source.
    pub fn source(&self) -> &str {
        &self.source
    }

    pub fn bos_token(&self) -> &str {
        &self.bos_token
    }

    pub fn eos_token(&self) -> &str {
        &self.eos_token
    }

    /// Renders `messages`; with `add_generation_prompt`, the text that opens the assistant's
    /// answer follows (e.g. `<|im_start|>assistant\n`). A template error (including the
    /// template's own `raise_exception`) is an error naming the origin and the line.
    pub fn render(&self, messages: &[Message], add_generation_prompt: bool) -> Result<String> {
        let tmpl = self
            .env
            .get_template(NAME)
            .map_err(|e| jinja_error(&self.origin, &self.source, &e, "does not parse"))?;
        let ctx = minijinja::context! {
            messages => Value::from_serialize(messages),
            add_generation_prompt => add_generation_prompt,
            bos_token => self.bos_token.as_str(),
            eos_token => self.eos_token.as_str(),
            tools => Value::from(()),
            documents => Value::from(()),
        };
        tmpl.render(ctx)
            .map_err(|e| jinja_error(&self.origin, &self.source, &e, "failed to render"))
    }

    /// The tokens that end an assistant turn: the tokenizer's EOS, the template's `eos_token`
    /// when it is one token, and every piece of [`END_OF_TURN_PIECES`] that the vocabulary
    /// has and the template names. Sorted, no duplicates.
    pub fn stop_token_ids(&self, tokenizer: &dyn Tokenizer) -> Vec<u32> {
        let mut ids: Vec<u32> = tokenizer.eos_id().into_iter().collect();
        if !self.eos_token.is_empty() {
            ids.extend(tokenizer.token_to_id(&self.eos_token));
        }
        for piece in END_OF_TURN_PIECES {
            if self.source.contains(piece) {
                ids.extend(tokenizer.token_to_id(piece));
            }
        }
        ids.sort_unstable();
        ids.dedup();
        ids
    }
}

/// `bos_token` / `eos_token` from tokenizer_config.json (a string or an added-token object
/// with `content`), else the GGUF vocabulary's pieces.
fn special_tokens(
    source: &TokenizerSource,
    config: Option<&serde_json::Value>,
) -> (Option<String>, Option<String>) {
    let from_config = |key: &str| -> Option<String> {
        let v = config?.get(key)?;
        match v {
            serde_json::Value::String(s) => Some(s.clone()),
            serde_json::Value::Object(o) => o.get("content")?.as_str().map(str::to_string),
            _ => None,
        }
    };
    let from_gguf = |id: Option<u32>| -> Option<String> {
        match source {
            TokenizerSource::Gguf(v) => v.tokens.get(id? as usize).cloned(),
            _ => None,
        }
    };
    let (bos_id, eos_id) = match source {
        TokenizerSource::Gguf(v) => (v.bos_id, v.eos_id),
        _ => (None, None),
    };
    (
        from_config("bos_token").or_else(|| from_gguf(bos_id)),
        from_config("eos_token").or_else(|| from_gguf(eos_id)),
    )
}

/// `chat_template` of tokenizer_config.json: a string, or a list of `{name, template}` of
/// which "default" is taken.
fn config_template(v: &serde_json::Value, origin: &str) -> Result<String> {
    match v {
        serde_json::Value::String(s) => Ok(s.clone()),
        serde_json::Value::Array(list) => {
            let named = |name: &str| {
                list.iter().find_map(|e| {
                    (e.get("name")?.as_str()? == name)
                        .then(|| e.get("template")?.as_str().map(str::to_string))
                        .flatten()
                })
            };
            named("default").ok_or_else(|| {
                let names: Vec<&str> = list
                    .iter()
                    .filter_map(|e| e.get("name")?.as_str())
                    .collect();
                Error::format(
                    PathBuf::from(origin),
                    format!("chat_template lists templates {names:?} but none named \"default\""),
                )
            })
        }
        _ => Err(Error::format(
            PathBuf::from(origin),
            "chat_template is neither a string nor a list of {name, template}",
        )),
    }
}

/// A minijinja error as ours: the origin, what failed, the Jinja message and the line of the
/// template it points at.
fn jinja_error(origin: &str, source: &str, e: &minijinja::Error, what: &str) -> Error {
    let mut msg = format!("chat template from {origin} {what}: ");
    match (e.kind(), e.detail()) {
        (ErrorKind::InvalidOperation, Some(d)) => msg.push_str(d),
        (kind, Some(d)) => msg.push_str(&format!("{kind}: {d}")),
        (kind, None) => msg.push_str(&kind.to_string()),
    }
    if let Some(line) = e.line() {
        let text = source.lines().nth(line.saturating_sub(1)).unwrap_or("");
        let text: String = if text.chars().count() > 160 {
            text.chars().take(160).chain("…".chars()).collect()
        } else {
            text.to_string()
        };
        msg.push_str(&format!(" (template line {line}: {text})"));
    }
    Error::msg(msg)
}

/// `raise_exception(msg)`: the template refuses the conversation.
fn raise_exception(msg: String) -> std::result::Result<Value, minijinja::Error> {
    Err(minijinja::Error::new(ErrorKind::InvalidOperation, msg))
}

/// `tojson` as transformers defines it: Python's `json.dumps(x, ensure_ascii=False,
/// indent=indent, sort_keys=sort_keys)`.
fn tojson(
    value: &Value,
    indent: Option<Value>,
    kwargs: Kwargs,
) -> std::result::Result<Value, minijinja::Error> {
    let indent = match kwargs.get::<Option<Value>>("indent")?.or(indent) {
        Some(v) if v.is_none() || v.is_undefined() => None,
        Some(v) => Some(usize::try_from(v)?),
        None => None,
    };
    if indent.is_some_and(|n| n > MAX_JSON_INDENT) {
        return Err(minijinja::Error::new(
            ErrorKind::InvalidOperation,
            format!("tojson: indent above {MAX_JSON_INDENT}"),
        ));
    }
    let sort_keys = kwargs.get::<Option<bool>>("sort_keys")?.unwrap_or(false);
    let _ = kwargs.get::<Option<Value>>("ensure_ascii")?;
    let _ = kwargs.get::<Option<Value>>("separators")?;
    kwargs.assert_all_used()?;
    let mut out = String::new();
    py_json(value, indent, sort_keys, 0, &mut out)?;
    Ok(Value::from(out))
}

/// Largest `tojson` indent accepted: a template may not make us allocate `indent × depth` spaces
/// without bound.
const MAX_JSON_INDENT: usize = 64;

fn py_json(
    v: &Value,
    indent: Option<usize>,
    sort_keys: bool,
    level: usize,
    out: &mut String,
) -> std::result::Result<(), minijinja::Error> {
    let newline = |out: &mut String, level: usize| {
        if let Some(n) = indent {
            out.push('\n');
            out.push_str(&" ".repeat(n * level));
        }
    };
    let item_sep = if indent.is_some() { "," } else { ", " };
    match v.kind() {
        ValueKind::Undefined | ValueKind::None => out.push_str("null"),
        ValueKind::Bool => out.push_str(if v.is_true() { "true" } else { "false" }),
        ValueKind::Number => {
            if let Some(i) = v.as_i64().filter(|_| v.is_integer()) {
                out.push_str(&i.to_string());
            } else {
                let f = f64::try_from(v.clone())?;
                if f.is_finite() && f.fract() == 0.0 && f.abs() < 1e16 {
                    out.push_str(&format!("{f:.1}"));
                } else if f.is_finite() {
                    out.push_str(&format!("{f}"));
                } else {
                    out.push_str(if f.is_nan() {
                        "NaN"
                    } else if f > 0.0 {
                        "Infinity"
                    } else {
                        "-Infinity"
                    });
                }
            }
        }
        ValueKind::String => {
            let s = v.as_str().unwrap_or_default();
            out.push_str(
                &serde_json::to_string(s).map_err(|e| {
                    minijinja::Error::new(ErrorKind::BadSerialization, e.to_string())
                })?,
            );
        }
        ValueKind::Seq | ValueKind::Iterable => {
            let items: Vec<Value> = v.try_iter()?.collect();
            if items.is_empty() {
                out.push_str("[]");
                return Ok(());
            }
            out.push('[');
            for (i, item) in items.iter().enumerate() {
                if i > 0 {
                    out.push_str(item_sep);
                }
                newline(out, level + 1);
                py_json(item, indent, sort_keys, level + 1, out)?;
            }
            newline(out, level);
            out.push(']');
        }
        ValueKind::Map => {
            let mut keys: Vec<Value> = v.try_iter()?.collect();
            if keys.is_empty() {
                out.push_str("{}");
                return Ok(());
            }
            if sort_keys {
                keys.sort();
            }
            out.push('{');
            for (i, k) in keys.iter().enumerate() {
                if i > 0 {
                    out.push_str(item_sep);
                }
                newline(out, level + 1);
                let key = match k.as_str() {
                    Some(s) => Value::from(s),
                    None => Value::from(k.to_string()),
                };
                py_json(&key, indent, sort_keys, level + 1, out)?;
                out.push_str(": ");
                py_json(&v.get_item(k)?, indent, sort_keys, level + 1, out)?;
            }
            newline(out, level);
            out.push('}');
        }
        _ => {
            let s = v.to_string();
            out.push_str(
                &serde_json::to_string(&s).map_err(|e| {
                    minijinja::Error::new(ErrorKind::BadSerialization, e.to_string())
                })?,
            );
        }
    }
    Ok(())
}

/// `strftime_now(fmt)`: the current UTC date and time, for templates that print today's date
/// (Llama 3.1+). Knows `%Y %y %m %d %e %B %b %H %M %S %A %a %j %%`.
fn strftime_now(fmt: String) -> std::result::Result<Value, minijinja::Error> {
    let secs = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_secs() as i64)
        .unwrap_or(0);
    Ok(Value::from(format_time(secs, &fmt)))
}

/// Formats Unix time `secs` (UTC) with a `strftime` subset.
fn format_time(secs: i64, fmt: &str) -> String {
    const MONTHS: [&str; 12] = [
        "January",
        "February",
        "March",
        "April",
        "May",
        "June",
        "July",
        "August",
        "September",
        "October",
        "November",
        "December",
    ];
    const DAYS: [&str; 7] = [
        "Thursday",
        "Friday",
        "Saturday",
        "Sunday",
        "Monday",
        "Tuesday",
        "Wednesday",
    ];
    let days = secs.div_euclid(86_400);
    let rem = secs.rem_euclid(86_400);
    // Civil date from days since 1970-01-01 (Howard Hinnant's algorithm).
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z - era * 146_097;
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy_mar = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy_mar + 2) / 153;
    let day = doy_mar - (153 * mp + 2) / 5 + 1;
    let month = if mp < 10 { mp + 3 } else { mp - 9 };
    let year = yoe + era * 400 + i64::from(month <= 2);
    let leap = (year % 4 == 0 && year % 100 != 0) || year % 400 == 0;
    let cum = [0, 31, 59, 90, 120, 151, 181, 212, 243, 273, 304, 334];
    let yday = cum[(month - 1) as usize] + day + i64::from(leap && month > 2);
    let weekday = DAYS[days.rem_euclid(7) as usize];
    let mname = MONTHS[(month - 1) as usize];
    let mut out = String::new();
    let mut chars = fmt.chars();
    while let Some(c) = chars.next() {
        if c != '%' {
            out.push(c);
            continue;
        }
        match chars.next() {
            Some('Y') => out.push_str(&year.to_string()),
            Some('y') => out.push_str(&format!("{:02}", year.rem_euclid(100))),
            Some('m') => out.push_str(&format!("{month:02}")),
            Some('d') => out.push_str(&format!("{day:02}")),
            Some('e') => out.push_str(&format!("{day:>2}")),
            Some('B') => out.push_str(mname),
            Some('b') => out.push_str(&mname[..3]),
            Some('A') => out.push_str(weekday),
            Some('a') => out.push_str(&weekday[..3]),
            Some('j') => out.push_str(&format!("{yday:03}")),
            Some('H') => out.push_str(&format!("{:02}", rem / 3600)),
            Some('M') => out.push_str(&format!("{:02}", rem % 3600 / 60)),
            Some('S') => out.push_str(&format!("{:02}", rem % 60)),
            Some('%') => out.push('%'),
            Some(other) => {
                out.push('%');
                out.push(other);
            }
            None => out.push('%'),
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    const CHATML: &str = "{% for message in messages %}{{'<|im_start|>' + message['role'] + '\\n' + message['content'] + '<|im_end|>' + '\\n'}}{% endfor %}{% if add_generation_prompt %}{{ '<|im_start|>assistant\\n' }}{% endif %}";

    #[test]
    fn renders_chatml() {
        let t = ChatTemplate::new(CHATML, "test").unwrap();
        let s = t
            .render(&[Message::system("Be brief."), Message::user("Hi")], true)
            .unwrap();
        assert_eq!(
            s,
            "<|im_start|>system\nBe brief.<|im_end|>\n<|im_start|>user\nHi<|im_end|>\n<|im_start|>assistant\n"
        );
    }

    #[test]
    fn syntax_error_names_origin_and_line() {
        let err = ChatTemplate::new(
            "line one\n{% for m in messages %}{{ m.content }",
            "my.jinja",
        )
        .unwrap_err()
        .to_string();
        assert!(err.contains("my.jinja"), "{err}");
        assert!(err.contains("does not parse"), "{err}");
        assert!(err.contains("line 2"), "{err}");
    }

    #[test]
    fn raise_exception_is_an_error_with_its_message() {
        let t = ChatTemplate::new(
            "ok\n{% if messages[0].role != 'user' %}{{ raise_exception('first must be user') }}{% endif %}",
            "t.jinja",
        )
        .unwrap();
        let err = t
            .render(&[Message::assistant("x")], false)
            .unwrap_err()
            .to_string();
        assert!(err.contains("first must be user"), "{err}");
        assert!(err.contains("t.jinja"), "{err}");
        assert!(err.contains("line 2"), "{err}");
        // An unknown function or a bad call is an error too, not a panic.
        let t = ChatTemplate::new("{{ nope(1) }}", "t2").unwrap();
        assert!(t.render(&[], false).is_err());
        let t = ChatTemplate::new("{{ messages[0].content.strip(1, 2, 3) }}", "t3").unwrap();
        assert!(t.render(&[Message::user("x")], false).is_err());
    }

    #[test]
    fn tojson_is_pythons_json_dumps() {
        let t = ChatTemplate::new(
            "{{ messages[0] | tojson }}|{{ [1, 2.0, none, true, 'é\"'] | tojson }}|{{ {'b': 1, 'a': [1]} | tojson(indent=2, sort_keys=true) }}|{{ [] | tojson }}",
            "t",
        )
        .unwrap();
        let s = t.render(&[Message::user("hé \"x\"\n")], false).unwrap();
        assert_eq!(
            s,
            "{\"role\": \"user\", \"content\": \"hé \\\"x\\\"\\n\"}|[1, 2.0, null, true, \"é\\\"\"]|{\n  \"a\": [\n    1\n  ],\n  \"b\": 1\n}|[]"
        );
    }

    #[test]
    fn strftime_subset() {
        // 2024-07-23 14:05:09 UTC, a Tuesday, day 205 of a leap year.
        let secs = 1_721_743_509;
        assert_eq!(
            format_time(secs, "%d %b %Y|%B %e|%A %a|%H:%M:%S|%j|%y-%m|%%|%Q"),
            "23 Jul 2024|July 23|Tuesday Tue|14:05:09|205|24-07|%|%Q"
        );
        assert_eq!(format_time(0, "%Y-%m-%d %A"), "1970-01-01 Thursday");
        let t = ChatTemplate::new("{{ strftime_now('%Y') }}", "t").unwrap();
        assert_eq!(t.render(&[], false).unwrap().len(), 4);
    }

    #[test]
    fn template_sources_in_order() {
        let dir = tempfile::tempdir().unwrap();
        let cfg = serde_json::json!({
            "chat_template": [
                {"name": "tool_use", "template": "TOOLS"},
                {"name": "default", "template": "{{ bos_token }}D{{ eos_token }}"}
            ],
            "bos_token": {"content": "<s>", "lstrip": false},
            "eos_token": "</s>"
        });
        let t = ChatTemplate::from_loaded(&TokenizerSource::None, Some(&cfg), dir.path())
            .unwrap()
            .unwrap();
        assert_eq!(t.render(&[], false).unwrap(), "<s>D</s>");
        assert!(t.origin().ends_with("tokenizer_config.json"));

        // chat_template.jinja wins over tokenizer_config.json.
        std::fs::write(dir.path().join(CHAT_TEMPLATE_FILE), "J{{ eos_token }}\n").unwrap();
        let t = ChatTemplate::from_loaded(&TokenizerSource::None, Some(&cfg), dir.path())
            .unwrap()
            .unwrap();
        assert_eq!(t.render(&[], false).unwrap(), "J</s>");

        let bad = serde_json::json!({"chat_template": [{"name": "x", "template": "X"}]});
        let err = ChatTemplate::from_loaded(&TokenizerSource::None, Some(&bad), Path::new("m"))
            .unwrap_err()
            .to_string();
        assert!(err.contains("default"), "{err}");

        assert!(
            ChatTemplate::from_loaded(&TokenizerSource::None, None, Path::new("m"))
                .unwrap()
                .is_none()
        );
    }

    #[test]
    fn messages_files() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("m.json");
        std::fs::write(&p, r#"[{"role": "user", "content": "hi"}]"#).unwrap();
        assert_eq!(load_messages(&p).unwrap(), vec![Message::user("hi")]);
        for (text, want) in [
            (r#"{"role": "user"}"#, "JSON array"),
            (r#"[{"role": "user"}]"#, "content"),
            (r#"[{"role": "user", "content": "x", "name": "y"}]"#, "name"),
            ("[]", "empty"),
            ("[{", "EOF"),
        ] {
            std::fs::write(&p, text).unwrap();
            let err = load_messages(&p).unwrap_err().to_string();
            assert!(err.contains("m.json"), "{err}");
            assert!(err.contains(want), "{text}: {err}");
        }
        let err = load_messages(&dir.path().join("none.json"))
            .unwrap_err()
            .to_string();
        assert!(err.contains("none.json"), "{err}");
    }
}
