//! `compress --recipe R.yaml …`: the whole pipeline; exit 0 when every gate passed, 1 when one
//! failed (all artifacts are still written).

use super::RunArgs;
use crate::bad_input;
use crate::pipeline::{self, Outcome, RunOptions};

pub fn run(args: &RunArgs) -> anyhow::Result<i32> {
    let recipe = args.recipe.clone().ok_or_else(|| bad_input!("no recipe given: run `compress --recipe recipes/resnet_to_mobilenet.yaml` (or see --help)"))?;
    let opts = RunOptions {
        recipe,
        sets: args.sets.clone(),
        out: args.out.clone(),
        dry_run: args.dry_run,
        resume: args.resume,
        overwrite: args.overwrite,
        device: args.device.clone(),
    };
    Ok(match pipeline::run(&opts)? {
        Outcome::Passed => 0,
        Outcome::GateFailed => 1,
    })
}
