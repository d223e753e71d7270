//! `compress compare --recipe R.yaml [--set k=v]… [--out DIR] [--overwrite | --resume]
//! [--device D]`: trains the recipe's `compare.methods` side by side (see
//! `crate::pipeline::compare`).

use crate::pipeline::compare::{self, CompareOptions, Comparison};
use crate::report::ci::CiReport;
use crate::report::junit;
use clap::Args;
use std::path::PathBuf;
use std::time::Instant;

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
    /// Also write one JUnit test case per method (its best top-1 per seed) to this file.
    #[arg(long)]
    pub junit: Option<PathBuf>,
}

pub fn run(a: &CompareArgs) -> anyhow::Result<i32> {
    let main = crate::dist::Launch::from_env().ok().flatten().is_none_or(|w| w.is_main());
    let ci = CiReport {
        junit: a.junit.as_deref().filter(|_| main),
        title: format!("compress compare --recipe {}", a.recipe.display()),
        classname: "compress.compare",
        started: Instant::now(),
        properties: vec![("recipe".to_string(), a.recipe.display().to_string())],
    };
    let result = compare::run(&CompareOptions {
        recipe: a.recipe.clone(),
        sets: a.sets.clone(),
        out: a.out.clone(),
        overwrite: a.overwrite,
        resume: a.resume,
        device: a.device.clone(),
    });
    match result {
        // A data-parallel rank other than 0: rank 0 writes the results and the CI files.
        Ok(None) => Ok(0),
        Ok(Some(c)) => {
            let figures = c.methods.iter().map(|m| (m.label.clone(), best_per_seed(m))).collect::<Vec<_>>();
            ci.finished(method_cases(&c), true, &figures, &[])?;
            Ok(0)
        }
        Err(err) => {
            if main {
                ci.failed(&err);
            }
            Err(err)
        }
    }
}

/// "68.91% (seeds 0: 68.2%, 1: 69.6%)": a method's mean best top-1 and each seed's.
fn best_per_seed(m: &compare::MethodResult) -> String {
    let tops: Vec<f64> = m.seeds.iter().map(|s| s.best_top1_tch).collect();
    let mean = tops.iter().sum::<f64>() / tops.len().max(1) as f64;
    let each: Vec<String> = m.seeds.iter().map(|s| format!("{}: {:.2}%", s.seed, 100.0 * s.best_top1_tch)).collect();
    format!("best top-1 {:.2}% mean (seeds {})", 100.0 * mean, each.join(", "))
}

/// A comparison has no gates: one passed case per method, its figures in the case's output.
fn method_cases(c: &Comparison) -> Vec<junit::Case> {
    c.methods
        .iter()
        .map(|m| junit::Case { name: m.label.clone(), classname: "compress.compare".into(), result: junit::CaseResult::Passed, output: best_per_seed(m) })
        .collect()
}
