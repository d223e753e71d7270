//! One student learning under one method: its optimizer, one step on a prepared batch, and the
//! epoch's figures. The trainer drives one learner for a run and several in lockstep (the same
//! batches and teacher outputs) for `compress compare`.

use super::methods::{BatchOutputs, Method, PrepareContext, StepContext};
use super::optim::Sgd;
use super::record::EpochMetrics;
use super::stats::WeightStats;
use crate::data::feed::{Feed, TestSet};
use crate::data::preprocess::Preprocess;
use crate::data::ImageSet;
use crate::dist::Group;
use crate::graph::RunMode;
use crate::host::HostRead;
use crate::metrics;
use crate::recipe::schema::Sgd as SgdConfig;
use crate::student::Student;
use crate::teacher::Teacher;
use std::collections::BTreeMap;
use std::time::Instant;
use tch::{Kind, Tensor};

/// A teacher's outputs on one batch: logits and every tap it was loaded with, on the student's
/// device. Computed once per batch and shared by every learner that uses the teacher.
pub struct TeacherOutputs {
    pub logits: Tensor,
    pub taps: Vec<Tensor>,
}

/// Runs the teachers `which` (indices into `teachers`) on a batch given as uint8 views, one per
/// size in `sizes`; each teacher takes the view at its own input size. The others stay None.
pub fn teacher_outputs(
    teachers: &[Teacher],
    which: &[usize],
    views: &[Tensor],
    sizes: &[(i64, i64)],
    device: tch::Device,
) -> anyhow::Result<Vec<Option<TeacherOutputs>>> {
    let mut out: Vec<Option<TeacherOutputs>> = (0..teachers.len()).map(|_| None).collect();
    // Each (view, preprocessing) is prepared once, whichever teachers share it.
    let mut prepared: Vec<(usize, &crate::data::preprocess::Preprocess, Tensor)> = Vec::new();
    for &i in which {
        let t = &teachers[i];
        let k = sizes.iter().position(|&s| s == t.input_hw).ok_or_else(|| anyhow::anyhow!("no view at teacher `{}`'s size {:?}", t.name, t.input_hw))?;
        let x = match prepared.iter().find(|(v, p, _)| *v == k && **p == t.preprocess) {
            Some((_, _, x)) => x.shallow_clone(),
            None => {
                let x = t.prepare(&views[k])?;
                prepared.push((k, &t.preprocess, x.shallow_clone()));
                x
            }
        };
        let (z, taps) = t.forward_prepared(&x)?;
        out[i] = Some(TeacherOutputs { logits: z.to_device(device), taps: taps.into_iter().map(|t| t.to_device(device)).collect() });
    }
    Ok(out)
}

pub struct Learner<'a> {
    pub label: String,
    pub student: &'a Student,
    pub method: &'a dyn Method,
    pub opt: Sgd,
    /// The teachers the method uses (indices into all teachers), and where each of its teacher
    /// taps sits among that teacher's taps.
    pub teachers: Vec<usize>,
    positions: Vec<Vec<usize>>,
    sums: BTreeMap<&'static str, Tensor>,
    correct: Option<Tensor>,
    weights: WeightStats,
    seen: i64,
    steps: usize,
    /// The first step of the epoch whose loss was not finite (`i64::MAX` while none), kept on
    /// the device and read once per epoch.
    first_nonfinite: Option<Tensor>,
    /// Seconds spent in this learner's steps this epoch (excluding shared teacher passes).
    busy: f64,
}

impl<'a> Learner<'a> {
    pub fn new(
        label: &str,
        student: &'a Student,
        method: &'a dyn Method,
        teacher_taps: &[String],
        teachers: Vec<usize>,
        all: &[Teacher],
        sgd: &SgdConfig,
    ) -> anyhow::Result<Learner<'a>> {
        let positions = teachers
            .iter()
            .map(|&i| {
                let t = &all[i];
                teacher_taps
                    .iter()
                    .map(|a| t.taps.iter().position(|x| x == a).ok_or_else(|| anyhow::anyhow!("teacher `{}` was loaded without tap `{a}`", t.name)))
                    .collect()
            })
            .collect::<anyhow::Result<Vec<Vec<usize>>>>()?;
        let grad_scales = crate::quant::qdq::lsq_grad_scales(&student.graph)?;
        let opt = Sgd::new(trainable(student, method), sgd.lr, sgd.momentum, sgd.weight_decay, sgd.nesterov).with_grad_scales(&grad_scales);
        let teachers = if method.needs_teachers() { teachers } else { vec![] };
        Ok(Learner {
            label: label.into(),
            student,
            method,
            opt,
            teachers,
            positions,
            sums: BTreeMap::new(),
            correct: None,
            weights: WeightStats::default(),
            seen: 0,
            steps: 0,
            first_nonfinite: None,
            busy: 0.0,
        })
    }

    /// Whether the method learns from teacher taps (features), not only from logits.
    pub fn needs_teacher_taps(&self) -> bool {
        !self.teachers.is_empty() && self.positions.iter().any(|p| !p.is_empty())
    }

    /// The method's stage before training (MGD's heads), on this learner's teachers.
    pub fn prepare(&self, train: &Feed, test: &TestSet, all: &[Teacher], batch_size: i64, seed: u64, dist: Option<&Group>) -> anyhow::Result<()> {
        let teachers: Vec<&Teacher> = self.teachers.iter().map(|&i| &all[i]).collect();
        let ctx = PrepareContext { train, test, teachers: &teachers, batch_size, seed, device: self.student.device(), dist };
        self.method.prepare(&ctx)
    }

    /// One optimizer step on a batch: `x` the preprocessed student input, `outputs` every
    /// teacher's outputs (at least this learner's); step `index` of `steps_in_epoch` in `epoch`.
    #[allow(clippy::too_many_arguments)]
    pub fn step(
        &mut self,
        x: &Tensor,
        labels: &Tensor,
        outputs: &[Option<TeacherOutputs>],
        epoch: usize,
        index: usize,
        steps_in_epoch: usize,
        lr: f64,
        seed: u64,
        dist: Option<&Group>,
    ) -> anyhow::Result<()> {
        let started = Instant::now();
        self.opt.lr = lr;
        let mut logits_t = Vec::new();
        let mut feats_t = Vec::new();
        for (&i, pos) in self.teachers.iter().zip(&self.positions) {
            let o = outputs[i].as_ref().ok_or_else(|| anyhow::anyhow!("teacher {i} was not run on this batch"))?;
            logits_t.push(o.logits.shallow_clone());
            feats_t.push(pos.iter().map(|&p| o.taps[p].shallow_clone()).collect::<Vec<_>>());
        }
        let (logits, student_feats) = self.student.forward_with_taps(x, RunMode::Train)?;
        let progress = (epoch - 1) as f64 + (index + 1) as f64 / steps_in_epoch.max(1) as f64;
        let batch =
            BatchOutputs { student: &logits, student_feats: &student_feats, teachers: &logits_t, teacher_feats: &feats_t, labels, epoch, progress, dist };
        let terms = self.method.losses(&batch)?;
        let total = terms.iter().map(|t| t.value.shallow_clone()).reduce(|a, b| a + b).expect("a method returns terms");
        self.note_finite(&total, index);
        self.opt.zero_grad();
        total.backward();
        if let Some(group) = dist {
            self.opt.average_grads(group)?;
        }
        self.opt.step();
        // The weights the loss used, read before a meta step can change them.
        let weights = tch::no_grad(|| self.method.teacher_weights(&batch))?;
        let ctx = StepContext { student: self.student, x, batch: &batch, lr, step_in_epoch: index, last_in_epoch: index + 1 == steps_in_epoch, seed };
        self.method.after_step(&ctx)?;
        let _guard = tch::no_grad_guard();
        for t in &terms {
            let v = t.value.detach();
            self.sums.entry(t.name).and_modify(|s| *s += &v).or_insert(v);
        }
        let hits = logits.argmax(1, false).eq_tensor(labels).sum(Kind::Int64);
        self.correct = Some(match self.correct.take() {
            Some(c) => c + hits,
            None => hits,
        });
        if let Some(w) = weights {
            self.weights.add(&w);
        }
        self.seen += labels.size()[0];
        self.steps += 1;
        self.busy += started.elapsed().as_secs_f64();
        Ok(())
    }

    /// A data-parallel step where every image of this rank's share of the batch was left out as
    /// bad: the rank still takes part in the gradient average (with zero gradients) and in the
    /// update, so its parameters stay equal to the others'.
    pub fn idle_step(&mut self, lr: f64, group: &Group) -> anyhow::Result<()> {
        self.opt.lr = lr;
        self.opt.zero_grad();
        self.opt.average_grads(group)?;
        self.opt.step();
        Ok(())
    }

    /// Records, without reading it back, whether step `index`'s loss was finite.
    fn note_finite(&mut self, total: &Tensor, index: usize) {
        let _guard = tch::no_grad_guard();
        let bad = total.isfinite().logical_not().to_kind(Kind::Int64);
        let step = &bad * index as i64 + (1 - &bad) * i64::MAX;
        self.first_nonfinite = Some(match self.first_nonfinite.take() {
            Some(first) => first.minimum(&step),
            None => step,
        });
    }

    /// Stops a diverged training: a loss or a parameter that is not finite ends it with the
    /// epoch and step (before its checkpoint could replace the last good one).
    fn check_finite(&mut self, epoch: usize, lr: f64) -> anyhow::Result<()> {
        let first = self.first_nonfinite.take().map_or(i64::MAX, |t| t.read_i64());
        let bad_params = trainable(self.student, self.method).iter().filter(|(_, t)| t.isfinite().all().read_i64() == 0).count();
        if first == i64::MAX && bad_params == 0 {
            return Ok(());
        }
        let at = if first == i64::MAX { "its end".to_string() } else { format!("step {} of {}", first + 1, self.steps) };
        Err(anyhow::anyhow!(
            "{}: training diverged in epoch {epoch} at {at}: the loss or {bad_params} parameter tensor(s) are not finite (NaN or infinite). \
             The run stops here and keeps the last good checkpoint; no student is exported. Lower train.optimizer.sgd.lr (this step used {lr}), \
             or check that the teachers' outputs and the input normalization are sane.",
            self.label
        ))
    }

    /// The epoch's figures (test accuracy on `test`), resetting the running sums; `seconds` is
    /// this learner's own time: its steps and the evaluation. Fails when the training diverged.
    /// In a data-parallel run the losses and training accuracy are the whole batch's (summed
    /// across the ranks), the BatchNorm statistics are averaged across the ranks first, and only
    /// rank 0 evaluates (the others' test top-1 is 0).
    pub fn finish_epoch(&mut self, epoch: usize, lr: f64, test: &ImageSet, pre: &Preprocess, dist: Option<&Group>) -> anyhow::Result<EpochMetrics> {
        self.check_finite(epoch, lr)?;
        let started = Instant::now();
        if let Some(group) = dist {
            self.reduce_figures(group)?;
            average_statistics(self.student, self.method, group)?;
        }
        let batches = self.steps.max(1) as f64;
        let losses = std::mem::take(&mut self.sums).iter().map(|(k, v)| (k.to_string(), v.read_f64() / batches)).collect();
        let weights = std::mem::take(&mut self.weights).finish();
        let figures = self.method.take_figures();
        let test_top1 = if dist.is_none_or(|g| g.rank == 0) {
            let test_logits = self.student.logits(test, pre, 256)?;
            metrics::top_k(&test_logits, &test.labels, 1)
        } else {
            0.0
        };
        let correct = self.correct.take().map_or(0.0, |c| c.read_f64());
        let own = self.busy + started.elapsed().as_secs_f64();
        let m = EpochMetrics {
            epoch,
            lr,
            losses,
            train_top1: correct / self.seen.max(1) as f64,
            test_top1,
            teacher_weights: weights.as_ref().map(|w| w.mean.clone()),
            teacher_weight_std: weights.as_ref().map(|w| w.std.clone()),
            teacher_top_share: weights.as_ref().map(|w| w.top_share.clone()),
            teacher_weight_peaked: weights.as_ref().map(|w| w.peaked),
            feature_weights: figures.feature_weights.as_ref().map(|w| w.mean.clone()),
            feature_weight_top_share: figures.feature_weights.as_ref().map(|w| w.top_share.clone()),
            feature_weight_peaked: figures.feature_weights.as_ref().map(|w| w.peaked),
            feature_losses: figures.feature_losses,
            method_figures: figures.scalars,
            seconds: own,
            // The loader's figures belong to the trainer, which fills them in.
            data_wait_seconds: 0.0,
            skipped_images: 0,
            host_reads: 0,
        };
        (self.seen, self.steps, self.busy) = (0, 0, 0.0);
        Ok(m)
    }
}

impl Learner<'_> {
    /// Sums the epoch's loss sums, correct answers and images across the ranks (one allreduce),
    /// the loss sums then divided by the world size: each rank's are sums of per-step means over
    /// its share of every batch, so their mean is the whole batches'.
    fn reduce_figures(&mut self, group: &Group) -> anyhow::Result<()> {
        let _guard = tch::no_grad_guard();
        let device = self.student.device();
        let zero = || Tensor::zeros([], (Kind::Double, device));
        let mut parts: Vec<Tensor> = self.sums.values().map(|v| v.to_kind(Kind::Double).reshape([1])).collect();
        parts.push(self.correct.as_ref().map_or_else(zero, |c| c.to_kind(Kind::Double)).reshape([1]));
        parts.push(Tensor::from_slice(&[self.seen as f64]).to_device(device));
        let all = Tensor::cat(&parts, 0);
        group.allreduce_sum(&[&all])?;
        let world = group.world_size as f64;
        for (k, v) in self.sums.values_mut().enumerate() {
            *v = all.get(k as i64) / world;
        }
        let n = self.sums.len() as i64;
        self.correct = Some(all.get(n));
        self.seen = all.get(n + 1).read_f64().round() as i64;
        Ok(())
    }
}

/// Averages the student's BatchNorm statistics (its floating-point initializers that are not
/// parameters) and the method modules' non-trainable buffers across the ranks: they are kept
/// local during the epoch, as in PyTorch's DDP without SyncBatchNorm, and made one at its end.
fn average_statistics(student: &Student, method: &dyn Method, group: &Group) -> anyhow::Result<()> {
    let _guard = tch::no_grad_guard();
    let params: std::collections::HashSet<String> = student.parameters().into_iter().map(|(n, _)| n).collect();
    let mut buffers: Vec<Tensor> = student.state().into_iter().filter(|(n, t)| !params.contains(n) && t.is_floating_point()).map(|(_, t)| t).collect();
    if let Some(vs) = method.modules() {
        let mut extra: Vec<(String, Tensor)> = vs.variables().into_iter().filter(|(_, t)| !t.requires_grad() && t.is_floating_point()).collect();
        extra.sort_by(|a, b| a.0.cmp(&b.0));
        buffers.extend(extra.into_iter().map(|(_, t)| t));
    }
    if buffers.is_empty() {
        return Ok(());
    }
    // One collective for all: their values side by side in one buffer, copied back after.
    let flat = Tensor::cat(&buffers.iter().map(|b| b.to_kind(Kind::Float).reshape([-1])).collect::<Vec<_>>(), 0);
    group.allreduce_mean(&[&flat])?;
    let mut offset = 0;
    for b in buffers.iter_mut() {
        let n = b.numel() as i64;
        b.f_copy_(&flat.narrow(0, offset, n).reshape(b.size()).to_kind(b.kind()))?;
        offset += n;
    }
    Ok(())
}

/// The parameters the optimizer updates: the student's, then the method's modules (connectors)
/// under `method.`.
pub fn trainable(student: &Student, method: &dyn Method) -> Vec<(String, Tensor)> {
    let mut params = student.parameters();
    if let Some(vs) = method.modules() {
        let mut extra: Vec<(String, Tensor)> = vs.variables().into_iter().filter(|(_, t)| t.requires_grad()).map(|(n, t)| (format!("method.{n}"), t)).collect();
        extra.sort_by(|a, b| a.0.cmp(&b.0));
        params.extend(extra);
    }
    params
}
