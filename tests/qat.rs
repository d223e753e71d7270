//! A zoo student with QDQ pairs inserted trains as a quantization-aware model (its scales
//! learn) and, exported as it is, runs in ONNX Runtime with the same predictions as in tch.

use compress::distill::student::Student;
use compress::graph::fold_bn::fold_batch_norm;
use compress::graph::RunMode;
use compress::quant::qdq::{insert_qdq, LayerBits};
use compress::runtime::OrtModel;
use tch::{Device, Kind, Tensor};

#[test]
fn qdq_student_trains_and_ort_runs_it_identically() {
    tch::manual_seed(5);
    let spec = compress::zoo::ArchSpec { num_classes: 10, width: 0.5, image_size: 32 };
    let mut graph = compress::zoo::build("resnet8", &spec, Device::Cpu).unwrap();
    assert!(fold_batch_norm(&mut graph).unwrap() > 0);
    let calibration = Tensor::randn([16, 3, 32, 32], (Kind::Float, Device::Cpu));
    // First and last layers at 8 bits, the others W4A8.
    let layers = insert_qdq(&mut graph, &calibration, &|k, n| if k == 0 || k + 1 == n { LayerBits { weights: 8, activations: 8 } } else { LayerBits { weights: 4, activations: 8 } }).unwrap();
    assert_eq!(layers.len(), 10, "9 convs and the classifier");
    assert_eq!(
        graph.nodes.iter().filter(|n| n.op_type == "QuantizeLinear").count(),
        10 + 10 + 9,
        "10 weights, 10 data inputs, 9 conv outputs"
    );
    let student = Student::new(graph, Device::Cpu).unwrap();
    let scales: Vec<(String, Tensor)> = student.parameters().into_iter().filter(|(n, _)| n.ends_with(".quant.scale")).collect();
    assert_eq!(scales.len(), 29);
    let before: Vec<Tensor> = scales.iter().map(|(_, t)| t.detach().copy()).collect();
    let mut opt = compress::distill::optim::Sgd::new(student.parameters(), 0.01, 0.9, 0.0, false);
    for _ in 0..3 {
        let x = Tensor::randn([16, 3, 32, 32], (Kind::Float, Device::Cpu));
        let y = Tensor::randint(10, [16], (Kind::Int64, Device::Cpu));
        let loss = student.forward(&x, RunMode::Train).unwrap().cross_entropy_for_logits(&y);
        assert!(loss.double_value(&[]).is_finite());
        opt.zero_grad();
        loss.backward();
        opt.step();
    }
    let moved = scales.iter().zip(&before).filter(|((_, t), b)| (t.detach() - *b).abs().max().double_value(&[]) > 0.0).count();
    assert!(moved >= 26, "the learned steps train: {moved} of 29 moved");

    let dir = tempfile::tempdir().unwrap();
    let float_path = dir.path().join("qat_float_weights.onnx");
    compress::export::write_onnx(&student.graph, 13, false, &[], &float_path).unwrap();
    // The file stores the weights as int8 integers.
    let mut exported = student.graph.detached_copy();
    assert_eq!(compress::quant::qdq::store_weights_as_int8(&mut exported).unwrap(), 10);
    let path = dir.path().join("qat.onnx");
    compress::export::write_onnx(&exported, 13, false, &[], &path).unwrap();
    let (float_bytes, int8_bytes) = (std::fs::metadata(&float_path).unwrap().len(), std::fs::metadata(&path).unwrap().len());
    println!("file: {float_bytes} bytes with float weights, {int8_bytes} with int8 weights");
    // A quarter of the weight bytes; names, scales and the graph are a large share of a model
    // this small (ResNet-8 at width 0.5 has 20k weights), hence less than 4× here.
    assert!(float_bytes as f64 >= 2.5 * int8_bytes as f64, "{float_bytes} vs {int8_bytes}");
    let theirs_float = OrtModel::load(&float_path, 1).unwrap().run(&Tensor::ones([2, 3, 32, 32], (Kind::Float, Device::Cpu))).unwrap().remove(0);
    let theirs_int8 = OrtModel::load(&path, 1).unwrap().run(&Tensor::ones([2, 3, 32, 32], (Kind::Float, Device::Cpu))).unwrap().remove(0);
    assert_eq!((&theirs_float - &theirs_int8).abs().max().double_value(&[]), 0.0, "storing the integers changes nothing ORT computes");
    let x = Tensor::randn([64, 3, 32, 32], (Kind::Float, Device::Cpu));
    let ours = tch::no_grad(|| student.forward(&x, RunMode::Eval)).unwrap();
    let theirs = OrtModel::load(&path, 1).unwrap().run(&x).unwrap().remove(0);
    let agreement = compress::metrics::agreement(&ours, &theirs);
    let rel = compress::metrics::max_rel_diff(&ours, &theirs);
    println!("QDQ student: top-1 agreement {agreement}, max_rel_diff {rel:.2e}");
    // ONNX Runtime computes the fused integer kernels (int32 bias, requantization), tch the
    // float simulation of the same grid: values one step apart at rounding ties are expected,
    // predictions must agree.
    assert!(agreement >= 0.95, "{agreement}");
    // Every convolution runs on ONNX Runtime's integer kernel (DQ → Conv → Q fused into
    // QLinearConv); this fails if a change makes any of them fall back to float.
    let ops = OrtModel::optimized_ops(&path).unwrap();
    println!("ONNX Runtime's optimized graph: {ops:?}");
    assert_eq!(ops.get("com.microsoft::QLinearConv").copied().unwrap_or(0), 9, "{ops:?}");
    assert!(!ops.contains_key("Conv") && !ops.contains_key("com.microsoft::FusedConv"), "a float convolution survived: {ops:?}");
    assert!(rel < 0.25, "{rel}");
}
