//! The training loop: seeded batches with augmentation, teacher logits under no-grad, the
//! method's named loss terms summed and backpropagated, SGD with the schedule, and per-epoch
//! evaluation. Loss sums stay on the device and are read once per epoch (no per-step sync).

use super::checkpoint::{self, Identity, Meta};
use super::methods::{BatchOutputs, Method, PrepareContext, StepContext};
use super::optim::Sgd;
use super::schedule::lr_at;
use super::student::Student;
use crate::data::augment::{augment_batch, Augment};
use crate::data::batches::{gather, EpochBatches};
use crate::data::preprocess::Preprocess;
use crate::data::rng::Rng;
use crate::data::ImageSet;
use crate::graph::RunMode;
use crate::metrics;
use crate::progress::Progress;
use crate::recipe::schema::Train;
use crate::teacher::Teacher;
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;
use std::time::Instant;
use tch::{Kind, Tensor};

#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct EpochMetrics {
    pub epoch: usize,
    pub lr: f64,
    /// Mean of each named loss term over the epoch's batches.
    pub losses: BTreeMap<String, f64>,
    pub train_top1: f64,
    pub test_top1: f64,
    /// Mean weight per teacher over the epoch (methods with weights only).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub teacher_weights: Option<Vec<f64>>,
    /// Spread of each teacher's weight over the epoch's samples (per-sample rules) or batches
    /// (per-batch rules): standard deviation, and the share of them where it was the largest.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub teacher_weight_std: Option<Vec<f64>>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub teacher_top_share: Option<Vec<f64>>,
    pub seconds: f64,
}

pub struct TrainOutcome {
    /// What the method reports besides the epochs (MGD's self-analyzing accuracies).
    pub method_summary: Option<serde_json::Value>,
    pub epochs: Vec<EpochMetrics>,
    pub best_top1: f64,
    pub best_epoch: usize,
    pub final_top1: f64,
}

pub struct TrainInputs<'a> {
    pub train: &'a ImageSet,
    pub test: &'a ImageSet,
    pub preprocess: &'a Preprocess,
    pub augment: &'a Augment,
    pub teachers: &'a [Teacher],
    pub seed: u64,
    pub label: &'a str,
    /// Where this training's checkpoints go (one folder per training in a run).
    pub checkpoints: Option<std::path::PathBuf>,
    /// Continue from the checkpoint in `checkpoints`, if any.
    pub resume: bool,
    pub identity: Identity,
}

/// Per teacher: mean weight, its standard deviation, and the share of samples where it was
/// the largest.
type WeightSummary = (Option<Vec<f64>>, Option<Vec<f64>>, Option<Vec<f64>>);

/// Running sums of the teacher weights a method reports, for the epoch's mean, spread and top
/// share.
#[derive(Default)]
struct WeightStats {
    sum: Option<Tensor>,
    sum_sq: Option<Tensor>,
    top: Option<Tensor>,
    count: i64,
}

impl WeightStats {
    /// `w` is [K, B] (per sample) or [K] (per batch).
    fn add(&mut self, w: &Tensor) {
        let w = w.detach().to_kind(Kind::Double).to_device(tch::Device::Cpu);
        let w = if w.dim() == 1 { w.unsqueeze(1) } else { w };
        let k = w.size()[0];
        let top = w.argmax(0, false).one_hot(k).to_kind(Kind::Double).sum_dim_intlist(0, false, Kind::Double);
        let acc = |slot: &mut Option<Tensor>, v: Tensor| *slot = Some(match slot.take() { Some(s) => s + v, None => v });
        acc(&mut self.sum, w.sum_dim_intlist(1, false, Kind::Double));
        acc(&mut self.sum_sq, w.square().sum_dim_intlist(1, false, Kind::Double));
        acc(&mut self.top, top);
        self.count += w.size()[1];
    }

    /// (mean, std, top share) per teacher.
    fn finish(self) -> WeightSummary {
        let (Some(sum), Some(sum_sq), Some(top)) = (self.sum, self.sum_sq, self.top) else { return (None, None, None) };
        let n = self.count as f64;
        let mean = &sum / n;
        let std = (&sum_sq / n - mean.square()).clamp_min(0.0).sqrt();
        let v = |t: &Tensor| Vec::<f64>::try_from(t).ok();
        (v(&mean), v(&std), v(&(&top / n)))
    }
}

/// The parameters the optimizer updates: the student's, then the method's modules (connectors)
/// under `method.`.
fn trainable(student: &Student, method: &dyn Method) -> Vec<(String, Tensor)> {
    let mut params = student.parameters();
    if let Some(vs) = method.modules() {
        let mut extra: Vec<(String, Tensor)> = vs.variables().into_iter().filter(|(_, t)| t.requires_grad()).map(|(n, t)| (format!("method.{n}"), t)).collect();
        extra.sort_by(|a, b| a.0.cmp(&b.0));
        params.extend(extra);
    }
    params
}

/// Everything a checkpoint holds of the model: the student's initializers and the method's
/// module variables (with BatchNorm statistics) under `method.`.
fn model_state(student: &Student, method: &dyn Method) -> Vec<(String, Tensor)> {
    let mut state = student.state();
    if let Some(vs) = method.modules() {
        let mut extra: Vec<(String, Tensor)> = vs.variables().into_iter().map(|(n, t)| (format!("method.{n}"), t)).collect();
        extra.sort_by(|a, b| a.0.cmp(&b.0));
        state.extend(extra);
    }
    state.extend(method.state().into_iter().map(|(n, t)| (format!("method_state.{n}"), t)));
    state
}

fn load_method_state(method: &dyn Method, saved: &std::collections::HashMap<String, Tensor>) -> anyhow::Result<()> {
    let _guard = tch::no_grad_guard();
    let modules = method.modules().map(|vs| vs.variables().into_iter().map(|(n, t)| (format!("method.{n}"), t)).collect::<Vec<_>>()).unwrap_or_default();
    let state = method.state().into_iter().map(|(n, t)| (format!("method_state.{n}"), t));
    for (name, mut t) in modules.into_iter().chain(state) {
        let src = saved.get(&name).ok_or_else(|| anyhow::anyhow!("the checkpoint has no `{name}`"))?;
        t.f_copy_(src)?;
    }
    Ok(())
}

/// Per teacher, where each of the method's teacher taps sits among the teacher's own taps.
fn tap_positions(teachers: &[Teacher], wanted: &[String]) -> anyhow::Result<Vec<Vec<usize>>> {
    teachers
        .iter()
        .map(|t| {
            wanted
                .iter()
                .map(|a| t.taps.iter().position(|x| x == a).ok_or_else(|| anyhow::anyhow!("teacher `{}` was loaded without tap `{a}`", t.name)))
                .collect()
        })
        .collect()
}

/// Trains `student` with `method`; `teacher_taps` are the method's teacher taps
/// (`methods::Needs::teacher_taps`), by alias.
pub fn train(student: &Student, method: &dyn Method, teacher_taps: &[String], cfg: &Train, inp: &TrainInputs) -> anyhow::Result<TrainOutcome> {
    let sgd = &cfg.optimizer.sgd;
    let mut opt = Sgd::new(trainable(student, method), sgd.lr, sgd.momentum, sgd.weight_decay, sgd.nesterov);
    let positions = tap_positions(inp.teachers, teacher_taps)?;
    let mut rng = Rng::new(inp.seed);
    let bs = cfg.batch_size;
    // Incomplete last batches are dropped, as in the reference code (methods.md §1.4).
    let steps_per_epoch = inp.train.len() / bs;
    if steps_per_epoch == 0 {
        return Err(crate::bad_input!("train.batch_size {bs} exceeds the {} training images", inp.train.len()));
    }
    let total_steps = steps_per_epoch * cfg.epochs;
    let use_teachers = method.needs_teachers();
    let mut epochs = Vec::new();
    let (mut best_top1, mut best_epoch) = (0.0, 0);
    let mut step = 0;
    let mut first_epoch = 1;
    if let (true, Some(dir)) = (inp.resume, &inp.checkpoints) {
        if let Some(ck) = checkpoint::load(dir, &inp.identity)? {
            student.load_state(&ck.model)?;
            load_method_state(method, &ck.model)?;
            opt.load_buffers(&ck.momentum);
            rng = Rng::from_state(ck.meta.rng);
            (epochs, best_top1, best_epoch, step) = (ck.meta.epochs, ck.meta.best_top1, ck.meta.best_epoch, ck.meta.step);
            first_epoch = ck.meta.epoch + 1;
            eprintln!("{}: resuming after epoch {} from {}", inp.label, ck.meta.epoch, dir.display());
        }
    }
    if first_epoch == 1 {
        let ctx = PrepareContext { train: inp.train, test: inp.test, teachers: inp.teachers, batch_size: bs as i64, seed: inp.seed, device: student.device() };
        method.prepare(&ctx)?;
    }
    let mut progress = Progress::new(inp.label, total_steps as u64);
    progress.inc(step as u64, "");
    for epoch in first_epoch..=cfg.epochs {
        let started = Instant::now();
        let mut sums: BTreeMap<&'static str, Tensor> = BTreeMap::new();
        let mut correct = Tensor::zeros([], (Kind::Int64, student.device()));
        let mut weight_stats = WeightStats::default();
        let mut seen = 0i64;
        let mut lr = sgd.lr;
        let batches: Vec<Tensor> = EpochBatches::new(inp.train.len(), bs, true, true, &mut rng).collect();
        for (i, idx) in batches.into_iter().enumerate() {
            lr = lr_at(&cfg.schedule, sgd.lr, epoch, step, total_steps);
            opt.lr = lr;
            let (images, labels) = gather(inp.train, &idx);
            let images = augment_batch(&images, inp.augment, &mut rng);
            let labels = labels.to_device(student.device());
            let mut teacher_logits = Vec::new();
            let mut teacher_feats = Vec::new();
            if use_teachers {
                for (t, pos) in inp.teachers.iter().zip(&positions) {
                    let (z, taps) = t.forward(&images)?;
                    teacher_logits.push(z.to_device(student.device()));
                    teacher_feats.push(pos.iter().map(|&p| taps[p].to_device(student.device())).collect::<Vec<_>>());
                }
            }
            let x = inp.preprocess.apply(&images, student.device());
            let (logits, student_feats) = student.forward_with_taps(&x, RunMode::Train)?;
            let batch = BatchOutputs {
                student: &logits,
                student_feats: &student_feats,
                teachers: &teacher_logits,
                teacher_feats: &teacher_feats,
                labels: &labels,
                epoch,
            };
            let terms = method.losses(&batch)?;
            let total = terms.iter().map(|t| t.value.shallow_clone()).reduce(|a, b| a + b).expect("a method returns terms");
            opt.zero_grad();
            total.backward();
            opt.step();
            let ctx = StepContext { student, x: &x, batch: &batch, lr, step_in_epoch: i, last_in_epoch: i + 1 == steps_per_epoch, seed: inp.seed };
            method.after_step(&ctx)?;
            let guard = tch::no_grad_guard();
            for t in &terms {
                let v = t.value.detach();
                sums.entry(t.name).and_modify(|s| *s += &v).or_insert(v);
            }
            correct += logits.argmax(1, false).eq_tensor(&labels).sum(Kind::Int64);
            if let Some(w) = method.teacher_weights(&batch)? {
                weight_stats.add(&w);
            }
            drop(guard);
            seen += labels.size()[0];
            step += 1;
            progress.inc(1, &format!("epoch {epoch}/{}", cfg.epochs));
        }
        let batches = steps_per_epoch as f64;
        let losses = sums.iter().map(|(k, v)| (k.to_string(), v.double_value(&[]) / batches)).collect();
        let (weight_mean, weight_std, weight_top) = weight_stats.finish();
        let test_logits = student.logits(inp.test, inp.preprocess, 256)?;
        let test_top1 = metrics::top_k(&test_logits, &inp.test.labels, 1);
        if test_top1 > best_top1 {
            best_top1 = test_top1;
            best_epoch = epoch;
        }
        let m = EpochMetrics {
            epoch,
            lr,
            losses,
            train_top1: correct.double_value(&[]) / seen as f64,
            test_top1,
            teacher_weights: weight_mean,
            teacher_weight_std: weight_std,
            teacher_top_share: weight_top,
            seconds: started.elapsed().as_secs_f64(),
        };
        eprintln!(
            "{}: epoch {epoch}/{} loss {} train {:.2}% test {:.2}% ({:.1}s)",
            inp.label,
            cfg.epochs,
            m.losses.iter().map(|(k, v)| format!("{k}={v:.4}")).collect::<Vec<_>>().join(" "),
            100.0 * m.train_top1,
            100.0 * m.test_top1,
            m.seconds
        );
        epochs.push(m);
        if let Some(dir) = &inp.checkpoints {
            let meta = Meta {
                identity: inp.identity.clone(),
                epoch,
                step,
                rng: rng.state(),
                epochs: epochs.clone(),
                best_top1,
                best_epoch,
                state_file: format!("state-{epoch}.safetensors"),
            };
            checkpoint::save(dir, &meta, &model_state(student, method), &opt.buffers())?;
        }
    }
    progress.finish();
    let final_top1 = epochs.last().map_or(0.0, |e| e.test_top1);
    Ok(TrainOutcome { method_summary: method.summary(), epochs, best_top1, best_epoch, final_top1 })
}
