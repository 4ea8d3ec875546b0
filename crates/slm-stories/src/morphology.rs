//! English inflection for the built-in demo corpus: past tense, `-ing` forms, plurals,
//! `a`/`an`, capitals.
//!
//! Part of the built-in demo corpus (a toy for `slm quickstart`, not a benchmark). Word lists
//! hold base forms only; every other form is made here. Irregular verbs and nouns are listed
//! explicitly, and so are the verbs that double their last consonant (`hop` -> `hopped`);
//! everything else follows the regular spelling rules.

/// Verbs whose past tense is not `-ed`. Checked before the regular rules.
const IRREGULAR_PAST: &[(&str, &str)] = &[
    ("be", "was"),
    ("begin", "began"),
    ("bend", "bent"),
    ("bite", "bit"),
    ("blow", "blew"),
    ("break", "broke"),
    ("bring", "brought"),
    ("build", "built"),
    ("buy", "bought"),
    ("catch", "caught"),
    ("choose", "chose"),
    ("come", "came"),
    ("creep", "crept"),
    ("cut", "cut"),
    ("dig", "dug"),
    ("dive", "dove"),
    ("do", "did"),
    ("draw", "drew"),
    ("drink", "drank"),
    ("drive", "drove"),
    ("eat", "ate"),
    ("fall", "fell"),
    ("feed", "fed"),
    ("feel", "felt"),
    ("find", "found"),
    ("fly", "flew"),
    ("forget", "forgot"),
    ("freeze", "froze"),
    ("get", "got"),
    ("give", "gave"),
    ("go", "went"),
    ("grow", "grew"),
    ("hang", "hung"),
    ("have", "had"),
    ("hear", "heard"),
    ("hide", "hid"),
    ("hit", "hit"),
    ("hold", "held"),
    ("hurt", "hurt"),
    ("keep", "kept"),
    ("know", "knew"),
    ("lay", "laid"),
    ("lead", "led"),
    ("leave", "left"),
    ("let", "let"),
    ("lie", "lay"),
    ("light", "lit"),
    ("lose", "lost"),
    ("make", "made"),
    ("meet", "met"),
    ("put", "put"),
    ("read", "read"),
    ("ride", "rode"),
    ("ring", "rang"),
    ("run", "ran"),
    ("say", "said"),
    ("see", "saw"),
    ("sell", "sold"),
    ("send", "sent"),
    ("set", "set"),
    ("shake", "shook"),
    ("shine", "shone"),
    ("sing", "sang"),
    ("sink", "sank"),
    ("sit", "sat"),
    ("sleep", "slept"),
    ("slide", "slid"),
    ("speak", "spoke"),
    ("spring", "sprang"),
    ("spin", "spun"),
    ("stand", "stood"),
    ("stick", "stuck"),
    ("sting", "stung"),
    ("sweep", "swept"),
    ("swim", "swam"),
    ("swing", "swung"),
    ("take", "took"),
    ("teach", "taught"),
    ("tell", "told"),
    ("think", "thought"),
    ("throw", "threw"),
    ("wake", "woke"),
    ("wear", "wore"),
    ("win", "won"),
    ("write", "wrote"),
];

/// Verbs that double their final consonant before `-ed` and `-ing` (`stop` -> `stopped`).
const DOUBLES: &[&str] = &[
    "bat", "beg", "begin", "bob", "chat", "chop", "clap", "cut", "dab", "dig", "dip", "drag",
    "drip", "drop", "drum", "flap", "flip", "forget", "get", "grab", "grin", "hit", "hop", "hug",
    "hum", "jog", "knit", "let", "mop", "nap", "nod", "pad", "pat", "pet", "plan", "plop", "put",
    "rip", "rub", "run", "scrub", "set", "shop", "shrug", "sip", "sit", "skid", "skip", "slam",
    "slip", "snap", "sob", "spin", "spot", "step", "stir", "stop", "swap", "swim", "tap", "trip",
    "tug", "wag", "win", "wrap", "yip", "zip",
];

/// Nouns whose plural is not made by `-s`/`-es`/`-ies`.
const IRREGULAR_PLURAL: &[(&str, &str)] = &[
    ("calf", "calves"),
    ("child", "children"),
    ("deer", "deer"),
    ("elf", "elves"),
    ("fish", "fish"),
    ("foot", "feet"),
    ("goldfish", "goldfish"),
    ("goose", "geese"),
    ("jellyfish", "jellyfish"),
    ("half", "halves"),
    ("knife", "knives"),
    ("leaf", "leaves"),
    ("loaf", "loaves"),
    ("man", "men"),
    ("moose", "moose"),
    ("mouse", "mice"),
    ("person", "people"),
    ("potato", "potatoes"),
    ("salmon", "salmon"),
    ("scarf", "scarves"),
    ("sheep", "sheep"),
    ("shelf", "shelves"),
    ("starfish", "starfish"),
    ("tomato", "tomatoes"),
    ("tooth", "teeth"),
    ("wolf", "wolves"),
    ("woman", "women"),
    ("mango", "mangoes"),
];

fn lookup(table: &[(&str, &'static str)], word: &str) -> Option<&'static str> {
    table.iter().find(|(k, _)| *k == word).map(|(_, v)| *v)
}

fn is_vowel(c: char) -> bool {
    matches!(c, 'a' | 'e' | 'i' | 'o' | 'u')
}

fn last_char(word: &str) -> Option<char> {
    word.chars().next_back()
}

/// The simple past of a verb: `walk` -> `walked`, `carry` -> `carried`, `go` -> `went`.
pub fn past(verb: &str) -> String {
    if let Some(p) = lookup(IRREGULAR_PAST, verb) {
        return p.to_string();
    }
    if DOUBLES.contains(&verb) {
        let mut s = verb.to_string();
        if let Some(c) = last_char(verb) {
            s.push(c);
        }
        s.push_str("ed");
        return s;
    }
    if verb.ends_with('e') {
        return format!("{verb}d");
    }
    if let Some(stem) = verb.strip_suffix('y') {
        if !stem.ends_with(is_vowel) && !stem.is_empty() {
            return format!("{stem}ied");
        }
    }
    format!("{verb}ed")
}

/// The `-ing` form of a verb: `make` -> `making`, `hop` -> `hopping`, `tie` -> `tying`.
pub fn ing(verb: &str) -> String {
    if DOUBLES.contains(&verb) {
        let mut s = verb.to_string();
        if let Some(c) = last_char(verb) {
            s.push(c);
        }
        s.push_str("ing");
        return s;
    }
    if let Some(stem) = verb.strip_suffix("ie") {
        return format!("{stem}ying");
    }
    if verb.ends_with("ee") || verb.ends_with("ye") || verb.ends_with("oe") || verb == "be" {
        return format!("{verb}ing");
    }
    if let Some(stem) = verb.strip_suffix('e') {
        return format!("{stem}ing");
    }
    format!("{verb}ing")
}

/// The plural of a noun; for a phrase (`teddy bear`) the last word is inflected.
pub fn plural(noun: &str) -> String {
    let (head, last) = match noun.rfind(' ') {
        Some(i) => noun.split_at(i + 1),
        None => ("", noun),
    };
    let inflected = if let Some(p) = lookup(IRREGULAR_PLURAL, last) {
        p.to_string()
    } else if ["s", "x", "z", "ch", "sh"]
        .iter()
        .any(|e| last.ends_with(e))
    {
        format!("{last}es")
    } else if let Some(stem) = last.strip_suffix('y') {
        if !stem.is_empty() && !stem.ends_with(is_vowel) {
            format!("{stem}ies")
        } else {
            format!("{last}s")
        }
    } else {
        format!("{last}s")
    };
    format!("{head}{inflected}")
}

/// `a` or `an` for the phrase that follows, judged by its first word's sound.
pub fn article(phrase: &str) -> &'static str {
    let word: String = phrase
        .chars()
        .take_while(|c| c.is_alphabetic())
        .flat_map(char::to_lowercase)
        .collect();
    const AN_EXCEPTIONS: &[&str] = &["hour", "honest"];
    const A_PREFIXES: &[&str] = &["uni", "use", "usu", "eu", "one", "once", "ukulele"];
    if AN_EXCEPTIONS.iter().any(|w| word.starts_with(w)) {
        return "an";
    }
    if A_PREFIXES.iter().any(|p| word.starts_with(p)) {
        return "a";
    }
    match word.chars().next() {
        Some(c) if is_vowel(c) => "an",
        _ => "a",
    }
}

/// Appends `text` to `out` with its first letter in upper case.
pub fn push_capitalized(out: &mut String, text: &str) {
    let mut chars = text.chars();
    if let Some(first) = chars.next() {
        out.extend(first.to_uppercase());
        out.push_str(chars.as_str());
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn corpus_past_tense_regular_and_irregular() {
        let cases = [
            ("walk", "walked"),
            ("smile", "smiled"),
            ("carry", "carried"),
            ("play", "played"),
            ("hop", "hopped"),
            ("wag", "wagged"),
            ("visit", "visited"),
            ("go", "went"),
            ("swim", "swam"),
            ("dig", "dug"),
            ("fly", "flew"),
            ("build", "built"),
            ("catch", "caught"),
            ("cry", "cried"),
            ("stay", "stayed"),
            ("hurry", "hurried"),
        ];
        for (base, want) in cases {
            assert_eq!(past(base), want, "past of {base}");
        }
    }

    #[test]
    fn corpus_ing_forms() {
        let cases = [
            ("make", "making"),
            ("run", "running"),
            ("swim", "swimming"),
            ("tie", "tying"),
            ("see", "seeing"),
            ("play", "playing"),
            ("ride", "riding"),
            ("begin", "beginning"),
            ("visit", "visiting"),
        ];
        for (base, want) in cases {
            assert_eq!(ing(base), want, "ing of {base}");
        }
    }

    #[test]
    fn corpus_plurals_and_articles() {
        let cases = [
            ("cat", "cats"),
            ("box", "boxes"),
            ("bunny", "bunnies"),
            ("toy", "toys"),
            ("mouse", "mice"),
            ("sheep", "sheep"),
            ("leaf", "leaves"),
            ("teddy bear", "teddy bears"),
            ("peach", "peaches"),
            ("potato", "potatoes"),
        ];
        for (base, want) in cases {
            assert_eq!(plural(base), want, "plural of {base}");
        }
        assert_eq!(article("apple"), "an");
        assert_eq!(article("red apple"), "a");
        assert_eq!(article("umbrella"), "an");
        assert_eq!(article("unicorn"), "a");
        assert_eq!(article("hour"), "an");
        assert_eq!(article("Owl"), "an");
        let mut s = String::new();
        push_capitalized(&mut s, "once upon a time");
        assert_eq!(s, "Once upon a time");
    }
}
