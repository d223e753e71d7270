//! `compress compare --recipe R.yaml`: every method of the recipe's `compare` section trains the
//! same student on the same data, batches and augmentations, once per seed, in lockstep: each
//! batch runs every teacher once and every method's student steps on those shared outputs, so N
//! methods do not pay the teachers N times. Each student starts from the same initial weights
//! for a given seed. Results: best and final top-1 of each method in tch and in ONNX Runtime
//! (its exported file, final weights and best-epoch weights), the time each method's own steps
//! take per epoch, and the teachers' own accuracies and ensembles; the table (`render`) gives
//! mean ± standard deviation over seeds and each method's paired difference to AVER on the same
//! teachers.
//!
//! A comparison can run in pieces: every epoch checkpoints each method of the running seed
//! (`checkpoints/seed-<s>/`), a finished seed's results go to `seeds/seed-<s>.json`, and
//! `--resume` keeps the finished seeds and continues the running one.

mod render;

use super::distiller::Distiller;
use super::plan::{MethodUse, Plan};
use crate::bad_input;
use crate::distill::checkpoint::Identity;
use crate::distill::record::EpochMetrics;
use crate::distill::trainer::{self, Lockstep, TrainInputs, TrainOutcome};
use crate::teacher::evaluate::evaluate_teachers;
pub use render::render;
use serde::{Deserialize, Serialize};
use std::path::{Path, PathBuf};

pub struct CompareOptions {
    pub recipe: PathBuf,
    pub sets: Vec<String>,
    pub out: Option<PathBuf>,
    pub overwrite: bool,
    pub resume: bool,
    pub device: Option<String>,
}

/// One method's training under one seed.
#[derive(Clone, Serialize, Deserialize)]
pub struct SeedResult {
    pub seed: u64,
    pub best_top1_tch: f64,
    pub best_epoch: usize,
    pub best_top1_ort: f64,
    pub final_top1_tch: f64,
    pub final_top1_ort: f64,
    /// Top-1 agreement of the exported final model with tch.
    pub final_agreement: f64,
    /// Mean seconds per epoch of this method's own steps and test evaluation.
    pub seconds_per_epoch: f64,
    pub epochs: Vec<EpochMetrics>,
}

#[derive(Serialize)]
pub struct MethodResult {
    pub label: String,
    pub method: String,
    pub teachers: Vec<String>,
    pub seeds: Vec<SeedResult>,
}

#[derive(Serialize)]
pub struct TeacherResult {
    pub name: String,
    pub top1_tch: f64,
    pub top1_ort: f64,
}

#[derive(Serialize)]
pub struct Comparison {
    pub recipe: String,
    pub device: String,
    pub train_images: usize,
    pub test_images: usize,
    pub epochs: usize,
    pub batch_size: usize,
    /// Optimizer steps each method takes per seed.
    pub steps: usize,
    pub student: String,
    pub seeds: Vec<u64>,
    pub teachers: Vec<TeacherResult>,
    pub ensemble_mean_top1: Option<f64>,
    pub ensemble_vote_top1: Option<f64>,
    /// Mean seconds per epoch spent running the teachers (once per batch for all methods).
    pub teacher_seconds_per_epoch: f64,
    pub methods: Vec<MethodResult>,
}

/// A finished seed, as `seeds/seed-<s>.json` keeps it: the recipe and teachers it was trained
/// with, each method's result by label, and the teachers' seconds per epoch.
#[derive(Serialize, Deserialize)]
struct FinishedSeed {
    identity: Identity,
    labels: Vec<String>,
    results: Vec<SeedResult>,
    teacher_seconds_per_epoch: f64,
}

/// The comparison's chart: best top-1 per method with its spread over seeds.
const CHART: &str = "methods.png";

/// The comparison (`None` on a data-parallel rank other than 0, which trains its share of every
/// method's batches and leaves the results to rank 0).
pub fn run(opts: &CompareOptions) -> anyhow::Result<Option<Comparison>> {
    let plan = Plan::resolve(&opts.recipe, &opts.sets, opts.device.as_deref())?;
    let Some((compare, uses)) = &plan.compare else {
        return Err(bad_input!("{}: compress compare needs a `compare` section (seeds and methods)", opts.recipe.display()));
    };
    if plan.quantize.is_some() {
        return Err(bad_input!(
            "{}: quantize: compress compare trains float students only; remove the section (or run the recipe with compress --recipe)",
            opts.recipe.display()
        ));
    }
    let out = opts.out.clone().unwrap_or_else(|| super::plan::default_out(&plan.name));
    // Data parallel: every rank joins, rank 0 alone claims the folder and says whether to start.
    let group = match &plan.world {
        Some(launch) => Some(crate::dist::Group::connect(launch, plan.device)?),
        None => None,
    };
    let main = group.as_ref().is_none_or(|g| g.rank == 0);
    let lock = if main { prepare_folder(&out, opts).map(Some) } else { Ok(None) };
    if let Some(g) = &group {
        g.start_together(lock.as_ref().map(|_| ()))?;
    }
    let _lock = lock?;
    super::set_threads(&plan);
    let (mut train, test_feed) = super::load::data(&plan.data, plan.seed)?;
    super::load::place(&plan.data, &mut train, plan.device, &plan.model_sizes())?;
    let test = test_feed.render_test(&plan.model_sizes())?;
    drop(test_feed);
    let evaluation = if main { Some(evaluate_teachers(&plan.teachers, &test)?) } else { None };
    let mut methods_out: Vec<MethodResult> = uses.iter().map(|u| method_result(&plan, u)).collect();
    let identity = Identity { recipe_sha256: plan.recipe_sha256.clone(), teacher_sha256: plan.teacher_hashes() };
    let mut teacher_seconds = Vec::new();
    for &seed in &compare.seeds {
        let finished = out.join("seeds").join(format!("seed-{seed}.json"));
        let done = if opts.resume && main { read_finished(&finished, uses, &identity)? } else { None };
        // The other ranks skip the seeds rank 0 found finished.
        let skip = match &group {
            Some(g) => g.root_says(done.is_some())?,
            None => done.is_some(),
        };
        if skip && !main {
            continue;
        }
        let done = match done {
            Some(done) => {
                eprintln!("compare: seed {seed} finished earlier, its results read from {}", finished.display());
                done
            }
            None => {
                let checkpoints = out.join("checkpoints").join(format!("seed-{seed}"));
                if opts.resume && main {
                    settle_seed_checkpoints(&checkpoints, uses.len())?;
                }
                let inputs = TrainInputs {
                    train: &train,
                    test: &test,
                    preprocess: &plan.data.preprocess,
                    teachers: &plan.teachers,
                    seed,
                    label: "compare",
                    checkpoints: Some(checkpoints),
                    resume: opts.resume,
                    identity: identity.clone(),
                    numerics: crate::graph::Numerics::training(plan.train.deterministic),
                    dist: group.as_ref(),
                };
                let Some((results, teacher_time)) = train_lockstep(&plan, uses, &inputs, seed)? else {
                    continue;
                };
                let labels = uses.iter().map(|u| u.label.clone()).collect();
                let done = FinishedSeed { identity: identity.clone(), labels, results, teacher_seconds_per_epoch: teacher_time };
                std::fs::create_dir_all(out.join("seeds"))?;
                crate::fsio::write_atomic(&finished, serde_json::to_string_pretty(&done)?.as_bytes())?;
                done
            }
        };
        teacher_seconds.push(done.teacher_seconds_per_epoch);
        for (slot, result) in methods_out.iter_mut().zip(done.results) {
            slot.seeds.push(result);
        }
    }
    let Some(evaluation) = evaluation else {
        let g = group.as_ref().expect("only a data-parallel rank other than 0 has no evaluation");
        eprintln!("PASS: rank {} of {} trained its share of every method's batches; rank 0 evaluates, exports and reports", g.rank, g.world_size);
        return Ok(None);
    };
    let comparison = Comparison {
        recipe: opts.recipe.display().to_string(),
        device: crate::device::name(plan.device),
        train_images: train.len(),
        test_images: test.len(),
        epochs: plan.train.epochs,
        batch_size: plan.train.batch_size,
        steps: plan.train.epochs * (train.len() / plan.train.batch_size),
        student: plan.student.label.clone(),
        seeds: compare.seeds.clone(),
        teachers: evaluation.records.iter().map(|t| TeacherResult { name: t.name.clone(), top1_tch: t.top1_tch, top1_ort: t.top1_ort }).collect(),
        ensemble_mean_top1: evaluation.ensemble_mean,
        ensemble_vote_top1: evaluation.ensemble_vote,
        teacher_seconds_per_epoch: mean(&teacher_seconds),
        methods: methods_out,
    };
    write(&out, &comparison)?;
    Ok(Some(comparison))
}

/// The comparison's checkpoint files under `checkpoints/seed-<s>/` (only the tool's own files, as
/// a run's are removed), then every folder left empty.
fn remove_seed_checkpoints(out: &Path) -> anyhow::Result<()> {
    let dir = out.join("checkpoints");
    for entry in std::fs::read_dir(&dir).into_iter().flatten().flatten() {
        if entry.file_name().to_string_lossy().starts_with("seed-") {
            super::output::remove_checkpoints(&entry.path())?;
        }
    }
    let _ = std::fs::remove_dir(&dir);
    Ok(())
}

/// The finished seeds' files (`seeds/seed-<s>.json`), then the folder when it is left empty.
fn remove_finished_seeds(out: &Path) -> anyhow::Result<()> {
    let dir = out.join("seeds");
    for entry in std::fs::read_dir(&dir).into_iter().flatten().flatten() {
        let name = entry.file_name().to_string_lossy().into_owned();
        let name = name.strip_prefix('.').and_then(|n| n.strip_suffix(".tmp")).unwrap_or(&name);
        if name.starts_with("seed-") && name.ends_with(".json") {
            std::fs::remove_file(entry.path()).map_err(|e| anyhow::anyhow!("cannot remove the previous comparison's {}: {e}", entry.path().display()))?;
        }
    }
    let _ = std::fs::remove_dir(&dir);
    Ok(())
}

/// Whether an earlier comparison was interrupted in `out`: finished seeds, or a running seed's
/// checkpoints (a plain run's `checkpoints/` is not a comparison's).
fn interrupted(out: &Path) -> bool {
    out.join("seeds").is_dir()
        || std::fs::read_dir(out.join("checkpoints")).into_iter().flatten().flatten().any(|e| e.file_name().to_string_lossy().starts_with("seed-"))
}

/// Makes a seed's checkpoints hold together before resuming it: a kill while the methods' were
/// being written leaves some an epoch ahead of the others (or without one), and such a seed
/// starts over (the finished seeds are kept).
fn settle_seed_checkpoints(dir: &Path, methods: usize) -> anyhow::Result<()> {
    let epoch_of = |p: std::path::PathBuf| -> Option<u64> {
        let meta: serde_json::Value = serde_json::from_slice(&std::fs::read(p.join("last.json")).ok()?).ok()?;
        meta["epoch"].as_u64()
    };
    let epochs: Vec<u64> = std::fs::read_dir(dir).into_iter().flatten().flatten().filter_map(|e| epoch_of(e.path())).collect();
    let whole = epochs.is_empty() || (epochs.len() == methods && epochs.iter().all(|e| *e == epochs[0]));
    if !whole {
        eprintln!("compare: {} was interrupted while its checkpoints were written (epochs {epochs:?}); this seed starts over", dir.display());
        super::output::remove_checkpoints(dir)?;
    }
    Ok(())
}

/// Refuses to replace a finished comparison or to start over an interrupted one unless asked
/// (`--overwrite` starts over, `--resume` continues), claims the folder and holds its lock.
fn prepare_folder(out: &Path, opts: &CompareOptions) -> anyhow::Result<super::output::Lock> {
    let results = out.join("comparison.json");
    let interrupted = interrupted(out);
    if results.exists() && !opts.overwrite {
        let hint = if opts.resume { "it is finished, there is nothing to resume; " } else { "" };
        return Err(bad_input!("{} already holds a comparison; {hint}pass --overwrite to replace it or --out to choose another folder", out.display()));
    }
    if opts.resume && !interrupted {
        return Err(bad_input!("--resume: {} holds no interrupted comparison to continue", out.display()));
    }
    if interrupted && !opts.resume && !opts.overwrite {
        return Err(bad_input!("{} holds an interrupted comparison: pass --resume to continue it or --overwrite to start over", out.display()));
    }
    let names: Vec<String> = ["comparison.json", "comparison.md", CHART, "checkpoints", "seeds"].map(String::from).into();
    super::output::claim(out, &names, opts.overwrite, true)?;
    let lock = super::output::lock(out)?;
    if opts.overwrite {
        for name in ["comparison.json", "comparison.md", CHART] {
            let _ = std::fs::remove_file(out.join(name));
        }
        remove_finished_seeds(out)?;
        remove_seed_checkpoints(out)?;
    }
    Ok(lock)
}

/// A seed finished by an earlier, interrupted invocation; refused when it was trained with
/// another recipe (overrides included) or other teachers, or its methods are not the recipe's.
fn read_finished(path: &Path, uses: &[MethodUse], identity: &Identity) -> anyhow::Result<Option<FinishedSeed>> {
    if !path.exists() {
        return Ok(None);
    }
    let done: FinishedSeed = serde_json::from_slice(&crate::fsio::read_regular(path, "a finished seed's results", 64 << 20)?)
        .map_err(|e| bad_input!("{} is unreadable ({e}); pass --overwrite to start over", path.display()))?;
    if done.identity != *identity {
        return Err(bad_input!("cannot resume: {} was trained with another recipe or other teachers (pass --overwrite to start over)", path.display()));
    }
    let labels: Vec<&String> = uses.iter().map(|u| &u.label).collect();
    if done.labels.iter().collect::<Vec<_>>() != labels || done.results.len() != uses.len() {
        return Err(bad_input!("{} holds other methods than the recipe's compare section; pass --overwrite to start over", path.display()));
    }
    Ok(Some(done))
}

/// A method's results so far: its label, method and teachers by name.
fn method_result(plan: &Plan, usage: &MethodUse) -> MethodResult {
    let teachers = if usage.distill.method == "none" { vec![] } else { usage.teachers.iter().map(|&i| plan.teachers[i].name.clone()).collect() };
    MethodResult { label: usage.label.clone(), method: usage.distill.method.clone(), teachers, seeds: vec![] }
}

/// `comparison.md` and `comparison.json` (last: its presence marks a finished comparison), then
/// the checkpoints, which a finished comparison no longer needs.
fn write(out: &Path, comparison: &Comparison) -> anyhow::Result<()> {
    let categories: Vec<(String, Vec<f64>)> = comparison.methods.iter().map(|m| (m.label.clone(), m.seeds.iter().map(|s| s.best_top1_tch).collect())).collect();
    let title = format!("Best test top-1 per method over {} seed(s)", comparison.seeds.len());
    let chart = match crate::report::plots::dot_chart(&out.join(CHART), &title, "best top-1 (%)", &categories) {
        Ok(()) => Some(format!("![{title}: each seed a small dot, the mean a large one, the bar from lowest to highest]({CHART})\n\n")),
        Err(e) => {
            eprintln!("warning: chart {CHART} not drawn: {e:#}");
            None
        }
    };
    let markdown = render(comparison);
    let markdown = match chart {
        // The chart goes after the first paragraph block (the title and setup).
        Some(c) => match markdown.find("\n\n|") {
            Some(i) => format!("{}\n\n{c}{}", &markdown[..i], &markdown[i + 2..]),
            None => format!("{markdown}\n{c}"),
        },
        None => markdown,
    };
    crate::fsio::write_atomic(&out.join("comparison.md"), markdown.as_bytes())?;
    crate::fsio::write_atomic(&out.join("comparison.json"), serde_json::to_string_pretty(comparison)?.as_bytes())?;
    remove_seed_checkpoints(out)?;
    println!("{markdown}");
    eprintln!("comparison written to {}", out.display());
    Ok(())
}

/// Trains every method for one seed in lockstep (the trainer's N-learner case), each student
/// from the same initial weights, then exports each at its final and its best epoch and checks
/// both files in ONNX Runtime; returns each one's result and the mean seconds per epoch spent
/// in the teachers. A data-parallel rank other than 0 trains its share and returns `None`.
fn train_lockstep(plan: &Plan, uses: &[MethodUse], inputs: &TrainInputs, seed: u64) -> anyhow::Result<Option<(Vec<SeedResult>, f64)>> {
    let entries = uses.iter().map(|u| Distiller::fresh(plan, u, seed)).collect::<anyhow::Result<Vec<_>>>()?;
    let learners =
        entries.iter().map(|e| e.learner(&format!("seed {seed} {}", e.usage.label), &plan.teachers, &plan.train)).collect::<anyhow::Result<Vec<_>>>()?;
    let mut lockstep = Lockstep { learners, keep_best: true };
    let trained = trainer::train(&mut lockstep, &plan.train, inputs)?;
    drop(lockstep);
    if !inputs.is_main() {
        return Ok(None);
    }
    let mut results = Vec::new();
    for (e, outcome) in entries.iter().zip(trained.outcomes) {
        results.push(export_both(plan, e, outcome, inputs, seed)?);
    }
    Ok(Some((results, trained.teacher_seconds_per_epoch)))
}

/// Exports one student with its final weights, then with its best epoch's, and checks each
/// file in ONNX Runtime.
fn export_both(plan: &Plan, e: &Distiller, outcome: TrainOutcome, inputs: &TrainInputs, seed: u64) -> anyhow::Result<SeedResult> {
    let (opset, fold) = (plan.export.opset, plan.export.fold_batch_norm);
    // Removed when it goes out of scope, on the error paths too.
    let dir = tempfile::Builder::new().prefix("compress-compare-").tempdir()?;
    let path = dir.path().join(format!("{}-{seed}.onnx", sanitize(&e.usage.label)));
    crate::export::write_onnx(&e.student.graph, opset, fold, &[], &path)?;
    let last = crate::export::validate_export(&e.student, &path, inputs.test.student(), inputs.preprocess)?;
    match &outcome.best_state {
        Some(state) => e.student.load_state(state)?,
        None if outcome.best_epoch != outcome.epochs.len() => {
            return Err(anyhow::anyhow!(
                "{}: the best epoch's student ({}) was not kept, so its exported file cannot be checked",
                e.usage.label,
                outcome.best_epoch
            ))
        }
        None => {}
    }
    crate::export::write_onnx(&e.student.graph, opset, fold, &[], &path)?;
    let at_best = crate::export::validate_export(&e.student, &path, inputs.test.student(), inputs.preprocess)?;
    Ok(SeedResult {
        seed,
        best_top1_tch: outcome.best_top1,
        best_epoch: outcome.best_epoch,
        best_top1_ort: at_best.top1_ort,
        final_top1_tch: last.top1_tch,
        final_top1_ort: last.top1_ort,
        final_agreement: last.top1_agreement_tch_vs_ort,
        seconds_per_epoch: mean(&outcome.epochs.iter().map(|m| m.seconds).collect::<Vec<_>>()),
        epochs: outcome.epochs,
    })
}

fn sanitize(label: &str) -> String {
    label.chars().map(|c| if c.is_ascii_alphanumeric() { c } else { '_' }).collect()
}

pub(crate) fn mean(v: &[f64]) -> f64 {
    if v.is_empty() {
        0.0
    } else {
        v.iter().sum::<f64>() / v.len() as f64
    }
}
