//! Template filling for the built-in corpus: `{slot}` placeholders in sentence templates.
//!
//! Part of the built-in demo corpus (a toy for `slm quickstart`, not a benchmark).
//!
//! A template is plain text with slots in braces. The slot's key is looked up by a [`Slots`]
//! source (the story teller), and two decorations are applied here:
//! - a key starting with `a_` gets `a` or `an` in front of its value (`{a_animal}` -> `an owl`);
//! - a key whose first letter is upper case gets its value capitalised (`{He}` -> `She`).
//!
//! A value may itself contain slots; it is filled again (to a small depth), so word-list
//! entries such as `wag {phis} tail` work.

use super::morphology::{article, push_capitalized};

/// Fills slot keys with text.
pub trait Slots {
    /// Append the value for `key` (lower case, no decorations) to `out`; false if unknown.
    fn fill(&mut self, key: &str, out: &mut String) -> bool;

    /// Called with each piece of literal template text (for checks in tests).
    fn literal(&mut self, _text: &str) {}
}

const MAX_DEPTH: usize = 4;

/// Appends `template` to `out` with every slot filled. An unknown slot is written back as
/// `{key}` so that tests can find it; nothing here panics.
pub fn render<S: Slots>(template: &str, slots: &mut S, out: &mut String) {
    render_depth(template, slots, out, 0);
}

fn render_depth<S: Slots>(template: &str, slots: &mut S, out: &mut String, depth: usize) {
    let mut rest = template;
    while let Some(open) = rest.find('{') {
        let (lit, after) = rest.split_at(open);
        if !lit.is_empty() {
            slots.literal(lit);
            out.push_str(lit);
        }
        let body = &after[1..];
        let Some(close) = body.find('}') else {
            out.push_str(after);
            return;
        };
        let key = &body[..close];
        rest = &body[close + 1..];
        fill_key(key, slots, out, depth);
    }
    if !rest.is_empty() {
        slots.literal(rest);
        out.push_str(rest);
    }
}

fn fill_key<S: Slots>(key: &str, slots: &mut S, out: &mut String, depth: usize) {
    let (with_article, bare) = match key.strip_prefix("a_") {
        Some(b) => (true, b),
        None => match key.strip_prefix("A_") {
            Some(b) => (true, b),
            None => (false, key),
        },
    };
    let capital = key.chars().next().is_some_and(char::is_uppercase);
    let mut lower = String::with_capacity(bare.len());
    lower.extend(bare.chars().flat_map(char::to_lowercase));

    let mut raw = String::new();
    if !slots.fill(&lower, &mut raw) {
        out.push('{');
        out.push_str(key);
        out.push('}');
        return;
    }
    let mut value = if raw.contains('{') && depth < MAX_DEPTH {
        let mut v = String::with_capacity(raw.len() + 16);
        render_depth(&raw, slots, &mut v, depth + 1);
        v
    } else {
        raw
    };
    if with_article {
        let mut v = String::with_capacity(value.len() + 3);
        v.push_str(article(&value));
        v.push(' ');
        v.push_str(&value);
        value = v;
    }
    if capital {
        push_capitalized(out, &value);
    } else {
        out.push_str(&value);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    struct Fixed;
    impl Slots for Fixed {
        fn fill(&mut self, key: &str, out: &mut String) -> bool {
            match key {
                "he" => out.push_str("she"),
                "animal" => out.push_str("owl"),
                "pet" => out.push_str("{animal} friend"),
                _ => return false,
            }
            true
        }
    }

    #[test]
    fn corpus_template_fills_articles_capitals_and_nesting() {
        let mut out = String::new();
        render(
            "{He} saw {a_animal}. {A_pet} came. {nope}",
            &mut Fixed,
            &mut out,
        );
        assert_eq!(out, "She saw an owl. An owl friend came. {nope}");
        let mut out = String::new();
        render("unclosed {he", &mut Fixed, &mut out);
        assert_eq!(out, "unclosed {he");
    }
}
