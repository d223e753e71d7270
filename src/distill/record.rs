//! What one training produced: the figures of each epoch and the record of the whole training
//! (checkpoints, the comparison and the report read them).

use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;

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
    /// Share of the samples where one teacher took more than 0.9 of the weight.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub teacher_weight_peaked: Option<f64>,
    /// Feature-level teacher weights (MMKD's FeatureWeight net, DE-MKD's entropy weights): mean
    /// per teacher, the share of samples where each was the largest, and the share where one
    /// teacher took more than 0.9.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub feature_weights: Option<Vec<f64>>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub feature_weight_top_share: Option<Vec<f64>>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub feature_weight_peaked: Option<f64>,
    /// Per teacher, the mean unweighted feature loss over the epoch's batches.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub feature_losses: Option<Vec<f64>>,
    /// A method's own per-epoch means (MMKD: the meta-gradient norm of each weight network).
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub method_figures: BTreeMap<String, f64>,
    pub seconds: f64,
    /// Seconds the training step waited for the loader's batches this epoch (shared by every
    /// learner of a comparison).
    #[serde(default)]
    pub data_wait_seconds: f64,
    /// Training images left out this epoch because they failed to decode (`data.skip_bad`).
    #[serde(default, skip_serializing_if = "is_zero")]
    pub skipped_images: usize,
    /// Reads of tensor values into host memory made by this epoch's steps, the run's first step
    /// excepted (each one a device synchronisation on a GPU; none is the goal).
    #[serde(default)]
    pub host_reads: u64,
}

fn is_zero(n: &usize) -> bool {
    *n == 0
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

/// What the teacher-output cache ([`super::teacher_cache`]) did for one training.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct CacheRecord {
    /// Why the cache was not used, when it was not.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub off: Option<String>,
    /// Logits kept per image (0: all of them).
    pub top_k: usize,
    /// Epochs whose teacher outputs were read from the cache, and written to it.
    pub hits: usize,
    pub misses: usize,
    pub bytes_read: u64,
    pub bytes_written: u64,
}

#[derive(Debug, Serialize)]
pub struct TrainingRecord {
    pub method: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub method_summary: Option<serde_json::Value>,
    pub epochs: Vec<EpochMetrics>,
    pub best_top1: f64,
    pub best_epoch: usize,
    pub final_top1: f64,
    pub seconds: f64,
    /// What the teacher-output cache did (absent for a training without epochs).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub teacher_cache: Option<CacheRecord>,
    /// The processes that trained it, data parallel (1: one process); with more, every
    /// epoch ended with each rank's parameters checked equal to rank 0's, bit for bit.
    pub world_size: usize,
    /// Seconds rank 0 spent in collectives during the training (gradient averages, epoch-end
    /// reductions and checks; waiting for the other ranks included); data parallel only.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub communication_seconds: Option<f64>,
}
