//! The run's report: its typed content (`report.json`), the human summary (`report.md`), the
//! gates, and atomic file writes so nothing half-written ever looks finished.

pub mod charts;
pub mod ci;
pub mod gates;
pub mod junit;
pub mod markdown;
pub mod plots;
pub mod step_summary;

pub use crate::distill::record::{EpochMetrics, TrainingRecord};
pub use crate::export::{ExportedFile, Fidelity};
pub use crate::teacher::evaluate::TeacherRecord;
use serde::Serialize;
use std::collections::BTreeMap;

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

/// The quantization-aware stage: its training, the file, what each layer stores and runs, the
/// accuracies of float and quantized students, and their latency side by side.
#[derive(Debug, Serialize)]
pub struct QuantizationRecord {
    pub layers: Vec<crate::export::quantized::LayerRecord>,
    /// Layers that ONNX Runtime runs on integer kernels, of all quantized layers.
    pub integer_layers: usize,
    /// Every op ONNX Runtime runs for the quantized file, by type.
    pub runtime_ops: BTreeMap<String, usize>,
    /// Depthwise convolutions the file pads with zero channels for ONNX Runtime's int8 kernel.
    pub padded_depthwise: Vec<crate::export::pad_depthwise::PaddedDepthwise>,
    /// Global average pools the file quantizes at their output (for ONNX Runtime's integer
    /// pool; `runtime_ops` says whether it runs).
    pub integer_pools: Vec<String>,
    /// QAT under the run's distillation method.
    pub training: TrainingRecord,
    /// The same QAT on labels only, from the same float student.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub baseline: Option<TrainingRecord>,
    pub file: ExportedFile,
    pub float_file_bytes: u64,
    /// Float file size over quantized file size.
    pub compression: f64,
    pub images: usize,
    pub top1_float_tch: f64,
    pub top1_float_ort: f64,
    /// The fake-quantized student in tch (what was trained).
    pub top1_fake_quant_tch: f64,
    /// The quantized file in ONNX Runtime.
    pub top1_quantized_ort: f64,
    pub top1_agreement_fake_quant_vs_ort: f64,
    pub top1_agreement_float_vs_quantized_ort: f64,
    pub max_abs_diff_fake_quant_vs_ort: f64,
    pub latency_rounds: usize,
    pub latency: Vec<LatencyRecord>,
}

#[derive(Debug, Serialize)]
pub struct LatencyRecord {
    /// ONNX Runtime intra-op threads.
    pub threads: usize,
    pub batch: usize,
    pub float_ms: f64,
    pub quantized_ms: f64,
    /// float_ms / quantized_ms.
    pub speedup: f64,
}

impl QuantizationRecord {
    /// The figures a gate may name.
    pub fn gate_metrics(&self) -> Vec<(&'static str, f64)> {
        let mut m = vec![
            ("quantized_top1", self.top1_quantized_ort),
            ("quantized_top1_agreement_tch_vs_ort", self.top1_agreement_fake_quant_vs_ort),
            ("quantized_compression", self.compression),
            ("quantized_integer_layer_share", self.integer_layers as f64 / self.layers.len().max(1) as f64),
        ];
        if let Some(min) = self.latency.iter().map(|l| l.speedup).reduce(f64::min) {
            m.push(("quantized_min_speedup", min));
        }
        m
    }
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
    /// The quantization-aware stage and its QDQ file (recipes with `quantize`).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub quantization: Option<QuantizationRecord>,
    pub exported: Vec<ExportedFile>,
    /// With `export.ort_format`: each `.ort` file against the `.onnx` it was written from.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub ort_format: Vec<crate::export::ort_format::OrtFormatCheck>,
    pub fidelity: Fidelity,
    pub gates: Vec<gates::GateResult>,
    pub passed: bool,
    /// The charts drawn beside the report (file names in the output folder).
    #[serde(default)]
    pub charts: Vec<charts::Chart>,
    /// Wall time per stage, seconds.
    pub stages: Vec<(String, f64)>,
}
