//! Running a recipe: inputs checked before any work, then each stage in order into its own
//! folder under the run root, ending with a completion marker (`stage.json`: the stage's
//! settings and figures). A rerun skips finished stages whose settings are unchanged (as long
//! as every stage before them was skipped too), resumes an interrupted training stage from
//! its checkpoint and starts any other unfinished stage again. After every stage the run
//! root's `report.md` is rewritten with every stage's figures and plots.

use crate::recipe::{Kind, Recipe};
use crate::stages;
use serde::{Deserialize, Serialize};
use slm_core::{Error, Result};
use std::fmt::Write as _;
use std::path::{Path, PathBuf};

/// The completion marker in each stage's folder.
pub const MARKER: &str = "stage.json";

/// What a finished stage left: its figures and files, for the console and report.md.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct StageRecord {
    pub kind: String,
    /// The stage's settings as they ran (a rerun with other settings runs it again).
    pub definition: String,
    pub seconds: f64,
    /// (what, value) lines.
    pub figures: Vec<(String, String)>,
    /// Files worth opening (plots are shown in the report), relative to the run root.
    pub files: Vec<String>,
    /// A Markdown block for the report (a table, samples).
    pub markdown: String,
}

/// How a run ended.
#[derive(Debug)]
pub struct RunSummary {
    /// A training stage was stopped (Ctrl-C) after writing a checkpoint.
    pub interrupted: bool,
    pub report: PathBuf,
    /// Stages run this time and stages skipped as finished.
    pub ran: usize,
    pub skipped: usize,
}

/// The run root: `out`, else the recipe's `out`, else `runs/NAME`.
pub fn run_root(recipe: &Recipe, out: Option<&Path>) -> PathBuf {
    out.map(Path::to_path_buf)
        .or_else(|| recipe.header.out.clone())
        .unwrap_or_else(|| PathBuf::from("runs").join(&recipe.header.name))
}

/// The settings a stage ran with, as compared on a rerun.
fn definition(recipe: &Recipe, i: usize) -> String {
    format!("seed {}; {:?}", recipe.header.seed, recipe.stages[i].kind)
}

fn read_marker(dir: &Path) -> Option<StageRecord> {
    serde_json::from_slice(&std::fs::read(dir.join(MARKER)).ok()?).ok()
}

/// Checks every stage's inputs and settings under `root`; nothing is written.
pub fn check(recipe: &Recipe, root: &Path) -> Result<()> {
    for i in 0..recipe.stages.len() {
        stages::check(recipe, root, i)?;
    }
    Ok(())
}

/// Runs `recipe` under `root`.
pub fn run(recipe: &Recipe, root: &Path) -> Result<RunSummary> {
    check(recipe, root)?;
    std::fs::create_dir_all(root).map_err(|e| Error::io(root, e))?;
    let n = recipe.stages.len();
    let mut records: Vec<Option<(StageRecord, bool)>> = vec![None; n];
    let mut all_skipped = true;
    let (mut ran, mut skipped) = (0, 0);
    let report = root.join("report.md");
    for (i, stage) in recipe.stages.iter().enumerate() {
        let dir = root.join(&stage.name);
        let def = definition(recipe, i);
        println!("[{}/{n}] {} ({})", i + 1, stage.name, stage.kind.name());
        let marker = read_marker(&dir);
        if all_skipped && marker.as_ref().is_some_and(|m| m.definition == def) {
            if let Some(m) = marker {
                println!(
                    "      finished earlier ({}); skipped",
                    dir.join(MARKER).display()
                );
                print_figures(&m);
                records[i] = Some((m, false));
                skipped += 1;
                continue;
            }
        }
        all_skipped = false;
        let resumable = matches!(
            stage.kind,
            Kind::Train(_) | Kind::Distill(_) | Kind::Recover(_)
        ) && marker.is_none()
            && dir.join("checkpoints").join("latest.ckpt").is_file();
        if dir.exists() && !resumable {
            std::fs::remove_dir_all(&dir).map_err(|e| Error::io(&dir, e))?;
        }
        let t0 = std::time::Instant::now();
        let outcome = stages::run(recipe, root, i, &dir)?;
        let Some(mut record) = outcome else {
            write_report(recipe, root, &records)?;
            println!(
                "interrupted in stage `{}`: its checkpoint is in {}; run the same command again to resume",
                stage.name,
                dir.join("checkpoints").display()
            );
            return Ok(RunSummary {
                interrupted: true,
                report,
                ran,
                skipped,
            });
        };
        record.kind = stage.kind.name().into();
        record.definition = def;
        record.seconds = t0.elapsed().as_secs_f64();
        print_figures(&record);
        slm_io::atomic::write_atomic(&dir.join(MARKER), &serde_json::to_vec_pretty(&record)?)?;
        records[i] = Some((record, true));
        ran += 1;
        write_report(recipe, root, &records)?;
    }
    write_report(recipe, root, &records)?;
    println!("report: {}", report.display());
    Ok(RunSummary {
        interrupted: false,
        report,
        ran,
        skipped,
    })
}

fn print_figures(r: &StageRecord) {
    for (k, v) in &r.figures {
        println!("      {k}: {v}");
    }
}

/// report.md at the run root: a table of stages, then each stage's figures, plots and files.
fn write_report(
    recipe: &Recipe,
    root: &Path,
    records: &[Option<(StageRecord, bool)>],
) -> Result<()> {
    let h = &recipe.header;
    let mut md = format!("# Recipe `{}`\n\n", h.name);
    if !h.description.is_empty() {
        let _ = writeln!(md, "{}\n", h.description.trim());
    }
    let _ = writeln!(
        md,
        "From {}, seed {}, run in `{}`.\n",
        recipe.origin,
        h.seed,
        root.display()
    );
    md.push_str("| stage | kind | status | seconds |\n|---|---|---|---|\n");
    for (s, r) in recipe.stages.iter().zip(records) {
        let (status, secs) = match r {
            Some((r, true)) => ("ran", format!("{:.1}", r.seconds)),
            Some((r, false)) => ("finished earlier", format!("{:.1}", r.seconds)),
            None => ("not run", "-".into()),
        };
        let _ = writeln!(
            md,
            "| [{0}]({0}/) | {1} | {status} | {secs} |",
            s.name,
            s.kind.name()
        );
    }
    for (s, r) in recipe.stages.iter().zip(records) {
        let Some((r, _)) = r else { continue };
        let _ = writeln!(md, "\n## {} ({})\n", s.name, s.kind.name());
        for (k, v) in &r.figures {
            let _ = writeln!(md, "- {k}: {v}");
        }
        for f in &r.files {
            if f.ends_with(".png") {
                let _ = writeln!(md, "\n![{f}]({f})");
            } else {
                let _ = writeln!(md, "- [{f}]({f})");
            }
        }
        if !r.markdown.is_empty() {
            let _ = writeln!(md, "\n{}", r.markdown.trim_end());
        }
    }
    slm_io::atomic::write_atomic(&root.join("report.md"), md.as_bytes())
}

/// `(name, first line of the description)` of every built-in recipe.
pub fn builtin_list() -> Result<Vec<(String, String)>> {
    crate::recipe::BUILTIN
        .iter()
        .map(|(name, _)| {
            let r = Recipe::builtin(name)?;
            Ok((
                name.to_string(),
                r.header
                    .description
                    .lines()
                    .next()
                    .unwrap_or("")
                    .to_string(),
            ))
        })
        .collect()
}
