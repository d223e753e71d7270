//! `teachers[]`: each teacher's ONNX file, its own input transform, what its output is, extra
//! taps and precision.

use crate::data::preprocess::Layout;
use serde::{Deserialize, Serialize};
use std::path::PathBuf;

#[derive(Clone, Debug, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TeacherEntry {
    pub name: String,
    pub onnx: PathBuf,
    /// The teacher's own preprocessing (default: NCHW, pixels / 255, mean 0, std 1).
    #[serde(default)]
    pub input: TeacherInput,
    #[serde(default)]
    pub output: TeacherOutput,
    /// Extra outputs by name: alias → any value in the graph (see `compress inspect` for
    /// candidates), fetched alongside the logits for feature-level distillation.
    #[serde(default)]
    pub taps: std::collections::BTreeMap<String, String>,
    /// `fp32`, `bf16`, or `fp16` (CUDA only): the frozen weights are cast once at load and the
    /// teacher computes in that type; its outputs come back as fp32.
    #[serde(default)]
    pub precision: Precision,
}

#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum TeacherOutput {
    #[default]
    Logits,
    Probabilities,
}

#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Precision {
    #[default]
    Fp32,
    Fp16,
    Bf16,
}

impl Precision {
    /// The tensor type the teacher computes in.
    pub fn kind(self) -> tch::Kind {
        match self {
            Precision::Fp32 => tch::Kind::Float,
            Precision::Fp16 => tch::Kind::Half,
            Precision::Bf16 => tch::Kind::BFloat16,
        }
    }
}

#[derive(Clone, Debug, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct TeacherInput {
    /// The side of the square image this teacher is given (default: the fixed height and width
    /// its ONNX input declares, else `data.image_size`). It sees the same view as the student,
    /// rendered at this size.
    pub size: Option<u32>,
    pub layout: Layout,
    #[serde(deserialize_with = "super::number_or_fraction")]
    pub scale: f64,
    pub mean: [f64; 3],
    pub std: [f64; 3],
}

impl Default for TeacherInput {
    fn default() -> Self {
        TeacherInput { size: None, layout: Layout::Nchw, scale: super::data::default_scale(), mean: [0.0; 3], std: [1.0; 3] }
    }
}
