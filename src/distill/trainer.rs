//! The training loop: seeded batches with augmentation, teacher logits under no-grad, the
//! method's named loss terms summed and backpropagated, SGD with the schedule, and per-epoch
//! evaluation. Loss sums stay on the device and are read once per epoch (no per-step sync).

use super::checkpoint::{self, Identity, Meta};
use super::methods::{BatchOutputs, Method};
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
    pub seconds: f64,
}

pub struct TrainOutcome {
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

pub fn train(student: &Student, method: &dyn Method, cfg: &Train, inp: &TrainInputs) -> anyhow::Result<TrainOutcome> {
    let sgd = &cfg.optimizer.sgd;
    let mut opt = Sgd::new(student.parameters(), sgd.lr, sgd.momentum, sgd.weight_decay, sgd.nesterov);
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
            opt.load_buffers(&ck.momentum);
            rng = Rng::from_state(ck.meta.rng);
            (epochs, best_top1, best_epoch, step) = (ck.meta.epochs, ck.meta.best_top1, ck.meta.best_epoch, ck.meta.step);
            first_epoch = ck.meta.epoch + 1;
            eprintln!("{}: resuming after epoch {} from {}", inp.label, ck.meta.epoch, dir.display());
        }
    }
    let mut progress = Progress::new(inp.label, total_steps as u64);
    progress.inc(step as u64, "");
    for epoch in first_epoch..=cfg.epochs {
        let started = Instant::now();
        let mut sums: BTreeMap<&'static str, Tensor> = BTreeMap::new();
        let mut correct = Tensor::zeros([], (Kind::Int64, student.device()));
        let mut weight_sum: Option<Tensor> = None;
        let mut seen = 0i64;
        let mut lr = sgd.lr;
        for idx in EpochBatches::new(inp.train.len(), bs, true, true, &mut rng) {
            lr = lr_at(&cfg.schedule, sgd.lr, epoch, step, total_steps);
            opt.lr = lr;
            let (images, labels) = gather(inp.train, &idx);
            let images = augment_batch(&images, inp.augment, &mut rng);
            let labels = labels.to_device(student.device());
            let teacher_logits: Vec<Tensor> = if use_teachers {
                inp.teachers.iter().map(|t| t.logits(&images).map(|z| z.to_device(student.device()))).collect::<anyhow::Result<_>>()?
            } else {
                Vec::new()
            };
            let x = inp.preprocess.apply(&images, student.device());
            let logits = student.forward(&x, RunMode::Train)?;
            let batch = BatchOutputs { student: &logits, teachers: &teacher_logits, labels: &labels };
            let terms = method.losses(&batch)?;
            let total = terms.iter().map(|t| t.value.shallow_clone()).reduce(|a, b| a + b).expect("a method returns terms");
            opt.zero_grad();
            total.backward();
            opt.step();
            tch::no_grad(|| {
                for t in &terms {
                    let v = t.value.detach();
                    sums.entry(t.name).and_modify(|s| *s += &v).or_insert(v);
                }
                correct += logits.argmax(1, false).eq_tensor(&labels).sum(Kind::Int64);
                if let Some(w) = method.teacher_weights(&batch) {
                    let w = w.detach().to_device(tch::Device::Cpu);
                    weight_sum = Some(match weight_sum.take() { Some(s) => s + w, None => w });
                }
            });
            seen += labels.size()[0];
            step += 1;
            progress.inc(1, &format!("epoch {epoch}/{}", cfg.epochs));
        }
        let batches = steps_per_epoch as f64;
        let losses = sums.iter().map(|(k, v)| (k.to_string(), v.double_value(&[]) / batches)).collect();
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
            teacher_weights: weight_sum.map(|w| Vec::<f64>::try_from(&(w / batches).to_kind(Kind::Double)).unwrap_or_default()),
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
            checkpoint::save(dir, &meta, &student.state(), &opt.buffers())?;
        }
    }
    progress.finish();
    let final_top1 = epochs.last().map_or(0.0, |e| e.test_top1);
    Ok(TrainOutcome { epochs, best_top1, best_epoch, final_top1 })
}
