//! `quantize`: quantization-aware training after the float stage (bit widths, per-layer
//! overrides, epochs, calibration) and how the float and quantized files are timed.

use serde::{Deserialize, Serialize};

/// `quantize`: fake-quantized fine-tuning of the float student under the same distillation
/// method, then a QDQ export that ONNX Runtime runs on integer kernels.
#[derive(Clone, Debug, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct Quantize {
    /// Weight bits of every Conv and Gemm: 8, 4 or 2.
    pub weights: u32,
    /// Bits of every layer's data input: 8 or 4.
    pub activations: u32,
    /// Bits (weights and activations) of the first convolution and the classifier; `null`
    /// quantizes them like the others.
    pub first_last: Option<u32>,
    /// Per layer (Conv or Gemm node name), overriding the above.
    pub layers: std::collections::BTreeMap<String, LayerBitsEntry>,
    /// Epochs of quantization-aware training.
    pub epochs: usize,
    /// Learning rate of the QAT stage (cosine to 0); default a fiftieth of train.optimizer.sgd.lr.
    pub lr: Option<f64>,
    /// Training images whose activations set the initial activation steps.
    pub calibration_images: usize,
    /// Also run the same QAT on labels only (no teachers), from the same float student.
    pub baseline: bool,
    pub latency: Latency,
}

impl Default for Quantize {
    fn default() -> Self {
        Quantize {
            weights: 8,
            activations: 8,
            first_last: Some(8),
            layers: Default::default(),
            epochs: 3,
            lr: Default::default(),
            calibration_images: 256,
            baseline: Default::default(),
            latency: Default::default(),
        }
    }
}

/// Bits of one layer; what is left out follows the global setting.
#[derive(Clone, Debug, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct LayerBitsEntry {
    #[serde(default)]
    pub weights: Option<u32>,
    #[serde(default)]
    pub activations: Option<u32>,
}

/// How the float and quantized files are timed in ONNX Runtime: interleaved rounds, medians.
#[derive(Clone, Debug, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct Latency {
    pub batches: Vec<usize>,
    pub rounds: usize,
    /// ONNX Runtime intra-op thread counts, each timed (a small int8 model can be fastest on
    /// one thread).
    pub threads: Vec<usize>,
}

impl Default for Latency {
    fn default() -> Self {
        Latency { batches: vec![1, 32], rounds: 7, threads: vec![1, 2] }
    }
}
