//! `compress compare --recipe R.yaml`: every method of the recipe's `compare` section trains the
//! same student on the same data, batches and augmentations, once per seed, in lockstep: each
//! batch runs every teacher once and every method's student steps on those shared outputs, so N
//! methods do not pay the teachers N times. Each student starts from the same initial weights
//! for a given seed. Results: best and final top-1 of each method in tch and in ONNX Runtime
//! (its exported file, final weights and best-epoch weights), the time each method's own steps
//! take per epoch, and the teachers' own accuracies and ensembles.

use super::distiller::Distiller;
use super::plan::{MethodUse, Plan};
use crate::bad_input;
use crate::distill::checkpoint::Identity;
use crate::distill::record::EpochMetrics;
use crate::distill::trainer::{self, Lockstep, TrainInputs, TrainOutcome};
use crate::teacher::evaluate::evaluate_teachers;
use serde::Serialize;
use std::fmt::Write as _;
use std::path::{Path, PathBuf};

pub struct CompareOptions {
    pub recipe: PathBuf,
    pub sets: Vec<String>,
    pub out: Option<PathBuf>,
    pub overwrite: bool,
    pub device: Option<String>,
}

/// One method's training under one seed.
#[derive(Serialize)]
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
    pub student: String,
    pub teachers: Vec<TeacherResult>,
    pub ensemble_mean_top1: Option<f64>,
    pub ensemble_vote_top1: Option<f64>,
    /// Mean seconds per epoch spent running the teachers (once per batch for all methods).
    pub teacher_seconds_per_epoch: f64,
    pub methods: Vec<MethodResult>,
}

pub fn run(opts: &CompareOptions) -> anyhow::Result<i32> {
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
    let results = out.join("comparison.json");
    if results.exists() && !opts.overwrite {
        return Err(bad_input!("{} already holds a comparison; pass --overwrite to replace it or --out to choose another folder", out.display()));
    }
    super::output::claim(&out, &["comparison.json".into(), "comparison.md".into()], opts.overwrite, true)?;
    let _lock = super::output::lock(&out)?;
    super::set_threads(&plan);
    let (train, test) = super::load::data(&plan.data, plan.seed)?;
    let evaluation = evaluate_teachers(&plan.teachers, &test)?;
    let mut methods_out: Vec<MethodResult> = uses.iter().map(|u| method_result(&plan, u)).collect();
    let mut teacher_seconds = Vec::new();
    for &seed in &compare.seeds {
        let inputs = TrainInputs {
            train: &train,
            test: &test,
            preprocess: &plan.data.preprocess,
            augment: &plan.data.augment,
            teachers: &plan.teachers,
            seed,
            label: "compare",
            checkpoints: None,
            resume: false,
            identity: Identity { recipe_sha256: plan.recipe_sha256.clone(), teacher_sha256: plan.teacher_hashes() },
        };
        let (per_method, teacher_time) = train_lockstep(&plan, uses, &inputs, seed)?;
        teacher_seconds.push(teacher_time);
        for (slot, result) in methods_out.iter_mut().zip(per_method) {
            slot.seeds.push(result);
        }
    }
    let comparison = Comparison {
        recipe: opts.recipe.display().to_string(),
        device: crate::device::name(plan.device),
        train_images: train.len(),
        test_images: test.len(),
        epochs: plan.train.epochs,
        batch_size: plan.train.batch_size,
        student: plan.student.label.clone(),
        teachers: evaluation.records.iter().map(|t| TeacherResult { name: t.name.clone(), top1_tch: t.top1_tch, top1_ort: t.top1_ort }).collect(),
        ensemble_mean_top1: evaluation.ensemble_mean,
        ensemble_vote_top1: evaluation.ensemble_vote,
        teacher_seconds_per_epoch: mean(&teacher_seconds),
        methods: methods_out,
    };
    write(&out, &comparison, &compare.seeds)
}

/// A method's results so far: its label, method and teachers by name.
fn method_result(plan: &Plan, usage: &MethodUse) -> MethodResult {
    let teachers = if usage.distill.method == "none" { vec![] } else { usage.teachers.iter().map(|&i| plan.teachers[i].name.clone()).collect() };
    MethodResult { label: usage.label.clone(), method: usage.distill.method.clone(), teachers, seeds: vec![] }
}

/// `comparison.md` and `comparison.json` (last: its presence marks a finished comparison).
fn write(out: &Path, comparison: &Comparison, seeds: &[u64]) -> anyhow::Result<i32> {
    let markdown = render(comparison, seeds);
    crate::fsio::write_atomic(&out.join("comparison.md"), markdown.as_bytes())?;
    crate::fsio::write_atomic(&out.join("comparison.json"), serde_json::to_string_pretty(comparison)?.as_bytes())?;
    println!("{markdown}");
    eprintln!("comparison written to {}", out.display());
    Ok(0)
}

/// Trains every method for one seed in lockstep (the trainer's N-learner case), each student
/// from the same initial weights, then exports each at its final and its best epoch and checks
/// both files in ONNX Runtime; returns each one's result and the mean seconds per epoch spent
/// in the teachers.
fn train_lockstep(plan: &Plan, uses: &[MethodUse], inputs: &TrainInputs, seed: u64) -> anyhow::Result<(Vec<SeedResult>, f64)> {
    let entries = uses.iter().map(|u| Distiller::fresh(plan, u, seed)).collect::<anyhow::Result<Vec<_>>>()?;
    let learners =
        entries.iter().map(|e| e.learner(&format!("seed {seed} {}", e.usage.label), &plan.teachers, &plan.train)).collect::<anyhow::Result<Vec<_>>>()?;
    let mut lockstep = Lockstep { learners, keep_best: true };
    let trained = trainer::train(&mut lockstep, &plan.train, inputs)?;
    drop(lockstep);
    let mut results = Vec::new();
    for (e, outcome) in entries.iter().zip(trained.outcomes) {
        results.push(export_both(plan, e, outcome, inputs, seed)?);
    }
    Ok((results, trained.teacher_seconds_per_epoch))
}

/// Exports one student with its final weights, then with its best epoch's, and checks each
/// file in ONNX Runtime.
fn export_both(plan: &Plan, e: &Distiller, outcome: TrainOutcome, inputs: &TrainInputs, seed: u64) -> anyhow::Result<SeedResult> {
    let (opset, fold) = (plan.export.opset, plan.export.fold_batch_norm);
    // Removed when it goes out of scope, on the error paths too.
    let dir = tempfile::Builder::new().prefix("compress-compare-").tempdir()?;
    let path = dir.path().join(format!("{}-{seed}.onnx", sanitize(&e.usage.label)));
    crate::export::write_onnx(&e.student.graph, opset, fold, &[], &path)?;
    let last = crate::export::validate_export(&e.student, &path, inputs.test, inputs.preprocess)?;
    if let Some(state) = &outcome.best_state {
        e.student.load_state(state)?;
    }
    crate::export::write_onnx(&e.student.graph, opset, fold, &[], &path)?;
    let at_best = crate::export::validate_export(&e.student, &path, inputs.test, inputs.preprocess)?;
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

fn mean(v: &[f64]) -> f64 {
    if v.is_empty() {
        0.0
    } else {
        v.iter().sum::<f64>() / v.len() as f64
    }
}

/// "mean (min–max)" of percentages.
fn spread(v: &[f64]) -> String {
    let (lo, hi) = v.iter().fold((f64::MAX, f64::MIN), |(a, b), x| (a.min(*x), b.max(*x)));
    if v.len() == 1 {
        format!("{:.2}", 100.0 * v[0])
    } else {
        format!("{:.2} ({:.2}–{:.2})", 100.0 * mean(v), 100.0 * lo, 100.0 * hi)
    }
}

/// The comparison as a markdown report.
pub fn render(c: &Comparison, seeds: &[u64]) -> String {
    let mut s = String::new();
    let _ = writeln!(
        s,
        "Student {}, {} epochs, batch {}, {} training and {} test images, device {}, seeds {:?}.\n",
        c.student, c.epochs, c.batch_size, c.train_images, c.test_images, c.device, seeds
    );
    let _ = writeln!(s, "| teacher | top-1 (tch) | top-1 (ONNX Runtime) |\n|---|---|---|");
    for t in &c.teachers {
        let _ = writeln!(s, "| {} | {:.2}% | {:.2}% |", t.name, 100.0 * t.top1_tch, 100.0 * t.top1_ort);
    }
    if let Some(e) = c.ensemble_vote_top1 {
        let _ = writeln!(s, "| ensemble, majority vote | {:.2}% | |", 100.0 * e);
    }
    if let Some(e) = c.ensemble_mean_top1 {
        let _ = writeln!(s, "| ensemble, mean probabilities | {:.2}% | |", 100.0 * e);
    }
    let _ = writeln!(
        s,
        "\nTop-1 in %, mean over the seeds (min–max). \"Best\" is the best epoch's test accuracy (the papers' metric), \"final\" the last epoch's; ONNX Runtime runs the exported file (best-epoch and final weights). Seconds per epoch are each method's own steps and test evaluation; the teachers ran once per batch for all methods, {:.1} s per epoch.\n",
        c.teacher_seconds_per_epoch
    );
    let _ = writeln!(s, "| method | teachers | best (tch) | best (ORT) | final (tch) | final (ORT) | s/epoch |\n|---|---|---|---|---|---|---|");
    for m in &c.methods {
        let col = |f: &dyn Fn(&SeedResult) -> f64| m.seeds.iter().map(f).collect::<Vec<_>>();
        let teachers = if m.teachers.is_empty() { "none".to_string() } else { m.teachers.join(", ") };
        let _ = writeln!(
            s,
            "| {} | {} | {} | {} | {} | {} | {:.1} |",
            m.label,
            teachers,
            spread(&col(&|r| r.best_top1_tch)),
            spread(&col(&|r| r.best_top1_ort)),
            spread(&col(&|r| r.final_top1_tch)),
            spread(&col(&|r| r.final_top1_ort)),
            mean(&col(&|r| r.seconds_per_epoch))
        );
    }
    s
}
