//! The exported file checked in ONNX Runtime against the trained model in tch on the test set:
//! accuracy in both, their agreement and the largest logit differences.

use crate::data::preprocess::Preprocess;
use crate::data::ImageSet;
use crate::metrics;
use crate::runtime::{self, OrtModel};
use crate::student::Student;
use serde::Serialize;
use std::path::Path;

/// The exported file in ONNX Runtime against the trained model in tch, on the test set.
#[derive(Debug, Serialize, Clone)]
pub struct Fidelity {
    pub images: usize,
    pub top1_tch: f64,
    pub top1_ort: f64,
    pub top5_ort: f64,
    pub top1_agreement_tch_vs_ort: f64,
    pub max_abs_diff: f64,
    pub max_rel_diff: f64,
}

/// Runs the exported file in ONNX Runtime over the test set and compares it with tch.
pub fn validate_export(student: &Student, path: &Path, test: &ImageSet, pre: &Preprocess) -> anyhow::Result<Fidelity> {
    let ours = student.logits(test, pre, 256)?;
    let mut ort = OrtModel::load(path, 2)?;
    let theirs = runtime::eval::logits(&mut ort, test, pre, 256, "ORT student")?;
    Ok(Fidelity {
        images: test.len(),
        top1_tch: metrics::top_k(&ours, &test.labels, 1),
        top1_ort: metrics::top_k(&theirs, &test.labels, 1),
        top5_ort: metrics::top_k(&theirs, &test.labels, 5),
        top1_agreement_tch_vs_ort: metrics::agreement(&ours, &theirs),
        max_abs_diff: metrics::max_abs_diff(&ours, &theirs),
        max_rel_diff: metrics::max_rel_diff(&ours, &theirs),
    })
}
