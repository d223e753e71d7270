//! Every op of the registry against ONNX Runtime on small generated graphs, including the
//! opset-dependent variants (attributes that became inputs, Softmax's old 2-D coercion, Clip's
//! bounds) and the attribute semantics that bite (asymmetric pads, auto_pad, ceil_mode,
//! count_include_pad, Reshape 0/-1, negative Slice steps, scalar Gather indices).

use compress::graph::{Dim, Executor, Graph, RunMode, ValueDecl};
use compress::onnx::attr::{float, int, ints};
use compress::runtime::OrtModel;
use onnx_protobuf::{AttributeProto, NodeProto};
use tch::{Device, Kind, Tensor};

const FLOAT: i32 = 1;

fn node(op: &str, inputs: &[&str], outputs: &[&str], attrs: Vec<AttributeProto>) -> NodeProto {
    let mut n = NodeProto::new();
    n.op_type = op.into();
    n.name = format!("{op}_{}", outputs.first().unwrap_or(&""));
    n.input = inputs.iter().map(|s| s.to_string()).collect();
    n.output = outputs.iter().map(|s| s.to_string()).collect();
    n.attribute = attrs;
    n
}

/// One test graph: input `x` of `shape`, constant initializers, nodes, float outputs.
struct Case {
    name: &'static str,
    opset: i64,
    shape: Vec<i64>,
    consts: Vec<(&'static str, Tensor)>,
    nodes: Vec<NodeProto>,
    outputs: Vec<&'static str>,
}

fn case(name: &'static str, opset: i64, shape: &[i64], nodes: Vec<NodeProto>) -> Case {
    Case { name, opset, shape: shape.to_vec(), consts: vec![], nodes, outputs: vec!["y"] }
}

impl Case {
    fn with(mut self, name: &'static str, t: Tensor) -> Case {
        self.consts.push((name, t));
        self
    }

    fn outputs(mut self, outs: &[&'static str]) -> Case {
        self.outputs = outs.to_vec();
        self
    }

    /// Builds the graph, runs our executor (on `COMPRESS_TEST_DEVICE`, the CPU by default;
    /// scripts/gpu-check sets `cuda`) and ONNX Runtime on the same input, compares.
    fn check(self, dir: &std::path::Path) {
        let device = match std::env::var("COMPRESS_TEST_DEVICE").as_deref() {
            Ok("cuda") => Device::Cuda(0),
            _ => Device::Cpu,
        };
        tch::manual_seed(7);
        let x = Tensor::randn(self.shape.as_slice(), (Kind::Float, Device::Cpu));
        let mut graph = Graph {
            name: self.name.into(),
            opset: self.opset,
            producer: "test".into(),
            inputs: vec![ValueDecl { name: "x".into(), elem_type: FLOAT, dims: self.shape.iter().map(|d| Dim::Fixed(*d)).collect() }],
            outputs: self.outputs.iter().map(|o| ValueDecl { name: o.to_string(), elem_type: FLOAT, dims: vec![] }).collect(),
            initializers: self.consts.iter().map(|(n, t)| (n.to_string(), t.shallow_clone())).collect(),
            nodes: self.nodes,
            metadata: vec![],
        };
        let names: Vec<String> = self.outputs.iter().map(|s| s.to_string()).collect();
        let mut on_device = graph.detached_copy();
        on_device.to_device(device);
        let exec = Executor::compile(&on_device, &names, device).unwrap_or_else(|e| panic!("{}: {e:#}", self.name));
        let ours = tch::no_grad(|| exec.run(&[&x.to_device(device)], RunMode::Eval)).unwrap_or_else(|e| panic!("{}: {e:#}", self.name));
        let ours: Vec<Tensor> = ours.iter().map(|t| t.to_device(Device::Cpu)).collect();
        // Declare the output ranks we computed, with symbolic sizes, so ORT checks its own.
        for (decl, t) in graph.outputs.iter_mut().zip(&ours) {
            decl.dims = (0..t.dim()).map(|i| Dim::Symbolic(format!("d{i}"))).collect();
        }
        let ir = if self.opset >= 21 {
            10
        } else if self.opset >= 19 {
            9
        } else {
            8
        };
        let path = dir.join(format!("{}.onnx", self.name));
        compress::onnx::model_file::write(&graph.to_model(ir).unwrap(), &path).unwrap();
        let mut ort = OrtModel::load(&path, 1).unwrap_or_else(|e| panic!("{}: ORT refused the graph: {e:#}", self.name));
        let theirs = ort.run(&x).unwrap_or_else(|e| panic!("{}: {e:#}", self.name));
        assert_eq!(ours.len(), theirs.len(), "{}", self.name);
        for (o, t) in ours.iter().zip(&theirs) {
            assert_eq!(o.size(), t.size(), "{}: shape", self.name);
            let rel = compress::metrics::max_rel_diff(&o.to_kind(Kind::Float), t);
            assert!(rel <= 1e-5, "{}: max_rel_diff {rel}", self.name);
        }
    }
}

fn f(v: &[f32]) -> Tensor {
    Tensor::from_slice(v)
}

fn i(v: &[i64]) -> Tensor {
    Tensor::from_slice(v)
}

fn rand(shape: &[i64]) -> Tensor {
    Tensor::randn(shape, (Kind::Float, Device::Cpu))
}

fn conv_cases() -> Vec<Case> {
    let w = || rand(&[4, 2, 3, 3]);
    let conv = |name, attrs: Vec<AttributeProto>| {
        case(name, 13, &[2, 2, 7, 6], vec![node("Conv", &["x", "w", "b"], &["y"], attrs)]).with("w", w()).with("b", rand(&[4]))
    };
    vec![
        conv("conv_sym_pads", vec![ints("pads", &[1, 1, 1, 1])]),
        conv("conv_asym_pads", vec![ints("pads", &[0, 1, 2, 0])]),
        conv("conv_same_upper_s2", vec![ints("strides", &[2, 2]), auto_pad("SAME_UPPER")]),
        conv("conv_same_lower_s2", vec![ints("strides", &[2, 2]), auto_pad("SAME_LOWER")]),
        conv("conv_valid_dil2", vec![ints("dilations", &[2, 2]), auto_pad("VALID")]),
        case("conv_grouped_nobias", 11, &[1, 4, 5, 5], vec![node("Conv", &["x", "w"], &["y"], vec![int("group", 2), ints("pads", &[1, 1, 1, 1])])])
            .with("w", rand(&[6, 2, 3, 3])),
        case("conv_depthwise", 13, &[1, 3, 8, 8], vec![node("Conv", &["x", "w"], &["y"], vec![int("group", 3), ints("strides", &[2, 2])])])
            .with("w", rand(&[3, 1, 3, 3])),
    ]
}

fn auto_pad(v: &str) -> AttributeProto {
    let mut a = AttributeProto::new();
    a.name = "auto_pad".into();
    a.type_ = onnx_protobuf::attribute_proto::AttributeType::STRING.into();
    a.s = v.as_bytes().to_vec();
    a
}

fn pool_cases() -> Vec<Case> {
    let pool = |name, op, opset, attrs: Vec<AttributeProto>| case(name, opset, &[2, 3, 7, 6], vec![node(op, &["x"], &["y"], attrs)]);
    vec![
        pool("maxpool_k3s2p1", "MaxPool", 13, vec![ints("kernel_shape", &[3, 3]), ints("strides", &[2, 2]), ints("pads", &[1, 1, 1, 1])]),
        pool("maxpool_ceil", "MaxPool", 13, vec![ints("kernel_shape", &[2, 2]), ints("strides", &[2, 2]), int("ceil_mode", 1)]),
        pool("maxpool_asym", "MaxPool", 13, vec![ints("kernel_shape", &[3, 3]), ints("pads", &[0, 1, 1, 0])]),
        pool("maxpool_same_upper", "MaxPool", 13, vec![ints("kernel_shape", &[3, 3]), ints("strides", &[2, 2]), auto_pad("SAME_UPPER")]),
        pool("maxpool_dilated", "MaxPool", 13, vec![ints("kernel_shape", &[2, 2]), ints("dilations", &[2, 2])]),
        pool("avgpool_exclude_pad", "AveragePool", 13, vec![ints("kernel_shape", &[3, 3]), ints("pads", &[1, 1, 1, 1])]),
        pool("avgpool_include_pad", "AveragePool", 13, vec![ints("kernel_shape", &[3, 3]), ints("pads", &[1, 1, 1, 1]), int("count_include_pad", 1)]),
        pool("avgpool_ceil", "AveragePool", 13, vec![ints("kernel_shape", &[2, 2]), ints("strides", &[2, 2]), int("ceil_mode", 1)]),
        pool("global_avg", "GlobalAveragePool", 13, vec![]),
        pool("global_max", "GlobalMaxPool", 13, vec![]),
    ]
}

fn norm_cases() -> Vec<Case> {
    let bn = |name, opset| {
        case(name, opset, &[2, 3, 4, 4], vec![node("BatchNormalization", &["x", "s", "b", "m", "v"], &["y"], vec![float("epsilon", 1e-3)])])
            .with("s", rand(&[3]))
            .with("b", rand(&[3]))
            .with("m", rand(&[3]))
            .with("v", rand(&[3]).abs() + 0.5)
    };
    vec![
        bn("batchnorm_9", 9),
        bn("batchnorm_15", 15),
        case("batchnorm_3d_tokens", 9, &[2, 3, 5], vec![node("BatchNormalization", &["x", "s", "b", "m", "v"], &["y"], vec![])])
            .with("s", rand(&[3]))
            .with("b", rand(&[3]))
            .with("m", rand(&[3]))
            .with("v", rand(&[3]).abs() + 0.5),
        case("layernorm_last", 17, &[2, 3, 8], vec![node("LayerNormalization", &["x", "s", "b"], &["y"], vec![float("epsilon", 1e-6)])])
            .with("s", rand(&[8]))
            .with("b", rand(&[8])),
        case("layernorm_axis1", 17, &[2, 3, 4], vec![node("LayerNormalization", &["x", "s"], &["y"], vec![int("axis", 1)])]).with("s", rand(&[3, 4])),
    ]
}

fn linear_cases() -> Vec<Case> {
    vec![
        case("gemm_transb", 13, &[3, 5], vec![node("Gemm", &["x", "w", "c"], &["y"], vec![int("transB", 1)])]).with("w", rand(&[4, 5])).with("c", rand(&[4])),
        case(
            "gemm_alpha_beta_transa",
            13,
            &[5, 3],
            vec![node("Gemm", &["x", "w", "c"], &["y"], vec![int("transA", 1), float("alpha", 0.5), float("beta", 2.0)])],
        )
        .with("w", rand(&[5, 4]))
        .with("c", rand(&[3, 4])),
        case("gemm_no_c", 13, &[3, 5], vec![node("Gemm", &["x", "w"], &["y"], vec![])]).with("w", rand(&[5, 2])),
        case("matmul_2d", 13, &[3, 5], vec![node("MatMul", &["x", "w"], &["y"], vec![])]).with("w", rand(&[5, 4])),
        case("matmul_batched", 13, &[2, 3, 5], vec![node("MatMul", &["x", "w"], &["y"], vec![])]).with("w", rand(&[5, 4])),
    ]
}

fn activation_cases() -> Vec<Case> {
    let un = |name, op, opset, attrs: Vec<AttributeProto>| case(name, opset, &[2, 3, 4], vec![node(op, &["x"], &["y"], attrs)]);
    vec![
        un("relu", "Relu", 13, vec![]),
        un("leaky_relu", "LeakyRelu", 13, vec![float("alpha", 0.2)]),
        un("sigmoid", "Sigmoid", 13, vec![]),
        un("hard_sigmoid_mobilenet", "HardSigmoid", 13, vec![float("alpha", 1.0 / 6.0), float("beta", 0.5)]),
        un("hard_sigmoid_default", "HardSigmoid", 13, vec![]),
        un("hard_swish", "HardSwish", 14, vec![]),
        un("tanh", "Tanh", 13, vec![]),
        un("erf", "Erf", 13, vec![]),
        un("gelu_exact", "Gelu", 20, vec![]),
        un("gelu_tanh", "Gelu", 20, vec![attr_str("approximate", "tanh")]),
        un("softmax_9_axis1_coerced", "Softmax", 9, vec![int("axis", 1)]),
        un("softmax_13_axis1", "Softmax", 13, vec![int("axis", 1)]),
        un("softmax_11_default", "Softmax", 11, vec![]),
        un("log_softmax_13", "LogSoftmax", 13, vec![]),
        un("clip_6_attrs", "Clip", 6, vec![float("min", -0.5), float("max", 0.7)]),
        case("clip_11_min_only", 11, &[2, 3, 4], vec![node("Clip", &["x", "lo", ""], &["y"], vec![])]).with("lo", f(&[-0.2]).reshape([])),
        case("clip_13_relu6", 13, &[2, 3, 4], vec![node("Clip", &["x", "lo", "hi"], &["y"], vec![])])
            .with("lo", f(&[0.0]).reshape([]))
            .with("hi", f(&[0.6]).reshape([])),
        // QDQ: uint8 without a zero point (opset 10), int8 per tensor and per axis, and the
        // integer-clip pattern that keeps a 4-bit grid inside int8 storage.
        case(
            "qdq_10_uint8_no_zero_point",
            10,
            &[2, 3, 4],
            vec![node("QuantizeLinear", &["x", "s"], &["q"], vec![]), node("DequantizeLinear", &["q", "s"], &["y"], vec![])],
        )
        .with("s", f(&[0.02]).reshape([])),
        case(
            "qdq_13_int8_per_tensor",
            13,
            &[2, 3, 4],
            vec![node("QuantizeLinear", &["x", "s", "z"], &["q"], vec![]), node("DequantizeLinear", &["q", "s", "z"], &["y"], vec![])],
        )
        .with("s", f(&[0.05]).reshape([]))
        .with("z", Tensor::from_slice(&[3i8]).reshape([])),
        case(
            "qdq_13_int8_per_axis",
            13,
            &[2, 3, 4],
            vec![
                node("QuantizeLinear", &["x", "s", "z"], &["q"], vec![int("axis", 1)]),
                node("DequantizeLinear", &["q", "s", "z"], &["y"], vec![int("axis", 1)]),
            ],
        )
        .with("s", f(&[0.01, 0.05, 0.2]))
        .with("z", Tensor::from_slice(&[0i8, 0, 0])),
        case(
            "qcdq_13_int4_grid_in_int8",
            13,
            &[2, 3, 4],
            vec![
                node("QuantizeLinear", &["x", "s", "z"], &["q"], vec![]),
                node("Clip", &["q", "lo", "hi"], &["c"], vec![]),
                node("DequantizeLinear", &["c", "s", "z"], &["y"], vec![]),
            ],
        )
        .with("s", f(&[0.2]).reshape([]))
        .with("z", Tensor::from_slice(&[0i8]).reshape([]))
        .with("lo", Tensor::from_slice(&[-8i8]).reshape([]))
        .with("hi", Tensor::from_slice(&[7i8]).reshape([])),
    ]
}

fn attr_str(name: &str, v: &str) -> AttributeProto {
    let mut a = auto_pad(v);
    a.name = name.into();
    a
}

fn arith_cases() -> Vec<Case> {
    let bin = |name, op| case(name, 13, &[2, 3, 4], vec![node(op, &["x", "c"], &["y"], vec![])]).with("c", rand(&[3, 1]));
    vec![
        bin("add_broadcast", "Add"),
        bin("sub_broadcast", "Sub"),
        bin("mul_broadcast", "Mul"),
        bin("div_broadcast", "Div"),
        case("pow_square", 13, &[2, 3], vec![node("Pow", &["x", "p"], &["y"], vec![])]).with("p", f(&[2.0]).reshape([])),
        case(
            "sqrt_exp_log",
            13,
            &[2, 3],
            vec![
                node("Abs", &["x"], &["a"], vec![]),
                node("Sqrt", &["a"], &["s"], vec![]),
                node("Exp", &["s"], &["e"], vec![]),
                node("Log", &["e"], &["y"], vec![]),
            ],
        ),
        case("neg_reciprocal", 13, &[2, 3], vec![node("Neg", &["x"], &["n"], vec![]), node("Reciprocal", &["n"], &["y"], vec![])]),
        case("mod_fmod", 13, &[2, 3], vec![node("Mod", &["x", "m"], &["y"], vec![int("fmod", 1)])]).with("m", f(&[0.7]).reshape([])),
        case(
            "where_equal_less_greater",
            13,
            &[2, 3],
            vec![
                node("Greater", &["x", "z"], &["g"], vec![]),
                node("Less", &["x", "z"], &["l"], vec![]),
                node("Equal", &["g", "l"], &["e"], vec![]),
                node("Where", &["g", "x", "z2"], &["w"], vec![]),
                node("Where", &["e", "z2", "w"], &["y"], vec![]),
            ],
        )
        .with("z", f(&[0.1]).reshape([]))
        .with("z2", f(&[0.0]).reshape([])),
    ]
}

fn shape_cases() -> Vec<Case> {
    vec![
        case("reshape_zero_minus_one", 13, &[2, 3, 4], vec![node("Reshape", &["x", "s"], &["y"], vec![])]).with("s", i(&[0, -1])),
        case("flatten_axis0", 13, &[2, 3, 4], vec![node("Flatten", &["x"], &["y"], vec![int("axis", 0)])]),
        case("flatten_axis2", 13, &[2, 3, 4], vec![node("Flatten", &["x"], &["y"], vec![int("axis", 2)])]),
        case("flatten_axis_neg", 13, &[2, 3, 4], vec![node("Flatten", &["x"], &["y"], vec![int("axis", -1)])]),
        case("transpose_default", 13, &[2, 3, 4], vec![node("Transpose", &["x"], &["y"], vec![])]),
        case("transpose_perm", 13, &[2, 3, 4, 5], vec![node("Transpose", &["x"], &["y"], vec![ints("perm", &[0, 2, 3, 1])])]),
        case("concat_neg_axis", 13, &[2, 3], vec![node("Concat", &["x", "c", "x"], &["y"], vec![int("axis", -1)])]).with("c", rand(&[2, 2])),
        case("split_11_attr", 11, &[2, 6], vec![node("Split", &["x"], &["a", "b"], vec![int("axis", 1), ints("split", &[2, 4])])]).outputs(&["a", "b"]),
        case("split_13_input", 13, &[2, 6], vec![node("Split", &["x", "s"], &["a", "b"], vec![int("axis", 1)])]).with("s", i(&[4, 2])).outputs(&["a", "b"]),
        case("split_18_num_outputs", 18, &[2, 7], vec![node("Split", &["x"], &["a", "b"], vec![int("axis", 1), int("num_outputs", 2)])]).outputs(&["a", "b"]),
        case("squeeze_11_attr", 11, &[2, 1, 3, 1], vec![node("Squeeze", &["x"], &["y"], vec![ints("axes", &[1, -1])])]),
        case("squeeze_13_input", 13, &[2, 1, 3, 1], vec![node("Squeeze", &["x", "a"], &["y"], vec![])]).with("a", i(&[1])),
        case("unsqueeze_11_attr", 11, &[2, 3], vec![node("Unsqueeze", &["x"], &["y"], vec![ints("axes", &[0, 3])])]),
        case("unsqueeze_13_input", 13, &[2, 3], vec![node("Unsqueeze", &["x", "a"], &["y"], vec![])]).with("a", i(&[-1, 1])),
        case(
            "slice_9_attrs",
            9,
            &[4, 6],
            vec![node("Slice", &["x"], &["y"], vec![ints("starts", &[1, -4]), ints("ends", &[i64::MAX, 5]), ints("axes", &[0, 1])])],
        ),
        case("slice_13_neg_step", 13, &[4, 6], vec![node("Slice", &["x", "st", "en", "ax", "sp"], &["y"], vec![])])
            .with("st", i(&[-1, 0]))
            .with("en", i(&[i64::MIN, 6]))
            .with("ax", i(&[1, 0]))
            .with("sp", i(&[-2, 3])),
        case("gather_scalar_index", 13, &[2, 5, 3], vec![node("Gather", &["x", "k"], &["y"], vec![int("axis", 1)])]).with("k", i(&[0]).reshape([])),
        case("gather_negative_indices", 13, &[4, 3], vec![node("Gather", &["x", "k"], &["y"], vec![])]).with("k", i(&[-1, 0, 2])),
        case(
            "shape_chain_reshape",
            13,
            &[2, 3, 4],
            vec![
                node("Shape", &["x"], &["s"], vec![]),
                node("Gather", &["s", "zero"], &["n"], vec![]),
                node("Unsqueeze", &["n", "ax0"], &["n1"], vec![]),
                node("Concat", &["n1", "m1"], &["target"], vec![int("axis", 0)]),
                node("Reshape", &["x", "target"], &["y"], vec![]),
            ],
        )
        .with("zero", i(&[0]).reshape([]))
        .with("ax0", i(&[0]))
        .with("m1", i(&[-1])),
        case(
            "shape_15_start_end",
            15,
            &[2, 3, 4],
            vec![
                node("Shape", &["x"], &["s"], vec![int("start", 1), int("end", -1)]),
                node("Concat", &["one", "s"], &["t"], vec![int("axis", 0)]),
                node("Expand", &["c", "t"], &["y"], vec![]),
            ],
        )
        .with("one", i(&[2]))
        .with("c", rand(&[1, 1])),
        case("expand_bidirectional", 13, &[3, 1], vec![node("Expand", &["x", "s"], &["y"], vec![])]).with("s", i(&[2, 1, 4])),
        case(
            "constant_of_shape_add",
            13,
            &[2, 3],
            vec![
                node(
                    "ConstantOfShape",
                    &["s"],
                    &["k"],
                    vec![compress::onnx::attr::tensor("value", compress::onnx::tensor::from_tch("", &f(&[0.25])).unwrap())],
                ),
                node("Add", &["x", "k"], &["y"], vec![]),
            ],
        )
        .with("s", i(&[2, 3])),
        case(
            "constant_range_cast",
            13,
            &[4],
            vec![
                node(
                    "Constant",
                    &[],
                    &["lim"],
                    vec![compress::onnx::attr::tensor("value", compress::onnx::tensor::from_tch("", &i(&[4]).reshape([])).unwrap())],
                ),
                node("Range", &["zero", "lim", "one"], &["r"], vec![]),
                node("Cast", &["r"], &["rf"], vec![int("to", 1)]),
                node("Mul", &["x", "rf"], &["y"], vec![]),
            ],
        )
        .with("zero", i(&[0]).reshape([]))
        .with("one", i(&[1]).reshape([])),
        case(
            "cast_truncates",
            13,
            &[2, 3],
            vec![
                node("Mul", &["x", "ten"], &["a"], vec![]),
                node("Cast", &["a"], &["n"], vec![int("to", 7)]),
                node("Cast", &["n"], &["y"], vec![int("to", 1)]),
            ],
        )
        .with("ten", f(&[10.0]).reshape([])),
        case("cast_like_15", 15, &[2, 3], vec![node("CastLike", &["x", "ints"], &["n"], vec![]), node("CastLike", &["n", "x"], &["y"], vec![])])
            .with("ints", i(&[1])),
        case("identity_dropout", 13, &[2, 3], vec![node("Identity", &["x"], &["a"], vec![]), node("Dropout", &["a"], &["y"], vec![])]),
    ]
}

fn reduce_cases() -> Vec<Case> {
    vec![
        case("reduce_mean_13_attr", 13, &[2, 3, 4, 5], vec![node("ReduceMean", &["x"], &["y"], vec![ints("axes", &[2, 3]), int("keepdims", 0)])]),
        case("reduce_mean_18_input", 18, &[2, 3, 4, 5], vec![node("ReduceMean", &["x", "a"], &["y"], vec![])]).with("a", i(&[-1])),
        case("reduce_mean_all", 13, &[2, 3], vec![node("ReduceMean", &["x"], &["y"], vec![])]),
        case("reduce_sum_13_input", 13, &[2, 3, 4], vec![node("ReduceSum", &["x", "a"], &["y"], vec![int("keepdims", 0)])]).with("a", i(&[1])),
        case(
            "reduce_max_min",
            13,
            &[2, 3, 4],
            vec![node("ReduceMax", &["x"], &["a"], vec![ints("axes", &[1])]), node("ReduceMin", &["a"], &["y"], vec![ints("axes", &[2])])],
        ),
    ]
}

fn spatial_cases() -> Vec<Case> {
    let scales = || f(&[1.0, 1.0, 2.0, 1.5]);
    vec![
        case("pad_2_constant", 2, &[1, 2, 3, 3], vec![node("Pad", &["x"], &["y"], vec![ints("pads", &[0, 0, 1, 2, 0, 0, 2, 1]), float("value", 0.5)])]),
        case("pad_13_reflect", 13, &[1, 2, 4, 4], vec![node("Pad", &["x", "p"], &["y"], vec![attr_str("mode", "reflect")])])
            .with("p", i(&[0, 0, 1, 2, 0, 0, 2, 1])),
        case("pad_13_edge", 13, &[1, 2, 4, 4], vec![node("Pad", &["x", "p"], &["y"], vec![attr_str("mode", "edge")])]).with("p", i(&[0, 0, 1, 0, 0, 0, 0, 3])),
        case("pad_18_axes_value", 18, &[1, 2, 4, 4], vec![node("Pad", &["x", "p", "v", "ax"], &["y"], vec![])])
            .with("p", i(&[1, 2, 0, 1]))
            .with("v", f(&[-1.0]).reshape([]))
            .with("ax", i(&[2, 3])),
        case(
            "resize_13_nearest_torch",
            13,
            &[1, 2, 4, 5],
            vec![node("Resize", &["x", "", "s"], &["y"], vec![attr_str("coordinate_transformation_mode", "asymmetric"), attr_str("nearest_mode", "floor")])],
        )
        .with("s", f(&[1.0, 1.0, 2.0, 2.0])),
        case("resize_13_linear_half_pixel", 13, &[1, 2, 4, 5], vec![node("Resize", &["x", "", "s"], &["y"], vec![attr_str("mode", "linear")])])
            .with("s", scales()),
        case(
            "resize_13_linear_sizes_align",
            13,
            &[1, 2, 4, 5],
            vec![node("Resize", &["x", "", "", "sz"], &["y"], vec![attr_str("mode", "linear"), attr_str("coordinate_transformation_mode", "align_corners")])],
        )
        .with("sz", i(&[1, 2, 7, 9])),
        case("upsample_9_nearest", 9, &[1, 2, 3, 3], vec![node("Upsample", &["x", "s"], &["y"], vec![])]).with("s", f(&[1.0, 1.0, 2.0, 2.0])),
    ]
}

/// Ops of older exporters and zoo models (Caffe2, CNTK, opset 7–9).
fn legacy_cases() -> Vec<Case> {
    let un = |name, op, opset, attrs: Vec<AttributeProto>| case(name, opset, &[2, 6, 4, 4], vec![node(op, &["x"], &["y"], attrs)]);
    vec![
        case("sum_three", 8, &[2, 3], vec![node("Sum", &["x", "a", "b"], &["y"], vec![])]).with("a", rand(&[2, 3])).with("b", rand(&[3])),
        case(
            "max_min_mean",
            8,
            &[2, 3],
            vec![node("Max", &["x", "a"], &["m"], vec![]), node("Min", &["m", "b"], &["n"], vec![]), node("Mean", &["n", "x", "a"], &["y"], vec![])],
        )
        .with("a", rand(&[2, 3]))
        .with("b", rand(&[3])),
        un("lrn_googlenet", "LRN", 7, vec![int("size", 5), float("alpha", 1e-4), float("beta", 0.75), float("bias", 1.0)]),
        un("lrn_size3", "LRN", 13, vec![int("size", 3), float("alpha", 0.5), float("beta", 0.6), float("bias", 2.0)]),
        case("prelu_per_channel", 9, &[2, 3, 4, 4], vec![node("PRelu", &["x", "s"], &["y"], vec![])]).with("s", rand(&[3, 1, 1])),
        un("elu", "Elu", 7, vec![float("alpha", 0.7)]),
        un("softplus", "Softplus", 7, vec![]),
        case("reshape_4_attr", 4, &[2, 3, 4], vec![node("Reshape", &["x"], &["y"], vec![ints("shape", &[0, -1])])]),
        case("batchnorm_7_spatial", 7, &[2, 3, 4, 4], vec![node("BatchNormalization", &["x", "s", "b", "m", "v"], &["y"], vec![int("spatial", 1)])])
            .with("s", rand(&[3]))
            .with("b", rand(&[3]))
            .with("m", rand(&[3]))
            .with("v", rand(&[3]).abs() + 0.5),
    ]
}

/// `op` on x, and a Cast of its (integer or boolean) output to float.
fn to_float(from: &str) -> NodeProto {
    node("Cast", &[from], &["y"], vec![int("to", 1)])
}

fn math_cases() -> Vec<Case> {
    let un = |name, op, opset, attrs: Vec<AttributeProto>| case(name, opset, &[2, 3, 4], vec![node(op, &["x"], &["y"], attrs)]);
    vec![
        un("sign", "Sign", 13, vec![]),
        case("round_half_even", 11, &[2, 3, 4], vec![node("Mul", &["x", "k"], &["m"], vec![]), node("Round", &["m"], &["y"], vec![])]).with("k", f(&[2.5])),
        un("floor", "Floor", 13, vec![]),
        un("ceil", "Ceil", 13, vec![]),
        un("sin", "Sin", 7, vec![]),
        un("cos", "Cos", 7, vec![]),
        case("isnan_of_log", 13, &[2, 3, 4], vec![node("Log", &["x"], &["l"], vec![]), node("IsNaN", &["l"], &["n"], vec![]), to_float("n")]),
        case(
            "isinf_positive_only",
            10,
            &[2, 3, 4],
            vec![node("Div", &["x", "z"], &["d"], vec![]), node("IsInf", &["d"], &["n"], vec![int("detect_negative", 0)]), to_float("n")],
        )
        .with("z", f(&[0.0])),
        case(
            "logic_and_or_xor_not",
            13,
            &[2, 3, 4],
            vec![
                node("Greater", &["x", "zero"], &["a"], vec![]),
                node("LessOrEqual", &["x", "half"], &["b"], vec![]),
                node("GreaterOrEqual", &["x", "minus"], &["b2"], vec![]),
                node("And", &["a", "b"], &["c"], vec![]),
                node("Or", &["a", "b2"], &["d"], vec![]),
                node("Xor", &["c", "d"], &["e"], vec![]),
                node("Not", &["e"], &["g"], vec![]),
                to_float("g"),
            ],
        )
        .with("zero", f(&[0.0]))
        .with("half", f(&[0.5]))
        .with("minus", f(&[-0.5])),
        un("selu", "Selu", 6, vec![float("alpha", 1.5), float("gamma", 1.1)]),
        un("celu", "Celu", 12, vec![float("alpha", 0.7)]),
        un("softsign", "Softsign", 1, vec![]),
        un("thresholded_relu", "ThresholdedRelu", 10, vec![float("alpha", 0.3)]),
        un("mish", "Mish", 18, vec![]),
        un("swish", "Swish", 24, vec![float("alpha", 1.5)]),
        un("hardmax_13", "Hardmax", 13, vec![int("axis", 1)]),
        un("hardmax_11_flattens", "Hardmax", 11, vec![int("axis", 1)]),
        case("einsum_batched_matmul", 12, &[2, 3, 4], vec![node("Einsum", &["x", "c"], &["y"], vec![string("equation", "bij, bjk -> bik")])])
            .with("c", rand(&[2, 4, 5])),
    ]
}

fn string(name: &str, v: &str) -> AttributeProto {
    let mut a = AttributeProto::new();
    a.name = name.into();
    a.type_ = onnx_protobuf::attribute_proto::AttributeType::STRING.into();
    a.s = v.as_bytes().to_vec();
    a
}

fn more_reduce_cases() -> Vec<Case> {
    let red = |name, op| case(name, 18, &[2, 3, 4], vec![node(op, &["x", "a"], &["y"], vec![])]).with("a", i(&[0, -1]));
    vec![
        red("reduce_prod", "ReduceProd"),
        red("reduce_l1", "ReduceL1"),
        red("reduce_l2", "ReduceL2"),
        red("reduce_sum_square", "ReduceSumSquare"),
        red("reduce_log_sum_exp", "ReduceLogSumExp"),
        case(
            "reduce_log_sum_13",
            13,
            &[2, 3, 4],
            vec![node("Abs", &["x"], &["p"], vec![]), node("ReduceLogSum", &["p"], &["y"], vec![ints("axes", &[1]), int("keepdims", 0)])],
        ),
        case(
            "argmax_last_index",
            13,
            &[2, 3, 4],
            vec![node("Round", &["x"], &["r"], vec![]), node("ArgMax", &["r"], &["n"], vec![int("axis", 1), int("select_last_index", 1)]), to_float("n")],
        ),
        case("argmin_no_keepdims", 13, &[2, 3, 4], vec![node("ArgMin", &["x"], &["n"], vec![int("axis", -1), int("keepdims", 0)]), to_float("n")]),
        case(
            "topk_smallest",
            11,
            &[2, 3, 5],
            vec![
                node("Round", &["x"], &["r"], vec![]),
                node("TopK", &["r", "k"], &["v", "n"], vec![int("axis", 2), int("largest", 0)]),
                node("Cast", &["n"], &["ni"], vec![int("to", 1)]),
            ],
        )
        .with("k", i(&[3]))
        .outputs(&["v", "ni"]),
        case("cumsum_exclusive_reverse", 14, &[2, 3, 4], vec![node("CumSum", &["x", "a"], &["y"], vec![int("exclusive", 1), int("reverse", 1)])])
            .with("a", i(&[1])),
    ]
}

fn more_layout_cases() -> Vec<Case> {
    vec![
        case("tile", 13, &[2, 3], vec![node("Tile", &["x", "r"], &["y"], vec![])]).with("r", i(&[2, 3])),
        case("depth_to_space_dcr", 13, &[1, 8, 2, 3], vec![node("DepthToSpace", &["x"], &["y"], vec![int("blocksize", 2)])]),
        case("depth_to_space_crd", 13, &[1, 8, 2, 3], vec![node("DepthToSpace", &["x"], &["y"], vec![int("blocksize", 2), string("mode", "CRD")])]),
        case("space_to_depth", 13, &[1, 2, 4, 6], vec![node("SpaceToDepth", &["x"], &["y"], vec![int("blocksize", 2)])]),
        case("trilu_lower_k", 14, &[2, 4, 5], vec![node("Trilu", &["x", "k"], &["y"], vec![int("upper", 0)])]).with("k", i(&[1]).reshape([])),
        case("size", 13, &[2, 3, 4], vec![node("Size", &["x"], &["n"], vec![]), to_float("n")]),
        case("gather_elements_negative", 13, &[3, 4], vec![node("GatherElements", &["x", "idx"], &["y"], vec![int("axis", 1)])])
            .with("idx", i(&[0, -1, 2, 1, -4, 3]).reshape([3, 2])),
        case("instance_norm", 6, &[2, 3, 4, 5], vec![node("InstanceNormalization", &["x", "s", "b"], &["y"], vec![float("epsilon", 1e-3)])])
            .with("s", rand(&[3]))
            .with("b", rand(&[3])),
        case("group_norm_18_per_group", 18, &[2, 4, 3, 3], vec![node("GroupNormalization", &["x", "s", "b"], &["y"], vec![int("num_groups", 2)])])
            .with("s", rand(&[2]))
            .with("b", rand(&[2])),
        case("group_norm_21_per_channel", 21, &[2, 4, 3, 3], vec![node("GroupNormalization", &["x", "s", "b"], &["y"], vec![int("num_groups", 2)])])
            .with("s", rand(&[4]))
            .with("b", rand(&[4])),
        case("lp_norm_l1", 1, &[2, 3, 4], vec![node("LpNormalization", &["x"], &["y"], vec![int("axis", 1), int("p", 1)])]),
    ]
}

#[test]
fn every_case_matches_onnx_runtime() {
    let dir = tempfile::tempdir().unwrap();
    let cases: Vec<Case> = [
        conv_cases(),
        pool_cases(),
        norm_cases(),
        linear_cases(),
        activation_cases(),
        arith_cases(),
        shape_cases(),
        reduce_cases(),
        spatial_cases(),
        legacy_cases(),
        math_cases(),
        more_reduce_cases(),
        more_layout_cases(),
    ]
    .into_iter()
    .flatten()
    .collect();
    let mut covered = std::collections::BTreeSet::new();
    for c in cases {
        for n in &c.nodes {
            covered.insert(n.op_type.clone());
        }
        c.check(dir.path());
    }
    let missing: Vec<&str> = compress::graph::ops::registry().op_types().filter(|op| !covered.contains(*op)).collect();
    assert!(missing.is_empty(), "ops without a test against ONNX Runtime: {missing:?}");
}

/// Opset-6 broadcasting (`broadcast`, `axis`), which ONNX Runtime no longer implements: checked
/// against torch's broadcasting of the operand reshaped by hand.
#[test]
fn legacy_broadcast_aligns_the_operand_at_axis() {
    tch::manual_seed(3);
    let x = rand(&[2, 3, 4, 5]);
    for (attrs, c, aligned) in [
        (vec![int("broadcast", 1), int("axis", 1)], rand(&[3]), [1i64, 3, 1, 1].to_vec()),
        (vec![int("broadcast", 1)], rand(&[4, 5]), [1i64, 1, 4, 5].to_vec()),
    ] {
        let graph = Graph {
            name: "legacy".into(),
            opset: 6,
            producer: "test".into(),
            inputs: vec![ValueDecl { name: "x".into(), elem_type: FLOAT, dims: vec![] }],
            outputs: vec![ValueDecl { name: "y".into(), elem_type: FLOAT, dims: vec![] }],
            initializers: vec![("c".into(), c.shallow_clone())],
            nodes: vec![node("Add", &["x", "c"], &["s"], attrs.clone()), node("Mul", &["s", "c"], &["y"], attrs)],
            metadata: vec![],
        };
        let exec = Executor::compile(&graph, &["y".to_string()], Device::Cpu).unwrap();
        let ours = exec.run(&[&x], RunMode::Eval).unwrap().remove(0);
        let c = c.reshape(aligned.as_slice());
        let expected = (&x + &c) * &c;
        assert!(compress::metrics::max_rel_diff(&ours, &expected) <= 1e-6);
    }
}
