//! The run's report: its typed content (`report.json`), the human summary (`report.md`), the
//! gates, and atomic file writes so nothing half-written ever looks finished.

pub mod gates;
pub mod markdown;

use crate::distill::trainer::EpochMetrics;
use serde::Serialize;
use std::collections::BTreeMap;
use std::path::Path;

#[derive(Debug, Serialize)]
pub struct Versions {
    pub compress: String,
    pub tch: String,
    pub libtorch: String,
    pub libtorch_cuda: String,
    pub onnxruntime: String,
    /// CUDA devices libtorch sees in this process (0 on a CPU-only machine).
    pub cuda_devices: i64,
}

impl Versions {
    pub fn current() -> Versions {
        Versions {
            compress: env!("CARGO_PKG_VERSION").into(),
            tch: "0.24.0".into(),
            libtorch: option_env!("COMPRESS_LIBTORCH_VERSION").unwrap_or("unknown").into(),
            libtorch_cuda: option_env!("COMPRESS_LIBTORCH_CUDA").unwrap_or("unknown").into(),
            onnxruntime: crate::runtime::version(),
            cuda_devices: if tch::Cuda::is_available() { tch::Cuda::device_count() } else { 0 },
        }
    }
}

#[derive(Debug, Serialize)]
pub struct TeacherRecord {
    pub name: String,
    pub path: String,
    pub sha256: String,
    pub opset: i64,
    pub parameters: i64,
    pub execution: String,
    pub top1_tch: f64,
    pub top1_ort: f64,
    pub top1_agreement_tch_vs_ort: f64,
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
}

#[derive(Debug, Serialize)]
pub struct ExportedFile {
    pub path: String,
    pub bytes: u64,
    pub sha256: String,
    pub opset: i64,
    pub weight_storage: String,
}

#[derive(Debug, Serialize)]
pub struct Fidelity {
    pub images: usize,
    pub top1_tch: f64,
    pub top1_ort: f64,
    pub top5_ort: f64,
    pub top1_agreement_tch_vs_ort: f64,
    pub max_abs_diff: f64,
    pub max_rel_diff: f64,
}

#[derive(Debug, Serialize)]
pub struct Report {
    pub recipe: String,
    pub recipe_sha256: String,
    pub versions: Versions,
    pub device: String,
    pub seed: u64,
    pub data: BTreeMap<String, serde_json::Value>,
    pub teachers: Vec<TeacherRecord>,
    /// Top-1 of the teachers' averaged probabilities (None without teachers).
    pub teacher_ensemble_top1: Option<f64>,
    /// Majority vote of the teachers' predictions (ties to the earliest teacher).
    pub teacher_majority_vote_top1: Option<f64>,
    pub student: BTreeMap<String, serde_json::Value>,
    pub training: TrainingRecord,
    /// The same student trained on labels only under the same budget and seed.
    pub baseline: Option<TrainingRecord>,
    pub exported: Vec<ExportedFile>,
    pub fidelity: Fidelity,
    pub gates: Vec<gates::GateResult>,
    pub passed: bool,
    /// Wall time per stage, seconds.
    pub stages: Vec<(String, f64)>,
}

/// A device as users write it in recipes: `cpu`, `cuda:0`.
pub fn device_name(d: tch::Device) -> String {
    match d {
        tch::Device::Cpu => "cpu".into(),
        tch::Device::Cuda(i) => format!("cuda:{i}"),
        other => format!("{other:?}").to_lowercase(),
    }
}

/// Writes `bytes` to `path` through a temporary file in the same folder and a rename.
pub fn write_atomic(path: &Path, bytes: &[u8]) -> anyhow::Result<()> {
    let dir = path.parent().unwrap_or(Path::new("."));
    std::fs::create_dir_all(dir)?;
    let tmp = dir.join(format!(".{}.tmp", path.file_name().and_then(|n| n.to_str()).unwrap_or("out")));
    std::fs::write(&tmp, bytes).map_err(|e| anyhow::anyhow!("writing {}: {e}", tmp.display()))?;
    std::fs::rename(&tmp, path).map_err(|e| anyhow::anyhow!("renaming {} to {}: {e}", tmp.display(), path.display()))?;
    Ok(())
}
