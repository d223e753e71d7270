//! The exported student: writing it to ONNX with its metadata, and validating the file in ONNX
//! Runtime against the trained model in tch.

use crate::data::preprocess::Preprocess;
use crate::data::ImageSet;
use crate::distill::student::Student;
use crate::metrics;
use crate::recipe::Plan;
use crate::report::{ExportedFile, Fidelity};
use crate::runtime::{self, OrtModel};
use sha2::{Digest, Sha256};
use std::path::Path;

pub fn export_student(plan: &Plan, student: &Student, out: &Path) -> anyhow::Result<Vec<ExportedFile>> {
    let r = &plan.recipe;
    let mut model = student.graph.to_model(8)?;
    model.opset_import[0].version = r.export.opset;
    for (k, v) in [
        ("compress.recipe_sha256", plan.recipe_sha256.clone()),
        ("compress.preprocess", serde_json::to_string(&plan.student_preprocess())?),
        ("compress.distill_method", r.distill.method.clone()),
    ] {
        let mut p = onnx_protobuf::StringStringEntryProto::new();
        p.key = k.into();
        p.value = v;
        model.metadata_props.push(p);
    }
    let path = out.join("student.onnx");
    crate::onnx::model_file::write(&model, &path)?;
    Ok(vec![file_record(&path, r.export.opset, "float32")?])
}

fn file_record(path: &Path, opset: i64, storage: &str) -> anyhow::Result<ExportedFile> {
    let bytes = std::fs::read(path)?;
    Ok(ExportedFile {
        path: path.display().to_string(),
        bytes: bytes.len() as u64,
        sha256: crate::teacher::hex(&Sha256::digest(&bytes)),
        opset,
        weight_storage: storage.into(),
    })
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
