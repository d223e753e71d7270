//! `compress --recipe R.yaml …`: the whole pipeline; exit 0 when every gate passed, 1 when one
//! failed (all artifacts are still written). With `--junit FILE` the gates also go to JUnit XML,
//! and under GitHub Actions a summary goes to the job page.

use super::RunArgs;
use crate::bad_input;
use crate::pipeline::{self, RunOptions};
use crate::report::{junit, step_summary};
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
    let started = Instant::now();
    let title = format!("compress --recipe {}", recipe.display());
    let properties = vec![("recipe".to_string(), recipe.display().to_string())];
    match pipeline::run(&opts) {
        Ok(outcome) => {
            if let Some(path) = &args.junit {
                let mut props = properties;
                props.extend(outcome.figures.iter().cloned());
                let suite = junit::Suite {
                    name: title.clone(),
                    cases: junit::gate_cases("compress.run", &outcome.gates),
                    seconds: started.elapsed().as_secs_f64(),
                    properties: props,
                };
                junit::write(path, &[suite])?;
            }
            step_summary::append(&step_summary::markdown(&title, outcome.passed, &outcome.figures, &outcome.gates));
            Ok(if outcome.passed { 0 } else { 1 })
        }
        Err(err) => {
            if let Some(path) = &args.junit {
                let suite = junit::Suite {
                    name: title.clone(),
                    cases: vec![junit::error_case("compress.run", &err)],
                    seconds: started.elapsed().as_secs_f64(),
                    properties,
                };
                junit::write(path, &[suite])?;
            }
            step_summary::append(&step_summary::error_markdown(&title, &err));
            Err(err)
        }
    }
}
