//! Zoo students with QDQ pairs inserted train as quantization-aware models (their steps learn)
//! and, exported, run in ONNX Runtime on integer kernels with the predictions they have in tch.
//! Each test fails if a change makes a quantized layer fall back to a float kernel.

use compress::export::quantized::{write_quantized, QuantizedExport};
use compress::graph::fold_bn::fold_batch_norm;
use compress::graph::RunMode;
use compress::host::HostRead;
use compress::quant::qdq::{insert_qdq, LayerBits, QuantizedLayer};
use compress::runtime::OrtModel;
use compress::student::Student;
use tch::{Device, Kind, Tensor};

mod common;

struct Quantized {
    student: Student,
    layers: Vec<QuantizedLayer>,
}

fn quantized_zoo_student(arch: &str, width: f64, bits: &dyn Fn(usize, usize) -> LayerBits) -> Quantized {
    quantized_zoo_student_with(arch, width, bits, &|_| {})
}

/// The same, with `edit` applied to the float graph first.
fn quantized_zoo_student_with(arch: &str, width: f64, bits: &dyn Fn(usize, usize) -> LayerBits, edit: &dyn Fn(&mut compress::graph::Graph)) -> Quantized {
    tch::manual_seed(5);
    let spec = compress::zoo::ArchSpec { num_classes: 10, width, image_size: 32 };
    let mut graph = compress::zoo::build(arch, &spec, Device::Cpu).unwrap();
    edit(&mut graph);
    // BatchNorm statistics of the data, as a trained student has them (with the initial ones,
    // activations shrink layer by layer to 1e-9 in a deep net).
    let float = Student::new(graph, Device::Cpu).unwrap();
    tch::no_grad(|| {
        for _ in 0..20 {
            let _ = float.forward(&Tensor::randn([32, 3, 32, 32], (Kind::Float, Device::Cpu)), RunMode::Train).unwrap();
        }
    });
    let mut graph = float.graph.detached_copy();
    assert!(fold_batch_norm(&mut graph).unwrap() > 0);
    let calibration = Tensor::randn([16, 3, 32, 32], (Kind::Float, Device::Cpu));
    let layers = insert_qdq(&mut graph, &calibration, bits).unwrap();
    Quantized { student: Student::new(graph, Device::Cpu).unwrap(), layers }
}

/// A few SGD steps on random data; returns how many learned steps moved, of how many.
fn train_a_little(student: &Student) -> (usize, usize) {
    let scales: Vec<(String, Tensor)> = student.parameters().into_iter().filter(|(n, _)| n.ends_with(".quant.scale")).collect();
    let before: Vec<Tensor> = scales.iter().map(|(_, t)| t.detach().copy()).collect();
    let grad_scales = compress::quant::qdq::lsq_grad_scales(&student.graph).unwrap();
    assert_eq!(grad_scales.len(), scales.len(), "every learned step has LSQ's gradient scale");
    let mut opt = compress::distill::optim::Sgd::new(student.parameters(), 0.01, 0.9, 5e-4, false).with_grad_scales(&grad_scales);
    for _ in 0..3 {
        let x = Tensor::randn([16, 3, 32, 32], (Kind::Float, Device::Cpu));
        let y = Tensor::randint(10, [16], (Kind::Int64, Device::Cpu));
        let loss = student.forward(&x, RunMode::Train).unwrap().cross_entropy_for_logits(&y);
        assert!(loss.read_f64().is_finite());
        opt.zero_grad();
        loss.backward();
        opt.step();
    }
    let moved = scales.iter().zip(&before).filter(|((_, t), b)| (t.detach() - *b).abs().max().read_f64() > 0.0).count();
    (moved, scales.len())
}

/// Exports, then compares ONNX Runtime with tch on 64 random inputs: top-1 agreement.
fn export_and_compare(q: &Quantized, dir: &std::path::Path) -> (QuantizedExport, f64, std::path::PathBuf) {
    let path = dir.join("student.w8a8.onnx");
    assert_eq!(
        compress::quant::qdq::snap_biases(&q.student.graph).unwrap(),
        q.layers.iter().filter(|l| l.bits.activations != compress::quant::qdq::FLOAT_BITS).count()
    );
    let exported = write_quantized(&q.student.graph, &q.layers, 13, &[], &path).unwrap();
    let x = Tensor::randn([64, 3, 32, 32], (Kind::Float, Device::Cpu));
    let ours = tch::no_grad(|| q.student.forward(&x, RunMode::Eval)).unwrap();
    let theirs = OrtModel::load(&path, 1).unwrap().run(&x).unwrap().remove(0);
    (exported, compress::metrics::agreement(&ours, &theirs), path)
}

fn assert_all_integer(exported: &QuantizedExport) {
    let float: Vec<String> = exported.layers.iter().filter(|l| !l.integer_kernel).map(|l| format!("{} → {}", l.node, l.kernel)).collect();
    assert!(float.is_empty(), "layers on float kernels: {float:?}; ONNX Runtime ran {:?}", exported.runtime_ops);
    for op in ["Conv", "com.microsoft::FusedConv", "MatMul", "Gemm"] {
        assert!(!exported.runtime_ops.contains_key(op), "a float {op} survived: {:?}", exported.runtime_ops);
    }
}

#[test]
fn w4a8_resnet8_trains_and_runs_on_integer_kernels() {
    let _one = common::one_training_at_a_time();
    // First and last layers at 8 bits, the others W4A8.
    let q = quantized_zoo_student("resnet8", 0.5, &|k, n| {
        if k == 0 || k + 1 == n {
            LayerBits { weights: 8, activations: 8 }
        } else {
            LayerBits { weights: 4, activations: 8 }
        }
    });
    assert_eq!(q.layers.len(), 10, "9 convs and the classifier");
    let (moved, of) = train_a_little(&q.student);
    // LSQ's gradient scale makes some steps' first updates smaller than a float32 ulp.
    assert!(moved * 10 >= of * 9, "the learned steps train: {moved} of {of} moved");
    let dir = tempfile::tempdir().unwrap();
    let float_weights = dir.path().join("float_weights.onnx");
    compress::export::write_onnx(&q.student.graph, 13, false, &[], &float_weights).unwrap();
    let (exported, agreement, path) = export_and_compare(&q, dir.path());
    println!("ONNX Runtime runs {:?}; agreement {agreement}", exported.runtime_ops);
    assert!(agreement >= 0.98, "{agreement}");
    assert_all_integer(&exported);
    let ops = &exported.runtime_ops;
    assert_eq!(ops.get("com.microsoft::QLinearConv"), Some(&9), "{ops:?}");
    assert_eq!(ops.get("com.microsoft::QLinearAdd"), Some(&3), "the residual additions too: {ops:?}");
    assert_eq!(ops.get("com.microsoft::QGemm"), Some(&1), "{ops:?}");
    assert!(!ops.contains_key("Relu"), "ReLUs fold into the integer kernels: {ops:?}");
    assert_eq!(ops.get("com.microsoft::QLinearGlobalAveragePool"), Some(&1), "the pool before the 8-bit classifier: {ops:?}");
    assert!(exported.padded_depthwise.is_empty(), "no depthwise layers");
    assert_eq!(exported.layers[1].weight_storage, "int4 grid in int8");
    // The file stores integers: storing them changes nothing ONNX Runtime computes.
    let x = Tensor::ones([2, 3, 32, 32], (Kind::Float, Device::Cpu));
    let a = OrtModel::load(&float_weights, 1).unwrap().run(&x).unwrap().remove(0);
    let b = OrtModel::load(&path, 1).unwrap().run(&x).unwrap().remove(0);
    assert_eq!((&a - &b).abs().max().read_f64(), 0.0);
    let (float_bytes, int_bytes) = (std::fs::metadata(&float_weights).unwrap().len(), std::fs::metadata(&path).unwrap().len());
    // A quarter of the weight bytes; names and scales are a large share of a 20k-weight model.
    assert!(float_bytes as f64 >= 2.5 * int_bytes as f64, "{float_bytes} vs {int_bytes}");
}

#[test]
fn w8a8_mobilenetv2_runs_every_conv_as_qlinearconv() {
    let _one = common::one_training_at_a_time();
    let q = quantized_zoo_student("mobilenetv2", 0.5, &|_, _| LayerBits { weights: 8, activations: 8 });
    let convs = q.layers.iter().filter(|l| l.op == "Conv").count();
    assert!(convs > 40, "{convs}");
    let dir = tempfile::tempdir().unwrap();
    let (exported, agreement, path) = export_and_compare(&q, dir.path());
    let plain = dir.path().join("plain_layout.onnx");
    compress::export::write_onnx(&q.student.graph, 13, false, &[], &plain).unwrap();
    println!("ONNX Runtime runs {:?}; agreement {agreement}", exported.runtime_ops);
    assert_all_integer(&exported);
    assert_eq!(exported.runtime_ops.get("com.microsoft::QLinearConv"), Some(&convs));
    assert!(agreement >= 0.98, "{agreement}");
    // Width 0.5 has two 72-channel depthwise layers; the kernel wants multiples of 16.
    let padded: Vec<(String, i64, i64)> = exported.padded_depthwise.iter().map(|p| (p.node.clone(), p.channels, p.padded_to)).collect();
    assert_eq!(padded, [("blocks.1.1.conv.3".to_string(), 72, 80), ("blocks.2.0.conv.3".to_string(), 72, 80)]);
    assert_eq!(exported.padded_depthwise[0].producer, "blocks.1.1.conv.0");
    assert_eq!(exported.padded_depthwise[0].readers, ["blocks.1.1.conv.6"]);
    // The pool runs on integers, in the channels-last layout of the convolutions.
    assert_eq!(exported.integer_pools, ["avgpool.gap"]);
    assert_eq!(exported.runtime_ops.get("com.microsoft::QLinearGlobalAveragePool"), Some(&1), "{:?}", exported.runtime_ops);
    assert!(!exported.runtime_ops.contains_key("GlobalAveragePool"), "{:?}", exported.runtime_ops);
    // Both layout changes leave what ONNX Runtime computes as it was: the same graph written
    // plainly (float weights, unpadded, float pool) gives the same logits, to the bit. (The
    // integer pool could round a mean within float error of a half step the other way; these
    // inputs have none.)
    let x = Tensor::randn([64, 3, 32, 32], (Kind::Float, Device::Cpu));
    let a = OrtModel::load(&plain, 1).unwrap().run(&x).unwrap().remove(0);
    let b = OrtModel::load(&path, 1).unwrap().run(&x).unwrap().remove(0);
    assert_eq!((&a - &b).abs().max().read_f64(), 0.0);
}

#[test]
fn low_bit_classifier_is_stored_packed_and_runs_as_matmulnbits() {
    let _one = common::one_training_at_a_time();
    for bits in [4u32, 2] {
        let q = quantized_zoo_student("resnet8", 0.5, &|k, n| LayerBits { weights: if k + 1 == n { bits } else { 8 }, activations: 8 });
        let dir = tempfile::tempdir().unwrap();
        let (exported, agreement, _) = export_and_compare(&q, dir.path());
        println!("int{bits} classifier: ONNX Runtime runs {:?}; agreement {agreement}", exported.runtime_ops);
        let fc = exported.layers.last().unwrap();
        assert_eq!(fc.kernel, "com.microsoft::MatMulNBits", "{:?}", exported.runtime_ops);
        assert_eq!(fc.weight_storage, compress::export::matmul_nbits::storage(bits));
        assert!(fc.weight_storage.contains("int4, packed 2 per byte"), "{}", fc.weight_storage);
        assert_eq!(fc.activation_bits, compress::quant::qdq::FLOAT_BITS, "weight-only");
        assert_eq!(exported.opset, 21);
        assert_all_integer(&exported);
        assert!(agreement >= 0.98, "{agreement}");
    }
}

/// 4-bit activations are uint8 codes behind an integer Clip (the QCDQ pattern): the Clips stay,
/// every convolution still runs on the integer kernel, and ONNX Runtime agrees with tch.
#[test]
fn w4a4_resnet8_keeps_integer_clips_and_integer_kernels() {
    let _one = common::one_training_at_a_time();
    let q = quantized_zoo_student("resnet8", 0.5, &|k, n| {
        if k == 0 || k + 1 == n {
            LayerBits { weights: 8, activations: 8 }
        } else {
            LayerBits { weights: 4, activations: 4 }
        }
    });
    let clips = |weights: bool| q.student.graph.nodes.iter().filter(|n| n.op_type == "Clip" && n.input[0].contains("weight") == weights).count();
    assert_eq!(clips(true), 8, "one integer Clip per 4-bit weight (folded into the stored integers at export)");
    // The data inputs of the 8 inner convs: 6 distinct tensors (two are shared with a shortcut conv).
    assert_eq!(clips(false), 6, "one integer Clip per 4-bit activation tensor");
    let dir = tempfile::tempdir().unwrap();
    let (exported, agreement, _) = export_and_compare(&q, dir.path());
    println!("W4A4: ONNX Runtime runs {:?}; agreement {agreement}", exported.runtime_ops);
    assert_all_integer(&exported);
    assert!(exported.runtime_ops.get("Clip").copied().unwrap_or(0) >= clips(false), "{:?}", exported.runtime_ops);
    assert!(exported.layers[1..9].iter().all(|l| l.activation_bits == 4));
    assert!(agreement >= 0.98, "{agreement}");
}

/// A linear layer written as Gemm with transB = 0 ([K, N] weights, steps along axis 1) is
/// stored packed and runs as MatMulNBits too.
#[test]
fn low_bit_gemm_without_trans_b_runs_as_matmulnbits() {
    let _one = common::one_training_at_a_time();
    let q = quantized_zoo_student_with("resnet8", 0.5, &|k, n| LayerBits { weights: if k + 1 == n { 4 } else { 8 }, activations: 8 }, &|graph| {
        let gemm = graph.nodes.iter().position(|n| n.op_type == "Gemm").unwrap();
        graph.nodes[gemm].attribute.retain(|a| a.name != "transB");
        let w = graph.nodes[gemm].input[1].clone();
        for (_, t) in graph.initializers.iter_mut().filter(|(n, _)| *n == w) {
            *t = t.detach().tr().contiguous();
        }
    });
    let dir = tempfile::tempdir().unwrap();
    let (exported, agreement, _) = export_and_compare(&q, dir.path());
    println!("transB = 0 int4 head: {:?}; agreement {agreement}", exported.runtime_ops);
    assert_eq!(exported.layers.last().unwrap().kernel, "com.microsoft::MatMulNBits", "{:?}", exported.runtime_ops);
    assert!(agreement >= 0.98, "{agreement}");
}

#[test]
fn layout_rewrites_leave_graph_outputs_alone() {
    let _one = common::one_training_at_a_time();
    let mut q = quantized_zoo_student("mobilenetv2", 0.5, &|_, _| LayerBits { weights: 8, activations: 8 });
    // Declare as graph outputs the activation after the first 72-channel depthwise layer and the
    // flattened features: a user of the file would see them change shape or rounding.
    let g = &q.student.graph;
    let depthwise_out = g.nodes.iter().find(|n| n.name == "blocks.1.1.conv.3").unwrap().output[0].clone();
    let activation = g.nodes.iter().find(|n| n.input.first() == Some(&depthwise_out)).unwrap().output[0].clone();
    let flattened = g.nodes.iter().find(|n| n.op_type == "Flatten").unwrap().output[0].clone();
    for (name, rank) in [(activation, 4), (flattened, 2)] {
        let dims = (0..rank).map(|i| compress::graph::Dim::Symbolic(format!("d{i}"))).collect();
        q.student.graph.outputs.push(compress::graph::ValueDecl { name, elem_type: 1, dims });
    }
    let dir = tempfile::tempdir().unwrap();
    let (exported, agreement, _) = export_and_compare(&q, dir.path());
    assert!(agreement >= 0.98, "{agreement}");
    let padded: Vec<&str> = exported.padded_depthwise.iter().map(|p| p.node.as_str()).collect();
    assert_eq!(padded, ["blocks.2.0.conv.3"], "the other 72-channel layer is still padded");
    assert!(exported.integer_pools.is_empty(), "{:?}", exported.integer_pools);
    assert_eq!(exported.runtime_ops.get("GlobalAveragePool"), Some(&1), "{:?}", exported.runtime_ops);
}
