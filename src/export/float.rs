//! The float student file: the trained graph written back to ONNX (BatchNorm folded on request)
//! with its metadata, and the record of a written file.

use super::metadata::{self, StudentMetadata};
use crate::graph::fold_bn::fold_batch_norm;
use crate::graph::Graph;
use crate::host::HostRead;
use crate::recipe::schema::Export;
use crate::student::Student;
use serde::Serialize;
use std::path::Path;

/// Writes `student.onnx`: a detached copy of the trained graph (BatchNorm folded unless the
/// recipe says otherwise) at the recipe's opset, with `metadata` (preprocessing, class names,
/// recipe hash) in `metadata_props`.
pub fn export_student(student: &Student, export: &Export, metadata: &StudentMetadata, out: &Path) -> anyhow::Result<Vec<ExportedFile>> {
    let path = out.join("student.onnx");
    write_onnx(&student.graph, export.opset, export.fold_batch_norm, &metadata.entries()?, &path)?;
    Ok(vec![file_record(&path, export.opset, "float32")?])
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
    refuse_non_finite(graph)?;
    let mut graph = graph.detached_copy();
    let folded = if fold { fold_batch_norm(&mut graph)? } else { 0 };
    graph.opset = opset;
    let mut model = graph.to_model(Graph::ir_version_for(opset))?;
    let mut entries = vec![(metadata::VERSION, env!("CARGO_PKG_VERSION").to_string()), (metadata::BATCH_NORM_FOLDED, folded.to_string())];
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

/// The record of a model file the run wrote: size, hash, opset, how its weights are stored.
pub fn file_record(path: &Path, opset: i64, storage: &str) -> anyhow::Result<ExportedFile> {
    let bytes = std::fs::read(path)?;
    Ok(ExportedFile {
        path: path.display().to_string(),
        bytes: bytes.len() as u64,
        sha256: crate::fsio::sha256_hex(&bytes),
        opset,
        weight_storage: storage.into(),
    })
}

/// A file the run wrote as a model.
#[derive(Debug, Serialize, Clone)]
pub struct ExportedFile {
    pub path: String,
    pub bytes: u64,
    pub sha256: String,
    pub opset: i64,
    pub weight_storage: String,
}

/// A model with NaN or infinite weights is never written: whatever happened before, it would
/// only look finished.
fn refuse_non_finite(graph: &Graph) -> anyhow::Result<()> {
    let bad: Vec<&str> = graph
        .initializers
        .iter()
        .filter(|(_, t)| crate::graph::ops::is_float(t.kind()) && t.isfinite().all().read_i64() == 0)
        .map(|(n, _)| n.as_str())
        .collect();
    match bad.as_slice() {
        [] => Ok(()),
        [first, ..] => Err(anyhow::anyhow!("refusing to export: {} weight tensor(s) hold NaN or infinite values (first: `{first}`)", bad.len())),
    }
}

#[cfg(test)]
mod tests {
    use crate::zoo::{self, ArchSpec};

    #[test]
    fn non_finite_weights_are_never_written() {
        let spec = ArchSpec { num_classes: 10, width: 0.25, image_size: 32 };
        let graph = zoo::build("resnet8", &spec, tch::Device::Cpu).unwrap();
        assert!(super::onnx_model(&graph, 13, true, &[]).is_ok());
        let (name, t) = graph.initializers.iter().find(|(_, t)| t.numel() > 1).unwrap();
        tch::no_grad(|| {
            let _ = t.get(0).fill_(f64::NAN);
        });
        let err = super::onnx_model(&graph, 13, true, &[]).unwrap_err().to_string();
        assert!(err.contains("NaN") && err.contains(name.as_str()), "{err}");
    }
}
