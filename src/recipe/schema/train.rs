//! `train`: epochs, batch size, the optimizer, the learning-rate schedule, the labels-only
//! baseline, CPU threads, determinism and the teacher-output cache.

use serde::{Deserialize, Serialize};

#[derive(Clone, Debug, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Train {
    pub epochs: usize,
    #[serde(default = "default_batch")]
    pub batch_size: usize,
    #[serde(default)]
    pub optimizer: Optimizer,
    #[serde(default)]
    pub schedule: Schedule,
    /// Also train the same student without teachers under the same budget, for comparison.
    #[serde(default)]
    pub baseline: bool,
    /// CPU threads for libtorch (0 = libtorch's default).
    #[serde(default)]
    pub threads: usize,
    /// On CUDA: no TF32 and no cuDNN autotuning in training, deterministic cuDNN algorithms, so
    /// that a resumed run repeats an uninterrupted one; slower. No effect on the CPU.
    #[serde(default)]
    pub deterministic: bool,
    /// Teacher outputs of every epoch's batches kept in the cache folder and reused by later
    /// trainings with the same teachers, data, augmentation, batch and seed.
    #[serde(default)]
    pub teacher_cache: TeacherCache,
}

/// `train.teacher_cache`.
#[derive(Clone, Debug, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct TeacherCache {
    /// `false` runs the teachers on every batch of every training.
    pub enabled: bool,
    /// Keep each teacher's k largest logits per image and one value standing for the others
    /// (default: every logit up to 100 classes, else the 10 largest).
    pub top_k: Option<usize>,
}

impl Default for TeacherCache {
    fn default() -> Self {
        TeacherCache { enabled: true, top_k: None }
    }
}

fn default_batch() -> usize {
    64
}

/// The optimizer, written as a one-key map (`{sgd: {...}}`); SGD is the one supported today.
#[derive(Clone, Debug, Default, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Optimizer {
    #[serde(default)]
    pub sgd: Sgd,
}

#[derive(Clone, Debug, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct Sgd {
    pub lr: f64,
    pub momentum: f64,
    pub nesterov: bool,
    pub weight_decay: f64,
}

impl Default for Sgd {
    fn default() -> Self {
        Sgd { lr: 0.05, momentum: 0.9, nesterov: true, weight_decay: 5e-4 }
    }
}

/// The learning-rate schedule as a one-key map: `{step: {milestones, gamma}}` or `{cosine: {}}`.
#[derive(Clone, Debug, Default, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Schedule {
    /// Multiply the rate by `gamma` when the epoch (counted from 1) passes each milestone.
    pub step: Option<StepSchedule>,
    /// Cosine decay to zero over all training steps (the default when no schedule is given).
    pub cosine: Option<Cosine>,
}

#[derive(Clone, Debug, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct StepSchedule {
    pub milestones: Vec<usize>,
    pub gamma: f64,
}

#[derive(Clone, Debug, Default, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Cosine {}
