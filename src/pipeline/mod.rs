//! The pipeline: plan → data → teachers → distill (and the labels-only baseline) → export →
//! validate → quantize → gates → report. The only code that calls more than one stage: `run`
//! reads like a table of contents, and every stage hands plain results to the next. Here too:
//! the plan (`plan`), the comparison (`compare`), the output folder (`output`).

pub mod compare;
mod distiller;
mod load;
mod output;
pub mod plan;
mod quantize;

use crate::data::feed::{Feed, TestSet};
use crate::data::loader::Source;
use crate::distill::checkpoint::Identity;
use crate::distill::trainer::TrainInputs;
use crate::export::metadata::StudentMetadata;
use crate::export::Fidelity;
use crate::report::{self, QuantizationRecord, Report, TrainingRecord, Versions};
use crate::teacher::evaluate::{evaluate_teachers, TeacherEvaluation};
use distiller::Distiller;
use plan::Plan;
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::time::Instant;

pub struct RunOptions {
    pub recipe: PathBuf,
    pub sets: Vec<String>,
    pub out: Option<PathBuf>,
    pub dry_run: bool,
    pub resume: bool,
    pub overwrite: bool,
    pub device: Option<String>,
}

/// How a finished run ended (bad input and failures are errors instead): whether every gate
/// held, the gates, and the headline figures (for JUnit and the CI step summary).
#[derive(Debug)]
pub struct Outcome {
    pub passed: bool,
    pub gates: Vec<report::gates::GateResult>,
    pub figures: Vec<(String, String)>,
}

/// Wall time per stage.
struct Stages(Vec<(String, f64)>, Instant);

impl Stages {
    fn lap(&mut self, name: &str) {
        self.0.push((name.into(), self.1.elapsed().as_secs_f64()));
        self.1 = Instant::now();
    }
}

pub fn run(opts: &RunOptions) -> anyhow::Result<Outcome> {
    let mut stages = Stages(Vec::new(), Instant::now());
    let plan = Plan::resolve(&opts.recipe, &opts.sets, opts.device.as_deref())?;
    let out = opts.out.clone().unwrap_or_else(|| plan::default_out(&plan.name));
    // A data-parallel run: every rank joins before rank 0 claims the output folder, and starts
    // only if rank 0 could; the other ranks never touch the folder.
    let group = match &plan.world {
        Some(launch) if !opts.dry_run => Some(crate::dist::Group::connect(launch, plan.device)?),
        _ => None,
    };
    let main = plan.world.as_ref().is_none_or(|w| w.is_main());
    let lock = if main { output::prepare(&out, opts, &output::run_names(&plan)).map(Some) } else { Ok(None) };
    if let Some(g) = &group {
        g.start_together(lock.as_ref().map(|_| ()))?;
    }
    let _lock = lock?;
    if !main {
        return match &group {
            Some(g) => train_share(&plan, opts, g),
            None => Ok(Outcome { passed: true, gates: vec![], figures: vec![("dry run".into(), "plan resolved; rank 0 prints it".into())] }),
        };
    }
    print_plan(&plan, &out);
    if opts.dry_run {
        let largest = plan.model_sizes().iter().map(|&(h, w)| h.max(w)).max().unwrap_or(0);
        load::check_folders(&plan.data, plan.seed, largest)?;
        return Ok(Outcome { passed: true, gates: vec![], figures: vec![("dry run".into(), "plan resolved, nothing trained".into())] });
    }
    stages.lap("plan");
    set_threads(&plan);
    tch::manual_seed(plan.seed as i64);
    let (mut train_set, test_feed) = load::data(&plan.data, plan.seed)?;
    load::place(&plan.data, &mut train_set, plan.device, &plan.model_sizes())?;
    let test_set = test_feed.render_test(&plan.model_sizes())?;
    drop(test_feed);
    stages.lap("data");
    let teachers = evaluate_teachers(&plan.teachers, &test_set)?;
    stages.lap("teachers");
    let inputs = TrainInputs { dist: group.as_ref(), ..train_inputs(&plan, &train_set, &test_set, &out, opts.resume) };
    let (distiller, training) = train_student(&plan, &plan.method, "distill", &inputs)?;
    stages.lap("distill");
    let baseline = match plan.baseline {
        true => Some(train_student(&plan, &plan.method.labels_only(), "baseline", &inputs)?.1),
        false => None,
    };
    if baseline.is_some() {
        stages.lap("baseline");
    }
    let metadata = StudentMetadata {
        recipe_sha256: plan.recipe_sha256.clone(),
        preprocess: plan.data.preprocess.clone(),
        eval_view: plan.data.eval_view(),
        class_names: train_set.class_names().to_vec(),
        distill_method: plan.method.distill.method.clone(),
    };
    let mut exported = crate::export::export_student(&distiller.student, &plan.export, &metadata, &out)?;
    stages.lap("export");
    let fidelity = crate::export::validate_export(&distiller.student, &out.join("student.onnx"), test_set.student(), &plan.data.preprocess)?;
    stages.lap("validate");
    let quantization = match &plan.quantize {
        Some(q) => {
            let stage = quantize::Stage { plan: &plan, q, float: &distiller, inputs: &inputs, out: &out };
            let record = stage.run(&fidelity, &metadata)?;
            exported.push(record.file.clone());
            stages.lap("quantize");
            Some(record)
        }
        None => None,
    };
    let ort_format = ort_format_copies(&plan, &mut exported, &test_set)?;
    if !ort_format.is_empty() {
        stages.lap("ort_format");
    }
    let results = Results { teachers, training, baseline, quantization, exported, fidelity, ort_format, parameters: distiller.student.graph.parameter_count() };
    let mut report = build_report(&plan, &train_set, &test_set, results, stages)?;
    output::write_report(&out, &plan, &mut report)?;
    eprintln!("{}", summary_line(&report, &out));
    let mut figures = vec![
        ("student top-1 (ONNX Runtime)".to_string(), format!("{:.2}%", 100.0 * report.fidelity.top1_ort)),
        ("student top-1 (tch)".to_string(), format!("{:.2}%", 100.0 * report.fidelity.top1_tch)),
    ];
    if let Some(b) = &report.baseline {
        figures.push(("baseline top-1".into(), format!("{:.2}%", 100.0 * b.final_top1)));
    }
    figures.push(("report".into(), out.join("report.md").display().to_string()));
    Ok(Outcome { passed: report.passed, gates: report.gates, figures })
}

/// A data-parallel rank other than 0: the trainings of the run (distillation, baseline, QAT), in
/// step with rank 0, its share of every batch; rank 0 evaluates, exports, validates and reports.
fn train_share(plan: &Plan, opts: &RunOptions, group: &crate::dist::Group) -> anyhow::Result<Outcome> {
    set_threads(plan);
    tch::manual_seed(plan.seed as i64);
    let (mut train_set, test_feed) = load::data(&plan.data, plan.seed)?;
    load::place(&plan.data, &mut train_set, plan.device, &plan.model_sizes())?;
    let test_set = test_feed.render_test(&plan.model_sizes())?;
    drop(test_feed);
    let out = opts.out.clone().unwrap_or_else(|| plan::default_out(&plan.name));
    let inputs = TrainInputs { dist: Some(group), ..train_inputs(plan, &train_set, &test_set, &out, opts.resume) };
    let (distiller, _) = train_student(plan, &plan.method, "distill", &inputs)?;
    if plan.baseline {
        train_student(plan, &plan.method.labels_only(), "baseline", &inputs)?;
    }
    if let Some(q) = &plan.quantize {
        quantize::Stage { plan, q, float: &distiller, inputs: &inputs, out: &out }.train_only()?;
    }
    let who = format!("rank {} of {}", group.rank, group.world_size);
    eprintln!("PASS: {who} trained its share of every batch; rank 0 evaluates, exports and reports");
    Ok(Outcome { passed: true, gates: vec![], figures: vec![("rank".into(), who)] })
}

/// With `export.ort_format`, each exported `.onnx` also in ONNX Runtime's format, checked
/// against it on the test set; the `.ort` files join the exported list.
fn ort_format_copies(
    plan: &Plan,
    exported: &mut Vec<crate::export::ExportedFile>,
    test: &TestSet,
) -> anyhow::Result<Vec<crate::export::ort_format::OrtFormatCheck>> {
    if !plan.export.ort_format {
        return Ok(vec![]);
    }
    let mut checks = Vec::new();
    for file in exported.clone() {
        let check = crate::export::ort_format::write_and_check(Path::new(&file.path), file.opset, test.student(), &plan.data.preprocess)?;
        eprintln!(
            "export: {} written by ONNX Runtime; top-1 {:.2}%, agreement with {} {:.2}%, max abs diff {:.3e}",
            check.file.path,
            100.0 * check.top1,
            file.path,
            100.0 * check.top1_agreement_vs_onnx,
            check.max_abs_diff_vs_onnx
        );
        exported.push(check.file.clone());
        checks.push(check);
    }
    Ok(checks)
}

fn set_threads(plan: &Plan) {
    if plan.threads > 0 {
        tch::set_num_threads(plan.threads as i32);
    }
}

fn print_plan(plan: &Plan, out: &Path) {
    eprintln!("recipe `{}` → {}", plan.name, out.display());
    eprintln!(
        "device {}; student {}; method {}; {} epochs, batch {}",
        crate::device::name(plan.device),
        plan.student.label,
        plan.method.distill.method,
        plan.train.epochs,
        plan.train.batch_size
    );
    for t in &plan.teachers {
        eprintln!("teacher `{}`: {} (opset {}, {} parameters, {})", t.name, t.path.display(), t.opset, t.parameters, t.execution);
    }
}

/// What every training of the run shares; each names its own label and checkpoint folder.
fn train_inputs<'a>(plan: &'a Plan, train: &'a Feed, test: &'a TestSet, out: &Path, resume: bool) -> TrainInputs<'a> {
    TrainInputs {
        train,
        test,
        preprocess: &plan.data.preprocess,
        teachers: &plan.teachers,
        seed: plan.seed,
        label: "distill",
        checkpoints: Some(out.join("checkpoints")),
        resume,
        identity: Identity { recipe_sha256: plan.recipe_sha256.clone(), teacher_sha256: plan.teacher_hashes() },
        numerics: crate::graph::Numerics::training(plan.train.deterministic),
        dist: None,
    }
}

/// One training of the run's student from the seed's initial weights (the distilled student and
/// the baseline start alike), checkpointed under `checkpoints/<label>`.
fn train_student(plan: &Plan, usage: &plan::MethodUse, label: &str, inputs: &TrainInputs) -> anyhow::Result<(Distiller, TrainingRecord)> {
    let distiller = Distiller::fresh(plan, usage, plan.seed)?;
    let checkpoints = inputs.checkpoints.as_ref().map(|d| d.join(label));
    let inputs = TrainInputs { label, checkpoints, identity: inputs.identity.clone(), ..*inputs };
    let record = distiller.train(&plan.train, &inputs)?;
    Ok((distiller, record))
}

/// What the stages measured, for the report.
struct Results {
    teachers: TeacherEvaluation,
    training: TrainingRecord,
    baseline: Option<TrainingRecord>,
    quantization: Option<QuantizationRecord>,
    exported: Vec<crate::export::ExportedFile>,
    ort_format: Vec<crate::export::ort_format::OrtFormatCheck>,
    fidelity: Fidelity,
    parameters: i64,
}

/// The report: the measured figures, the gates evaluated on them, the stage times.
fn build_report(plan: &Plan, train: &Feed, test: &TestSet, r: Results, mut stages: Stages) -> anyhow::Result<Report> {
    let gates = report::gates::evaluate(&plan.gates, &gate_metrics(&r), &gate_references(&r))?;
    let passed = gates.iter().all(|g| g.passed);
    stages.lap("report");
    Ok(Report {
        recipe: plan.name.clone(),
        recipe_sha256: plan.recipe_sha256.clone(),
        versions: Versions::current(),
        device: crate::device::name(plan.device),
        seed: plan.seed,
        data: BTreeMap::from([
            ("format".into(), serde_json::json!(plan.data.format)),
            ("train_images".into(), serde_json::json!(train.len())),
            ("test_images".into(), serde_json::json!(test.len())),
            ("classes".into(), serde_json::json!(train.class_names())),
            ("loader".into(), loader_record(plan, train, test)),
        ]),
        teachers: r.teachers.records,
        teacher_ensemble_top1: r.teachers.ensemble_mean,
        teacher_majority_vote_top1: r.teachers.ensemble_vote,
        student: BTreeMap::from([("student".to_string(), serde_json::json!(plan.student.label)), ("parameters".to_string(), serde_json::json!(r.parameters))]),
        training: r.training,
        baseline: r.baseline,
        quantization: r.quantization,
        exported: r.exported,
        ort_format: r.ort_format,
        fidelity: r.fidelity,
        gates,
        passed,
        charts: vec![],
        stages: stages.0,
    })
}

/// How the images were loaded, for the report: held in memory or decoded per batch, the
/// loader threads, each model's input size, the images left out as bad.
fn loader_record(plan: &Plan, train: &Feed, test: &TestSet) -> serde_json::Value {
    let held = load::source_kind(&train.source);
    let skipped_at_scan = match &train.source {
        Source::Memory(_) => 0,
        Source::Files(f) | Source::Disk(_, f) => f.skipped.len(),
    };
    serde_json::json!({
        "train": held,
        "workers": plan.data.workers.threads,
        "reduced_decode": plan.data.reduced_decode,
        "resident": train.resident.as_ref().map(|r| crate::device::name(r.device())),
        "resident_why_not": crate::data::resident::why_not(&train.source, &train.train, &plan.model_sizes()),
        "sizes": test.sizes,
        "train_images_skipped_at_scan": skipped_at_scan,
        "test_images_skipped": test.skipped,
    })
}

/// The figures a gate may name.
fn gate_metrics(r: &Results) -> BTreeMap<&'static str, f64> {
    let f = &r.fidelity;
    let mut m = BTreeMap::from([
        ("top1", f.top1_ort),
        ("top5", f.top5_ort),
        ("top1_tch", f.top1_tch),
        ("top1_agreement_tch_vs_ort", f.top1_agreement_tch_vs_ort),
        ("max_rel_diff_tch_vs_ort", f.max_rel_diff),
    ]);
    if let Some(q) = &r.quantization {
        m.extend(q.gate_metrics());
    }
    if let Some(worst) = r.ort_format.iter().map(|c| c.top1_agreement_vs_onnx).reduce(f64::min) {
        m.insert("ort_format_top1_agreement", worst);
    }
    m
}

/// The references a gate's `max_drop_vs` may name.
fn gate_references(r: &Results) -> BTreeMap<&'static str, f64> {
    let mut refs = BTreeMap::from([("float_student", r.fidelity.top1_ort)]);
    if let Some(best) = r.teachers.records.iter().map(|t| t.top1_tch).reduce(f64::max) {
        refs.insert("best_teacher", best);
    }
    if let Some(e) = r.teachers.ensemble_mean {
        refs.insert("teacher_ensemble", e);
    }
    if let Some(b) = &r.baseline {
        refs.insert("baseline", b.final_top1);
    }
    refs
}

fn summary_line(r: &Report, out: &Path) -> String {
    let base = r.baseline.as_ref().map(|b| format!(", baseline {:.2}%", 100.0 * b.final_top1)).unwrap_or_default();
    let failed: Vec<String> = r.gates.iter().filter(|g| !g.passed).map(report::junit::gate_message).collect();
    let gates = match (failed.is_empty(), r.gates.len()) {
        (true, 0) => "no gates (validate.gates)".to_string(),
        (true, n) => format!("{n} gate(s) held"),
        (false, _) => format!("failed gate(s): {}", failed.join("; ")),
    };
    format!(
        "{}: student top-1 {:.2}% in ONNX Runtime (tch {:.2}%{base}); {gates}; report in {}",
        if r.passed { "PASS" } else { "FAIL" },
        100.0 * r.fidelity.top1_ort,
        100.0 * r.fidelity.top1_tch,
        out.join("report.md").display()
    )
}
