//! The recipes layer (L6 in docs/ARCHITECTURE.md): the pipelines `slm` runs, as library
//! functions the CLI only calls, and `slm run`'s declarative recipes of ordered, resumable
//! stages.
//!
//! - [`recipe`]: the recipe file (TOML), parsed with every key checked.
//! - [`run`]: running a recipe: stage folders, completion markers, resuming, report.md.
//! - [`stages`]: what each stage kind checks and does.
//! - [`quickstart`]: the built-in quickstart recipe with `slm quickstart`'s flags.
//! - [`train`]: a training run's starting model and the run itself (train, save, report).
//! - [`prune`]: pruning with calibration checked first, OBD's Fisher, the sweep.
//! - [`quantize`], [`export`]: GGUF and Hugging Face output; [`inspect`]: a model's make-up.
//! - [`teacher_data`]: teacher-written data runs (`slm distill generate`).
//! - [`calib`]: calibration files and windows; [`stories`]: the built-in corpus.
//! - [`bench`]: decode and training timings.
//! - [`progress`]: progress bars, the training observer, the Ctrl-C flag.

pub mod bench;
pub mod calib;
pub mod distill;
pub mod evaluate;
pub mod export;
pub mod finetune;
pub mod inspect;
pub mod progress;
pub mod prune;
pub mod quantize;
pub mod quickstart;
pub mod recipe;
pub mod run;
pub mod stages;
pub mod stories;
pub mod structured;
pub mod teacher_data;
pub mod train;

pub use recipe::Recipe;
pub use run::{run, RunSummary};
