//! A small builder that writes graphs node by node, used by the student zoo. Parameter and node
//! names follow module paths (`layer2.1.conv1.weight`), because they become checkpoint keys and
//! ONNX initializer names.

use super::ir::{Dim, Graph, ValueDecl};
use crate::onnx::attr;
use onnx_protobuf::tensor_proto::DataType;
use onnx_protobuf::{AttributeProto, NodeProto};
use tch::{Device, Kind, Tensor};

/// A square convolution's shape; `groups` defaults to 1 (`ConvSpec::new(..).groups(c)` for
/// depthwise).
#[derive(Clone, Copy, Debug)]
pub struct ConvSpec {
    pub cin: i64,
    pub cout: i64,
    pub k: i64,
    pub stride: i64,
    pub groups: i64,
}

impl ConvSpec {
    pub fn new(cin: i64, cout: i64, k: i64, stride: i64) -> ConvSpec {
        ConvSpec { cin, cout, k, stride, groups: 1 }
    }

    pub fn groups(self, groups: i64) -> ConvSpec {
        ConvSpec { groups, ..self }
    }
}

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
        self.graph.initializers.push((name.to_string(), t.to_device(self.device)));
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

    /// Conv without bias, Kaiming-normal (fan-out) initialised as torchvision does.
    pub fn conv(&mut self, name: &str, x: &str, spec: ConvSpec) -> String {
        let ConvSpec { cin, cout, k, stride, groups } = spec;
        // torch's fan_out for a conv weight [cout, cin/groups, k, k] is cout·k·k.
        let fan_out = cout * k * k;
        let std = (2.0 / fan_out as f64).sqrt();
        let w = Tensor::randn([cout, cin / groups, k, k], (Kind::Float, Device::Cpu)) * std;
        let w = self.param(&format!("{name}.weight"), w);
        let p = k / 2;
        let attrs = vec![
            attr::ints("kernel_shape", &[k, k]),
            attr::ints("strides", &[stride, stride]),
            attr::ints("pads", &[p, p, p, p]),
            attr::int("group", groups),
        ];
        self.node("Conv", name, &[x, &w], attrs)
    }

    /// Conv with a bias (zero-initialised, as torchvision does for its 1×1 heads).
    pub fn conv_bias(&mut self, name: &str, x: &str, spec: ConvSpec) -> String {
        let out = self.conv(name, x, spec);
        let b = self.param(&format!("{name}.bias"), Tensor::zeros([spec.cout], (Kind::Float, Device::Cpu)));
        self.graph.nodes.last_mut().expect("conv just added").input.push(b);
        out
    }

    pub fn max_pool(&mut self, name: &str, x: &str, k: i64, stride: i64, pad: i64) -> String {
        let attrs = vec![attr::ints("kernel_shape", &[k, k]), attr::ints("strides", &[stride, stride]), attr::ints("pads", &[pad, pad, pad, pad])];
        self.node("MaxPool", name, &[x], attrs)
    }

    pub fn batch_norm(&mut self, name: &str, x: &str, c: i64) -> String {
        let opts = (Kind::Float, Device::Cpu);
        let w = self.param(&format!("{name}.weight"), Tensor::ones([c], opts));
        let b = self.param(&format!("{name}.bias"), Tensor::zeros([c], opts));
        let m = self.param(&format!("{name}.running_mean"), Tensor::zeros([c], opts));
        let v = self.param(&format!("{name}.running_var"), Tensor::ones([c], opts));
        self.node("BatchNormalization", name, &[x, &w, &b, &m, &v], vec![attr::float("epsilon", 1e-5), attr::float("momentum", 0.9)])
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

    pub fn add(&mut self, name: &str, a: &str, b: &str) -> String {
        self.node("Add", name, &[a, b], vec![])
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
        self.graph.outputs.push(ValueDecl {
            name: out,
            elem_type: DataType::FLOAT as i32,
            dims: vec![Dim::Symbolic("batch".into()), Dim::Fixed(classes)],
        });
        self.graph
    }
}
