//! `compress compare`: methods trained side by side on shared batches and teacher outputs give
//! exactly what each gives when trained alone with the same seed, and the comparison reports
//! every method under every seed, in tch and ONNX Runtime.

mod common;
use common::*;
use serde_json::Value;

const TEACHERS: &str = "[{name: t1, onnx: t1.onnx, input: {layout: nchw}}, {name: t2, onnx: t2.onnx, input: {layout: nchw}}]";

#[test]
fn lockstep_methods_equal_their_standalone_runs() {
    let _serial = one_training_at_a_time();
    let dir = tempfile::tempdir().unwrap();
    write_resnet8_teacher(&dir.path().join("t1.onnx"), 1);
    write_resnet8_teacher(&dir.path().join("t2.onnx"), 2);
    let compare = "compare:\n  seeds: [3, 4]\n  methods:\n    - {distill: {method: none}}\n    - {label: kd_t2, distill: {method: kd, teachers: [t2]}}\n    - {distill: {method: ca_mkd}}\n";
    let recipe = tiny_recipe(TEACHERS, "none").replace("train: {epochs: 1", "train: {epochs: 2") + compare;
    std::fs::write(dir.path().join("r.yaml"), &recipe).unwrap();
    let r = run_in(dir.path(), &["compare", "--recipe", "r.yaml", "--out", "cmp"]);
    assert_eq!(r.code, 0, "{}", r.stderr);
    let c: Value = serde_json::from_slice(&std::fs::read(dir.path().join("cmp/comparison.json")).unwrap()).unwrap();
    let methods = c["methods"].as_array().unwrap();
    assert_eq!(methods.len(), 3);
    assert_eq!(methods[1]["teachers"], serde_json::json!(["t2"]));
    for m in methods {
        let seeds = m["seeds"].as_array().unwrap();
        assert_eq!(seeds.len(), 2, "{m}");
        for s in seeds {
            assert!((s["final_top1_tch"].as_f64().unwrap() - s["final_top1_ort"].as_f64().unwrap()).abs() <= 0.01, "{s}");
            assert!(s["best_top1_tch"].as_f64().unwrap() >= s["final_top1_tch"].as_f64().unwrap(), "{s}");
        }
    }
    assert!(c["teachers"].as_array().unwrap().len() == 2 && c["ensemble_vote_top1"].is_number());
    assert!(std::fs::read_to_string(dir.path().join("cmp/comparison.md")).unwrap().contains("| kd_t2 | t2 |"));

    // The same methods alone, seed 3: identical epochs.
    for (i, distill) in [(1, "{method: kd, teachers: [t2]}"), (2, "{method: ca_mkd}")] {
        let alone =
            tiny_recipe(TEACHERS, "none").replace("train: {epochs: 1", "train: {epochs: 2").replace("distill: {method: none}", &format!("distill: {distill}"));
        std::fs::write(dir.path().join(format!("a{i}.yaml")), alone).unwrap();
        let out = format!("alone{i}");
        let r = run_in(dir.path(), &["--recipe", &format!("a{i}.yaml"), "--out", &out]);
        assert_eq!(r.code, 0, "{}", r.stderr);
        let report: Value = serde_json::from_slice(&std::fs::read(dir.path().join(&out).join("report.json")).unwrap()).unwrap();
        assert_eq!(epochs_without_time(&report["training"]["epochs"]), epochs_without_time(&methods[i]["seeds"][0]["epochs"]), "{distill}");
    }

    let again = run_in(dir.path(), &["compare", "--recipe", "r.yaml", "--out", "cmp"]);
    assert_eq!(again.code, 2, "a finished comparison is not replaced without --overwrite: {}", again.stderr);
}

#[test]
fn a_recipe_without_a_compare_section_is_refused() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("r.yaml"), tiny_recipe("[]", "none")).unwrap();
    let r = run_in(dir.path(), &["compare", "--recipe", "r.yaml"]);
    assert_eq!(r.code, 2, "{}", r.stderr);
    assert!(r.stderr.contains("compare"), "{}", r.stderr);
}
