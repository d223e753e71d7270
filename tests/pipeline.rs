//! The whole pipeline on a tiny synthetic recipe, through the real binary: artifacts, report
//! content, tch-vs-ONNX Runtime fidelity, and the refusal to overwrite a finished run.

mod common;
use common::*;

#[test]
fn tiny_recipe_runs_end_to_end_and_refuses_to_overwrite() {
    let dir = tempfile::tempdir().unwrap();
    write_resnet8_teacher(&dir.path().join("t.onnx"), 11);
    let teachers = "[{name: t1, onnx: t.onnx, input: {layout: nchw, mean: [0.5, 0.5, 0.5], std: [0.25, 0.25, 0.25]}}, \
                    {name: t2, onnx: t.onnx, input: {layout: nchw}}]";
    std::fs::write(dir.path().join("r.yaml"), tiny_recipe(teachers, "ca_mkd")).unwrap();
    let r = run_in(dir.path(), &["--recipe", "r.yaml"]);
    assert_eq!(r.code, 0, "stderr: {}", r.stderr);
    let out = dir.path().join("out/tiny");
    for f in ["student.onnx", "report.json", "report.md", "recipe.resolved.yaml"] {
        assert!(out.join(f).is_file(), "{f} missing");
    }
    let report: serde_json::Value = serde_json::from_slice(&std::fs::read(out.join("report.json")).unwrap()).unwrap();
    let fid = &report["fidelity"];
    assert!(fid["max_rel_diff"].as_f64().unwrap() <= 1e-4, "{fid}");
    assert!(fid["top1_agreement_tch_vs_ort"].as_f64().unwrap() >= 0.99, "{fid}");
    assert!((fid["top1_tch"].as_f64().unwrap() - fid["top1_ort"].as_f64().unwrap()).abs() <= 0.01, "{fid}");
    assert_eq!(report["teachers"].as_array().unwrap().len(), 2);
    let t = &report["teachers"][0];
    assert_eq!(t["top1_agreement_tch_vs_ort"].as_f64().unwrap(), 1.0, "{t}");
    let epochs = report["training"]["epochs"].as_array().unwrap();
    assert_eq!(epochs.len(), 1);
    assert!(epochs[0]["losses"]["kd"].as_f64().unwrap() > 0.0);
    let w = epochs[0]["teacher_weights"].as_array().unwrap();
    let sum: f64 = w.iter().map(|v| v.as_f64().unwrap()).sum();
    assert!((sum - 1.0).abs() < 1e-4, "CA-MKD weights sum to one per sample: {w:?}");
    assert!(report["versions"]["onnxruntime"].as_str().unwrap().contains("1.31"), "{}", report["versions"]);
    assert!(report["stages"].as_array().unwrap().len() >= 6);
    assert_eq!(report["passed"], true);

    let before = std::fs::read(out.join("report.json")).unwrap();
    let again = run_in(dir.path(), &["--recipe", "r.yaml"]);
    assert_eq!(again.code, 2, "{}", again.stderr);
    assert!(again.stderr.contains("--overwrite"), "{}", again.stderr);
    assert_eq!(std::fs::read(out.join("report.json")).unwrap(), before, "a finished run must not be touched");
}

#[test]
fn failing_gate_exits_1_with_every_artifact_written() {
    let dir = tempfile::tempdir().unwrap();
    let text = tiny_recipe("[]", "none").replace("min: 0.99}", "min: 0.99}\n    - {metric: top1, min: 0.999}");
    std::fs::write(dir.path().join("r.yaml"), text).unwrap();
    let r = run_in(dir.path(), &["--recipe", "r.yaml", "--out", "o"]);
    assert_eq!(r.code, 1, "{}", r.stderr);
    let report: serde_json::Value = serde_json::from_slice(&std::fs::read(dir.path().join("o/report.json")).unwrap()).unwrap();
    assert_eq!(report["passed"], false);
    assert!(dir.path().join("o/student.onnx").is_file());
}
