//! `student`: a built-in architecture and its width, or the user's own ONNX graph and where its
//! weights start.

use serde::{Deserialize, Serialize};
use std::path::PathBuf;

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

fn one() -> f64 {
    1.0
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
