//! Prompt templates with slots: the TinyStories recipe of drawing a random verb, noun and
//! adjective (and story features) into every prompt so that a teacher writes varied text.
//!
//! A template set is a TOML file (`deny_unknown_fields` everywhere, so a misspelt key is an
//! error, not a silent default):
//!
//! ```toml
//! description = "story openings for a base model"
//! include_prompt = true      # training text = prompt + continuation (false: continuation only)
//!
//! [sampling]                 # optional defaults; command-line flags override them
//! temperature = 0.8
//! max_tokens = 256
//!
//! [[template]]
//! text = "Once upon a time, there was {a:character} named {name}. {name} loved to {verb}. {feature}"
//! weight = 2                 # optional, default 1: how often this template is drawn
//!
//! [lists]                    # one item drawn per prompt
//! character = ["little girl", "little boy"]
//! name = ["Lily", "Tom"]
//! verb = ["run", "jump"]
//!
//! [features.feature]         # a random subset of min..=max items, joined
//! items = ["Then something surprising happened.", "But {name} had a problem."]
//! min = 0
//! max = 1
//! join = " "
//! ```
//!
//! Slot syntax: `{name}` is replaced by the slot's value; a slot used twice in one prompt has
//! the same value both times (`{name}` stays one character). `{a:noun}` writes the value with
//! its article ("a cat", "an apple"). List items may themselves contain slots (no cycles).
//! `{{` and `}}` are literal braces. Every slot a template uses must be defined, every list
//! must have an item: both are checked when the file is read, with the place named.
//!
//! Two sets are built in: `stories` (story openings that a base model such as stories260K
//! continues; the default) and `instruct` (the TinyStories instruction prompt, for
//! instruction-tuned teachers). `slm distill generate --show-templates --templates NAME`
//! prints either.

use rand::distributions::{Distribution, WeightedIndex};
use rand::Rng;
use serde::{Deserialize, Serialize};
use slm_core::{Error, Result};
use std::collections::{BTreeMap, HashMap};
use std::path::Path;

/// The built-in template sets: (name, TOML source).
pub const BUILTIN: &[(&str, &str)] = &[
    ("stories", include_str!("../../templates/stories.toml")),
    ("instruct", include_str!("../../templates/instruct.toml")),
];

/// Sampling defaults a template set may recommend for its kind of teacher. Command-line
/// flags override every field.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SamplingDefaults {
    pub temperature: Option<f32>,
    pub top_k: Option<usize>,
    pub top_p: Option<f32>,
    pub repetition_penalty: Option<f32>,
    pub max_tokens: Option<usize>,
    /// Stop strings (added to those given on the command line).
    #[serde(default)]
    pub stop: Vec<String>,
}

/// One `[[template]]` entry as written.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TemplateEntry {
    pub text: String,
    #[serde(default = "one")]
    pub weight: f64,
}

/// One `[features.NAME]` table as written: a random subset of `items`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct FeatureList {
    pub items: Vec<String>,
    /// Fewest items drawn (may be 0).
    #[serde(default = "one_usize")]
    pub min: usize,
    /// Most items drawn (at most `items.len()`).
    #[serde(default = "one_usize")]
    pub max: usize,
    /// Put between drawn items.
    #[serde(default = "comma")]
    pub join: String,
}

fn one() -> f64 {
    1.0
}
fn one_usize() -> usize {
    1
}
fn comma() -> String {
    ", ".into()
}
fn yes() -> bool {
    true
}

/// A template file as written.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TemplateFile {
    #[serde(default)]
    pub description: String,
    /// The training text is the prompt followed by the continuation (story openings for a
    /// base model); `false`: the continuation alone (instructions to an instruction model).
    #[serde(default = "yes")]
    pub include_prompt: bool,
    #[serde(default)]
    pub sampling: SamplingDefaults,
    #[serde(default, rename = "template")]
    pub templates: Vec<TemplateEntry>,
    #[serde(default)]
    pub lists: BTreeMap<String, Vec<String>>,
    #[serde(default)]
    pub features: BTreeMap<String, FeatureList>,
}

#[derive(Debug, Clone, PartialEq)]
enum Part {
    Text(String),
    Slot { name: String, article: bool },
}

#[derive(Debug, Clone)]
enum Slot {
    List(Vec<Vec<Part>>),
    Features {
        items: Vec<Vec<Part>>,
        min: usize,
        max: usize,
        join: String,
    },
}

impl Slot {
    fn items(&self) -> &[Vec<Part>] {
        match self {
            Slot::List(items) | Slot::Features { items, .. } => items,
        }
    }
}

/// A checked template set, ready to fill prompts.
#[derive(Debug, Clone)]
pub struct TemplateSet {
    /// Where it came from: `built-in "stories"` or the file's path.
    pub origin: String,
    pub file: TemplateFile,
    templates: Vec<Vec<Part>>,
    slots: BTreeMap<String, Slot>,
    pick: WeightedIndex<f64>,
}

/// A short quotation of `s` for messages.
fn quote(s: &str) -> String {
    let mut q: String = s.chars().take(40).collect();
    if s.chars().count() > 40 {
        q.push('…');
    }
    format!("{q:?}")
}

/// Splits `s` into text and slots. Errors name the character position.
fn parse_text(s: &str) -> std::result::Result<Vec<Part>, String> {
    let mut parts = Vec::new();
    let mut text = String::new();
    let mut chars = s.char_indices().peekable();
    while let Some((i, c)) = chars.next() {
        match c {
            '{' if chars.peek().map(|&(_, c)| c) == Some('{') => {
                chars.next();
                text.push('{');
            }
            '}' if chars.peek().map(|&(_, c)| c) == Some('}') => {
                chars.next();
                text.push('}');
            }
            '}' => {
                return Err(format!(
                    "stray `}}` at character {} (write `}}}}` for a literal brace)",
                    s[..i].chars().count() + 1
                ))
            }
            '{' => {
                let rest = &s[i + 1..];
                let Some(end) = rest.find('}') else {
                    return Err(format!(
                        "`{{` at character {} is never closed (write `{{{{` for a literal brace)",
                        s[..i].chars().count() + 1
                    ));
                };
                let inner = &rest[..end];
                for _ in 0..inner.chars().count() + 1 {
                    chars.next();
                }
                let (article, name) = match inner.split_once(':') {
                    Some(("a", name)) => (true, name),
                    Some((m, _)) => {
                        return Err(format!(
                            "unknown modifier `{m}:` in `{{{inner}}}` (the one modifier is `a:`, \
                             which writes the value with a/an)"
                        ))
                    }
                    None => (false, inner),
                };
                let valid = !name.is_empty()
                    && name.chars().all(|c| c.is_ascii_alphanumeric() || c == '_')
                    && !name.starts_with(|c: char| c.is_ascii_digit());
                if !valid {
                    return Err(format!(
                        "`{{{inner}}}` is not a slot: slot names are letters, digits and `_` \
                         (write `{{{{` for a literal brace)"
                    ));
                }
                if !text.is_empty() {
                    parts.push(Part::Text(std::mem::take(&mut text)));
                }
                parts.push(Part::Slot {
                    name: name.to_string(),
                    article,
                });
            }
            c => text.push(c),
        }
    }
    if !text.is_empty() {
        parts.push(Part::Text(text));
    }
    Ok(parts)
}

/// `word` with its indefinite article: "a cat", "an apple", "a unicorn", "an hour".
pub fn with_article(word: &str) -> String {
    let w = word.trim_start().to_lowercase();
    let an_exceptions = ["hour", "honest", "honor", "heir"];
    let a_exceptions = ["uni", "use", "usu", "uti", "eu", "one", "once"];
    let vowel = w.starts_with(['a', 'e', 'i', 'o', 'u']);
    let an = (vowel && !a_exceptions.iter().any(|p| w.starts_with(p)))
        || an_exceptions.iter().any(|p| w.starts_with(p));
    format!("{} {word}", if an { "an" } else { "a" })
}

fn slot_names(parts: &[Vec<Part>]) -> impl Iterator<Item = &str> {
    parts.iter().flatten().filter_map(|p| match p {
        Part::Slot { name, .. } => Some(name.as_str()),
        Part::Text(_) => None,
    })
}

impl TemplateSet {
    /// Names of the built-in sets.
    pub fn builtin_names() -> Vec<&'static str> {
        BUILTIN.iter().map(|(n, _)| *n).collect()
    }

    /// TOML source of the built-in set `name`.
    pub fn builtin_source(name: &str) -> Option<&'static str> {
        BUILTIN.iter().find(|(n, _)| *n == name).map(|(_, s)| *s)
    }

    /// The built-in set `name` (`stories`, `instruct`).
    pub fn builtin(name: &str) -> Result<Self> {
        let src = Self::builtin_source(name).ok_or_else(|| {
            Error::invalid(format!(
                "no built-in template set `{name}` (built-in: {})",
                Self::builtin_names().join(", ")
            ))
        })?;
        Self::from_toml(src, &format!("built-in template set `{name}`"))
    }

    /// Reads a template file.
    pub fn from_file(path: &Path) -> Result<Self> {
        let src = std::fs::read_to_string(path).map_err(|e| Error::io(path, e))?;
        Self::from_toml(&src, &path.display().to_string())
    }

    /// A file path (anything ending in `.toml` or existing on disk) or a built-in name.
    pub fn resolve(spec: &str) -> Result<Self> {
        let path = Path::new(spec);
        if spec.ends_with(".toml") || path.exists() {
            return Self::from_file(path);
        }
        if Self::builtin_source(spec).is_some() {
            return Self::builtin(spec);
        }
        Err(Error::invalid(format!(
            "--templates `{spec}` is neither a template file nor a built-in set ({})",
            Self::builtin_names().join(", ")
        )))
    }

    /// Parses and checks a template set; `origin` names it in errors.
    pub fn from_toml(src: &str, origin: &str) -> Result<Self> {
        let file: TemplateFile =
            toml::from_str(src).map_err(|e| Error::config(format!("{origin}: {e}")))?;
        Self::from_parsed(file, origin)
    }

    /// Checks a parsed template file: slots defined, lists non-empty, no cycles.
    pub fn from_parsed(file: TemplateFile, origin: &str) -> Result<Self> {
        let err = |msg: String| Error::config(format!("{origin}: {msg}"));
        if file.templates.is_empty() {
            return Err(err(
                "no templates: add at least one [[template]] table with a `text`".into(),
            ));
        }
        let mut slots = BTreeMap::new();
        for (name, items) in &file.lists {
            if items.is_empty() {
                return Err(err(format!(
                    "list `{name}` is empty: give it at least one item"
                )));
            }
            let parsed = items
                .iter()
                .enumerate()
                .map(|(i, s)| {
                    parse_text(s).map_err(|e| {
                        err(format!("list `{name}`, item {} ({}): {e}", i + 1, quote(s)))
                    })
                })
                .collect::<Result<Vec<_>>>()?;
            slots.insert(name.clone(), Slot::List(parsed));
        }
        for (name, f) in &file.features {
            if slots.contains_key(name) {
                return Err(err(format!(
                    "`{name}` is both a list and a feature list: rename one"
                )));
            }
            if f.items.is_empty() {
                return Err(err(format!(
                    "feature list `{name}` is empty: give it at least one item"
                )));
            }
            if f.min > f.max || f.max > f.items.len() {
                return Err(err(format!(
                    "feature list `{name}`: need min ≤ max ≤ number of items, got min {} \
                     max {} with {} items",
                    f.min,
                    f.max,
                    f.items.len()
                )));
            }
            let parsed = f
                .items
                .iter()
                .enumerate()
                .map(|(i, s)| {
                    parse_text(s).map_err(|e| {
                        err(format!(
                            "feature list `{name}`, item {} ({}): {e}",
                            i + 1,
                            quote(s)
                        ))
                    })
                })
                .collect::<Result<Vec<_>>>()?;
            slots.insert(
                name.clone(),
                Slot::Features {
                    items: parsed,
                    min: f.min,
                    max: f.max,
                    join: f.join.clone(),
                },
            );
        }
        let defined = || {
            if slots.is_empty() {
                "none".to_string()
            } else {
                slots.keys().cloned().collect::<Vec<_>>().join(", ")
            }
        };
        let mut templates = Vec::new();
        for (i, t) in file.templates.iter().enumerate() {
            let at = format!("template {} ({})", i + 1, quote(&t.text));
            if !(t.weight > 0.0 && t.weight.is_finite()) {
                return Err(err(format!(
                    "{at}: weight must be a positive number, got {}",
                    t.weight
                )));
            }
            let parts = parse_text(&t.text).map_err(|e| err(format!("{at}: {e}")))?;
            for name in slot_names(std::slice::from_ref(&parts)) {
                if !slots.contains_key(name) {
                    return Err(err(format!(
                        "{at}: unknown slot `{{{name}}}`; defined slots: {}",
                        defined()
                    )));
                }
            }
            templates.push(parts);
        }
        for (owner, slot) in &slots {
            for name in slot_names(slot.items()) {
                if !slots.contains_key(name) {
                    return Err(err(format!(
                        "`{owner}` uses unknown slot `{{{name}}}`; defined slots: {}",
                        defined()
                    )));
                }
            }
        }
        check_cycles(&slots).map_err(err)?;
        let pick = WeightedIndex::new(file.templates.iter().map(|t| t.weight))
            .map_err(|e| err(format!("template weights: {e}")))?;
        Ok(Self {
            origin: origin.to_string(),
            file,
            templates,
            slots,
            pick,
        })
    }

    /// Number of templates.
    pub fn len(&self) -> usize {
        self.templates.len()
    }

    pub fn is_empty(&self) -> bool {
        self.templates.is_empty()
    }

    /// Draws one prompt. Every draw comes from `rng`, so a seeded generator gives the same
    /// prompt again.
    pub fn fill(&self, rng: &mut impl Rng) -> Result<String> {
        let t = self
            .templates
            .get(self.pick.sample(rng))
            .ok_or_else(|| Error::msg("template index out of range"))?;
        let mut memo = HashMap::new();
        let mut out = String::new();
        self.expand(t, rng, &mut memo, &mut out, 0)?;
        Ok(tidy(&out))
    }

    fn expand(
        &self,
        parts: &[Part],
        rng: &mut impl Rng,
        memo: &mut HashMap<String, String>,
        out: &mut String,
        depth: usize,
    ) -> Result<()> {
        for p in parts {
            match p {
                Part::Text(t) => out.push_str(t),
                Part::Slot { name, article } => {
                    let v = self.value(name, rng, memo, depth)?;
                    if *article {
                        out.push_str(&with_article(&v));
                    } else {
                        out.push_str(&v);
                    }
                }
            }
        }
        Ok(())
    }

    fn value(
        &self,
        name: &str,
        rng: &mut impl Rng,
        memo: &mut HashMap<String, String>,
        depth: usize,
    ) -> Result<String> {
        if let Some(v) = memo.get(name) {
            return Ok(v.clone());
        }
        if depth > 64 {
            return Err(Error::msg(format!("slot `{name}` nests too deeply")));
        }
        let slot = self
            .slots
            .get(name)
            .ok_or_else(|| Error::msg(format!("unknown slot `{name}`")))?;
        let mut v = String::new();
        match slot {
            Slot::List(items) => {
                let item = &items[rng.gen_range(0..items.len())];
                self.expand(item, rng, memo, &mut v, depth + 1)?;
            }
            Slot::Features {
                items,
                min,
                max,
                join,
            } => {
                let k = rng.gen_range(*min..=*max);
                let chosen = rand::seq::index::sample(rng, items.len(), k).into_vec();
                for (j, &i) in chosen.iter().enumerate() {
                    if j > 0 {
                        v.push_str(join);
                    }
                    self.expand(&items[i], rng, memo, &mut v, depth + 1)?;
                }
            }
        }
        memo.insert(name.to_string(), v.clone());
        Ok(v)
    }
}

/// Trims and collapses runs of spaces (an empty feature slot leaves two).
fn tidy(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    let mut prev_space = false;
    for c in s.trim().chars() {
        if c == ' ' {
            if !prev_space {
                out.push(c);
            }
            prev_space = true;
        } else {
            out.push(c);
            prev_space = false;
        }
    }
    out
}

/// Fails naming the cycle when slots refer to each other in a loop.
fn check_cycles(slots: &BTreeMap<String, Slot>) -> std::result::Result<(), String> {
    // 0 = unvisited, 1 = on the current path, 2 = done.
    fn visit<'a>(
        name: &'a str,
        slots: &'a BTreeMap<String, Slot>,
        state: &mut HashMap<&'a str, u8>,
        path: &mut Vec<&'a str>,
    ) -> std::result::Result<(), String> {
        match state.get(name) {
            Some(2) => return Ok(()),
            Some(1) => {
                let from = path.iter().position(|&n| n == name).unwrap_or(0);
                let mut cycle: Vec<&str> = path[from..].to_vec();
                cycle.push(name);
                return Err(format!(
                    "slots refer to each other in a loop: {}",
                    cycle.join(" → ")
                ));
            }
            _ => {}
        }
        state.insert(name, 1);
        path.push(name);
        if let Some(slot) = slots.get(name) {
            for dep in slot_names(slot.items()) {
                visit(dep, slots, state, path)?;
            }
        }
        path.pop();
        state.insert(name, 2);
        Ok(())
    }
    let mut state = HashMap::new();
    for name in slots.keys() {
        visit(name, slots, &mut state, &mut Vec::new())?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_slots_articles_and_braces() {
        let p = parse_text("a {x} {a:y} {{z}}").unwrap();
        assert_eq!(
            p,
            vec![
                Part::Text("a ".into()),
                Part::Slot {
                    name: "x".into(),
                    article: false
                },
                Part::Text(" ".into()),
                Part::Slot {
                    name: "y".into(),
                    article: true
                },
                Part::Text(" {z}".into()),
            ]
        );
        assert!(parse_text("{x").unwrap_err().contains("never closed"));
        assert!(parse_text("x}").unwrap_err().contains("stray"));
        assert!(parse_text("{b:x}").unwrap_err().contains("modifier"));
        assert!(parse_text("{x y}").unwrap_err().contains("not a slot"));
        assert!(parse_text("{}").unwrap_err().contains("not a slot"));
    }

    #[test]
    fn articles() {
        assert_eq!(with_article("apple"), "an apple");
        assert_eq!(with_article("cat"), "a cat");
        assert_eq!(with_article("unicorn"), "a unicorn");
        assert_eq!(with_article("ugly duck"), "an ugly duck");
        assert_eq!(with_article("hour"), "an hour");
    }

    #[test]
    fn tidy_collapses_spaces() {
        assert_eq!(tidy(" a  b   c. "), "a b c.");
    }
}
