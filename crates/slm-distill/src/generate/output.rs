//! The files of a generation run and how a run resumes from them.
//!
//! - `OUT` (JSONL): the kept samples, one object per line, in index order. `slm data prepare`
//!   reads its `text` fields directly.
//! - `OUT.rejected` (JSONL, deliberately not named `.jsonl` so that `slm data prepare` on a
//!   folder or a `*.jsonl` glob never trains on it): the rejected samples with the reason.
//! - `OUT.settings.json`: the settings that decide the samples (teacher, templates, seed,
//!   sampling, filters, de-duplication). A resumed run must match them.
//!
//! Every sample has an index; its prompt and sampling seed derive from (seed, index), and
//! samples are judged in index order, so the sequence of decisions is one fixed sequence and
//! `--n` only says where it stops. Resuming: drop a trailing partial line (a kill in the middle
//! of a write), read the kept samples, continue at the index after the last kept one, and
//! drop rejected lines past it (they are generated again, identically). Rejected lines are
//! written before the kept lines of the same step, so none before the last kept index is lost.

use super::filters::{Reject, Scores};
use serde::{Deserialize, Serialize};
use slm_core::{error::IoContext, Error, Result};
use std::collections::BTreeMap;
use std::fs::{File, OpenOptions};
use std::io::Write;
use std::path::{Path, PathBuf};

/// One sample as written.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Record {
    pub index: u64,
    pub prompt: String,
    /// The training text: prompt + continuation, or the continuation alone (per template set).
    pub text: String,
    /// Tokens the teacher generated.
    pub tokens: usize,
    /// Why generation ended: `eos`, `bos` (the teacher began another document), `max_tokens`,
    /// `stop_string` or `context_full`.
    pub stop: String,
    pub scores: Scores,
    pub kept: bool,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub reject: Option<Reject>,
    /// Index of the kept sample a rejected duplicate repeats.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub duplicate_of: Option<u64>,
    /// A remote teacher's provenance: endpoint, model, sampling settings, seed, response id.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub teacher: Option<serde_json::Value>,
    /// A remote teacher's top-k log-probabilities in the student's vocabulary.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub topk: Option<super::remote::TopK>,
}

fn with_suffix(out: &Path, suffix: &str) -> PathBuf {
    let mut s = out.as_os_str().to_os_string();
    s.push(suffix);
    PathBuf::from(s)
}

/// `OUT.rejected`.
pub fn rejected_path(out: &Path) -> PathBuf {
    with_suffix(out, ".rejected")
}

/// `OUT.settings.json`.
pub fn settings_path(out: &Path) -> PathBuf {
    with_suffix(out, ".settings.json")
}

/// Complete lines of `path` (a trailing line without `\n` is cut off the file) parsed as
/// records; `keep` decides, in order, where the kept prefix ends (the file is cut there too).
/// Returns the records kept and the bytes of partial line dropped.
fn read_records(path: &Path, keep: impl Fn(&Record) -> bool) -> Result<(Vec<Record>, usize)> {
    let bytes = std::fs::read(path).with_path(path)?;
    let complete = bytes.iter().rposition(|&b| b == b'\n').map_or(0, |p| p + 1);
    let partial = bytes.len() - complete;
    let text = std::str::from_utf8(&bytes[..complete]).map_err(|e| {
        Error::format(
            path,
            format!(
                "not UTF-8 at byte {}: not a file this command wrote",
                e.valid_up_to()
            ),
        )
    })?;
    let mut records = Vec::new();
    let mut end = 0usize;
    let mut offset = 0usize;
    for (i, line) in text.split_inclusive('\n').enumerate() {
        let start = offset;
        offset += line.len();
        if line.trim().is_empty() {
            end = offset;
            continue;
        }
        let r: Record = serde_json::from_str(line).map_err(|e| {
            Error::format(
                path,
                format!(
                    "line {} (byte offset {start}) is not a sample this command wrote: {e}. \
                     Fix or remove the line, or start again with --overwrite",
                    i + 1
                ),
            )
        })?;
        if let Some(prev) = records.last().map(|p: &Record| p.index) {
            if r.index <= prev {
                return Err(Error::format(
                    path,
                    format!(
                        "line {}: index {} follows index {prev}; samples must be in index order",
                        i + 1,
                        r.index
                    ),
                ));
            }
        }
        if !keep(&r) {
            break;
        }
        records.push(r);
        end = offset;
    }
    if end < bytes.len() {
        let f = OpenOptions::new().write(true).open(path).with_path(path)?;
        f.set_len(end as u64).with_path(path)?;
    }
    Ok((records, partial))
}

/// What an existing run left.
#[derive(Debug, Default)]
pub struct Existing {
    /// Kept samples in index order.
    pub kept: Vec<Record>,
    /// The next sample index to generate.
    pub next_index: u64,
    /// Rejected samples before `next_index`, by reason.
    pub rejected: BTreeMap<Reject, usize>,
    /// Bytes of a partial last line dropped from the kept file.
    pub dropped_bytes: usize,
}

/// Compares the settings of the existing run with this one's; names every difference.
fn check_settings(path: &Path, old: &serde_json::Value, new: &serde_json::Value) -> Result<()> {
    let (Some(o), Some(n)) = (old.get("check"), new.get("check")) else {
        return Err(Error::format(
            path,
            "no `check` object: not a settings file of this command",
        ));
    };
    let (Some(o), Some(n)) = (o.as_object(), n.as_object()) else {
        return Err(Error::format(path, "`check` is not an object"));
    };
    let mut diffs = Vec::new();
    for (k, nv) in n {
        match o.get(k) {
            Some(ov) if ov == nv => {}
            Some(ov) => diffs.push(format!("{k}: was {ov}, now {nv}")),
            None => diffs.push(format!("{k}: not set before, now {nv}")),
        }
    }
    for k in o.keys().filter(|k| !n.contains_key(*k)) {
        diffs.push(format!("{k}: set before, not now"));
    }
    if diffs.is_empty() {
        return Ok(());
    }
    Err(Error::invalid(format!(
        "the output was begun with other settings ({}); resuming would mix two kinds of \
         sample. Resume with the same settings, choose another --out, or pass --overwrite to \
         start again",
        diffs.join("; ")
    )))
}

fn remove_if_exists(path: &Path) -> Result<()> {
    match std::fs::remove_file(path) {
        Ok(()) => Ok(()),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(()),
        Err(e) => Err(Error::io(path, e)),
    }
}

/// Writes `value` to `path` atomically (temporary file, then rename).
fn write_atomic(path: &Path, value: &serde_json::Value) -> Result<()> {
    let tmp = with_suffix(path, ".tmp");
    let text = serde_json::to_string_pretty(value)?;
    std::fs::write(&tmp, text + "\n").with_path(&tmp)?;
    std::fs::rename(&tmp, path).with_path(path)
}

/// Opens (or resumes) the output files of a run whose deciding settings are `settings`
/// (an object with a `check` object). With `overwrite`, starts again.
pub fn open(
    out: &Path,
    settings: &serde_json::Value,
    overwrite: bool,
) -> Result<(Existing, Writer)> {
    let rej = rejected_path(out);
    let set = settings_path(out);
    if out.is_dir() {
        return Err(Error::invalid(format!(
            "--out {} is a directory; name a file such as {}/synth.jsonl",
            out.display(),
            out.display()
        )));
    }
    if overwrite {
        for p in [out, rej.as_path(), set.as_path()] {
            remove_if_exists(p)?;
        }
    }
    let mut existing = Existing::default();
    if out.exists() {
        if !set.exists() {
            return Err(Error::invalid(format!(
                "{} exists but {} does not, so it was not begun by `slm distill generate`; \
                 choose another --out, or pass --overwrite to replace it",
                out.display(),
                set.display()
            )));
        }
        let old: serde_json::Value =
            serde_json::from_str(&std::fs::read_to_string(&set).with_path(&set)?)
                .map_err(|e| Error::format(&set, format!("invalid JSON: {e}")))?;
        check_settings(&set, &old, settings)?;
        let (kept, dropped) = read_records(out, |_| true)?;
        if let Some(bad) = kept.iter().find(|r| !r.kept) {
            return Err(Error::format(
                out,
                format!(
                    "sample {} is marked as not kept in the kept file",
                    bad.index
                ),
            ));
        }
        existing.next_index = kept.last().map_or(0, |r| r.index + 1);
        existing.kept = kept;
        existing.dropped_bytes = dropped;
        if rej.exists() {
            let next = existing.next_index;
            let (rejected, _) = read_records(&rej, |r| r.index < next)?;
            for r in rejected {
                let reason = r.reject.ok_or_else(|| {
                    Error::format(&rej, format!("sample {} has no `reject` reason", r.index))
                })?;
                *existing.rejected.entry(reason).or_default() += 1;
            }
        }
    } else {
        // Side files of an output that is gone describe nothing: start clean.
        remove_if_exists(&rej)?;
        if let Some(dir) = out.parent().filter(|d| !d.as_os_str().is_empty()) {
            std::fs::create_dir_all(dir).with_path(dir)?;
        }
        write_atomic(&set, settings)?;
        File::create(out).with_path(out)?;
    }
    let append = |p: &Path| {
        OpenOptions::new()
            .create(true)
            .append(true)
            .open(p)
            .with_path(p)
    };
    let writer = Writer {
        kept: append(out)?,
        rejected: append(&rej)?,
        kept_path: out.to_path_buf(),
        rejected_path: rej,
    };
    Ok((existing, writer))
}

/// Appends the lines of one step: rejected first, then kept (see the module notes).
pub struct Writer {
    kept: File,
    rejected: File,
    kept_path: PathBuf,
    rejected_path: PathBuf,
}

impl Writer {
    pub fn append(&mut self, kept: &[Record], rejected: &[Record]) -> Result<()> {
        fn lines(rs: &[Record]) -> Result<String> {
            let mut s = String::new();
            for r in rs {
                s.push_str(&serde_json::to_string(r)?);
                s.push('\n');
            }
            Ok(s)
        }
        if !rejected.is_empty() {
            self.rejected
                .write_all(lines(rejected)?.as_bytes())
                .and_then(|_| self.rejected.flush())
                .with_path(&self.rejected_path)?;
        }
        if !kept.is_empty() {
            self.kept
                .write_all(lines(kept)?.as_bytes())
                .and_then(|_| self.kept.flush())
                .with_path(&self.kept_path)?;
        }
        Ok(())
    }
}

/// The kept samples of a run's `OUT`, complete lines only (the file is not changed: a run
/// may still be appending to it).
pub fn read_kept(out: &Path) -> Result<Vec<Record>> {
    let bytes = std::fs::read(out).with_path(out)?;
    let complete = bytes.iter().rposition(|&b| b == b'\n').map_or(0, |p| p + 1);
    bytes[..complete]
        .split(|&b| b == b'\n')
        .filter(|l| !l.is_empty())
        .enumerate()
        .map(|(i, l)| {
            serde_json::from_slice(l)
                .map_err(|e| Error::format(out, format!("line {}: {e}", i + 1)))
        })
        .collect()
}
