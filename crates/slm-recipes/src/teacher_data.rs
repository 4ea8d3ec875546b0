//! Teacher-written data as `slm distill generate` runs it: the teacher's stable name, the
//! template sets' text, the run with a progress bar and the notes it ends with. The work is
//! `slm_distill::generate`.

use indicatif::{ProgressBar, ProgressStyle};
use slm_core::{Error, Result};
use slm_distill::generate::{self, templates::TemplateSet, GenerateConfig, Summary, Teacher};
use std::path::Path;

/// A stable name for the teacher (and tokenizer) in the settings file: canonical paths.
pub fn identity(spec: &str, tokenizer: Option<&Path>) -> String {
    let canon = |s: &Path| {
        std::fs::canonicalize(s)
            .map(|p| p.display().to_string())
            .unwrap_or_else(|_| s.display().to_string())
    };
    let mut name = canon(Path::new(spec));
    if let Some(t) = tokenizer {
        name.push_str(&format!(" (tokenizer {})", canon(t)));
    }
    name
}

/// The TOML text of a template set: a file, or a built-in set's source.
pub fn template_source(templates: &str) -> Result<String> {
    match TemplateSet::builtin_source(templates) {
        Some(s) if !Path::new(templates).exists() => Ok(s.to_string()),
        _ => std::fs::read_to_string(templates).map_err(|e| {
            Error::invalid(format!(
                "--templates `{templates}` is neither a file nor a built-in set ({}): {e}",
                TemplateSet::builtin_names().join(", ")
            ))
        }),
    }
}

/// Which teacher writes the samples.
pub enum AnyTeacher<'a> {
    Local(&'a Teacher<'a>),
    Remote(&'a slm_distill::generate::remote::RemoteTeacher),
}

/// Generates into `out` with a progress bar of kept samples.
pub fn generate_with_progress(
    teacher: AnyTeacher,
    templates: &TemplateSet,
    cfg: &GenerateConfig,
    out: &Path,
) -> Result<Summary> {
    let bar = ProgressBar::new(cfg.n as u64);
    bar.set_style(
        ProgressStyle::with_template(
            "generate {bar:30} {pos}/{len} kept  {msg}  [{elapsed} < {eta}]",
        )
        .unwrap_or_else(|_| ProgressStyle::default_bar()),
    );
    let mut started = false;
    let mut on_progress = |p: &generate::Progress| {
        if !started {
            started = true;
            bar.reset_elapsed();
        }
        bar.set_position(p.kept as u64);
        let rejected: usize = p.rejected.values().sum();
        bar.set_message(format!(
            "tried {}  rejected {rejected}  {:.0} tok/s",
            p.next_index,
            p.run_tokens as f64 / p.secs.max(1e-9)
        ));
    };
    let summary = match teacher {
        AnyTeacher::Local(t) => generate::run(t, templates, cfg, out, &mut on_progress),
        AnyTeacher::Remote(t) => generate::run_remote(t, templates, cfg, out, &mut on_progress),
    }
    .map_err(|e| Error::msg(format!("generating into {}: {e}", out.display())))?;
    bar.finish_and_clear();
    Ok(summary)
}

/// What the user should know after a run: a dropped partial line, nothing to do, the attempt
/// limit reached.
pub fn notes(summary: &Summary, cfg: &GenerateConfig, out: &Path) -> Vec<String> {
    let n = cfg.n;
    let mut notes = Vec::new();
    if summary.dropped_bytes > 0 {
        notes.push(format!(
            "resumed: dropped a partial last line ({} bytes) left by an interrupted run",
            summary.dropped_bytes
        ));
    }
    if summary.run_generated == 0 && summary.kept >= n {
        notes.push(format!(
            "{} already holds {} kept samples (--n {n}); nothing to do",
            out.display(),
            summary.kept
        ));
    }
    if summary.hit_attempt_limit {
        notes.push(format!(
            "warning: stopped at the attempt limit ({} samples generated in all) with {} of {n} \
             kept; loosen the filters or raise --max-attempts, then run again to continue",
            cfg.attempt_limit(),
            summary.kept
        ));
    }
    notes
}
