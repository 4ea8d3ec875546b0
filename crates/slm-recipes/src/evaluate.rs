//! `slm eval`'s measurement: perplexity of a model on a text, and optionally its agreement with
//! a teacher on the same positions, with progress bars, as JSON or as the text table.

use crate::progress::{bar_callback, progress_bar};
use slm_core::Result;
use slm_data::tokenizer::Tokenizer;
use slm_eval::{perplexity, teacher_agreement, AgreementReport, PplOptions, PplReport};
use slm_model::Llama;
use std::path::Path;

/// What `slm eval` measured.
#[derive(Debug, Clone)]
pub struct EvalReport {
    pub ppl: PplReport,
    /// With a teacher: top-1 agreement, KL(teacher ‖ model), the teacher's perplexity.
    pub agreement: Option<AgreementReport>,
}

/// Perplexity of `model` on `text`, and its agreement with `teacher` when given.
pub fn evaluate(
    model: &Llama,
    teacher: Option<&Llama>,
    tokenizer: &dyn Tokenizer,
    text: &str,
    opts: &PplOptions,
) -> Result<EvalReport> {
    let bar = progress_bar("perplexity", "windows");
    let mut progress = bar_callback(&bar);
    let ppl = perplexity(model, tokenizer, text, opts, &mut progress)?;
    bar.finish_and_clear();
    let agreement = match teacher {
        None => None,
        Some(t) => {
            bar.reset();
            let a = teacher_agreement(model, t, tokenizer, text, opts, &mut progress)?;
            bar.finish_and_clear();
            Some(a)
        }
    };
    Ok(EvalReport { ppl, agreement })
}

impl EvalReport {
    /// One JSON object: the perplexity report, the model and file, and the teacher figures.
    pub fn to_json(
        &self,
        model: &str,
        file: &Path,
        teacher: Option<&str>,
    ) -> Result<serde_json::Value> {
        let mut v = serde_json::to_value(&self.ppl)?;
        v["model"] = model.into();
        v["file"] = file.display().to_string().into();
        if let (Some(a), Some(t)) = (&self.agreement, teacher) {
            v["teacher"] = t.into();
            v["top1_agreement"] = a.top1_agreement.into();
            v["kl_to_teacher"] = a.kl_to_teacher.into();
            v["teacher_ppl"] = a.teacher_ppl.into();
        }
        Ok(v)
    }

    /// The text table `slm eval` prints.
    pub fn to_text(&self, file: &Path) -> String {
        let r = &self.ppl;
        let mut s = format!(
            "file        {}\ntokens      {} scored in {} windows of ≤{}\nmean NLL    {:.4}\nperplexity  {:.4}\nspeed       {:.0} tokens/s ({:.1} s)",
            file.display(),
            r.tokens,
            r.windows,
            r.ctx,
            r.mean_nll,
            r.ppl,
            r.tokens_per_sec,
            r.seconds
        );
        if let Some(a) = &self.agreement {
            s += &format!(
                "\nteacher     perplexity {:.4}\nagreement   top-1 {:.2}%\nKL          {:.4} nats/token (teacher ‖ model)",
                a.teacher_ppl,
                100.0 * a.top1_agreement,
                a.kl_to_teacher
            );
        }
        s
    }
}
