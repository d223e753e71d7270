//! `export`: the ONNX opset and whether BatchNorm is folded into the file.

use serde::{Deserialize, Serialize};

#[derive(Clone, Debug, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct Export {
    pub opset: i64,
    /// Fold BatchNormalization into the preceding convolution in the exported file.
    pub fold_batch_norm: bool,
}

impl Default for Export {
    fn default() -> Self {
        Export { opset: 13, fold_batch_norm: true }
    }
}
