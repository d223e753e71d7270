//! Recipe version 1, as serde types with `deny_unknown_fields`, so a misspelt key is an error
//! that names it. Defaults follow the standard CIFAR distillation protocol (methods.md §1.4).

use crate::data::preprocess::Layout;
use serde::{Deserialize, Serialize};
use std::path::PathBuf;

#[derive(Clone, Debug, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Recipe {
    pub version: u32,
    pub name: String,
    #[serde(default)]
    pub seed: u64,
    #[serde(default = "default_device")]
    pub device: String,
    pub data: Data,
    #[serde(default)]
    pub teachers: Vec<TeacherEntry>,
    pub student: Student,
    #[serde(default)]
    pub distill: Distill,
    pub train: Train,
    #[serde(default)]
    pub export: Export,
    #[serde(default)]
    pub validate: Validate,
    /// For `compress compare`: the methods to train side by side on the same batches and seeds.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub compare: Option<Compare>,
    /// Quantization-aware training after the float stage, and the QDQ export.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub quantize: Option<Quantize>,
}

/// `quantize`: fake-quantized fine-tuning of the float student under the same distillation
/// method, then a QDQ export that ONNX Runtime runs on integer kernels.
#[derive(Clone, Debug, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Quantize {
    /// Weight bits of every Conv and Gemm: 8, 4 or 2.
    #[serde(default = "eight_bits")]
    pub weights: u32,
    /// Bits of every layer's data input: 8 or 4.
    #[serde(default = "eight_bits")]
    pub activations: u32,
    /// Bits (weights and activations) of the first convolution and the classifier; `null`
    /// quantizes them like the others.
    #[serde(default = "some_eight")]
    pub first_last: Option<u32>,
    /// Per layer (Conv or Gemm node name), overriding the above.
    #[serde(default)]
    pub layers: std::collections::BTreeMap<String, LayerBitsEntry>,
    /// Epochs of quantization-aware training.
    #[serde(default = "default_qat_epochs")]
    pub epochs: usize,
    /// Learning rate of the QAT stage (cosine to 0); default a fiftieth of train.optimizer.sgd.lr.
    #[serde(default)]
    pub lr: Option<f64>,
    /// Training images whose activations set the initial activation steps.
    #[serde(default = "default_calibration")]
    pub calibration_images: usize,
    /// Also run the same QAT on labels only (no teachers), from the same float student.
    #[serde(default)]
    pub baseline: bool,
    #[serde(default)]
    pub latency: Latency,
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
#[serde(deny_unknown_fields)]
pub struct Latency {
    #[serde(default = "default_latency_batches")]
    pub batches: Vec<usize>,
    #[serde(default = "default_latency_rounds")]
    pub rounds: usize,
    /// ONNX Runtime intra-op thread counts, each timed (a small int8 model can be fastest on
    /// one thread).
    #[serde(default = "default_latency_threads")]
    pub threads: Vec<usize>,
}

impl Default for Latency {
    fn default() -> Self {
        Latency { batches: default_latency_batches(), rounds: default_latency_rounds(), threads: default_latency_threads() }
    }
}

fn eight_bits() -> u32 {
    8
}
fn some_eight() -> Option<u32> {
    Some(8)
}
fn default_qat_epochs() -> usize {
    3
}
fn default_calibration() -> usize {
    256
}
fn default_latency_batches() -> Vec<usize> {
    vec![1, 32]
}
fn default_latency_rounds() -> usize {
    7
}
fn default_latency_threads() -> Vec<usize> {
    vec![1, 2]
}

/// `compress compare`: every method trains the same student (same initial weights per seed) on
/// the same batches; teachers run once per batch for all of them.
#[derive(Clone, Debug, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Compare {
    pub seeds: Vec<u64>,
    /// Each a complete `distill` section; `label` names it in the results (default: the method).
    pub methods: Vec<CompareMethod>,
}

#[derive(Clone, Debug, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CompareMethod {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub label: Option<String>,
    pub distill: Distill,
}

impl CompareMethod {
    pub fn label(&self) -> String {
        self.label.clone().unwrap_or_else(|| self.distill.method.clone())
    }
}

fn default_device() -> String {
    "auto".into()
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum DataFormat {
    ImageFolder,
    Synthetic,
}

#[derive(Clone, Debug, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Data {
    pub format: DataFormat,
    pub train: Option<PathBuf>,
    pub test: Option<PathBuf>,
    #[serde(default = "default_image_size")]
    pub image_size: u32,
    pub synthetic: Option<Synthetic>,
    /// Use a seeded random subset of this many training images.
    pub train_subset: Option<usize>,
    /// Use a seeded random subset of this many test images.
    pub test_subset: Option<usize>,
    #[serde(default)]
    pub augment: Augment,
    /// The student's input normalization.
    pub normalize: Normalize,
}

fn default_image_size() -> u32 {
    32
}

#[derive(Clone, Debug, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Synthetic {
    #[serde(default = "default_classes")]
    pub num_classes: usize,
    pub train_size: usize,
    pub test_size: usize,
    #[serde(default)]
    pub seed: u64,
}

fn default_classes() -> usize {
    10
}

#[derive(Clone, Debug, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Augment {
    #[serde(default)]
    pub random_crop_padding: i64,
    #[serde(default)]
    pub horizontal_flip: bool,
}

impl Default for Augment {
    fn default() -> Self {
        Augment { random_crop_padding: 4, horizontal_flip: true }
    }
}

#[derive(Clone, Debug, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Normalize {
    #[serde(default = "default_scale")]
    pub scale: f64,
    pub mean: [f64; 3],
    pub std: [f64; 3],
}

fn default_scale() -> f64 {
    1.0 / 255.0
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum TeacherOutput {
    Logits,
    Probabilities,
}

#[derive(Clone, Debug, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TeacherEntry {
    pub name: String,
    pub onnx: PathBuf,
    pub input: TeacherInput,
    #[serde(default = "default_output")]
    pub output: TeacherOutput,
    /// Extra outputs by name: alias → any value in the graph (see `compress inspect` for
    /// candidates), fetched alongside the logits for feature-level distillation.
    #[serde(default)]
    pub taps: std::collections::BTreeMap<String, String>,
    /// `fp32`, or `fp16` (CUDA only: the teacher runs under autocast).
    #[serde(default)]
    pub precision: Precision,
}

#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Precision {
    #[default]
    Fp32,
    Fp16,
}

fn default_output() -> TeacherOutput {
    TeacherOutput::Logits
}

#[derive(Clone, Debug, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TeacherInput {
    #[serde(default = "default_layout")]
    pub layout: Layout,
    #[serde(default = "default_scale")]
    pub scale: f64,
    #[serde(default = "zeros")]
    pub mean: [f64; 3],
    #[serde(default = "ones")]
    pub std: [f64; 3],
}

fn default_layout() -> Layout {
    Layout::Nchw
}
fn zeros() -> [f64; 3] {
    [0.0; 3]
}
fn ones() -> [f64; 3] {
    [1.0; 3]
}

#[derive(Clone, Debug, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Student {
    /// A built-in architecture (`zoo::names()`); or give `onnx` instead.
    pub arch: Option<String>,
    #[serde(default = "one")]
    pub width: f64,
    /// The user's own student graph (any graph the importer runs); its initializers train.
    pub onnx: Option<PathBuf>,
    /// For an ONNX student: start from its `stored` weights or re-initialize them (`random`).
    #[serde(default)]
    pub weights: StudentWeights,
}

#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum StudentWeights {
    #[default]
    Stored,
    Random,
}

impl Student {
    /// How reports and logs name the student.
    pub fn label(&self) -> String {
        match (&self.arch, &self.onnx) {
            (Some(a), _) => format!("{a} (width {})", self.width),
            (None, Some(p)) => format!("ONNX {} ({:?} weights)", p.display(), self.weights).to_lowercase(),
            (None, None) => "none".into(),
        }
    }
}

fn one() -> f64 {
    1.0
}

#[derive(Clone, Debug, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Distill {
    /// `none` trains on labels only; otherwise a method name from `distill::methods::names()`.
    #[serde(default = "default_method")]
    pub method: String,
    #[serde(default = "default_temperature")]
    pub temperature: f64,
    #[serde(default)]
    pub loss_weights: LossWeights,
    /// The teachers (by name) this method distils from; default all of `teachers`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub teachers: Option<Vec<String>>,
    /// Feature pairs (student tap, teacher tap, connector) for the feature-level methods;
    /// each method has a default (docs/methods.md).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub features: Option<Vec<FeaturePair>>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub dkd: Option<DkdOptions>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub aekd: Option<AekdOptions>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ca_mkd: Option<CaMkdOptions>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub fitnet_mkd: Option<FitnetMkdOptions>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub de_mkd: Option<DeMkdOptions>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub mmkd: Option<MmkdOptions>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub mgd: Option<MgdOptions>,
}

/// MGD (methods.md §4.2).
#[derive(Clone, Debug, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct MgdOptions {
    /// `mas`: distil the stable excitation (z + z_A + z_D)/3; `mag`: the teacher's own logits.
    #[serde(default)]
    pub mode: MgdMode,
    /// Epochs of the self-analyzing stage (the reference trains 60).
    #[serde(default = "sixty")]
    pub head_epochs: usize,
}

impl Default for MgdOptions {
    fn default() -> Self {
        MgdOptions { mode: MgdMode::Mas, head_epochs: 60 }
    }
}

#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum MgdMode {
    #[default]
    Mas,
    Mag,
}

fn sixty() -> usize {
    60
}

/// MMKD (methods.md §4.1): meta-learned per-sample teacher weights.
#[derive(Clone, Debug, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct MmkdOptions {
    /// A meta step every this many training steps (and on an epoch's last step).
    #[serde(default = "five")]
    pub meta_freq: usize,
    /// Adam learning rate and weight decay of the weight networks.
    #[serde(default = "default_meta_lr")]
    pub meta_lr: f64,
    #[serde(default = "default_meta_wd")]
    pub meta_weight_decay: f64,
    /// Meta batches come from a buffer of misclassified training samples (else the current batch).
    #[serde(default = "yes")]
    pub hard_buffer: bool,
    #[serde(default = "default_buffer")]
    pub buffer_size: i64,
    /// Lookahead steps of the hypergradient: 1 (one SGD step on the matching loss) or 3 (the
    /// reference's two matching steps and one CE step).
    #[serde(default = "one_usize")]
    pub unroll: usize,
    /// Divide each Gram matrix by its Frobenius norm before the FeatureWeight net.
    #[serde(default)]
    pub normalize_gram: bool,
}

impl Default for MmkdOptions {
    fn default() -> Self {
        MmkdOptions { meta_freq: 5, meta_lr: 1e-3, meta_weight_decay: 1e-4, hard_buffer: true, buffer_size: 256, unroll: 1, normalize_gram: false }
    }
}

fn five() -> usize {
    5
}
fn one_usize() -> usize {
    1
}
fn yes() -> bool {
    true
}
fn default_meta_lr() -> f64 {
    1e-3
}
fn default_meta_wd() -> f64 {
    1e-4
}
fn default_buffer() -> i64 {
    256
}

impl Default for Distill {
    fn default() -> Self {
        Distill {
            method: default_method(),
            temperature: default_temperature(),
            loss_weights: LossWeights::default(),
            teachers: None,
            features: None,
            dkd: None,
            aekd: None,
            ca_mkd: None,
            fitnet_mkd: None,
            de_mkd: None,
            mmkd: None,
            mgd: None,
        }
    }
}

fn default_method() -> String {
    "none".into()
}
fn default_temperature() -> f64 {
    4.0
}

/// γ (ce), α (kd) and β (feat) of methods.md: every method's total is
/// γ·CE + α·(its logit term) + β·(its feature term). `feat` defaults per method (FitNets 100,
/// CA-MKD and DE-MKD 50; 0 turns a feature term off).
#[derive(Clone, Debug, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct LossWeights {
    #[serde(default = "one")]
    pub ce: f64,
    #[serde(default = "one")]
    pub kd: f64,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub feat: Option<f64>,
}

/// One feature-distillation pair: a student tap, a teacher tap (the same alias on every
/// teacher) and the connector that maps the first onto the second.
#[derive(Clone, Debug, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct FeaturePair {
    pub student: String,
    pub teacher: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub connector: Option<crate::distill::connectors::ConnectorKind>,
}

/// DKD (methods.md §2.3): L = γ·CE + min(epoch/warmup, 1)·(α·TCKD + β·NCKD).
#[derive(Clone, Debug, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct DkdOptions {
    #[serde(default = "one")]
    pub alpha: f64,
    #[serde(default = "eight")]
    pub beta: f64,
    #[serde(default = "twenty")]
    pub warmup_epochs: usize,
}

impl Default for DkdOptions {
    fn default() -> Self {
        DkdOptions { alpha: 1.0, beta: 8.0, warmup_epochs: 20 }
    }
}

/// AEKD (methods.md §3.4): teacher weights in the capped simplex, each at most `c_tol`.
#[derive(Clone, Debug, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AekdOptions {
    #[serde(default = "default_c_tol")]
    pub c_tol: f64,
    /// Solve with unit-length gradients, then rescale (the reference's `--svm_norm`).
    #[serde(default)]
    pub normalize: bool,
}

impl Default for AekdOptions {
    fn default() -> Self {
        AekdOptions { c_tol: default_c_tol(), normalize: false }
    }
}

fn default_c_tol() -> f64 {
    0.6
}

/// CA-MKD (methods.md §3.5).
#[derive(Clone, Debug, Default, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CaMkdOptions {
    /// Detach the feature-level weights (the reference lets gradients flow through them).
    #[serde(default)]
    pub detach_feature_weights: bool,
}

/// FitNet-MKD (methods.md §3.2).
#[derive(Clone, Debug, Default, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct FitnetMkdOptions {
    /// Reproduce the reference's bug that detaches the hint loss (its regressors never train).
    #[serde(default)]
    pub reproduce_detach_bug: bool,
}

/// DE-MKD (methods.md §4.3, a reconstruction: every inferred choice is an option).
#[derive(Clone, Debug, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct DeMkdOptions {
    /// `full`: one entropy of the whole prediction weights both parts; `decoupled`: the binary
    /// target entropy weights TCKD and the non-target entropy weights NCKD.
    #[serde(default)]
    pub entropy_source: EntropySource,
    /// `softmax_neg`: w = softmax_k(−H/τ); `ebkd`: w = (1 − H/ΣH)/(K − 1).
    #[serde(default)]
    pub entropy_map: EntropyMap,
    #[serde(default = "one")]
    pub tau: f64,
    /// Temperature of the predictions whose entropy is taken.
    #[serde(default = "one")]
    pub entropy_temperature: f64,
    /// Give NCKD larger weights for higher non-target entropy (softmax_k(+H/τ)).
    #[serde(default)]
    pub invert_nc: bool,
    #[serde(default = "one")]
    pub alpha: f64,
    #[serde(default = "eight")]
    pub beta: f64,
    #[serde(default = "twenty")]
    pub warmup_epochs: usize,
}

impl Default for DeMkdOptions {
    fn default() -> Self {
        DeMkdOptions {
            entropy_source: EntropySource::Full,
            entropy_map: EntropyMap::SoftmaxNeg,
            tau: 1.0,
            entropy_temperature: 1.0,
            invert_nc: false,
            alpha: 1.0,
            beta: 8.0,
            warmup_epochs: 20,
        }
    }
}

#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum EntropySource {
    #[default]
    Full,
    Decoupled,
}

#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum EntropyMap {
    #[default]
    SoftmaxNeg,
    Ebkd,
}

fn eight() -> f64 {
    8.0
}
fn twenty() -> usize {
    20
}

impl Default for LossWeights {
    fn default() -> Self {
        LossWeights { ce: 1.0, kd: 1.0, feat: None }
    }
}

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
#[serde(deny_unknown_fields)]
pub struct Sgd {
    #[serde(default = "default_lr")]
    pub lr: f64,
    #[serde(default = "default_momentum")]
    pub momentum: f64,
    #[serde(default = "yes")]
    pub nesterov: bool,
    #[serde(default = "default_wd")]
    pub weight_decay: f64,
}

impl Default for Sgd {
    fn default() -> Self {
        Sgd { lr: default_lr(), momentum: default_momentum(), nesterov: true, weight_decay: default_wd() }
    }
}

fn default_lr() -> f64 {
    0.05
}
fn default_momentum() -> f64 {
    0.9
}
fn default_wd() -> f64 {
    5e-4
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

#[derive(Clone, Debug, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Export {
    #[serde(default = "default_opset")]
    pub opset: i64,
    /// Fold BatchNormalization into the preceding convolution in the exported file.
    #[serde(default = "yes")]
    pub fold_batch_norm: bool,
}

fn default_opset() -> i64 {
    13
}

impl Default for Export {
    fn default() -> Self {
        Export { opset: default_opset(), fold_batch_norm: true }
    }
}

#[derive(Clone, Debug, Default, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Validate {
    #[serde(default)]
    pub gates: Vec<Gate>,
}

/// One pass/fail rule on the final student: `min`, `max`, or a drop relative to a reference.
#[derive(Clone, Debug, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Gate {
    pub metric: String,
    pub min: Option<f64>,
    pub max: Option<f64>,
    /// `best_teacher`, `teacher_ensemble` or `baseline`.
    pub max_drop_vs: Option<String>,
    pub value: Option<f64>,
}
