//! `slm distill generate` (being written).

use anyhow::{bail, Result};
use clap::Args as ClapArgs;

#[derive(ClapArgs, Debug)]
pub struct GenerateArgs {}

pub fn run(_a: GenerateArgs) -> Result<()> {
    bail!("slm distill generate is not built yet")
}
