//! The five real third-party teachers on the real CIFAR-10 test set (10,000 JPEGs), through the
//! whole pipeline: our import reaches the accuracy `../shared/onnx/README.md` reports (within
//! 0.2 points) and agrees with ONNX Runtime on at least 99.9% of images; fixed-batch models run
//! batched after relaxation. A short schedule keeps this under a minute.

mod common;
use common::*;

/// Test top-1 from ../shared/onnx/README.md, measured there with ONNX Runtime 1.31.
const README_TOP1: &[(&str, f64)] =
    &[("resnet4b", 0.765), ("sri_resnet_a", 0.795), ("biasfield_base", 0.798), ("squeezenet_tf2onnx", 0.754), ("vit_2_3_16", 0.596)];

#[test]
fn shared_teachers_reach_their_published_accuracy_through_our_import() {
    shared();
    let dir = tempfile::tempdir().unwrap();
    let recipe = repo().join("recipes/cifar10_real_teachers.yaml");
    let r = run_in(
        dir.path(),
        &["--recipe", recipe.to_str().unwrap(), "--set", "train.epochs=1", "--set", "data.train_subset=512", "--set", "device=cpu", "--out", "o"],
    );
    assert_eq!(r.code, 0, "{}", r.stderr);
    let report: serde_json::Value = serde_json::from_slice(&std::fs::read(dir.path().join("o/report.json")).unwrap()).unwrap();
    assert_eq!(report["data"]["test_images"], 10000);
    for (name, published) in README_TOP1 {
        let t = report["teachers"].as_array().unwrap().iter().find(|t| t["name"] == *name).unwrap();
        let ours = t["top1_tch"].as_f64().unwrap();
        assert!((ours - published).abs() <= 0.002 + 1e-9, "{name}: ours {ours}, README {published}");
        assert!(t["top1_agreement_tch_vs_ort"].as_f64().unwrap() >= 0.999, "{t}");
        assert!(t["logits_max_abs_diff_tch_vs_ort"].as_f64().unwrap() < 1e-3, "{t}");
        assert!(t["execution"].as_str().unwrap().starts_with("batched"), "{t}");
    }
}

#[test]
fn eval_reports_onnx_runtime_accuracy_on_an_image_folder() {
    let model = shared().join("onnx/vnncomp22_cifar_biasfield_base.onnx");
    let data = shared().join("data/cifar10/test");
    let r = run_in(
        &repo(),
        &["eval", model.to_str().unwrap(), "--data", data.to_str().unwrap(), "--mean", "0.4914,0.4822,0.4465", "--std", "0.2023,0.1994,0.2010", "--json"],
    );
    assert_eq!(r.code, 0, "{}", r.stderr);
    let v: serde_json::Value = serde_json::from_str(&r.stdout).unwrap();
    assert_eq!(v["images"], 10000);
    assert!((v["top1"].as_f64().unwrap() - 0.798).abs() <= 0.002, "{v}");
}

/// `precision: bf16` casts each real teacher's frozen weights once at load (no autocast) and runs
/// it in bf16 on the CPU, its classifier head and its normalization parameters in fp32, over the
/// whole test set: top-1 agrees with ONNX Runtime's fp32 on at least 99.5% of the 10,000 images
/// for each of the five (measured 2026-12-04: 99.81, 99.69, 99.65, 99.63 and 99.58%, the ViT
/// last; with its BatchNormalization parameters in bf16 the ViT agreed on 99.49%, and with the
/// head in bf16 too, 2026-12-03: 99.67, 99.62, 99.64, 99.42 and 99.51%), and none falls back to
/// per-sample execution.
#[test]
fn shared_teachers_in_bf16_agree_with_fp32() {
    shared();
    let dir = tempfile::tempdir().unwrap();
    let text = std::fs::read_to_string(repo().join("recipes/cifar10_real_teachers.yaml")).unwrap();
    let shared_dir = shared().display().to_string();
    let text = text.replace("../../shared", &shared_dir).replace("    output: ", "    precision: bf16\n    output: ");
    assert_eq!(text.matches("precision: bf16").count(), 5);
    std::fs::write(dir.path().join("r.yaml"), text).unwrap();
    let r = run_in(dir.path(), &["--recipe", "r.yaml", "--set", "train.epochs=1", "--set", "data.train_subset=256", "--set", "device=cpu", "--out", "o"]);
    assert_eq!(r.code, 0, "{}", r.stderr);
    assert!(!r.stderr.contains("autocast"), "{}", r.stderr);
    let report: serde_json::Value = serde_json::from_slice(&std::fs::read(dir.path().join("o/report.json")).unwrap()).unwrap();
    let teachers = report["teachers"].as_array().unwrap();
    assert_eq!(teachers.len(), 5);
    for t in teachers {
        assert!(t["top1_agreement_tch_vs_ort"].as_f64().unwrap() >= 0.995, "{t}");
        assert!(t["logits_mean_abs_diff_tch_vs_ort"].as_f64().unwrap() < 0.05, "{t}");
        assert!(t["execution"].as_str().unwrap().starts_with("batched"), "{t}");
    }
}
