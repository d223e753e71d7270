//! ONNX Runtime format files (`.ort`) beside the exported `.onnx` files (`export.ort_format`),
//! written by ONNX Runtime itself and checked like the others: each runs the test set in ONNX
//! Runtime and must agree with the `.onnx` it came from.

use super::float::{file_record, ExportedFile};
use crate::data::preprocess::Preprocess;
use crate::data::ImageSet;
use crate::metrics;
use crate::runtime::{self, OrtModel};
use serde::Serialize;
use std::path::Path;

/// One `.ort` file against its `.onnx` on the test set, both in ONNX Runtime.
#[derive(Debug, Serialize, Clone)]
pub struct OrtFormatCheck {
    pub file: ExportedFile,
    pub from: String,
    pub top1: f64,
    pub top1_agreement_vs_onnx: f64,
    pub max_abs_diff_vs_onnx: f64,
}

/// Writes `<stem>.ort` beside `onnx` (opset `opset`) and checks it on `test`.
pub fn write_and_check(onnx: &Path, opset: i64, test: &ImageSet, pre: &Preprocess) -> anyhow::Result<OrtFormatCheck> {
    let dst = onnx.with_extension("ort");
    // Written beside under a temporary name and renamed, so a failure leaves no file that
    // looks finished.
    let tmp = dst.with_file_name(format!(".{}.tmp.ort", dst.file_name().map(|n| n.to_string_lossy().into_owned()).unwrap_or_default()));
    let written = OrtModel::save_ort_format(onnx, &tmp).and_then(|()| std::fs::rename(&tmp, &dst).map_err(anyhow::Error::from));
    if let Err(e) = written {
        let _ = std::fs::remove_file(&tmp);
        return Err(e);
    }
    let label = dst.file_name().map_or("ort".into(), |n| n.to_string_lossy().into_owned());
    let reference = runtime::eval::logits(&mut OrtModel::load(onnx, 2)?, test, pre, 256, "ORT onnx")?;
    let ours = runtime::eval::logits(&mut OrtModel::load(&dst, 2)?, test, pre, 256, &label)?;
    Ok(OrtFormatCheck {
        file: file_record(&dst, opset, "ort_format")?,
        from: onnx.display().to_string(),
        top1: metrics::top_k(&ours, &test.labels, 1),
        top1_agreement_vs_onnx: metrics::agreement(&ours, &reference),
        max_abs_diff_vs_onnx: metrics::max_abs_diff(&ours, &reference),
    })
}
