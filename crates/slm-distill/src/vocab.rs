//! The shared-vocabulary check of logit distillation.
//!
//! Logit losses compare the teacher's and the student's distributions entry by entry, so id
//! `i` must mean the same token to both. Sizes alone are not enough (two 32,000-token
//! vocabularies can differ), so the pieces are compared id by id and the first difference is
//! named. Sequence-level distillation (`slm distill generate`, training on the teacher's text)
//! needs no shared vocabulary and does not call this.

use slm_core::{Error, Result};
use slm_data::tokenizer::Tokenizer;

/// Fails unless `teacher` and `student` map every id to the same piece. `*_name` say where
/// each tokenizer came from (paths), for the message.
pub fn check_same_vocabulary(
    teacher: &dyn Tokenizer,
    teacher_name: &str,
    student: &dyn Tokenizer,
    student_name: &str,
) -> Result<()> {
    let (tv, sv) = (teacher.vocab_size(), student.vocab_size());
    let head = format!(
        "logit distillation needs one vocabulary, but the teacher's tokenizer ({teacher_name}, \
         {} tokens, {}) and the student's ({student_name}, {} tokens, {}) differ",
        tv,
        teacher.kind(),
        sv,
        student.kind()
    );
    for id in 0..tv.min(sv) as u32 {
        let (a, b) = (teacher.id_to_piece(id), student.id_to_piece(id));
        if a != b {
            return Err(Error::invalid(format!(
                "{head}: first at id {id}, teacher {:?} vs student {:?}. Train the student with \
                 the teacher's tokenizer (`slm data prepare --tokenizer <teacher's>`), or distil \
                 through data instead (`slm distill generate`)",
                a.unwrap_or_default(),
                b.unwrap_or_default()
            )));
        }
    }
    if tv != sv {
        return Err(Error::invalid(format!(
            "{head}: the first {} ids agree, then one vocabulary ends",
            tv.min(sv)
        )));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use slm_data::tokenizer::train::{save, train_chars};
    use slm_data::tokenizer::HfTokenizer;

    fn chars(text: &str, dir: &std::path::Path, name: &str) -> HfTokenizer {
        let tk = train_chars([text].iter(), &["<|endoftext|>".into()]).unwrap();
        let p = dir.join(name);
        save(&tk, &p).unwrap();
        HfTokenizer::from_file(&p).unwrap()
    }

    #[test]
    fn same_vocabularies_pass_and_different_ones_name_the_first_difference() {
        let dir = tempfile::tempdir().unwrap();
        let a = chars("abcdef", dir.path(), "a.json");
        let a2 = chars("fedcba", dir.path(), "a2.json");
        let b = chars("abxdef", dir.path(), "b.json");
        let c = chars("abcdefg", dir.path(), "c.json");
        check_same_vocabulary(&a, "a.json", &a2, "a2.json").unwrap();
        let e = check_same_vocabulary(&a, "a.json", &b, "b.json")
            .unwrap_err()
            .to_string();
        assert!(e.contains("a.json") && e.contains("b.json"), "{e}");
        assert!(e.contains("\"c\"") && e.contains("\"d\""), "{e}");
        let e = check_same_vocabulary(&a, "a.json", &c, "c.json")
            .unwrap_err()
            .to_string();
        assert!(e.contains("differ"), "{e}");
    }
}
