//! The training loop: seeded batches with augmentation, teacher logits under no-grad, the
//! method's named loss terms summed and backpropagated, SGD with the schedule, and per-epoch
//! evaluation. Loss sums stay on the device and are read once per epoch (no per-step sync).

use super::checkpoint::{self, Identity, Meta};
use super::learner::{teacher_outputs, Learner};
use super::methods::Method;
use super::schedule::lr_at;
use super::student::Student;
use crate::data::augment::{augment_batch, Augment};
use crate::data::batches::{gather, EpochBatches};
use crate::data::preprocess::Preprocess;
use crate::data::rng::Rng;
use crate::data::ImageSet;
use crate::progress::Progress;
use crate::recipe::schema::Train;
use crate::teacher::Teacher;
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;
use std::time::Instant;
use tch::Tensor;

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

/// Trains `student` with `method` on the teachers `teachers` (indices into `inp.teachers`);
/// `teacher_taps` are the method's teacher taps (`methods::Needs::teacher_taps`), by alias.
pub fn train(student: &Student, method: &dyn Method, teacher_taps: &[String], teachers: Vec<usize>, cfg: &Train, inp: &TrainInputs) -> anyhow::Result<TrainOutcome> {
    let sgd = &cfg.optimizer.sgd;
    let mut learner = Learner::new(inp.label, student, method, teacher_taps, teachers, inp.teachers, sgd)?;
    let mut rng = Rng::new(inp.seed);
    let bs = cfg.batch_size;
    // Incomplete last batches are dropped, as in the reference code (methods.md §1.4).
    let steps_per_epoch = inp.train.len() / bs;
    if steps_per_epoch == 0 {
        return Err(crate::bad_input!("train.batch_size {bs} exceeds the {} training images", inp.train.len()));
    }
    let total_steps = steps_per_epoch * cfg.epochs;
    let mut epochs = Vec::new();
    let (mut best_top1, mut best_epoch) = (0.0, 0);
    let mut step = 0;
    let mut first_epoch = 1;
    if let (true, Some(dir)) = (inp.resume, &inp.checkpoints) {
        if let Some(ck) = checkpoint::load(dir, &inp.identity)? {
            student.load_state(&ck.model)?;
            load_method_state(method, &ck.model)?;
            learner.opt.load_buffers(&ck.momentum);
            rng = Rng::from_state(ck.meta.rng);
            (epochs, best_top1, best_epoch, step) = (ck.meta.epochs, ck.meta.best_top1, ck.meta.best_epoch, ck.meta.step);
            first_epoch = ck.meta.epoch + 1;
            eprintln!("{}: resuming after epoch {} from {}", inp.label, ck.meta.epoch, dir.display());
        }
    }
    if first_epoch == 1 {
        learner.prepare(inp.train, inp.test, inp.teachers, bs as i64, inp.seed)?;
    }
    let mut progress = Progress::new(inp.label, total_steps as u64);
    progress.inc(step as u64, "");
    for epoch in first_epoch..=cfg.epochs {
        let started = Instant::now();
        let mut lr = sgd.lr;
        let batches: Vec<Tensor> = EpochBatches::new(inp.train.len(), bs, true, true, &mut rng).collect();
        for (i, idx) in batches.into_iter().enumerate() {
            lr = lr_at(&cfg.schedule, sgd.lr, epoch, step, total_steps);
            let (images, labels) = gather(inp.train, &idx);
            let images = augment_batch(&images, inp.augment, &mut rng);
            let labels = labels.to_device(student.device());
            let outputs = teacher_outputs(inp.teachers, &learner.teachers, &images, student.device())?;
            let x = inp.preprocess.apply(&images, student.device());
            learner.step(&x, &labels, &outputs, epoch, i, i + 1 == steps_per_epoch, lr, inp.seed)?;
            step += 1;
            progress.inc(1, &format!("epoch {epoch}/{}", cfg.epochs));
        }
        let m = learner.finish_epoch(epoch, lr, inp.test, inp.preprocess, None)?;
        let m = EpochMetrics { seconds: started.elapsed().as_secs_f64(), ..m };
        if m.test_top1 > best_top1 {
            best_top1 = m.test_top1;
            best_epoch = epoch;
        }
        eprintln!("{}", m.line(inp.label, cfg.epochs));
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
            checkpoint::save(dir, &meta, &model_state(student, method), &learner.opt.buffers())?;
        }
    }
    progress.finish();
    let final_top1 = epochs.last().map_or(0.0, |e| e.test_top1);
    Ok(TrainOutcome { method_summary: method.summary(), epochs, best_top1, best_epoch, final_top1 })
}

impl EpochMetrics {
    /// The progress line of one epoch.
    pub fn line(&self, label: &str, epochs: usize) -> String {
        format!(
            "{label}: epoch {}/{epochs} loss {} train {:.2}% test {:.2}% ({:.1}s)",
            self.epoch,
            self.losses.iter().map(|(k, v)| format!("{k}={v:.4}")).collect::<Vec<_>>().join(" "),
            100.0 * self.train_top1,
            100.0 * self.test_top1,
            self.seconds
        )
    }
}
