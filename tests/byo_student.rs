//! A student brought as an ONNX file: its initializers train (BatchNormalization included), it
//! exports as the same graph with the trained values, and ONNX Runtime agrees with tch.

mod common;
use common::*;

fn write_user_model(path: &std::path::Path, image_size: i64) {
    tch::manual_seed(21);
    let spec = compress::zoo::ArchSpec { num_classes: 10, width: 0.5, image_size };
    let graph = compress::zoo::build("resnet8", &spec, tch::Device::Cpu).unwrap();
    compress::onnx::model_file::write(&graph.to_model(8).unwrap(), path).unwrap();
}

fn node_names(path: &std::path::Path) -> Vec<String> {
    compress::onnx::model_file::read(path).unwrap().graph.unwrap().node.iter().map(|n| n.name.clone()).collect()
}

#[test]
fn onnx_student_trains_and_exports_as_its_own_graph() {
    let dir = tempfile::tempdir().unwrap();
    write_user_model(&dir.path().join("user.onnx"), 32);
    for weights in ["stored", "random"] {
        let text = tiny_recipe("[]", "none").replace("student: {arch: resnet8, width: 0.5}", &format!("student: {{onnx: user.onnx, weights: {weights}}}"));
        std::fs::write(dir.path().join("r.yaml"), text).unwrap();
        let out = format!("out_{weights}");
        let r = run_in(dir.path(), &["--recipe", "r.yaml", "--out", &out, "--set", "export.fold_batch_norm=false"]);
        assert_eq!(r.code, 0, "{weights}: {}", r.stderr);
        let report: serde_json::Value = serde_json::from_slice(&std::fs::read(dir.path().join(&out).join("report.json")).unwrap()).unwrap();
        assert!(report["fidelity"]["max_rel_diff"].as_f64().unwrap() <= 1e-5, "{}", report["fidelity"]);
        let exported = dir.path().join(&out).join("student.onnx");
        assert_eq!(node_names(&exported), node_names(&dir.path().join("user.onnx")), "the export keeps the user's graph");
        assert_ne!(std::fs::read(&exported).unwrap(), std::fs::read(dir.path().join("user.onnx")).unwrap(), "the weights were trained");
    }
}

#[test]
fn onnx_student_of_the_wrong_size_or_classes_is_refused() {
    let dir = tempfile::tempdir().unwrap();
    write_user_model(&dir.path().join("big.onnx"), 64);
    let model = compress::onnx::model_file::read(&dir.path().join("big.onnx")).unwrap();
    let mut graph = compress::graph::Graph::from_model(&model, "big").unwrap();
    graph.inputs[0].dims[2] = compress::graph::Dim::Fixed(64);
    graph.inputs[0].dims[3] = compress::graph::Dim::Fixed(64);
    compress::onnx::model_file::write(&graph.to_model(8).unwrap(), &dir.path().join("big.onnx")).unwrap();
    let text = tiny_recipe("[]", "none").replace("student: {arch: resnet8, width: 0.5}", "student: {onnx: big.onnx}");
    std::fs::write(dir.path().join("r.yaml"), text).unwrap();
    let r = run_in(dir.path(), &["--recipe", "r.yaml"]);
    assert_eq!(r.code, 2, "{}", r.stderr);
    assert!(r.stderr.contains("student") && r.stderr.contains("64-pixel"), "{}", r.stderr);
}
