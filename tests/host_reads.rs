//! The training step reads nothing back from the device (issue 17): every read of tensor values
//! into host memory goes through `compress::host`, which counts them, and the report gives each
//! epoch's count for its steps after the run's first. Checked through the binary on the CPU with
//! the real teachers: every method (one comparison of all of them), a zoo student of each
//! family, and a quantization-aware stage. On a GPU each such read would stall the step.

mod common;
use common::*;
use serde_json::Value;

/// `(where, counts)` for every epoch list under `v` whose host-read counts are not all zero.
fn nonzero_reads(v: &Value, path: &str, found: &mut Vec<String>) {
    match v {
        Value::Object(m) => {
            if let Some(n) = m.get("host_reads") {
                if n.as_u64() != Some(0) {
                    found.push(format!("{path}: {n}"));
                }
            }
            for (k, x) in m {
                nonzero_reads(x, &format!("{path}/{k}"), found);
            }
        }
        Value::Array(a) => a.iter().enumerate().for_each(|(i, x)| nonzero_reads(x, &format!("{path}/{i}"), found)),
        _ => {}
    }
}

/// Every epoch entry under `v`, counted, so a report without any cannot pass silently.
fn epochs_counted(v: &Value) -> usize {
    match v {
        Value::Object(m) => usize::from(m.contains_key("host_reads")) + m.values().map(epochs_counted).sum::<usize>(),
        Value::Array(a) => a.iter().map(epochs_counted).sum(),
        _ => 0,
    }
}

fn assert_no_reads(report: &Value, what: &str, min_epochs: usize) {
    let mut found = Vec::new();
    nonzero_reads(report, "", &mut found);
    assert!(found.is_empty(), "{what}: host reads in the training step:\n{}", found.join("\n"));
    assert!(epochs_counted(report) >= min_epochs, "{what}: expected at least {min_epochs} epochs with a count");
}

#[test]
fn every_method_steps_without_reading_back() {
    let _serial = one_training_at_a_time();
    let dir = tempfile::tempdir().unwrap();
    let recipe = repo().join("recipes/compare/cifar10_methods.yaml");
    // Two epochs: the feature terms and MMKD's meta steps start after the first.
    let r = run_in(
        dir.path(),
        &[
            "compare",
            "--recipe",
            recipe.to_str().unwrap(),
            "--set",
            "data.train_subset=128",
            "--set",
            "data.test_subset=64",
            "--set",
            "train.epochs=2",
            "--set",
            "compare.seeds=[0]",
            "--set",
            "device=cpu",
            "--out",
            "o",
        ],
    );
    assert_eq!(r.code, 0, "{}", r.stderr);
    let report: Value = serde_json::from_slice(&std::fs::read(dir.path().join("o/comparison.json")).unwrap()).unwrap();
    let methods = report["methods"].as_array().unwrap().len();
    assert!(methods >= 16, "{methods} methods");
    assert_no_reads(&report, "compare", 2 * methods);
}

/// A real-teacher recipe (the tf2onnx SqueezeNet, NHWC with probabilities, and the ViT, whose
/// graph builds shapes at run time) at `arch`, one epoch of four steps.
fn family_recipe(arch: &str, extra: &str) -> String {
    let s = shared();
    let d = |p: &str| s.join(p).display().to_string();
    format!(
        "version: 1
name: fam
seed: 0
device: cpu
data:
  format: image_folder
  train: {train}
  test: {test}
  image_size: 32
  train_subset: 64
  test_subset: 32
  augment: {{random_crop_padding: 4, horizontal_flip: true}}
  normalize: {{mean: [0.4914, 0.4822, 0.4465], std: [0.2470, 0.2435, 0.2616]}}
teachers:
  - name: squeezenet_tf2onnx
    onnx: {squeeze}
    input: {{layout: nhwc, scale: 0.00390625, mean: [0.0, 0.0, 0.0], std: [1.0, 1.0, 1.0]}}
    output: probabilities
  - name: vit_2_3_16
    onnx: {vit}
    input: {{layout: nchw, scale: 0.00392156862745098, mean: [0.4914, 0.4822, 0.4465], std: [0.2023, 0.1994, 0.2010]}}
    output: logits
student: {{arch: {arch}, width: 0.5}}
distill: {{method: aver}}
train:
  epochs: 1
  batch_size: 16
  optimizer: {{sgd: {{lr: 0.05, momentum: 0.9, nesterov: true, weight_decay: 5.0e-4}}}}
export: {{opset: 13}}
{extra}",
        train = d("data/cifar10/train"),
        test = d("data/cifar10/test"),
        squeeze = d("onnx/emclab_squeezenet_cifar10_tf2onnx.onnx"),
        vit = d("onnx/vnncomp23_vit_pgd_2_3_16.onnx"),
    )
}

#[test]
fn every_zoo_family_and_a_quantized_student_step_without_reading_back() {
    let _serial = one_training_at_a_time();
    let mut seen = std::collections::BTreeSet::new();
    let mut runs: Vec<(String, String)> = Vec::new();
    for arch in compress::zoo::ARCHS {
        if seen.insert(arch.family) {
            runs.push((arch.name.to_string(), String::new()));
        }
    }
    assert!(runs.len() >= 9, "{runs:?}");
    // Quantization-aware training (QDQ pairs, LSQ steps) on a student with Clip bounds.
    runs.push(("mobilenetv2".into(), "quantize: {epochs: 1}\n".into()));
    for (arch, extra) in runs {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(dir.path().join("r.yaml"), family_recipe(&arch, &extra)).unwrap();
        let r = run_in(dir.path(), &["--recipe", "r.yaml", "--out", "o"]);
        assert_eq!(r.code, 0, "{arch}: {}", r.stderr);
        let report: Value = serde_json::from_slice(&std::fs::read(dir.path().join("o/report.json")).unwrap()).unwrap();
        assert_no_reads(&report, &format!("{arch} {extra}"), if extra.is_empty() { 1 } else { 2 });
    }
}

/// Tensor values reach the host only through `src/host.rs`: clippy.toml forbids tch's reading
/// methods (`double_value`, `int64_value`, `copy_data*`), and this forbids the `Vec` conversion,
/// which clippy cannot name.
#[test]
fn reads_go_through_the_counting_module() {
    fn walk(dir: &std::path::Path, out: &mut Vec<std::path::PathBuf>) {
        for e in std::fs::read_dir(dir).unwrap() {
            let p = e.unwrap().path();
            if p.is_dir() {
                walk(&p, out);
            } else if p.extension().is_some_and(|x| x == "rs") {
                out.push(p);
            }
        }
    }
    let src = repo().join("src");
    let mut files = Vec::new();
    walk(&src, &mut files);
    let mut found = Vec::new();
    for f in files.iter().filter(|f| !f.ends_with("host.rs")) {
        let text = std::fs::read_to_string(f).unwrap();
        for (i, line) in text.lines().enumerate() {
            let conversion = line.contains("Vec::try_from(")
                || line.split("Vec::<").skip(1).any(|rest| rest.split_once(">::try_from(").is_some_and(|(t, _)| !t.contains(' ')));
            if conversion {
                found.push(format!("{}:{}: {}", f.strip_prefix(&src).unwrap().display(), i + 1, line.trim()));
            }
        }
    }
    assert!(files.len() > 50, "scanned {} files", files.len());
    assert!(found.is_empty(), "read tensors with compress::host::vec instead:\n{}", found.join("\n"));
}
