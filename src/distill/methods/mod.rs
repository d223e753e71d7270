//! Distillation methods, one file each behind one trait (mdistiller's layout). A method turns
//! the student's and the teachers' outputs for one batch into named loss terms; the trainer sums
//! and logs them by name. The registry below says what each method needs (taps, teacher heads,
//! how many teachers) so the plan can check a recipe before any work.

mod aekd;
mod aver;
mod ca_mkd;
mod de_mkd;
mod dkd;
mod ebkd;
mod features;
mod fitnet_mkd;
mod fitnets;
#[cfg(test)]
mod init_tests;
mod kd;
mod labels_only;
mod mgd;
mod mmkd;

pub use crate::teacher::Head;

use crate::bad_input;
use crate::distill::connectors::ConnectorKind;
pub use crate::distill::stats::MethodFigures;
use crate::recipe::schema::{Distill, FeaturePair};
use tch::{nn, Device, Tensor};

/// Everything a method sees for one batch.
pub struct BatchOutputs<'a> {
    /// Student logits [B, C] (with grad).
    pub student: &'a Tensor,
    /// The student taps of `Needs::student_taps`, in that order (with grad).
    pub student_feats: &'a [Tensor],
    /// One [B, C] logit tensor per teacher (no grad).
    pub teachers: &'a [Tensor],
    /// Per teacher, the taps of `Needs::teacher_taps`, in that order (no grad).
    pub teacher_feats: &'a [Vec<Tensor>],
    /// Labels [B] int64.
    pub labels: &'a Tensor,
    /// The training epoch, counted from 1 ("no feature term in epoch 1").
    pub epoch: usize,
    /// Training progress in epochs at the end of this step, (epoch − 1) + (step + 1) / steps per
    /// epoch: warm-ups ramp on it, so at each epoch's end they equal the reference's per-epoch
    /// factor and a warm-up shorter than an epoch still ramps.
    pub progress: f64,
    /// The process group of a data-parallel run: this batch is this rank's share of the whole
    /// batch, and a method whose rule reads the whole batch (AEKD's mean gradients) reduces
    /// across it.
    pub dist: Option<&'a crate::dist::Group>,
}

/// A named, already weighted term of the total loss.
pub struct LossTerm {
    pub name: &'static str,
    pub value: Tensor,
}

pub trait Method {
    /// Whether the method reads teacher outputs (a labels-only baseline does not).
    fn needs_teachers(&self) -> bool {
        true
    }
    /// Weighted loss terms for one batch; the trainer backpropagates their sum.
    fn losses(&self, batch: &BatchOutputs) -> anyhow::Result<Vec<LossTerm>>;
    /// The weight each teacher gets on this batch: [K, B] for per-sample rules, [K] for
    /// per-batch ones; None for methods without teacher weights.
    fn teacher_weights(&self, batch: &BatchOutputs) -> anyhow::Result<Option<Tensor>>;
    /// Modules the method trains with the student (connectors); never exported.
    fn modules(&self) -> Option<&nn::VarStore> {
        None
    }
    /// Called after every optimizer step (MMKD's meta step and hard buffer); most methods do
    /// nothing here.
    fn after_step(&self, _ctx: &StepContext) -> anyhow::Result<()> {
        Ok(())
    }
    /// State the method keeps outside `modules` (meta networks, their optimizer, frozen heads),
    /// by name, as shallow handles: checkpoints save them and resuming copies into them.
    fn state(&self) -> Vec<(String, Tensor)> {
        Vec::new()
    }
    /// A stage before training (MGD trains its teachers' self-analyzing heads); skipped when a
    /// run resumes from a checkpoint, which holds its result.
    fn prepare(&self, _ctx: &PrepareContext) -> anyhow::Result<()> {
        Ok(())
    }
    /// What the method wants in the report besides the per-epoch figures.
    fn summary(&self) -> Option<serde_json::Value> {
        None
    }
    /// The epoch's figures beyond the losses and logit weights (feature weights, per-teacher
    /// feature losses, meta-gradient norms); taking them starts the next epoch's.
    fn take_figures(&self) -> MethodFigures {
        MethodFigures::default()
    }
}

/// What `Method::prepare` sees.
pub struct PrepareContext<'a> {
    /// The training set with its augmentation (MGD's heads train on augmented passes).
    pub train: &'a crate::data::feed::Feed,
    /// The test set at every model's size.
    pub test: &'a crate::data::feed::TestSet,
    pub teachers: &'a [&'a crate::teacher::Teacher],
    pub batch_size: i64,
    pub seed: u64,
    pub device: Device,
    /// The process group of a data-parallel run: a stage that rank 0 alone needs to run (MGD's
    /// heads, broadcast to the others when training starts) is skipped elsewhere.
    pub dist: Option<&'a crate::dist::Group>,
}

/// What `Method::after_step` sees: the student, the batch it just stepped on and the schedule.
pub struct StepContext<'a> {
    pub student: &'a crate::student::Student,
    /// The preprocessed student input of the batch.
    pub x: &'a Tensor,
    pub batch: &'a BatchOutputs<'a>,
    /// The learning rate of the step just taken.
    pub lr: f64,
    /// Index of the step within its epoch, from 0.
    pub step_in_epoch: usize,
    pub last_in_epoch: bool,
    pub seed: u64,
}

/// What a method's feature term uses when the recipe gives no `distill.features`.
struct FeatureDefaults {
    weight: f64,
    student: &'static str,
    teacher: &'static str,
    connector: ConnectorKind,
    /// Feature weights pass the projected student feature through each teacher's classifier.
    heads: bool,
}

/// One registered method: what it needs, its own option rules, and how it is built.
struct Entry {
    name: &'static str,
    /// KD, FitNets and DKD distil exactly one teacher.
    single_teacher: bool,
    /// Reads the student's and the teachers' `pooled` vectors (MGD).
    pooled: bool,
    features: Option<FeatureDefaults>,
    /// The method's own checks of its `distill` section against the number of teachers; each
    /// problem names its key under `distill.`.
    check: fn(&Distill, usize) -> Vec<String>,
    build: fn(&Distill, &Setup) -> anyhow::Result<Box<dyn Method>>,
}

/// `key` must be a finite number above `min` (or at least it when `inclusive`); the problem
/// otherwise.
pub(crate) fn number(key: &str, v: f64, min: f64, inclusive: bool) -> Option<String> {
    let ok = v.is_finite() && if inclusive { v >= min } else { v > min };
    let bound = if inclusive { "at least" } else { "above" };
    (!ok).then(|| format!("{key}: must be a finite number {bound} {min}, got {v}"))
}

/// For methods whose options need no check beyond the schema's.
fn no_check(_: &Distill, _: usize) -> Vec<String> {
    Vec::new()
}

const fn feat(weight: f64, student: &'static str, teacher: &'static str, connector: ConnectorKind, heads: bool) -> Option<FeatureDefaults> {
    Some(FeatureDefaults { weight, student, teacher, connector, heads })
}

const REGISTRY: &[Entry] = &[
    Entry { name: "none", single_teacher: false, pooled: false, features: None, check: no_check, build: labels_only::build },
    Entry { name: "kd", single_teacher: true, pooled: false, features: None, check: no_check, build: kd::build },
    Entry {
        name: "fitnets",
        single_teacher: true,
        pooled: false,
        features: feat(100.0, "stage2", "stage2", ConnectorKind::ConvReg, false),
        check: no_check,
        build: fitnets::build,
    },
    Entry { name: "dkd", single_teacher: true, pooled: false, features: None, check: dkd::check, build: dkd::build },
    Entry { name: "aver", single_teacher: false, pooled: false, features: None, check: no_check, build: aver::build },
    Entry {
        name: "fitnet_mkd",
        single_teacher: false,
        pooled: false,
        features: feat(100.0, "stage2", "stage2", ConnectorKind::ConvReg, false),
        check: no_check,
        build: fitnet_mkd::build,
    },
    Entry { name: "ebkd", single_teacher: false, pooled: false, features: None, check: ebkd::check, build: ebkd::build },
    Entry { name: "aekd", single_teacher: false, pooled: false, features: None, check: aekd::check, build: aekd::build },
    Entry {
        name: "ca_mkd",
        single_teacher: false,
        pooled: false,
        features: feat(50.0, "last_stage", "last_stage", ConnectorKind::Embed, true),
        check: no_check,
        build: ca_mkd::build,
    },
    Entry {
        name: "de_mkd",
        single_teacher: false,
        pooled: false,
        features: feat(50.0, "last_stage", "last_stage", ConnectorKind::Embed, false),
        check: de_mkd::check,
        build: de_mkd::build,
    },
    Entry { name: "mgd", single_teacher: false, pooled: true, features: None, check: no_check, build: mgd::build },
    Entry {
        name: "mmkd",
        single_teacher: false,
        pooled: false,
        features: feat(100.0, "last_stage", "last_stage", ConnectorKind::Embed, false),
        check: mmkd::check,
        build: mmkd::build,
    },
];

/// The methods the recipe's `distill.method` accepts.
pub fn names() -> Vec<&'static str> {
    REGISTRY.iter().map(|e| e.name).collect()
}

fn entry(method: &str) -> anyhow::Result<&'static Entry> {
    REGISTRY.iter().find(|e| e.name == method).ok_or_else(|| bad_input!("unknown method `{method}` (known: {})", names().join(", ")))
}

/// The feature pairs a recipe's method uses (none when its feature weight is 0).
fn feature_pairs(cfg: &Distill) -> anyhow::Result<Vec<FeaturePair>> {
    let e = entry(&cfg.method)?;
    let Some(d) = &e.features else {
        return Ok(vec![]);
    };
    if cfg.loss_weights.feat.unwrap_or(d.weight) == 0.0 {
        return Ok(vec![]);
    }
    let pairs = cfg.features.clone().unwrap_or_else(|| vec![FeaturePair { student: d.student.into(), teacher: d.teacher.into(), connector: None }]);
    Ok(pairs.into_iter().map(|p| FeaturePair { connector: Some(p.connector.unwrap_or(d.connector)), ..p }).collect())
}

/// The feature weight β in effect.
fn feature_weight(cfg: &Distill) -> f64 {
    entry(&cfg.method).ok().and_then(|e| e.features.as_ref()).map_or(0.0, |d| cfg.loss_weights.feat.unwrap_or(d.weight))
}

/// What a method needs from the models, known from the recipe alone.
#[derive(Clone, Debug, Default)]
pub struct Needs {
    pub student_taps: Vec<String>,
    pub teacher_taps: Vec<String>,
    pub teacher_heads: bool,
}

pub fn needs(cfg: &Distill) -> anyhow::Result<Needs> {
    let pairs = feature_pairs(cfg)?;
    let mut n = Needs::default();
    for p in &pairs {
        if !n.student_taps.contains(&p.student) {
            n.student_taps.push(p.student.clone());
        }
        if !n.teacher_taps.contains(&p.teacher) {
            n.teacher_taps.push(p.teacher.clone());
        }
    }
    let e = entry(&cfg.method)?;
    n.teacher_heads = !pairs.is_empty() && e.features.as_ref().is_some_and(|d| d.heads);
    if e.pooled {
        for taps in [&mut n.student_taps, &mut n.teacher_taps] {
            if !taps.iter().any(|t| t == "pooled") {
                taps.push("pooled".into());
            }
        }
    }
    Ok(n)
}

/// Problems of the `distill` section, each naming its key: an unknown method, options or a
/// feature weight for a method that has none, the wrong number of teachers.
pub fn check(cfg: &Distill, teachers: usize) -> Vec<String> {
    let mut problems = Vec::new();
    let e = match entry(&cfg.method) {
        Ok(e) => e,
        Err(err) => return vec![format!("distill.method: {err}")],
    };
    let sections = [
        ("dkd", cfg.dkd.is_some(), &["dkd"][..]),
        ("aekd", cfg.aekd.is_some(), &["aekd"][..]),
        ("ca_mkd", cfg.ca_mkd.is_some(), &["ca_mkd"][..]),
        ("fitnet_mkd", cfg.fitnet_mkd.is_some(), &["fitnet_mkd"][..]),
        ("de_mkd", cfg.de_mkd.is_some(), &["de_mkd"][..]),
        ("mmkd", cfg.mmkd.is_some(), &["mmkd"][..]),
        ("mgd", cfg.mgd.is_some(), &["mgd"][..]),
    ];
    for (key, given, owners) in sections {
        if given && !owners.contains(&e.name) {
            problems.push(format!("distill.{key}: options for method {key}, but distill.method is `{}`", e.name));
        }
    }
    if e.features.is_none() {
        if cfg.loss_weights.feat.is_some_and(|w| w != 0.0) {
            problems.push(format!("distill.loss_weights.feat: method `{}` has no feature term", e.name));
        }
        if cfg.features.is_some() {
            problems.push(format!("distill.features: method `{}` has no feature term", e.name));
        }
    }
    if e.single_teacher && teachers != 1 {
        problems.push(format!(
            "distill.method: `{}` distils exactly one teacher, the recipe has {teachers} (aver, ebkd, aekd, ca_mkd and de_mkd take several)",
            e.name
        ));
    }
    problems.extend((e.check)(cfg, teachers));
    if !(cfg.temperature > 0.0 && cfg.temperature.is_finite()) {
        problems.push(format!("distill.temperature: must be a positive number, got {}", cfg.temperature));
    }
    problems
}

/// The models' side of building a method: tap shapes (for one image, batch axis included) and
/// the teachers' classifier heads.
pub struct Setup {
    pub teachers: usize,
    pub num_classes: i64,
    /// Shapes of `Needs::student_taps`, in order.
    pub student_shapes: Vec<Vec<i64>>,
    /// Per teacher, shapes of `Needs::teacher_taps`, in order.
    pub teacher_shapes: Vec<Vec<Vec<i64>>>,
    /// Per teacher, its classifier head when `Needs::teacher_heads`.
    pub teacher_heads: Vec<Option<Head>>,
    pub device: Device,
    /// The training batch size (MMKD's FeatureWeight net reads B×B Gram matrices).
    pub batch_size: i64,
    /// The run's epochs (warm-ups given as a share of the run).
    pub epochs: usize,
    /// Seeds the method's own modules (`distill::init`).
    pub seed: u64,
}

impl Setup {
    /// The same setup with the seed of the method's modules.
    pub fn with_seed(self, seed: u64) -> Setup {
        Setup { seed, ..self }
    }

    /// The setup for a method that distils `teachers`, whose student taps have
    /// `student_shapes` (in `needs.student_taps` order), on `device` (module seed 0 until
    /// `with_seed`).
    pub fn for_models(
        teachers: &[&crate::teacher::Teacher],
        student_shapes: Vec<Vec<i64>>,
        needs: &Needs,
        num_classes: i64,
        device: Device,
        batch_size: i64,
        epochs: usize,
    ) -> anyhow::Result<Setup> {
        let mut teacher_shapes = Vec::new();
        for t in teachers {
            let shapes = needs
                .teacher_taps
                .iter()
                .map(|a| {
                    t.taps.iter().position(|x| x == a).map(|i| t.tap_shapes[i].clone()).ok_or_else(|| anyhow::anyhow!("teacher `{}` has no tap `{a}`", t.name))
                })
                .collect::<anyhow::Result<Vec<_>>>()?;
            teacher_shapes.push(shapes);
        }
        let teacher_heads =
            teachers.iter().map(|t| t.head.as_ref().map(|h| Head { weight: h.weight.to_device(device), bias: h.bias.to_device(device) })).collect();
        Ok(Setup { teachers: teachers.len(), num_classes, student_shapes, teacher_shapes, teacher_heads, device, batch_size, epochs, seed: 0 })
    }
}

pub fn build(cfg: &Distill, setup: &Setup) -> anyhow::Result<Box<dyn Method>> {
    (entry(&cfg.method)?.build)(cfg, setup)
}

/// The method for a recipe that only needs logits (tests and the labels-only baseline).
pub fn build_logit_only(cfg: &Distill, teachers: usize, num_classes: i64) -> anyhow::Result<Box<dyn Method>> {
    let setup = Setup {
        teachers,
        num_classes,
        student_shapes: vec![],
        teacher_shapes: vec![vec![]; teachers],
        teacher_heads: vec![],
        device: Device::Cpu,
        batch_size: 1,
        epochs: 1,
        seed: 0,
    };
    build(cfg, &setup)
}

/// γ·mean CE on the labels, the term every method shares.
pub(crate) fn ce_term(weight: f64, batch: &BatchOutputs) -> LossTerm {
    let ce = super::losses::ce_per_sample(batch.student, batch.labels).mean(tch::Kind::Float);
    LossTerm { name: "ce", value: ce * weight }
}

/// Per-teacher per-sample values stacked to [K, B].
pub(crate) fn stack_teachers(batch: &BatchOutputs, f: impl Fn(&Tensor) -> Tensor) -> Tensor {
    Tensor::stack(&batch.teachers.iter().map(f).collect::<Vec<_>>(), 0)
}
