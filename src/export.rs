//! The exported student: writing it to ONNX with its metadata, and validating the file in ONNX
//! Runtime against the trained model in tch.

use crate::data::preprocess::Preprocess;
use crate::data::ImageSet;
use crate::distill::student::Student;
use crate::graph::fold_bn::fold_batch_norm;
use crate::graph::Graph;
use crate::metrics;
use crate::recipe::Plan;
use crate::report::{ExportedFile, Fidelity};
use crate::runtime::{self, OrtModel};
use sha2::{Digest, Sha256};
use std::path::Path;

/// Writes `student.onnx`: a detached copy of the trained graph (BatchNorm folded unless the
/// recipe says otherwise) at the recipe's opset, with the preprocessing, class names and recipe
/// hash in `metadata_props`.
pub fn export_student(plan: &Plan, student: &Student, class_names: &[String], out: &Path) -> anyhow::Result<Vec<ExportedFile>> {
    let r = &plan.recipe;
    let path = out.join("student.onnx");
    let metadata = [
        ("compress.recipe_sha256", plan.recipe_sha256.clone()),
        ("compress.preprocess", serde_json::to_string(&plan.student_preprocess())?),
        ("compress.class_names", serde_json::to_string(class_names)?),
        ("compress.distill_method", r.distill.method.clone()),
    ];
    write_onnx(&student.graph, r.export.opset, r.export.fold_batch_norm, &metadata, &path)?;
    Ok(vec![file_record(&path, r.export.opset, "float32")?])
}

/// Writes a detached copy of `graph` to `path` at `opset`, BatchNorm folded into the preceding
/// convolutions when `fold` is set, with the tool version, the folded count and `metadata` in
/// `metadata_props` (replacing same-named entries the graph already carries). Returns the number
/// of folded BatchNorms.
pub fn write_onnx(graph: &Graph, opset: i64, fold: bool, metadata: &[(&str, String)], path: &Path) -> anyhow::Result<usize> {
    let (model, folded) = onnx_model(graph, opset, fold, metadata)?;
    crate::onnx::model_file::write(&model, path)?;
    Ok(folded)
}

/// The model [`write_onnx`] writes, and the number of folded BatchNorms.
pub fn onnx_model(graph: &Graph, opset: i64, fold: bool, metadata: &[(&str, String)]) -> anyhow::Result<(onnx_protobuf::ModelProto, usize)> {
    let mut graph = graph.detached_copy();
    let folded = if fold { fold_batch_norm(&mut graph)? } else { 0 };
    graph.opset = opset;
    let mut model = graph.to_model(Graph::ir_version_for(opset))?;
    let mut entries = vec![("compress.version", env!("CARGO_PKG_VERSION").to_string()), ("compress.batch_norm_folded", folded.to_string())];
    entries.extend(metadata.iter().cloned());
    model.metadata_props.retain(|p| !entries.iter().any(|(k, _)| *k == p.key));
    for (k, v) in entries {
        let mut p = onnx_protobuf::StringStringEntryProto::new();
        p.key = k.into();
        p.value = v;
        model.metadata_props.push(p);
    }
    Ok((model, folded))
}

pub(crate) fn file_record(path: &Path, opset: i64, storage: &str) -> anyhow::Result<ExportedFile> {
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
