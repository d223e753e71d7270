//! The pipeline: plan → data → teachers → distill (and the labels-only baseline) → export →
//! validate → report. The only place that calls more than one stage; it reads like a table of
//! contents, and every stage hands plain results to the next.

use crate::bad_input;
use crate::data::augment::Augment;
use crate::data::ImageSet;
use crate::distill::checkpoint::Identity;
use crate::distill::methods;
use crate::student::Student;
use crate::distill::learner::Learner;
use crate::distill::trainer::{self, Lockstep, TrainInputs, TrainOutcome};
use crate::export::metadata::StudentMetadata;
use crate::recipe::schema::{DataFormat, Distill};
use plan::Plan;
use crate::report::{self, Report, TrainingRecord, Versions};
use crate::zoo::ArchSpec;
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::time::Instant;

pub mod compare;
pub mod plan;
mod quantize;

pub struct RunOptions {
    pub recipe: PathBuf,
    pub sets: Vec<String>,
    pub out: Option<PathBuf>,
    pub dry_run: bool,
    pub resume: bool,
    pub overwrite: bool,
    pub device: Option<String>,
}

/// How a finished run ended (bad input and failures are errors instead).
#[derive(Debug, PartialEq, Eq)]
pub enum Outcome {
    Passed,
    GateFailed,
}

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
    let out = opts.out.clone().unwrap_or_else(|| Path::new("out").join(&plan.recipe.name));
    prepare_output(&out, opts)?;
    print_plan(&plan, &out);
    if opts.dry_run {
        return Ok(Outcome::Passed);
    }
    stages.lap("plan");
    let r = &plan.recipe;
    tch::manual_seed(r.seed as i64);
    if r.train.threads > 0 {
        tch::set_num_threads(r.train.threads as i32);
    }
    let (train_set, test_set) = load_data(&plan)?;
    stages.lap("data");
    let evaluation = crate::teacher::evaluate::evaluate_teachers(&plan.teachers, &test_set)?;
    let (teachers, ensemble, vote) = (evaluation.records, evaluation.ensemble_mean, evaluation.ensemble_vote);
    stages.lap("teachers");
    let spec = ArchSpec { num_classes: train_set.num_classes() as i64, width: r.student.width, image_size: r.data.image_size as i64 };
    let augment = Augment { random_crop_padding: r.data.augment.random_crop_padding, horizontal_flip: r.data.augment.horizontal_flip };
    let pre = plan.student_preprocess();
    let identity = Identity { recipe_sha256: plan.recipe_sha256.clone(), teacher_sha256: plan.teachers.iter().map(|t| t.sha256.clone()).collect() };
    let inputs = TrainInputs {
        train: &train_set,
        test: &test_set,
        preprocess: &pre,
        augment: &augment,
        teachers: &plan.teachers,
        seed: r.seed,
        label: "distill",
        checkpoints: Some(out.join("checkpoints/distill")),
        resume: opts.resume,
        identity,
    };
    let (distiller, training) = train_student(&plan, &spec, &r.distill, &inputs)?;
    let student = &distiller.student;
    stages.lap("distill");
    let baseline = if r.train.baseline && r.distill.method != "none" {
        let labels_only = Distill { method: "none".into(), ..r.distill.clone() };
        let inputs = TrainInputs { label: "baseline", checkpoints: Some(out.join("checkpoints/baseline")), identity: inputs.identity.clone(), ..inputs };
        let (_, record) = train_student(&plan, &spec, &labels_only, &inputs)?;
        stages.lap("baseline");
        Some(record)
    } else {
        None
    };
    let metadata = StudentMetadata {
        recipe_sha256: plan.recipe_sha256.clone(),
        preprocess: pre.clone(),
        class_names: train_set.class_names.clone(),
        distill_method: r.distill.method.clone(),
    };
    let mut exported = crate::export::export_student(student, &r.export, &metadata, &out)?;
    stages.lap("export");
    let fidelity = crate::export::validate_export(student, &out.join("student.onnx"), &test_set, &pre)?;
    stages.lap("validate");
    let quantization = match &r.quantize {
        Some(q) => {
            let stage = quantize::Stage {
                plan: &plan,
                spec: &spec,
                q,
                float: &distiller,
                float_fidelity: &fidelity,
                inputs: &inputs,
                out: &out,
                metadata: &metadata,
            };
            let record = stage.run()?;
            exported.push(record.file.clone());
            stages.lap("quantize");
            Some(record)
        }
        None => None,
    };
    let mut metric_values = BTreeMap::from([
        ("top1", fidelity.top1_ort),
        ("top5", fidelity.top5_ort),
        ("top1_tch", fidelity.top1_tch),
        ("top1_agreement_tch_vs_ort", fidelity.top1_agreement_tch_vs_ort),
        ("max_rel_diff_tch_vs_ort", fidelity.max_rel_diff),
    ]);
    if let Some(q) = &quantization {
        metric_values.extend(q.gate_metrics());
    }
    let mut references = BTreeMap::new();
    if let Some(best) = teachers.iter().map(|t| t.top1_tch).reduce(f64::max) {
        references.insert("best_teacher", best);
    }
    if let Some(e) = ensemble {
        references.insert("teacher_ensemble", e);
    }
    if let Some(b) = &baseline {
        references.insert("baseline", b.final_top1);
    }
    references.insert("float_student", fidelity.top1_ort);
    let gates = report::gates::evaluate(&r.validate.gates, &metric_values, &references)?;
    let passed = gates.iter().all(|g| g.passed);
    let report = Report {
        recipe: r.name.clone(),
        recipe_sha256: plan.recipe_sha256.clone(),
        versions: Versions::current(),
        device: crate::device::name(plan.device),
        seed: r.seed,
        data: data_summary(&plan, &train_set, &test_set),
        teachers,
        teacher_ensemble_top1: ensemble,
        teacher_majority_vote_top1: vote,
        student: BTreeMap::from([
            ("student".to_string(), serde_json::json!(r.student.label())),
            ("parameters".to_string(), serde_json::json!(student.graph.parameter_count())),
        ]),
        training,
        baseline,
        quantization,
        exported,
        fidelity,
        gates,
        passed,
        stages: {
            stages.lap("report");
            stages.0.clone()
        },
    };
    write_report(&out, &plan, &report)?;
    eprintln!("{}", summary_line(&report, &out));
    Ok(if passed { Outcome::Passed } else { Outcome::GateFailed })
}

/// Refuses to overwrite a finished run (its `report.json`) or an interrupted one (its
/// checkpoints) unless asked: `--overwrite` starts over, `--resume` continues.
fn prepare_output(out: &Path, opts: &RunOptions) -> anyhow::Result<()> {
    let report = out.join("report.json");
    let checkpoints = out.join("checkpoints");
    if opts.resume && opts.overwrite {
        return Err(bad_input!("--resume and --overwrite exclude each other"));
    }
    if report.exists() && !opts.overwrite {
        let hint = if opts.resume { "it is finished, there is nothing to resume; " } else { "" };
        return Err(bad_input!("{} already holds a finished run; {hint}pass --overwrite to replace it or --out to choose another folder", out.display()));
    }
    if opts.resume && !checkpoints.exists() {
        return Err(bad_input!("--resume: {} holds no checkpoints to continue from", out.display()));
    }
    if checkpoints.exists() && !opts.resume && !opts.overwrite && !opts.dry_run {
        return Err(bad_input!("{} holds an interrupted run: pass --resume to continue it or --overwrite to start over", out.display()));
    }
    if opts.overwrite && !opts.dry_run {
        if report.exists() {
            std::fs::remove_file(&report)?;
        }
        if checkpoints.exists() {
            std::fs::remove_dir_all(&checkpoints)?;
        }
        // A quantized file of the replaced run (whatever its widths) must not pass for one of
        // this run.
        if let Ok(entries) = std::fs::read_dir(out) {
            for entry in entries.flatten() {
                if entry.file_name().to_str().is_some_and(quantize::is_quantized_file) && entry.path().is_file() {
                    std::fs::remove_file(entry.path())?;
                }
            }
        }
    }
    std::fs::create_dir_all(out).map_err(|e| bad_input!("cannot create output folder {}: {e}", out.display()))?;
    Ok(())
}

fn print_plan(plan: &Plan, out: &Path) {
    let r = &plan.recipe;
    eprintln!("recipe `{}` → {}", r.name, out.display());
    eprintln!(
        "device {}; student {}; method {}; {} epochs, batch {}",
        crate::device::name(plan.device),
        r.student.label(),
        r.distill.method,
        r.train.epochs,
        r.train.batch_size
    );
    for t in &plan.teachers {
        eprintln!("teacher `{}`: {} (opset {}, {} parameters, {})", t.name, t.path.display(), t.opset, t.parameters, t.execution);
    }
}

pub(crate) fn load_data(plan: &Plan) -> anyhow::Result<(ImageSet, ImageSet)> {
    let d = &plan.recipe.data;
    let (train, test) = match d.format {
        DataFormat::Synthetic => {
            let s = d.synthetic.as_ref().expect("checked by the plan");
            crate::data::synthetic::generate(&crate::data::synthetic::SyntheticSpec {
                seed: s.seed,
                num_classes: s.num_classes,
                train_size: s.train_size,
                test_size: s.test_size,
                image_size: d.image_size,
            })
        }
        DataFormat::ImageFolder => {
            let cache = dataset_cache_dir();
            let load = |dir: &Option<PathBuf>| {
                crate::data::image_folder::load_image_folder(dir.as_ref().expect("checked by the plan"), Some(d.image_size), cache.as_deref())
            };
            (load(&d.train)?, load(&d.test)?)
        }
    };
    if train.class_names != test.class_names {
        return Err(bad_input!("data.train and data.test have different class folders: {:?} vs {:?}", train.class_names, test.class_names));
    }
    let seed = plan.recipe.seed;
    let train = match d.train_subset {
        Some(n) if n < train.len() => train.take_seeded(n, seed),
        _ => train,
    };
    let test = match d.test_subset {
        Some(n) if n < test.len() => test.take_seeded(n, seed ^ 0x5eed),
        _ => test,
    };
    eprintln!("data: {} train, {} test images, {} classes", train.len(), test.len(), train.num_classes());
    Ok((train, test))
}

/// Where decoded image sets are cached: `COMPRESS_CACHE_DIR`, else the user's cache folder.
pub fn dataset_cache_dir() -> Option<PathBuf> {
    if let Some(d) = std::env::var_os("COMPRESS_CACHE_DIR") {
        return Some(PathBuf::from(d));
    }
    let base = std::env::var_os("XDG_CACHE_HOME").map(PathBuf::from).or_else(|| std::env::var_os("HOME").map(|h| PathBuf::from(h).join(".cache")))?;
    Some(base.join("compress").join("datasets"))
}

fn data_summary(plan: &Plan, train: &ImageSet, test: &ImageSet) -> BTreeMap<String, serde_json::Value> {
    BTreeMap::from([
        ("format".into(), serde_json::json!(plan.recipe.data.format)),
        ("train_images".into(), serde_json::json!(train.len())),
        ("test_images".into(), serde_json::json!(test.len())),
        ("classes".into(), serde_json::json!(train.class_names)),
    ])
}

/// A student and the method of one `distill` section, ready to train.
pub(crate) struct Distiller {
    pub student: Student,
    /// Shared with the QAT stage, which continues under the same method (connectors, state).
    pub method: std::rc::Rc<dyn methods::Method>,
    pub needs: methods::Needs,
    /// The teachers this section uses (indices into the plan's teachers).
    pub subset: Vec<usize>,
}

impl Distiller {
    /// Builds the method of `distill` for the student `graph` (its taps resolved on it).
    pub(crate) fn new(plan: &Plan, spec: &ArchSpec, distill: &Distill, graph: crate::graph::Graph) -> anyhow::Result<Distiller> {
        let needs = methods::needs(distill)?;
        let student = Student::with_taps(graph, plan.device, &needs.student_taps)?;
        let names: Vec<String> = plan.teachers.iter().map(|t| t.name.clone()).collect();
        let subset = distill.teacher_indices(&names).map_err(|e| bad_input!("distill.{e}"))?;
        let chosen: Vec<&crate::teacher::Teacher> = subset.iter().map(|&i| &plan.teachers[i]).collect();
        let shapes = student.taps().iter().map(|t| t.shape.clone()).collect();
        let setup = methods::Setup::for_models(&chosen, shapes, &needs, spec.num_classes, plan.device, plan.recipe.train.batch_size as i64)?;
        let method = std::rc::Rc::from(methods::build(distill, &setup)?);
        Ok(Distiller { student, method, needs, subset })
    }

    /// Trains under `cfg`; with no epochs, only measures the student as it is.
    pub(crate) fn train(&self, distill: &Distill, cfg: &crate::recipe::schema::Train, inputs: &TrainInputs) -> anyhow::Result<TrainingRecord> {
        let started = Instant::now();
        if cfg.epochs == 0 {
            let top1 = crate::metrics::top_k(&self.student.logits(inputs.test, inputs.preprocess, 256)?, &inputs.test.labels, 1);
            eprintln!("{}: no epochs; the student as given has test top-1 {:.2}%", inputs.label, 100.0 * top1);
            let record = TrainingRecord { method: distill.method.clone(), method_summary: None, epochs: vec![], best_top1: top1, best_epoch: 0, final_top1: top1, seconds: 0.0 };
            return Ok(record);
        }
        let learner = Learner::new(inputs.label, &self.student, self.method.as_ref(), &self.needs.teacher_taps, self.subset.clone(), inputs.teachers, &cfg.optimizer.sgd)?;
        let mut lockstep = Lockstep { learners: vec![learner], keep_best: false };
        let trained = trainer::train(&mut lockstep, cfg, inputs)?;
        let TrainOutcome { method_summary, epochs, best_top1, best_epoch, final_top1, .. } = trained.outcomes.into_iter().next().expect("one learner, one outcome");
        Ok(TrainingRecord { method: distill.method.clone(), method_summary, epochs, best_top1, best_epoch, final_top1, seconds: started.elapsed().as_secs_f64() })
    }
}

fn train_student(plan: &Plan, spec: &ArchSpec, distill: &Distill, inputs: &TrainInputs) -> anyhow::Result<(Distiller, TrainingRecord)> {
    // Re-seeding here gives the distilled student and the baseline the same initial weights.
    tch::manual_seed(plan.recipe.seed as i64);
    let graph = crate::student::source::build(&plan.recipe.student, spec, plan.device)?;
    let distiller = Distiller::new(plan, spec, distill, graph)?;
    let record = distiller.train(distill, &plan.recipe.train, inputs)?;
    Ok((distiller, record))
}

fn write_report(out: &Path, plan: &Plan, report: &Report) -> anyhow::Result<()> {
    crate::fsio::write_atomic(&out.join("recipe.resolved.yaml"), plan.resolved_yaml.as_bytes())?;
    crate::fsio::write_atomic(&out.join("report.md"), report::markdown::render(report).as_bytes())?;
    // report.json last: its presence marks a finished run.
    crate::fsio::write_atomic(&out.join("report.json"), serde_json::to_string_pretty(report)?.as_bytes())
}

fn summary_line(r: &Report, out: &Path) -> String {
    let base = r.baseline.as_ref().map(|b| format!(", baseline {:.2}%", 100.0 * b.final_top1)).unwrap_or_default();
    format!(
        "{}: student top-1 {:.2}% in ONNX Runtime (tch {:.2}%{base}); gates {}; report in {}",
        if r.passed { "PASS" } else { "FAIL" },
        100.0 * r.fidelity.top1_ort,
        100.0 * r.fidelity.top1_tch,
        if r.passed { "passed" } else { "failed" },
        out.join("report.md").display()
    )
}
