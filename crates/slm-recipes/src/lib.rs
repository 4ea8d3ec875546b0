//! The recipes layer (DESIGN.md's L6): the pipelines `slm` runs, as library functions the CLI
//! only calls, and `slm run`'s declarative recipes of ordered, resumable stages.
//!
//! - [`progress`]: progress bars, the training observer and the Ctrl-C stop flag.
//! - [`train`]: a training run's starting model and the run itself (train, save, report).

pub mod progress;
pub mod train;
