//! Recipe version 1, as serde types with `deny_unknown_fields`, so a misspelt key is an error
//! that names it; one file per section. Each default is stated once: a section whose keys all
//! have defaults derives them from its `Default` impl (`#[serde(default)]` on the struct), and a
//! section with required keys names a default function per optional key. Defaults follow the
//! standard CIFAR distillation protocol (methods.md §1.4).

mod compare;
mod data;
mod distill;
mod export;
mod quantize;
mod student;
mod teachers;
mod train;
mod validate;

pub use compare::*;
pub use data::*;
pub use distill::*;
pub use export::*;
pub use quantize::*;
pub use student::*;
pub use teachers::*;
pub use train::*;
pub use validate::*;

use serde::{Deserialize, Serialize};

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

fn default_device() -> String {
    "auto".into()
}
