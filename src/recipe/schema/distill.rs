//! `distill`: the method, temperature and loss weights, the teachers it uses, feature pairs and
//! their connectors, and each method's own options (methods.md).

use serde::{Deserialize, Serialize};

#[derive(Clone, Debug, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct Distill {
    /// `none` trains on labels only; otherwise a method name from `distill::methods::names()`.
    pub method: String,
    pub temperature: f64,
    pub loss_weights: LossWeights,
    /// The teachers (by name) this method distils from; default all of `teachers`.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub teachers: Option<Vec<String>>,
    /// Feature pairs (student tap, teacher tap, connector) for the feature-level methods;
    /// each method has a default (docs/methods.md).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub features: Option<Vec<FeaturePair>>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub dkd: Option<DkdOptions>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub aekd: Option<AekdOptions>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub ca_mkd: Option<CaMkdOptions>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub fitnet_mkd: Option<FitnetMkdOptions>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub de_mkd: Option<DeMkdOptions>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub mmkd: Option<MmkdOptions>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub mgd: Option<MgdOptions>,
}

impl Default for Distill {
    fn default() -> Self {
        Distill {
            method: "none".into(),
            temperature: 4.0,
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

impl Distill {
    /// The teachers (indices into `names`, the recipe's) this section uses; the error names
    /// the unknown teacher under the key `teachers`.
    pub fn teacher_indices(&self, names: &[String]) -> Result<Vec<usize>, String> {
        match &self.teachers {
            None => Ok((0..names.len()).collect()),
            Some(chosen) => chosen
                .iter()
                .map(|n| names.iter().position(|x| x == n).ok_or_else(|| format!("teachers: no teacher is named `{n}` (known: {})", names.join(", "))))
                .collect(),
        }
    }
}

/// γ (ce), α (kd) and β (feat) of methods.md: every method's total is
/// γ·CE + α·(its logit term) + β·(its feature term). `feat` defaults per method (FitNets 100,
/// CA-MKD and DE-MKD 50; 0 turns a feature term off).
#[derive(Clone, Debug, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct LossWeights {
    pub ce: f64,
    pub kd: f64,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub feat: Option<f64>,
}

impl Default for LossWeights {
    fn default() -> Self {
        LossWeights { ce: 1.0, kd: 1.0, feat: None }
    }
}

/// One feature-distillation pair: a student tap, a teacher tap (the same alias on every
/// teacher) and the connector that maps the first onto the second.
#[derive(Clone, Debug, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct FeaturePair {
    pub student: String,
    pub teacher: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub connector: Option<ConnectorKind>,
}

/// Which connector a feature pair uses.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ConnectorKind {
    Embed,
    Embed3,
    ConvReg,
}

/// DKD (methods.md §2.3): L = γ·CE + min(epoch/warmup, 1)·(α·TCKD + β·NCKD).
#[derive(Clone, Debug, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct DkdOptions {
    pub alpha: f64,
    pub beta: f64,
    /// The warm-up in epochs, or (`warmup_share`) as a share of the run; neither gives the
    /// papers' 20 of 240 epochs as a share, so a short run keeps the method's shape.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub warmup_epochs: Option<usize>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub warmup_share: Option<f64>,
}

impl Default for DkdOptions {
    fn default() -> Self {
        DkdOptions { alpha: 1.0, beta: 8.0, warmup_epochs: None, warmup_share: None }
    }
}

/// AEKD (methods.md §3.4): teacher weights in the capped simplex, each at most `c_tol`.
#[derive(Clone, Debug, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct AekdOptions {
    pub c_tol: f64,
    /// Solve with unit-length gradients, then rescale (the reference's `--svm_norm`).
    pub normalize: bool,
}

impl Default for AekdOptions {
    fn default() -> Self {
        AekdOptions { c_tol: 0.6, normalize: false }
    }
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
#[serde(deny_unknown_fields, default)]
pub struct DeMkdOptions {
    /// `full`: one entropy of the whole prediction weights both parts; `decoupled`: the binary
    /// target entropy weights TCKD and the non-target entropy weights NCKD.
    pub entropy_source: EntropySource,
    /// `softmax_neg`: w = softmax_k(−H/τ); `ebkd`: w = (1 − H/ΣH)/(K − 1).
    pub entropy_map: EntropyMap,
    pub tau: f64,
    /// Temperature of the predictions whose entropy is taken.
    pub entropy_temperature: f64,
    /// Give NCKD larger weights for higher non-target entropy (softmax_k(+H/τ)).
    pub invert_nc: bool,
    pub alpha: f64,
    pub beta: f64,
    /// The warm-up of the logit term (and of the feature term with `feature_warmup`), as DKD's.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub warmup_epochs: Option<usize>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub warmup_share: Option<f64>,
    /// `batch_teachers`: the feature term is divided by B·K as CA-MKD's is (β = 50 comes from
    /// there); `batch`: by B only (K times stronger, this tool's first reconstruction).
    pub feature_normalization: FeatureNormalization,
    /// Ramp the feature term in with the logit term (else full strength from epoch 2).
    pub feature_warmup: bool,
}

/// What DE-MKD's weighted feature sum is divided by.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum FeatureNormalization {
    #[default]
    BatchTeachers,
    Batch,
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
            warmup_epochs: None,
            warmup_share: None,
            feature_normalization: FeatureNormalization::BatchTeachers,
            feature_warmup: true,
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

/// MGD (methods.md §4.2).
#[derive(Clone, Debug, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct MgdOptions {
    /// `mas`: distil the stable excitation (z + z_A + z_D)/3; `mag`: the teacher's own logits.
    pub mode: MgdMode,
    /// Epochs of the self-analyzing stage (the reference trains 60).
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

/// MMKD (methods.md §4.1): meta-learned per-sample teacher weights.
#[derive(Clone, Debug, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct MmkdOptions {
    /// A meta step every this many training steps (and on an epoch's last step).
    pub meta_freq: usize,
    /// Adam learning rate and weight decay of the weight networks.
    pub meta_lr: f64,
    pub meta_weight_decay: f64,
    /// Meta batches come from a buffer of misclassified training samples (else the current batch).
    pub hard_buffer: bool,
    pub buffer_size: i64,
    /// Lookahead steps of the hypergradient: 1 (one SGD step on the matching loss) or 3 (the
    /// reference's two matching steps and one CE step).
    pub unroll: usize,
    /// Divide each Gram matrix by its Frobenius norm before the FeatureWeight net.
    pub normalize_gram: bool,
}

impl Default for MmkdOptions {
    fn default() -> Self {
        MmkdOptions { meta_freq: 5, meta_lr: 1e-3, meta_weight_decay: 1e-4, hard_buffer: true, buffer_size: 256, unroll: 1, normalize_gram: false }
    }
}
