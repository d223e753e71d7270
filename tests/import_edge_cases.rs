//! Import edge cases through the real binary: a fixed-batch graph the relaxation pass cannot
//! make batched (falls back to per-sample execution), weights in external data (loaded, and
//! refused when the location escapes the model's folder), and unsupported input reported all
//! at once.

mod common;
use common::*;
use compress::graph::{Dim, Graph, ValueDecl};
use compress::onnx::attr::{int, ints};
use onnx_protobuf::NodeProto;
use tch::{Device, Kind, Tensor};

fn node(op: &str, name: &str, inputs: &[&str], attrs: Vec<onnx_protobuf::AttributeProto>) -> NodeProto {
    let mut n = NodeProto::new();
    n.op_type = op.into();
    n.name = name.into();
    n.input = inputs.iter().map(|s| s.to_string()).collect();
    n.output = vec![name.into()];
    n.attribute = attrs;
    n
}

fn graph(inputs: Vec<ValueDecl>, nodes: Vec<NodeProto>, inits: Vec<(&str, Tensor)>, out: &str) -> Graph {
    Graph {
        name: "g".into(),
        opset: 13,
        producer: "test".into(),
        inputs,
        outputs: vec![ValueDecl { name: out.into(), elem_type: 1, dims: vec![Dim::Fixed(1), Dim::Fixed(10)] }],
        initializers: inits.into_iter().map(|(n, t)| (n.to_string(), t)).collect(),
        nodes,
        metadata: vec![],
    }
}

fn image_input(batch: Dim) -> ValueDecl {
    ValueDecl { name: "x".into(), elem_type: 1, dims: vec![batch, Dim::Fixed(3), Dim::Fixed(4), Dim::Fixed(4)] }
}

#[test]
fn unsafe_batch_relaxation_falls_back_to_per_sample() {
    let dir = tempfile::tempdir().unwrap();
    // The Reshape's leading 1 is not the batch here: after the Transpose, dimension 0 is channels.
    let g = graph(
        vec![image_input(Dim::Fixed(1))],
        vec![
            node("Transpose", "swap", &["x"], vec![ints("perm", &[1, 0, 2, 3])]),
            node("Reshape", "flat", &["swap", "shape"], vec![]),
            node("Gemm", "fc", &["flat", "w"], vec![int("transB", 1)]),
        ],
        vec![("shape", Tensor::from_slice(&[1i64, -1])), ("w", Tensor::randn([10, 48], (Kind::Float, Device::Cpu)))],
        "fc",
    );
    let path = dir.path().join("fixed.onnx");
    compress::onnx::model_file::write(&g.to_model(8).unwrap(), &path).unwrap();
    let r = run_in(dir.path(), &["inspect", "fixed.onnx", "--verify", "--json"]);
    assert_eq!(r.code, 0, "{}", r.stderr);
    let v: serde_json::Value = serde_json::from_str(&r.stdout).unwrap();
    assert!(v["verify"]["execution"].as_str().unwrap().starts_with("per sample"), "{}", v["verify"]);
    for run in v["verify"]["runs"].as_array().unwrap() {
        assert!(run["outputs"][0]["max_rel_diff"].as_f64().unwrap() <= 1e-5, "{run}");
    }
}

/// Writes `model` with every initializer moved to `data_file` (named in the model as `location`).
fn write_external(dir: &std::path::Path, model_name: &str, data_file: &std::path::Path, location: &str) {
    tch::manual_seed(5);
    let spec = compress::zoo::ArchSpec { num_classes: 10, width: 0.5, image_size: 32 };
    let mut model = compress::zoo::build("resnet8", &spec, Device::Cpu).unwrap().to_model(8).unwrap();
    let blob = move_to_external(&mut model, location, 0);
    std::fs::write(data_file, blob).unwrap();
    compress::onnx::model_file::write(&model, &dir.join(model_name)).unwrap();
}

#[test]
fn external_data_loads_and_escaping_locations_are_refused() {
    let dir = tempfile::tempdir().unwrap();
    let models = dir.path().join("models");
    std::fs::create_dir(&models).unwrap();
    write_external(&models, "ok.onnx", &models.join("ok.onnx.data"), "ok.onnx.data");
    let r = run_in(&models, &["inspect", "ok.onnx", "--verify", "--json"]);
    assert_eq!(r.code, 0, "{}", r.stderr);
    let v: serde_json::Value = serde_json::from_str(&r.stdout).unwrap();
    assert!(v["verify"]["runs"][1]["outputs"][0]["max_rel_diff"].as_f64().unwrap() <= 1e-4, "{}", v["verify"]);

    write_external(&models, "escape.onnx", &dir.path().join("outside.bin"), "../outside.bin");
    let r = run_in(&models, &["inspect", "escape.onnx"]);
    assert_eq!(r.code, 2, "{}", r.stderr);
    assert!(r.stderr.contains("../outside.bin") && r.stderr.contains("leaves the model's folder"), "{}", r.stderr);
}

#[test]
fn unsupported_types_and_control_flow_are_reported_together() {
    let dir = tempfile::tempdir().unwrap();
    let mut model =
        graph(vec![image_input(Dim::Symbolic("n".into()))], vec![node("If", "branchy", &["cond"], vec![]), node("Relu", "r", &["x"], vec![])], vec![], "r")
            .to_model(8)
            .unwrap();
    let mut strings = onnx_protobuf::TensorProto::new();
    strings.name = "labels_text".into();
    strings.data_type = 8; // STRING
    strings.dims = vec![1];
    strings.string_data = vec![b"cat".to_vec()];
    model.graph.as_mut().unwrap().initializer.push(strings);
    compress::onnx::model_file::write(&model, &dir.path().join("odd.onnx")).unwrap();
    let r = run_in(dir.path(), &["inspect", "odd.onnx"]);
    assert_eq!(r.code, 2, "{}", r.stderr);
    assert!(r.stderr.contains("labels_text") && r.stderr.contains("branchy") && r.stderr.contains("If"), "{}", r.stderr);
}

/// An int4 tensor of `values` (in [-8, 7]), packed two per byte, low nibble first, as ONNX
/// stores it.
fn int4_tensor(name: &str, dims: &[i64], values: &[i8]) -> onnx_protobuf::TensorProto {
    let mut t = onnx_protobuf::TensorProto::new();
    t.name = name.into();
    t.data_type = 22; // INT4
    t.dims = dims.to_vec();
    t.raw_data = values.chunks(2).map(|p| (p[0] as u8 & 0x0F) | ((*p.get(1).unwrap_or(&0) as u8 & 0x0F) << 4)).collect();
    t
}

#[test]
fn int4_weights_run_as_onnx_runtime_runs_them_and_carried_types_elsewhere_are_refused_by_node() {
    let dir = tempfile::tempdir().unwrap();
    // A 4-bit weight-only quantized convolution (DequantizeLinear of int4 weights, opset 21),
    // checked against ONNX Runtime by `inspect --verify`.
    let mut g = graph(
        vec![image_input(Dim::Symbolic("n".into()))],
        vec![
            node("DequantizeLinear", "w", &["w_q", "w_scale"], vec![int("axis", 0)]),
            node("Conv", "conv", &["x", "w"], vec![ints("pads", &[1, 1, 1, 1])]),
            node("GlobalAveragePool", "pool", &["conv"], vec![]),
            node("Flatten", "flat", &["pool"], vec![]),
        ],
        vec![("w_scale", Tensor::from_slice(&[0.05f32, 0.1, 0.02, 0.07, 0.03, 0.09, 0.04, 0.06]))],
        "flat",
    );
    g.opset = 21;
    g.outputs[0].dims = vec![Dim::Symbolic("n".into()), Dim::Fixed(8)];
    let mut model = g.to_model(10).unwrap();
    let values: Vec<i8> = (0..8 * 3 * 3 * 3).map(|i| ((i * 7 + 3) % 16) as i8 - 8).collect();
    model.graph.as_mut().unwrap().initializer.push(int4_tensor("w_q", &[8, 3, 3, 3], &values));
    compress::onnx::model_file::write(&model, &dir.path().join("int4.onnx")).unwrap();
    let r = run_in(dir.path(), &["inspect", "int4.onnx", "--verify", "--json"]);
    assert_eq!(r.code, 0, "{}", r.stderr);
    let v: serde_json::Value = serde_json::from_str(&r.stdout).unwrap();
    for run in v["verify"]["runs"].as_array().unwrap() {
        assert!(run["outputs"][0]["max_rel_diff"].as_f64().unwrap() <= 1e-5, "{run}");
    }

    // The same int4 tensor read by an op that would compute on its storage: refused, by node.
    let g =
        graph(vec![image_input(Dim::Symbolic("n".into()))], vec![node("Relu", "odd_relu", &["w_q"], vec![]), node("Relu", "r", &["x"], vec![])], vec![], "r");
    let mut model = g.to_model(8).unwrap();
    model.graph.as_mut().unwrap().initializer.push(int4_tensor("w_q", &[8, 3, 3, 3], &values));
    compress::onnx::model_file::write(&model, &dir.path().join("relu_int4.onnx")).unwrap();
    let r = run_in(dir.path(), &["inspect", "relu_int4.onnx", "--verify"]);
    assert_eq!(r.code, 2, "{}", r.stderr);
    assert!(r.stderr.contains("odd_relu") && r.stderr.contains("INT4"), "{}", r.stderr);
}
