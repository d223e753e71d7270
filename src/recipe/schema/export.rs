//! `export`: the ONNX opset, whether BatchNorm is folded into the file, and whether ONNX
//! Runtime format copies are written.

use serde::{Deserialize, Serialize};

#[derive(Clone, Debug, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct Export {
    pub opset: i64,
    /// Fold BatchNormalization into the preceding convolution in the exported file.
    pub fold_batch_norm: bool,
    /// Also write each exported `.onnx` in ONNX Runtime's own format (`.ort`, for ONNX Runtime
    /// Mobile), converted and checked by ONNX Runtime.
    pub ort_format: bool,
}

impl Default for Export {
    fn default() -> Self {
        Export { opset: 13, fold_batch_norm: true, ort_format: false }
    }
}
