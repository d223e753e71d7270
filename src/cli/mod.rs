//! The command line (design.md §2): the pipeline by default, plus `inspect`, `eval`, `zoo`,
//! `compare`, `data`, `validate` and `cache`.
//! One file per subcommand; each returns the exit code it wants.

pub mod cache;
pub mod compare;
pub mod data;
pub mod eval;
pub mod inspect;
pub mod model_input;
pub mod run;
pub mod validate;
pub mod zoo;

use clap::{Args, Parser, Subcommand};
use std::path::PathBuf;

#[derive(Parser, Debug)]
#[command(name = "compress", version, about = "Distil ONNX image-classifier teachers into one small, validated ONNX student")]
#[command(args_conflicts_with_subcommands = true)]
pub struct Cli {
    #[command(subcommand)]
    pub command: Option<Command>,
    #[command(flatten)]
    pub run: RunArgs,
}

#[derive(Args, Debug)]
pub struct RunArgs {
    /// The recipe (YAML) to run.
    #[arg(long)]
    pub recipe: Option<PathBuf>,
    /// Override a recipe key: --set train.epochs=5 (repeatable).
    #[arg(long = "set", value_name = "KEY=VALUE")]
    pub sets: Vec<String>,
    /// Output folder (default out/<recipe name>).
    #[arg(long)]
    pub out: Option<PathBuf>,
    /// Resolve and print the plan, then stop.
    #[arg(long)]
    pub dry_run: bool,
    /// Continue an interrupted run from its last checkpoint (same recipe and teachers).
    #[arg(long)]
    pub resume: bool,
    /// Replace a finished or interrupted run in the output folder.
    #[arg(long)]
    pub overwrite: bool,
    /// auto, cpu, cuda or cuda:N (overrides the recipe).
    #[arg(long)]
    pub device: Option<String>,
    /// Also write the gates as JUnit XML to this file (bad input and failures as errors).
    #[arg(long)]
    pub junit: Option<PathBuf>,
}

#[derive(Subcommand, Debug)]
pub enum Command {
    /// Describe an ONNX model; --verify compares our import with ONNX Runtime.
    Inspect(inspect::InspectArgs),
    /// Top-1/top-5 accuracy of an ONNX classifier with ONNX Runtime on an image folder.
    Eval(eval::EvalArgs),
    /// The built-in student architectures: parameter counts, named taps, ONNX export.
    Zoo(zoo::ZooArgs),
    /// Train the methods of a recipe's `compare` section side by side on shared batches.
    Compare(compare::CompareArgs),
    /// Check an image folder as a run would (bad files named) and time the loader on it.
    Data(data::DataArgs),
    /// The decoded-image cache folder: where it is, what it holds; --clear empties it.
    Cache(cache::CacheArgs),
    /// Gate an ONNX file on its accuracy in ONNX Runtime (exit 1 when a gate fails), for CI.
    Validate(validate::ValidateArgs),
}

/// Runs the parsed command line and returns the process exit code.
pub fn dispatch(cli: Cli) -> anyhow::Result<i32> {
    match cli.command {
        Some(Command::Inspect(a)) => inspect::run(&a),
        Some(Command::Eval(a)) => eval::run(&a),
        Some(Command::Zoo(a)) => zoo::run(&a),
        Some(Command::Compare(a)) => compare::run(&a),
        Some(Command::Data(a)) => data::run(&a),
        Some(Command::Validate(a)) => validate::run(&a),
        Some(Command::Cache(a)) => cache::run(&a),
        None => run::run(&cli.run),
    }
}
