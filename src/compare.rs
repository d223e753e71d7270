//! `compress compare --recipe R.yaml`: every method of the recipe's `compare` section trains the
//! same student on the same data, batches and augmentations, once per seed, in lockstep: each
//! batch runs every teacher once and every method's student steps on those shared outputs, so N
//! methods do not pay the teachers N times. Each student starts from the same initial weights
//! for a given seed. Results: best and final top-1 of each method in tch and in ONNX Runtime
//! (its exported file, final weights and best-epoch weights), the time each method's own steps
//! take per epoch, and the teachers' own accuracies and ensembles.

use crate::bad_input;
use crate::data::augment::{augment_batch, Augment};
use crate::data::batches::{gather, EpochBatches};
use crate::data::rng::Rng;
use crate::distill::learner::{teacher_outputs, Learner};
use crate::distill::methods::{self, Method, Setup};
use crate::distill::schedule::lr_at;
use crate::distill::student::Student;
use crate::distill::trainer::EpochMetrics;
use crate::recipe::plan::teacher_subset;
use crate::recipe::Plan;
use crate::teacher::evaluate::evaluate_teachers;
use crate::zoo::ArchSpec;
use serde::Serialize;
use std::collections::HashMap;
use std::fmt::Write as _;
use std::path::{Path, PathBuf};
use std::time::Instant;
use tch::Tensor;

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

/// A method's best epoch so far: its test top-1, the epoch, and a copy of the student's state.
type Best = (f64, usize, Option<HashMap<String, Tensor>>);

/// A method ready to train for one seed.
struct Entry {
    label: String,
    student: Student,
    method: Box<dyn Method>,
    teacher_taps: Vec<String>,
    teachers: Vec<usize>,
}

pub fn run(opts: &CompareOptions) -> anyhow::Result<i32> {
    let plan = Plan::resolve(&opts.recipe, &opts.sets, opts.device.as_deref())?;
    let compare = plan.recipe.compare.clone().ok_or_else(|| bad_input!("{}: compress compare needs a `compare` section (seeds and methods)", opts.recipe.display()))?;
    if plan.recipe.quantize.is_some() {
        return Err(bad_input!("{}: quantize: compress compare trains float students only; remove the section (or run the recipe with compress --recipe)", opts.recipe.display()));
    }
    let out = opts.out.clone().unwrap_or_else(|| Path::new("out").join(&plan.recipe.name));
    let results = out.join("comparison.json");
    if results.exists() && !opts.overwrite {
        return Err(bad_input!("{} already holds a comparison; pass --overwrite to replace it or --out to choose another folder", out.display()));
    }
    std::fs::create_dir_all(&out).map_err(|e| bad_input!("cannot create output folder {}: {e}", out.display()))?;
    let r = &plan.recipe;
    if r.train.threads > 0 {
        tch::set_num_threads(r.train.threads as i32);
    }
    let (train, test) = crate::pipeline::load_data(&plan)?;
    let evaluation = evaluate_teachers(&plan, &test)?;
    let spec = ArchSpec { num_classes: train.num_classes() as i64, width: r.student.width, image_size: r.data.image_size as i64 };
    let names: Vec<String> = plan.teachers.iter().map(|t| t.name.clone()).collect();
    let augment = Augment { random_crop_padding: r.data.augment.random_crop_padding, horizontal_flip: r.data.augment.horizontal_flip };
    let pre = plan.student_preprocess();
    let mut methods_out: Vec<MethodResult> = compare
        .methods
        .iter()
        .map(|m| {
            let subset = teacher_subset(&m.distill, &names).unwrap_or_default();
            let teachers = if m.distill.method == "none" { vec![] } else { subset.iter().map(|&i| names[i].clone()).collect() };
            MethodResult { label: m.label(), method: m.distill.method.clone(), teachers, seeds: vec![] }
        })
        .collect();
    let mut teacher_seconds = Vec::new();
    for &seed in &compare.seeds {
        let mut entries = Vec::new();
        for m in &compare.methods {
            // The same initial student weights for every method under this seed.
            tch::manual_seed(seed as i64);
            let graph = crate::distill::student_source::build(&r.student, &spec, plan.device)?;
            let needs = methods::needs(&m.distill)?;
            let student = Student::with_taps(graph, plan.device, &needs.student_taps)?;
            let subset = teacher_subset(&m.distill, &names).map_err(|e| bad_input!("{e}"))?;
            let chosen: Vec<&crate::teacher::Teacher> = subset.iter().map(|&i| &plan.teachers[i]).collect();
            let shapes = student.taps().iter().map(|t| t.shape.clone()).collect();
            let setup = Setup::for_models(&chosen, shapes, &needs, spec.num_classes, plan.device, r.train.batch_size as i64)?;
            let method = methods::build(&m.distill, &setup)?;
            entries.push(Entry { label: m.label(), student, method, teacher_taps: needs.teacher_taps, teachers: subset });
        }
        let (per_method, teacher_time) = train_lockstep(&plan, &entries, &train, &test, &augment, &pre, seed)?;
        teacher_seconds.push(teacher_time);
        for (slot, result) in methods_out.iter_mut().zip(per_method) {
            slot.seeds.push(result);
        }
    }
    let comparison = Comparison {
        recipe: opts.recipe.display().to_string(),
        device: crate::report::device_name(plan.device),
        train_images: train.len(),
        test_images: test.len(),
        epochs: r.train.epochs,
        batch_size: r.train.batch_size,
        student: r.student.label(),
        teachers: evaluation.records.iter().map(|t| TeacherResult { name: t.name.clone(), top1_tch: t.top1_tch, top1_ort: t.top1_ort }).collect(),
        ensemble_mean_top1: evaluation.ensemble_mean,
        ensemble_vote_top1: evaluation.ensemble_vote,
        teacher_seconds_per_epoch: mean(&teacher_seconds),
        methods: methods_out,
    };
    let markdown = render(&comparison, &compare.seeds);
    crate::report::write_atomic(&out.join("comparison.md"), markdown.as_bytes())?;
    crate::report::write_atomic(&results, serde_json::to_string_pretty(&comparison)?.as_bytes())?;
    println!("{markdown}");
    eprintln!("comparison written to {}", out.display());
    Ok(0)
}

/// Trains every entry for one seed on shared batches and teacher outputs; returns each one's
/// result and the mean seconds per epoch spent in the teachers.
fn train_lockstep(plan: &Plan, entries: &[Entry], train: &crate::data::ImageSet, test: &crate::data::ImageSet, augment: &Augment, pre: &crate::data::preprocess::Preprocess, seed: u64) -> anyhow::Result<(Vec<SeedResult>, f64)> {
    let cfg = &plan.recipe.train;
    let sgd = &cfg.optimizer.sgd;
    let mut learners = entries
        .iter()
        .map(|e| Learner::new(&e.label, &e.student, e.method.as_ref(), &e.teacher_taps, e.teachers.clone(), &plan.teachers, sgd))
        .collect::<anyhow::Result<Vec<_>>>()?;
    for l in &learners {
        l.prepare(train, test, &plan.teachers, cfg.batch_size as i64, seed)?;
    }
    let mut union: Vec<usize> = learners.iter().flat_map(|l| l.teachers.iter().copied()).collect();
    union.sort_unstable();
    union.dedup();
    let steps_per_epoch = train.len() / cfg.batch_size;
    if steps_per_epoch == 0 {
        return Err(bad_input!("train.batch_size {} exceeds the {} training images", cfg.batch_size, train.len()));
    }
    let total_steps = steps_per_epoch * cfg.epochs;
    let device = plan.device;
    let mut rng = Rng::new(seed);
    let mut step = 0;
    let mut teacher_time = 0.0;
    let mut history: Vec<Vec<EpochMetrics>> = entries.iter().map(|_| vec![]).collect();
    let mut best: Vec<Best> = entries.iter().map(|_| (-1.0, 0, None)).collect();
    for epoch in 1..=cfg.epochs {
        let mut lr = sgd.lr;
        let batches: Vec<Tensor> = EpochBatches::new(train.len(), cfg.batch_size, true, true, &mut rng).collect();
        for (i, idx) in batches.into_iter().enumerate() {
            lr = lr_at(&cfg.schedule, sgd.lr, epoch, step, total_steps);
            let (images, labels) = gather(train, &idx);
            let images = augment_batch(&images, augment, &mut rng);
            let labels = labels.to_device(device);
            let started = Instant::now();
            let outputs = teacher_outputs(&plan.teachers, &union, &images, device)?;
            teacher_time += started.elapsed().as_secs_f64();
            let x = pre.apply(&images, device);
            for l in learners.iter_mut() {
                l.step(&x, &labels, &outputs, epoch, i, i + 1 == steps_per_epoch, lr, seed)?;
            }
            step += 1;
        }
        for (k, l) in learners.iter_mut().enumerate() {
            let m = l.finish_epoch(epoch, lr, test, pre, None)?;
            eprintln!("{}", m.line(&format!("seed {seed} {}", l.label), cfg.epochs));
            if m.test_top1 > best[k].0 {
                let state: HashMap<String, Tensor> = l.student.state().into_iter().map(|(n, t)| (n, t.detach().copy())).collect();
                best[k] = (m.test_top1, epoch, Some(state));
            }
            history[k].push(m);
        }
    }
    let opset = plan.recipe.export.opset;
    let mut results = Vec::new();
    for ((e, epochs), (best_top1, best_epoch, best_state)) in entries.iter().zip(history).zip(best) {
        let dir = tempfile_dir()?;
        let path = dir.join(format!("{}-{seed}.onnx", sanitize(&e.label)));
        crate::export::write_onnx(&e.student.graph, opset, plan.recipe.export.fold_batch_norm, &[], &path)?;
        let last = crate::export::validate_export(&e.student, &path, test, pre)?;
        if let Some(state) = best_state {
            e.student.load_state(&state)?;
        }
        crate::export::write_onnx(&e.student.graph, opset, plan.recipe.export.fold_batch_norm, &[], &path)?;
        let at_best = crate::export::validate_export(&e.student, &path, test, pre)?;
        let _ = std::fs::remove_dir_all(&dir);
        results.push(SeedResult {
            seed,
            best_top1_tch: best_top1,
            best_epoch,
            best_top1_ort: at_best.top1_ort,
            final_top1_tch: last.top1_tch,
            final_top1_ort: last.top1_ort,
            final_agreement: last.top1_agreement_tch_vs_ort,
            seconds_per_epoch: mean(&epochs.iter().map(|m| m.seconds).collect::<Vec<_>>()),
            epochs,
        });
    }
    Ok((results, teacher_time / cfg.epochs as f64))
}

fn tempfile_dir() -> anyhow::Result<PathBuf> {
    let dir = std::env::temp_dir().join(format!("compress-compare-{}", std::process::id()));
    std::fs::create_dir_all(&dir)?;
    Ok(dir)
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
    let _ = writeln!(s, "Student {}, {} epochs, batch {}, {} training and {} test images, device {}, seeds {:?}.\n", c.student, c.epochs, c.batch_size, c.train_images, c.test_images, c.device, seeds);
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
