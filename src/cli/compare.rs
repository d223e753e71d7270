//! `compress compare --recipe R.yaml [--set k=v]… [--out DIR] [--overwrite | --resume]
//! [--device D]`: trains the recipe's `compare.methods` side by side (see
//! `crate::pipeline::compare`).

use crate::pipeline::compare::{self, CompareOptions};
use clap::Args;
use std::path::PathBuf;

#[derive(Args, Debug)]
pub struct CompareArgs {
    /// A recipe with a `compare` section.
    #[arg(long)]
    pub recipe: PathBuf,
    #[arg(long = "set", value_name = "KEY=VALUE")]
    pub sets: Vec<String>,
    /// Output folder (default out/<recipe name>).
    #[arg(long)]
    pub out: Option<PathBuf>,
    /// Start over, replacing a finished or interrupted comparison in the output folder.
    #[arg(long, conflicts_with = "resume")]
    pub overwrite: bool,
    /// Continue an interrupted comparison: finished seeds are kept, the running one continues
    /// from its last epoch's checkpoints (same recipe and teachers).
    #[arg(long)]
    pub resume: bool,
    #[arg(long)]
    pub device: Option<String>,
}

pub fn run(a: &CompareArgs) -> anyhow::Result<i32> {
    compare::run(&CompareOptions {
        recipe: a.recipe.clone(),
        sets: a.sets.clone(),
        out: a.out.clone(),
        overwrite: a.overwrite,
        resume: a.resume,
        device: a.device.clone(),
    })
}
