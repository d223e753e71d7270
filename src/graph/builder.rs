//! A small builder that writes graphs node by node, used by the student zoo. Parameter and node
//! names follow module paths (`layer2.1.conv1.weight`), because they become checkpoint keys and
//! ONNX initializer names.

use super::ir::{Dim, Graph, ValueDecl};
use crate::onnx::attr;
use onnx_protobuf::tensor_proto::DataType;
use onnx_protobuf::{AttributeProto, NodeProto};
use tch::{Device, Kind, Tensor};

/// A square convolution's shape: `groups` defaults to 1 (`.groups(c)` for depthwise), padding to
/// `k / 2` ("same" for odd kernels), and there is no bias unless `.bias()` asks for one.
#[derive(Clone, Copy, Debug)]
pub struct ConvSpec {
    pub cin: i64,
    pub cout: i64,
    pub k: i64,
    pub stride: i64,
    pub groups: i64,
    pub pad: i64,
    pub bias: bool,
}

impl ConvSpec {
    pub fn new(cin: i64, cout: i64, k: i64, stride: i64) -> ConvSpec {
        ConvSpec { cin, cout, k, stride, groups: 1, pad: k / 2, bias: false }
    }

    pub fn groups(self, groups: i64) -> ConvSpec {
        ConvSpec { groups, ..self }
    }

    pub fn pad(self, pad: i64) -> ConvSpec {
        ConvSpec { pad, ..self }
    }

    /// With a bias, zero-initialised (as torchvision and RepDistiller initialise conv biases).
    pub fn bias(self) -> ConvSpec {
        ConvSpec { bias: true, ..self }
    }
}

/// Names of the values that end each stage of a built-in architecture, kept in the graph's
/// metadata under this key (comma-separated) so students expose `stage1` … `stageN` taps.
pub const STAGES_KEY: &str = "compress.stages";

pub struct GraphBuilder {
    graph: Graph,
    device: Device,
}

impl GraphBuilder {
    /// A graph with one NCHW float input of `channels`×`size`×`size` and a symbolic batch.
    pub fn new(name: &str, opset: i64, channels: i64, size: i64, device: Device) -> Self {
        let input = ValueDecl {
            name: "input".into(),
            elem_type: DataType::FLOAT as i32,
            dims: vec![Dim::Symbolic("batch".into()), Dim::Fixed(channels), Dim::Fixed(size), Dim::Fixed(size)],
        };
        let graph = Graph {
            name: name.into(),
            opset,
            producer: format!("compress {}", env!("CARGO_PKG_VERSION")),
            inputs: vec![input],
            outputs: vec![],
            initializers: vec![],
            nodes: vec![],
            metadata: vec![],
        };
        GraphBuilder { graph, device }
    }

    pub fn input(&self) -> String {
        self.graph.inputs[0].name.clone()
    }

    pub fn param(&mut self, name: &str, t: Tensor) -> String {
        // Integer initializers (shapes, axes, Slice bounds) stay on the host, where kernels
        // read them; floats go to the model's device.
        let t = if crate::graph::ops::is_float(t.kind()) { t.to_device(self.device) } else { t };
        self.graph.initializers.push((name.to_string(), t));
        name.to_string()
    }

    /// Adds a node named `name` whose single output value is also called `name`.
    pub fn node(&mut self, op: &str, name: &str, inputs: &[&str], attrs: Vec<AttributeProto>) -> String {
        let mut n = NodeProto::new();
        n.op_type = op.into();
        n.name = name.into();
        n.input = inputs.iter().map(|s| s.to_string()).collect();
        n.output = vec![name.to_string()];
        n.attribute = attrs;
        self.graph.nodes.push(n);
        name.to_string()
    }

    /// Conv, Kaiming-normal (fan-out) initialised as torchvision does.
    pub fn conv(&mut self, name: &str, x: &str, spec: ConvSpec) -> String {
        let ConvSpec { cin, cout, k, stride, groups, pad, bias } = spec;
        // torch's fan_out for a conv weight [cout, cin/groups, k, k] is cout·k·k.
        let fan_out = cout * k * k;
        let std = (2.0 / fan_out as f64).sqrt();
        let w = Tensor::randn([cout, cin / groups, k, k], (Kind::Float, Device::Cpu)) * std;
        let w = self.param(&format!("{name}.weight"), w);
        let mut inputs = vec![x.to_string(), w];
        if bias {
            inputs.push(self.param(&format!("{name}.bias"), Tensor::zeros([cout], (Kind::Float, Device::Cpu))));
        }
        let attrs = vec![
            attr::ints("kernel_shape", &[k, k]),
            attr::ints("strides", &[stride, stride]),
            attr::ints("pads", &[pad, pad, pad, pad]),
            attr::int("group", groups),
        ];
        let inputs: Vec<&str> = inputs.iter().map(String::as_str).collect();
        self.node("Conv", name, &inputs, attrs)
    }

    /// AveragePool with PyTorch's default of counting padded zeros.
    pub fn avg_pool(&mut self, name: &str, x: &str, k: i64, stride: i64, pad: i64) -> String {
        let attrs = vec![
            attr::ints("kernel_shape", &[k, k]),
            attr::ints("strides", &[stride, stride]),
            attr::ints("pads", &[pad, pad, pad, pad]),
            attr::int("count_include_pad", 1),
        ];
        self.node("AveragePool", name, &[x], attrs)
    }

    pub fn max_pool(&mut self, name: &str, x: &str, k: i64, stride: i64, pad: i64) -> String {
        let attrs = vec![attr::ints("kernel_shape", &[k, k]), attr::ints("strides", &[stride, stride]), attr::ints("pads", &[pad, pad, pad, pad])];
        self.node("MaxPool", name, &[x], attrs)
    }

    /// BatchNorm with PyTorch's defaults (eps 1e-5, momentum 0.1).
    pub fn batch_norm(&mut self, name: &str, x: &str, c: i64) -> String {
        self.batch_norm_with(name, x, c, 1e-5, 0.1)
    }

    /// BatchNorm with PyTorch's `eps` and `momentum` (ONNX stores 1 − momentum).
    pub fn batch_norm_with(&mut self, name: &str, x: &str, c: i64, eps: f32, torch_momentum: f32) -> String {
        let opts = (Kind::Float, Device::Cpu);
        let w = self.param(&format!("{name}.weight"), Tensor::ones([c], opts));
        let b = self.param(&format!("{name}.bias"), Tensor::zeros([c], opts));
        let m = self.param(&format!("{name}.running_mean"), Tensor::zeros([c], opts));
        let v = self.param(&format!("{name}.running_var"), Tensor::ones([c], opts));
        self.node("BatchNormalization", name, &[x, &w, &b, &m, &v], vec![attr::float("epsilon", eps), attr::float("momentum", 1.0 - torch_momentum)])
    }

    pub fn relu(&mut self, name: &str, x: &str) -> String {
        self.node("Relu", name, &[x], vec![])
    }

    /// ReLU6 as Clip with constant bounds (inputs from opset 11).
    pub fn relu6(&mut self, name: &str, x: &str) -> String {
        let lo = "const.zero";
        let hi = "const.six";
        if self.graph.initializer(lo).is_none() {
            self.param(lo, Tensor::from(0f32));
            self.param(hi, Tensor::from(6f32));
        }
        self.node("Clip", name, &[x, lo, hi], vec![])
    }

    /// `x · relu6(x + 3) / 6` as HardSigmoid and Mul, which opset 13 has (HardSwish needs 14).
    pub fn hard_swish(&mut self, name: &str, x: &str) -> String {
        let gate = self.hard_sigmoid(&format!("{name}.gate"), x);
        self.mul(name, x, &gate)
    }

    /// `relu6(x + 3) / 6`, PyTorch's Hardsigmoid.
    pub fn hard_sigmoid(&mut self, name: &str, x: &str) -> String {
        self.node("HardSigmoid", name, &[x], vec![attr::float("alpha", 1.0 / 6.0), attr::float("beta", 0.5)])
    }

    pub fn add(&mut self, name: &str, a: &str, b: &str) -> String {
        self.node("Add", name, &[a, b], vec![])
    }

    pub fn mul(&mut self, name: &str, a: &str, b: &str) -> String {
        self.node("Mul", name, &[a, b], vec![])
    }

    pub fn concat(&mut self, name: &str, xs: &[&str]) -> String {
        self.node("Concat", name, xs, vec![attr::int("axis", 1)])
    }

    /// Channels `start..end` of an NCHW value (a Slice with constant int64 bounds).
    pub fn channels(&mut self, name: &str, x: &str, start: i64, end: i64) -> String {
        let starts = self.param(&format!("{name}.starts"), Tensor::from_slice(&[start]));
        let ends = self.param(&format!("{name}.ends"), Tensor::from_slice(&[end]));
        let axes = self.param(&format!("{name}.axes"), Tensor::from_slice(&[1i64]));
        self.node("Slice", name, &[x, &starts, &ends, &axes], vec![])
    }

    /// ShuffleNet's channel shuffle of a [N, C, H, W] value: view as [N, g, C/g, H·W], swap the
    /// group axes, view back. Batch stays symbolic through Reshape's 0.
    pub fn channel_shuffle(&mut self, name: &str, x: &str, groups: i64, shape: [i64; 3]) -> String {
        let [c, h, w] = shape;
        let split = self.param(&format!("{name}.split_shape"), Tensor::from_slice(&[0, groups, c / groups, h * w]));
        let merged = self.param(&format!("{name}.merged_shape"), Tensor::from_slice(&[0, c, h, w]));
        let y = self.node("Reshape", &format!("{name}.split"), &[x, &split], vec![]);
        let y = self.node("Transpose", &format!("{name}.swap"), &[&y], vec![attr::ints("perm", &[0, 2, 1, 3])]);
        self.node("Reshape", name, &[&y, &merged], vec![])
    }

    /// Records `value` as the end of the next stage (the student's `stageN` tap).
    pub fn end_stage(&mut self, value: &str) {
        match self.graph.metadata.iter_mut().find(|(k, _)| k == STAGES_KEY) {
            Some((_, v)) => {
                v.push(',');
                v.push_str(value);
            }
            None => self.graph.metadata.push((STAGES_KEY.to_string(), value.to_string())),
        }
    }

    pub fn global_avg_pool(&mut self, name: &str, x: &str) -> String {
        self.node("GlobalAveragePool", name, &[x], vec![])
    }

    /// Global average pool then flatten to [N, C].
    pub fn pool_flatten(&mut self, name: &str, x: &str) -> String {
        let p = self.node("GlobalAveragePool", &format!("{name}.gap"), &[x], vec![]);
        self.node("Flatten", name, &[&p], vec![attr::int("axis", 1)])
    }

    /// Linear layer as Gemm(transB=1), initialised like torch.nn.Linear.
    pub fn linear(&mut self, name: &str, x: &str, cin: i64, cout: i64) -> String {
        let bound = 1.0 / (cin as f64).sqrt();
        let opts = (Kind::Float, Device::Cpu);
        let w = self.param(&format!("{name}.weight"), Tensor::rand([cout, cin], opts) * (2.0 * bound) - bound);
        let b = self.param(&format!("{name}.bias"), Tensor::rand([cout], opts) * (2.0 * bound) - bound);
        self.node("Gemm", name, &[x, &w, &b], vec![attr::int("transB", 1)])
    }

    /// Declares `value` as the float output `name` of width `classes` and returns the graph.
    pub fn finish(mut self, value: &str, classes: i64) -> Graph {
        let out = self.node("Identity", "logits", &[value], vec![]);
        self.graph.outputs.push(ValueDecl { name: out, elem_type: DataType::FLOAT as i32, dims: vec![Dim::Symbolic("batch".into()), Dim::Fixed(classes)] });
        self.graph
    }
}
