//! `compress zoo`: the CIFAR-style architectures have exactly the parameter counts of
//! RepDistiller's definitions (CIFAR-100), every architecture exposes its named taps, and
//! `--export` writes a model ONNX Runtime runs, refusing to replace a file without --overwrite.

mod common;

use common::run_in;
use serde_json::Value;

/// Parameter counts at 100 classes of RepDistiller's `models/*.py` (counted from the layer
/// definitions; the papers round them: resnet56 0.86M, wrn_40_2 2.26M, vgg13 9.46M, ...).
/// `mobilenetv2` is `mobile_half` (width 0.5).
const REPDISTILLER_CIFAR100: &[(&str, f64, i64)] = &[
    ("resnet8", 1.0, 83_892),
    ("resnet14", 1.0, 181_108),
    ("resnet20", 1.0, 278_324),
    ("resnet32", 1.0, 472_756),
    ("resnet44", 1.0, 667_188),
    ("resnet56", 1.0, 861_620),
    ("resnet110", 1.0, 1_736_564),
    ("resnet8x4", 1.0, 1_233_540),
    ("resnet32x4", 1.0, 7_433_860),
    ("wrn_16_1", 1.0, 180_916),
    ("wrn_16_2", 1.0, 703_284),
    ("wrn_40_1", 1.0, 569_780),
    ("wrn_40_2", 1.0, 2_255_156),
    ("vgg8", 1.0, 3_965_028),
    ("vgg11", 1.0, 9_277_284),
    ("vgg13", 1.0, 9_462_180),
    ("mobilenetv2", 0.5, 812_836),
    ("shufflev1", 1.0, 949_258),
    ("shufflev2", 1.0, 1_355_528),
];

fn zoo_json(args: &[&str]) -> Value {
    let dir = tempfile::tempdir().unwrap();
    let mut all = vec!["zoo", "--json"];
    all.extend_from_slice(args);
    let r = run_in(dir.path(), &all);
    assert_eq!(r.code, 0, "{}", r.stderr);
    serde_json::from_str(&r.stdout).unwrap()
}

#[test]
fn cifar_models_have_repdistillers_parameter_counts() {
    for &(arch, width, want) in REPDISTILLER_CIFAR100 {
        let info = zoo_json(&[arch, "--classes", "100", "--width", &width.to_string()]);
        assert_eq!(info["parameters"].as_i64(), Some(want), "{arch}");
    }
}

#[test]
fn every_architecture_lists_its_named_taps() {
    let list = zoo_json(&[]);
    let archs: Vec<String> = list.as_array().unwrap().iter().map(|r| r["arch"].as_str().unwrap().to_string()).collect();
    assert_eq!(archs.len(), compress::zoo::names().len());
    for arch in archs {
        let info = zoo_json(&[&arch, "--image-size", "32"]);
        let taps = info["taps"].as_array().unwrap();
        let aliases: Vec<&str> = taps.iter().map(|t| t["alias"].as_str().unwrap()).collect();
        let stages = aliases.iter().filter(|a| a.starts_with("stage")).count();
        assert!(stages >= 3, "{arch}: {aliases:?}");
        let expected: Vec<String> = (1..=stages).map(|i| format!("stage{i}")).chain(["last_stage".into(), "pooled".into(), "logits".into()]).collect();
        assert_eq!(aliases, expected, "{arch}");
        // Stages are 4-D maps whose resolution never grows; pooled and logits are vectors.
        let mut last = i64::MAX;
        for t in &taps[..stages] {
            let shape: Vec<i64> = t["shape"].as_array().unwrap().iter().map(|d| d.as_i64().unwrap()).collect();
            assert_eq!(shape.len(), 4, "{arch}: {t}");
            assert!(shape[2] <= last, "{arch}: stage resolutions grow: {taps:?}");
            last = shape[2];
        }
        assert_eq!(taps[stages]["value"], taps[stages - 1]["value"], "{arch}: last_stage is stage{stages}");
        assert_eq!(taps[stages + 1]["shape"].as_array().unwrap().len(), 2, "{arch}: pooled");
        assert_eq!(taps[stages + 2]["shape"], serde_json::json!([1, 10]), "{arch}: logits");
    }
}

#[test]
fn student_forward_returns_the_requested_taps() {
    use compress::graph::RunMode;
    use compress::student::Student;
    use tch::{Device, Kind, Tensor};
    let spec = compress::zoo::ArchSpec { num_classes: 10, width: 0.5, image_size: 32 };
    let graph = compress::zoo::build("resnet20", &spec, Device::Cpu).unwrap();
    let wanted = ["stage3".to_string(), "pooled".to_string(), "layer2.0.conv1".to_string()];
    let student = Student::with_taps(graph, Device::Cpu, &wanted).unwrap();
    let x = Tensor::randn([2, 3, 32, 32], (Kind::Float, Device::Cpu));
    let (logits, taps) = student.forward_with_taps(&x, RunMode::Train).unwrap();
    assert_eq!(logits.size(), [2, 10]);
    let shapes: Vec<Vec<i64>> = taps.iter().map(|t| t.size()).collect();
    assert_eq!(shapes, [vec![2, 32, 8, 8], vec![2, 32], vec![2, 16, 16, 16]]);
    assert!(taps[0].requires_grad(), "taps carry gradients to the student");
    let graph = compress::zoo::build("resnet20", &spec, Device::Cpu).unwrap();
    let err = Student::with_taps(graph, Device::Cpu, &["stage9".to_string()]).err().unwrap();
    assert!(compress::error::is_bad_input(&err), "{err:#}");
    assert!(format!("{err:#}").contains("stage9"), "{err:#}");
}

#[test]
fn export_writes_a_model_ort_runs_and_never_overwrites_silently() {
    let dir = tempfile::tempdir().unwrap();
    let r = run_in(dir.path(), &["zoo", "shufflev2", "--export", "s.onnx", "--opset", "17"]);
    assert_eq!(r.code, 0, "{}", r.stderr);
    let verify = run_in(dir.path(), &["inspect", "s.onnx", "--verify", "--json"]);
    assert_eq!(verify.code, 0, "{}", verify.stderr);
    let info: Value = serde_json::from_str(&verify.stdout).unwrap();
    assert_eq!(info["opset"], 17);
    let runs = info["verify"]["runs"].as_array().unwrap();
    let worst = runs.iter().flat_map(|b| b["outputs"].as_array().unwrap().iter()).map(|o| o["max_rel_diff"].as_f64().unwrap()).fold(0.0, f64::max);
    assert!(worst <= 1e-4, "{worst}");
    let again = run_in(dir.path(), &["zoo", "shufflev2", "--export", "s.onnx"]);
    assert_eq!(again.code, 2, "{}", again.stderr);
    assert!(again.stderr.contains("--overwrite"), "{}", again.stderr);
    for bad in [&["zoo", "resnet8", "--image-size", "0"][..], &["zoo", "resnet8", "--export", "missing/dir/r.onnx"], &["zoo", "shufflev2", "--width", "0.7"]] {
        let r = run_in(dir.path(), bad);
        assert_eq!(r.code, 2, "{bad:?}: {}", r.stderr);
    }
    let unknown = run_in(dir.path(), &["zoo", "resnet9000"]);
    assert_eq!(unknown.code, 2);
    assert!(unknown.stderr.contains("resnet9000"), "{}", unknown.stderr);
}
