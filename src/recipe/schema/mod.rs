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

/// A number, or a fraction written as text (`1/255`, as the docs and most model cards write a
/// pixel scale).
pub(crate) fn number_or_fraction<'de, D: serde::Deserializer<'de>>(d: D) -> Result<f64, D::Error> {
    #[derive(Deserialize)]
    #[serde(untagged)]
    enum Raw {
        Number(f64),
        Text(String),
    }
    match Raw::deserialize(d)? {
        Raw::Number(v) => Ok(v),
        Raw::Text(t) => parse_fraction(&t).ok_or_else(|| serde::de::Error::custom(format!("expected a number or a fraction such as 1/255, got {t:?}"))),
    }
}

/// A number (`0.5`) or a fraction (`1/255`) written as text.
pub fn number_or_fraction_text(t: &str) -> Option<f64> {
    t.trim().parse().ok().or_else(|| parse_fraction(t))
}

fn parse_fraction(t: &str) -> Option<f64> {
    let (a, b) = t.split_once('/')?;
    let (a, b): (f64, f64) = (a.trim().parse().ok()?, b.trim().parse().ok()?);
    (b != 0.0).then(|| a / b)
}

#[cfg(test)]
mod tests {
    #[test]
    fn fractions() {
        assert_eq!(super::parse_fraction("1/255"), Some(1.0 / 255.0));
        assert_eq!(super::parse_fraction(" 2 / 4 "), Some(0.5));
        assert_eq!(super::parse_fraction("1/0"), None);
        assert_eq!(super::parse_fraction("0.5"), None);
    }
}
