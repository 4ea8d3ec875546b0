//! `slm run`: a recipe of stages (docs/RECIPES.md), and `slm quickstart`, the built-in
//! quickstart recipe with its own flags. The work is `slm_recipes`.

use anyhow::Result;
use clap::Args as ClapArgs;
use slm_recipes::quickstart::{recipe, QuickstartOptions};
use slm_recipes::{run::run_root, Recipe};
use std::path::PathBuf;

#[derive(ClapArgs, Debug)]
#[command(
    after_help = "A recipe is a TOML file of ordered stages (prepare, train, distill, recover, prune, quantize, \
export, evaluate), each writing its own folder under the run root and a completion marker (stage.json). \
Run it again and finished stages are skipped, an interrupted training stage resumes from its checkpoint. \
Unknown keys and missing inputs are refused, with the recipe line, before any stage runs. The run root \
gets report.md with every stage's figures and plots. Format: docs/RECIPES.md.\n\n\
Examples:\n  slm run --list\n  slm run quickstart\n  slm run my-recipe.toml --out runs/exp1"
)]
pub struct Args {
    /// Recipe file, or the name of a built-in recipe (see --list).
    #[arg(required_unless_present = "list")]
    pub recipe: Option<String>,
    /// Run root (default: the recipe's `out`, else runs/NAME).
    #[arg(long, short = 'o')]
    pub out: Option<PathBuf>,
    /// List the built-in recipes.
    #[arg(long)]
    pub list: bool,
    /// Check the recipe and its inputs, then stop.
    #[arg(long)]
    pub check: bool,
}

#[derive(ClapArgs, Debug)]
#[command(
    after_help = "The built-in recipe `quickstart` (`quickstart-tiny` with --tiny); the same as \
`slm run quickstart`, with these flags. Runs in about 3–5 minutes on 2 cores and leaves:\n  \
OUT/data/             corpus.txt (a demo corpus, not a benchmark), tokenizer.json, train.bin, val.bin\n  \
OUT/model/            the trained model (HF layout), report.md, plots/loss.png, metrics.jsonl\n  \
OUT/model-wanda50/    the model pruned to 50% (Wanda)\n  \
OUT/student/          a student half as wide, distilled from OUT/model (forward KL + hidden states)\n  \
OUT/eval/             perplexity, size and decode speed of the three; OUT/report.md sums it all up\n\n\
Run it again to resume. Then try:  slm generate -m OUT/model --prompt \"Once upon a time\""
)]
pub struct QuickstartArgs {
    /// Output folder.
    #[arg(long, short = 'o', default_value = "runs/quickstart")]
    pub out: PathBuf,
    /// Bytes of built-in corpus to generate.
    #[arg(long, default_value_t = 3_000_000)]
    pub corpus_bytes: usize,
    /// BPE vocabulary size.
    #[arg(long, default_value_t = 2048)]
    pub vocab_size: usize,
    /// Training steps.
    #[arg(long, default_value_t = 500)]
    pub steps: u64,
    /// Extra training settings (as in `slm train --set`).
    #[arg(long = "set")]
    pub set: Vec<String>,
    /// A very small run (seconds) to check the pipeline works.
    #[arg(long)]
    pub tiny: bool,
    #[arg(long, default_value_t = 1)]
    pub seed: u64,
}

/// Runs `r` under `root`; exit status 130 when a training stage was interrupted.
fn execute(r: &Recipe, root: &std::path::Path) -> Result<()> {
    let t0 = std::time::Instant::now();
    let s = slm_recipes::run(r, root)?;
    if s.interrupted {
        std::process::exit(130);
    }
    println!(
        "{} stages run, {} finished earlier; total {:.0} s",
        s.ran,
        s.skipped,
        t0.elapsed().as_secs_f64()
    );
    Ok(())
}

pub fn run(a: Args) -> Result<()> {
    if a.list {
        for (name, about) in slm_recipes::run::builtin_list()? {
            println!("{name:<18} {about}");
        }
        return Ok(());
    }
    let r = Recipe::load(a.recipe.as_deref().unwrap_or_default())?;
    let root = run_root(&r, a.out.as_deref());
    if a.check {
        slm_recipes::run::check(&r, &root)?;
        println!(
            "{}: {} stages, inputs found; run root {}",
            r.origin,
            r.stages.len(),
            root.display()
        );
        return Ok(());
    }
    execute(&r, &root)
}

pub fn quickstart(a: QuickstartArgs) -> Result<()> {
    let r = recipe(&QuickstartOptions {
        tiny: a.tiny,
        corpus_bytes: a.corpus_bytes,
        vocab_size: a.vocab_size,
        steps: a.steps,
        sets: a.set,
        seed: a.seed,
    })?;
    execute(&r, &a.out)
}
