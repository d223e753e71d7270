//! Every zoo architecture exported to ONNX and run by ONNX Runtime equals the tch forward in
//! eval mode: max_rel_diff <= 1e-5 as is, <= 1e-4 with BatchNorm folded into the convolutions.

use compress::graph::fold_bn::fold_batch_norm;
use compress::graph::{Executor, Graph, RunMode};
use compress::runtime::OrtModel;
use compress::zoo::ArchSpec;
use tch::{Device, Kind, Tensor};

/// Gives BatchNorm non-trivial statistics and affine parameters, as after training.
fn perturb_batch_norm(graph: &mut Graph) {
    for (name, t) in graph.initializers.iter_mut() {
        let _g = tch::no_grad_guard();
        if name.ends_with("running_mean") || name.ends_with(".bias") {
            *t = Tensor::randn(t.size().as_slice(), (Kind::Float, Device::Cpu)) * 0.1;
        } else if name.ends_with("running_var") {
            *t = Tensor::rand(t.size().as_slice(), (Kind::Float, Device::Cpu)) + 0.5;
        }
    }
}

fn ort_vs_tch(graph: &Graph, x: &Tensor, ours: &Tensor, path: &std::path::Path) -> f64 {
    compress::onnx::model_file::write(&graph.to_model(Graph::ir_version_for(graph.opset)).unwrap(), path).unwrap();
    let theirs = OrtModel::load(path, 1).unwrap().run(x).unwrap().remove(0);
    compress::metrics::max_rel_diff(ours, &theirs)
}

#[test]
fn every_zoo_model_exports_exactly() {
    let dir = tempfile::tempdir().unwrap();
    for arch in compress::zoo::names() {
        tch::manual_seed(1);
        let spec = ArchSpec { num_classes: 10, width: 0.5, image_size: 32 };
        let mut graph = compress::zoo::build(arch, &spec, Device::Cpu).unwrap();
        perturb_batch_norm(&mut graph);
        let x = Tensor::randn([3, 3, 32, 32], (Kind::Float, Device::Cpu));
        let exec = Executor::compile(&graph, &[graph.outputs[0].name.clone()], Device::Cpu).unwrap();
        let ours = tch::no_grad(|| exec.run(&[&x], RunMode::Eval)).unwrap().remove(0);
        let plain = ort_vs_tch(&graph, &x, &ours, &dir.path().join(format!("{arch}.onnx")));
        let mut folded_graph = graph.detached_copy();
        let folded = fold_batch_norm(&mut folded_graph).unwrap();
        assert!(folded > 0, "{arch}: nothing folded");
        // Pre-activation BatchNorms (Wide ResNet) read a sum or a shared value, not a conv of
        // their own, and stay; every BatchNorm right after a conv that nothing else reads folds.
        for bn in folded_graph.nodes.iter().filter(|n| n.op_type == "BatchNormalization") {
            let x = &bn.input[0];
            let from_conv = folded_graph.nodes.iter().any(|n| n.op_type == "Conv" && n.output[0] == *x);
            let readers = folded_graph.nodes.iter().filter(|n| n.input.contains(x)).count();
            assert!(!(from_conv && readers == 1), "{arch}: `{}` after a conv survived", bn.name);
        }
        let rel_folded = ort_vs_tch(&folded_graph, &x, &ours, &dir.path().join(format!("{arch}.folded.onnx")));
        println!("{arch}: max_rel_diff {plain:.2e}, folded ({folded} BN) {rel_folded:.2e}");
        assert!(plain <= 1e-5, "{arch}: {plain}");
        assert!(rel_folded <= 1e-4, "{arch}: folded {rel_folded}");
    }
}

/// A file that declares a fixed batch of 1 is timed at larger batches one sample at a time (as
/// it is run), not refused by ONNX Runtime.
#[test]
fn fixed_batch_files_are_timed_per_sample() {
    let dir = tempfile::tempdir().unwrap();
    let spec = ArchSpec { num_classes: 10, width: 0.5, image_size: 32 };
    let mut graph = compress::zoo::build("resnet8", &spec, Device::Cpu).unwrap();
    graph.inputs[0].dims[0] = compress::graph::Dim::Fixed(1);
    let path = dir.path().join("fixed.onnx");
    compress::onnx::model_file::write(&graph.to_model(Graph::ir_version_for(graph.opset)).unwrap(), &path).unwrap();
    let rows = compress::runtime::latency::measure(&[&path], &[3, 32, 32], &[1, 4], 1, 1).unwrap();
    assert_eq!(rows.iter().map(|r| r.batch).collect::<Vec<_>>(), [1, 4]);
    assert!(rows.iter().all(|r| r.median_ms[0] > 0.0));
}
