//! The quickstart: the built-in `quickstart` recipe (or `quickstart-tiny`) with the
//! `slm quickstart` flags applied — corpus size, vocabulary, steps, extra training settings,
//! seed.

use crate::recipe::{Kind, Recipe};
use slm_core::{Error, Result};

/// `slm quickstart`'s flags.
#[derive(Debug, Clone)]
pub struct QuickstartOptions {
    /// The seconds-long check of the pipeline (`quickstart-tiny`); the three sizes below
    /// are then the tiny recipe's.
    pub tiny: bool,
    pub corpus_bytes: usize,
    pub vocab_size: usize,
    /// Teacher training steps (the student trains 3/5 as many).
    pub steps: u64,
    /// Extra training settings of the teacher (`context=` ones also of the student).
    pub sets: Vec<String>,
    pub seed: u64,
}

/// The quickstart recipe with `o` applied.
pub fn recipe(o: &QuickstartOptions) -> Result<Recipe> {
    let mut r = Recipe::builtin(if o.tiny {
        "quickstart-tiny"
    } else {
        "quickstart"
    })?;
    r.header.seed = o.seed;
    let missing = |s: &str| Error::msg(format!("the quickstart recipe has no stage `{s}`"));
    if !o.tiny {
        let data = r.stage_mut("data").ok_or_else(|| missing("data"))?;
        if let Kind::Prepare(p) = &mut data.kind {
            if let Some(s) = &mut p.stories {
                s.bytes = o.corpus_bytes;
            }
            p.bpe_vocab = Some(o.vocab_size);
        }
    }
    let teacher = r
        .stage_mut("model")
        .and_then(|s| s.kind.train_mut())
        .ok_or_else(|| missing("model"))?;
    if !o.tiny {
        teacher.sets.push(format!("steps={}", o.steps));
    }
    teacher.sets.extend(o.sets.iter().cloned());
    let student = r
        .stage_mut("student")
        .and_then(|s| s.kind.train_mut())
        .ok_or_else(|| missing("student"))?;
    if !o.tiny {
        student
            .sets
            .push(format!("steps={}", (o.steps * 3 / 5).max(1)));
    }
    student.sets.extend(
        o.sets
            .iter()
            .filter(|s| s.trim_start().starts_with("context="))
            .cloned(),
    );
    Ok(r)
}
