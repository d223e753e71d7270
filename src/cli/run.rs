//! `compress --recipe R.yaml …`: the whole pipeline; exit 0 when every gate passed, 1 when one
//! failed (all artifacts are still written). With `--junit FILE` the gates also go to JUnit XML,
//! and under GitHub Actions a summary goes to the job page.

use super::RunArgs;
use crate::bad_input;
use crate::pipeline::{self, RunOptions};
use crate::report::ci::CiReport;
use crate::report::junit;
use std::time::Instant;

pub fn run(args: &RunArgs) -> anyhow::Result<i32> {
    let recipe = args.recipe.clone().ok_or_else(|| bad_input!("no recipe given: run `compress --recipe recipes/resnet_to_mobilenet.yaml` (or see --help)"))?;
    let opts = RunOptions {
        recipe: recipe.clone(),
        sets: args.sets.clone(),
        out: args.out.clone(),
        dry_run: args.dry_run,
        resume: args.resume,
        overwrite: args.overwrite,
        device: args.device.clone(),
    };
    // In a data-parallel run rank 0 alone writes the JUnit file and the job summary.
    if !crate::dist::Launch::from_env().ok().flatten().is_none_or(|w| w.is_main()) {
        return pipeline::run(&opts).map(|outcome| if outcome.passed { 0 } else { 1 });
    }
    let ci = CiReport {
        junit: args.junit.as_deref(),
        title: format!("compress --recipe {}", recipe.display()),
        classname: "compress.run",
        started: Instant::now(),
        properties: vec![("recipe".to_string(), recipe.display().to_string())],
    };
    match pipeline::run(&opts) {
        Ok(outcome) => {
            ci.finished(junit::gate_cases(ci.classname, &outcome.gates), outcome.passed, &outcome.figures, &outcome.gates)?;
            Ok(if outcome.passed { 0 } else { 1 })
        }
        Err(err) => {
            ci.failed(&err);
            Err(err)
        }
    }
}
