//! `slm distill`: knowledge distillation — teacher-written data (`generate`) and logit
//! distillation (`train`).

use anyhow::Result;
use clap::Subcommand;

#[derive(Subcommand, Debug)]
pub enum DistillCommand {
    /// The teacher writes a training set: prompts from templates, sampling, de-duplication,
    /// quality filters; resumable JSONL that `slm data prepare` reads.
    Generate(super::distill_generate::GenerateArgs),
}

pub fn run(c: DistillCommand) -> Result<()> {
    match c {
        DistillCommand::Generate(a) => super::distill_generate::run(a),
    }
}
