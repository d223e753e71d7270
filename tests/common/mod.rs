//! Shared helpers for the integration tests: run the real binary in a temporary folder, find
//! `../shared`, write small recipes.

#![allow(dead_code)]

use std::path::{Path, PathBuf};
use std::process::{Command, Output};

pub fn bin() -> Command {
    Command::new(env!("CARGO_BIN_EXE_compress"))
}

pub fn repo() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

/// The material every developer and CI has beside the checkout.
pub fn shared() -> PathBuf {
    let p = repo().join("../shared");
    assert!(p.is_dir(), "../shared must lie beside the checkout (it holds the real data and teachers)");
    p
}

pub struct Run {
    pub code: i32,
    pub stdout: String,
    pub stderr: String,
}

pub fn run_in(dir: &Path, args: &[&str]) -> Run {
    let out: Output = bin().args(args).current_dir(dir).output().expect("the binary runs");
    Run {
        code: out.status.code().unwrap_or(-1),
        stdout: String::from_utf8_lossy(&out.stdout).into_owned(),
        stderr: String::from_utf8_lossy(&out.stderr).into_owned(),
    }
}

/// A recipe on a tiny synthetic set, with `teachers` (YAML list text) and extra top-level YAML.
pub fn tiny_recipe(teachers: &str, method: &str) -> String {
    format!(
        r#"version: 1
name: tiny
seed: 3
device: cpu
data:
  format: synthetic
  image_size: 32
  synthetic: {{num_classes: 10, train_size: 256, test_size: 128, seed: 7}}
  normalize: {{mean: [0.5, 0.5, 0.5], std: [0.25, 0.25, 0.25]}}
teachers: {teachers}
student: {{arch: resnet8, width: 0.5}}
distill: {{method: {method}}}
train: {{epochs: 1, batch_size: 32, threads: 2}}
validate:
  gates:
    - {{metric: top1_agreement_tch_vs_ort, min: 0.99}}
    - {{metric: max_rel_diff_tch_vs_ort, max: 1.0e-4}}
"#
    )
}

/// Serializes the tests of one binary that train models: two libtorch processes with two
/// threads each on a two-core machine slow each other down many times over (OpenMP spins).
pub fn one_training_at_a_time() -> std::sync::MutexGuard<'static, ()> {
    static LOCK: std::sync::Mutex<()> = std::sync::Mutex::new(());
    LOCK.lock().unwrap_or_else(|e| e.into_inner())
}

/// Writes an untrained CIFAR ResNet-8 (width 0.5, 10 classes; last map 4×4×32, a Gemm head) as
/// an ONNX teacher, its weights drawn from `seed`.
pub fn write_resnet8_teacher(path: &Path, seed: i64) {
    tch::manual_seed(seed);
    let spec = compress::zoo::ArchSpec { num_classes: 10, width: 0.5, image_size: 32 };
    let graph = compress::zoo::build("resnet8", &spec, tch::Device::Cpu).unwrap();
    compress::onnx::model_file::write(&graph.to_model(8).unwrap(), path).unwrap();
}

/// A report's per-epoch figures (a JSON array of epochs) without their wall times, for
/// comparing runs.
pub fn epochs_without_time(epochs: &serde_json::Value) -> Vec<serde_json::Value> {
    epochs
        .as_array()
        .unwrap()
        .iter()
        .map(|e| {
            let mut e = e.clone();
            // Timings differ from run to run; everything else must not.
            e.as_object_mut().unwrap().remove("seconds");
            e.as_object_mut().unwrap().remove("data_wait_seconds");
            e
        })
        .collect()
}

/// Moves every initializer of `model` into external data named `location`, the first at byte
/// `start` of that file; returns the bytes from `start` on, for the caller to write there.
pub fn move_to_external(model: &mut onnx_protobuf::ModelProto, location: &str, start: u64) -> Vec<u8> {
    let mut blob = Vec::new();
    for init in model.graph.as_mut().unwrap().initializer.iter_mut() {
        let offset = start + blob.len() as u64;
        blob.extend_from_slice(&init.raw_data);
        for (k, v) in [("location", location.to_string()), ("offset", offset.to_string()), ("length", init.raw_data.len().to_string())] {
            let mut e = onnx_protobuf::StringStringEntryProto::new();
            e.key = k.into();
            e.value = v;
            init.external_data.push(e);
        }
        init.raw_data.clear();
        init.data_location = onnx_protobuf::tensor_proto::DataLocation::EXTERNAL.into();
    }
    blob
}
