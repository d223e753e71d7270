//! The graph: declared inputs and outputs, named initializers held as tch tensors, and the
//! nodes in topological order. Conversion from and to `ModelProto` lives here.

use super::ops::is_float;
use crate::bad_input;
use crate::onnx::tensor;
use onnx_protobuf::type_proto::Value as TypeValue;
use onnx_protobuf::{tensor_shape_proto, ModelProto, NodeProto, OperatorSetIdProto, StringStringEntryProto, TensorShapeProto, TypeProto, ValueInfoProto};
use std::collections::{HashMap, HashSet};
use tch::{Device, Tensor};

/// The inputs of each normalization op that are its parameters (scale, bias, running mean and
/// variance): a bf16 or fp16 graph keeps them in float32 ([`Graph::cast_floats`]).
pub const NORM_PARAMS: &[(&str, std::ops::Range<usize>)] =
    &[("BatchNormalization", 1..5), ("InstanceNormalization", 1..3), ("GroupNormalization", 1..3), ("LayerNormalization", 1..3)];

/// One dimension of a declared input or output shape.
#[derive(Clone, Debug, PartialEq)]
pub enum Dim {
    Fixed(i64),
    Symbolic(String),
}

/// A declared graph input or output: name, ONNX element type and shape.
#[derive(Clone, Debug, PartialEq)]
pub struct ValueDecl {
    pub name: String,
    pub elem_type: i32,
    pub dims: Vec<Dim>,
}

/// A computation graph whose initializers are tch tensors (trainable for students).
#[derive(Debug)]
pub struct Graph {
    pub name: String,
    pub opset: i64,
    pub producer: String,
    pub inputs: Vec<ValueDecl>,
    pub outputs: Vec<ValueDecl>,
    /// Initializers in file order; a student's float ones are its parameters.
    pub initializers: Vec<(String, Tensor)>,
    pub nodes: Vec<NodeProto>,
    pub metadata: Vec<(String, String)>,
}

impl Graph {
    /// Builds the graph from a parsed model whose external data is already inlined.
    pub fn from_model(model: &ModelProto, origin: &str) -> anyhow::Result<Graph> {
        let g = model.graph.as_ref().ok_or_else(|| bad_input!("{origin}: the model has no graph"))?;
        let opset = model
            .opset_import
            .iter()
            .find(|o| o.domain.is_empty() || o.domain == "ai.onnx")
            .map(|o| o.version)
            .ok_or_else(|| bad_input!("{origin}: the model imports no default-domain opset"))?;
        // Collect every problem (unsupported tensor types, unsupported nodes) before failing,
        // so the user sees them all at once.
        let mut problems = Vec::new();
        let mut initializers = Vec::with_capacity(g.initializer.len());
        // An initializer of a carried type (uint16, int4, float8…) becomes a Constant node that
        // keeps its ONNX type, which the executor's type pass reads and the export writes back.
        let mut carried_constants = Vec::new();
        for init in &g.initializer {
            if tensor::is_carried(init.data_type) {
                match tensor::to_tch(init) {
                    Ok(_) => carried_constants.push(constant_node(init)),
                    Err(e) => problems.push(format!("{e:#}")),
                }
                continue;
            }
            match tensor::to_tch(init) {
                Ok(t) => initializers.push((init.name.clone(), t)),
                Err(e) => problems.push(format!("{e:#}")),
            }
        }
        if !problems.is_empty() {
            // Unsupported nodes alone are reported by the executor; here they join the list.
            problems.extend(super::ops::unsupported_nodes(&g.node));
            return Err(bad_input!("{origin}: cannot run this graph: {}", problems.join("; ")));
        }
        let init_names: HashSet<&str> = g.initializer.iter().map(|i| i.name.as_str()).collect();
        // Old exporters list initializers among the inputs too; those are constants, not inputs.
        let inputs: Vec<ValueDecl> = g.input.iter().filter(|i| !init_names.contains(i.name.as_str())).map(decl_of).collect();
        let outputs: Vec<ValueDecl> = g.output.iter().map(decl_of).collect();
        // A value of a type we cannot hold (strings, complex numbers) is refused by name here,
        // never converted into something else.
        let untyped: Vec<String> = [("input", &inputs), ("output", &outputs)]
            .iter()
            .flat_map(|(what, decls)| {
                decls
                    .iter()
                    .filter(|d| d.elem_type != 0 && tensor::storage_kind(d.elem_type).is_none())
                    .map(move |d| format!("{what} `{}` is of element type {}, which this tool does not compute with", d.name, tensor::type_name(d.elem_type)))
            })
            .collect();
        if !untyped.is_empty() {
            return Err(bad_input!("{origin}: cannot run this graph: {}", untyped.join("; ")));
        }
        Ok(Graph {
            name: g.name.clone(),
            opset,
            producer: format!("{} {}", model.producer_name, model.producer_version).trim().to_string(),
            inputs,
            outputs,
            initializers,
            nodes: carried_constants.into_iter().chain(g.node.iter().cloned()).collect(),
            metadata: model.metadata_props.iter().map(|p| (p.key.clone(), p.value.clone())).collect(),
        })
    }

    /// Writes the graph back as a model with the current initializer values.
    pub fn to_model(&self, ir_version: i64) -> anyhow::Result<ModelProto> {
        let mut model = ModelProto::new();
        model.ir_version = ir_version;
        model.producer_name = "compress".into();
        model.producer_version = env!("CARGO_PKG_VERSION").into();
        let mut opset = OperatorSetIdProto::new();
        opset.version = self.opset;
        model.opset_import.push(opset);
        for (k, v) in &self.metadata {
            let mut p = StringStringEntryProto::new();
            p.key = k.clone();
            p.value = v.clone();
            model.metadata_props.push(p);
        }
        let g = model.graph.mut_or_insert_default();
        g.name = self.name.clone();
        g.node = self.nodes.clone();
        g.input = self.inputs.iter().map(value_info).collect();
        g.output = self.outputs.iter().map(value_info).collect();
        for (name, t) in &self.initializers {
            g.initializer.push(tensor::from_tch(name, t)?);
        }
        Ok(model)
    }

    /// An independent copy with detached tensors (for export passes that must not touch the
    /// trained graph).
    pub fn detached_copy(&self) -> Graph {
        Graph {
            name: self.name.clone(),
            opset: self.opset,
            producer: self.producer.clone(),
            inputs: self.inputs.clone(),
            outputs: self.outputs.clone(),
            initializers: self.initializers.iter().map(|(n, t)| (n.clone(), t.detach().copy())).collect(),
            nodes: self.nodes.clone(),
            metadata: self.metadata.clone(),
        }
    }

    /// The IR version that goes with an opset (ONNX's versioning table; ORT 1.31 reads them).
    pub fn ir_version_for(opset: i64) -> i64 {
        match opset {
            ..=14 => 7,
            15..=18 => 8,
            19..=20 => 9,
            21..=22 => 10,
            23 => 11,
            _ => 12,
        }
    }

    pub fn initializer(&self, name: &str) -> Option<&Tensor> {
        self.initializers.iter().find(|(n, _)| n == name).map(|(_, t)| t)
    }

    /// Replaces the initializer `name` (or adds it).
    pub fn set_initializer(&mut self, name: &str, t: Tensor) {
        match self.initializers.iter_mut().find(|(n, _)| n == name) {
            Some((_, old)) => *old = t,
            None => self.initializers.push((name.to_string(), t)),
        }
    }

    /// The index of the node that computes `value`, if a node does.
    pub fn producer(&self, value: &str) -> Option<usize> {
        self.nodes.iter().position(|n| n.output.iter().any(|o| o == value))
    }

    /// The indices of the nodes that read `value`, once each.
    pub fn readers(&self, value: &str) -> Vec<usize> {
        self.nodes.iter().enumerate().filter(|(_, n)| n.input.iter().any(|i| i == value)).map(|(i, _)| i).collect()
    }

    /// Whether `value` is a declared graph output.
    pub fn is_output(&self, value: &str) -> bool {
        self.outputs.iter().any(|o| o.name == value)
    }

    /// Casts the float initializers to `kind` (a frozen model run in bf16 or fp16, or one stored
    /// in another float type run in float32), except the parameters of normalization layers
    /// ([`NORM_PARAMS`]): those become or stay float32 and their
    /// node computes in float32 on the narrow input, as mixed precision keeps batch norm (cuDNN
    /// and libtorch take a bf16 or fp16 input with float32 parameters in one kernel; the
    /// LayerNormalization and GroupNormalization kernels widen the input themselves). Statistics
    /// and scales rounded to bf16 shift every value of a channel the same way, an error no later
    /// layer averages out. A node's parameters stay float32 together or not at all: when one of
    /// them is also read by another op, or is not an initializer, all of them are cast.
    pub fn cast_floats(&mut self, kind: tch::Kind) {
        let params = |n: &NodeProto| NORM_PARAMS.iter().find(|(op, _)| *op == n.op_type).map_or(0..0, |(_, r)| r.clone());
        let initializers: HashSet<&str> = self.initializers.iter().map(|(n, _)| n.as_str()).collect();
        let mut norm_only: HashMap<&str, bool> = HashMap::new();
        for n in &self.nodes {
            let params = params(n);
            for (i, name) in n.input.iter().enumerate() {
                *norm_only.entry(name.as_str()).or_insert(initializers.contains(name.as_str())) &= params.contains(&i);
            }
        }
        let mut keep: HashSet<&str> = norm_only.into_iter().filter(|(_, only)| *only).map(|(n, _)| n).collect();
        loop {
            let before = keep.len();
            for n in &self.nodes {
                let names: Vec<&str> =
                    n.input.iter().enumerate().filter(|(i, name)| params(n).contains(i) && !name.is_empty()).map(|(_, name)| name.as_str()).collect();
                if names.iter().any(|name| !keep.contains(name)) {
                    for name in &names {
                        keep.remove(name);
                    }
                }
            }
            if keep.len() == before {
                break;
            }
        }
        let keep: HashSet<String> = keep.into_iter().map(str::to_string).collect();
        for (name, t) in self.initializers.iter_mut() {
            // Kept parameters become float32 whatever the file stored (fp16, double).
            let to = if keep.contains(name) { tch::Kind::Float } else { kind };
            if is_float(t.kind()) && t.kind() != to {
                *t = t.to_kind(to);
            }
        }
    }

    /// Moves floating-point initializers to `device`; integer ones (shapes, indices) stay on the
    /// host so shape arithmetic never waits on the device.
    pub fn to_device(&mut self, device: Device) {
        for (_, t) in self.initializers.iter_mut() {
            if is_float(t.kind()) && t.device() != device {
                *t = t.to_device(device);
            }
        }
    }

    /// Float initializers that are state or constants rather than parameters: the running
    /// statistics of BatchNormalization and the bounds of Clip.
    pub fn non_parameter_initializers(&self) -> HashSet<String> {
        const STATE_INPUTS: &[(&str, usize)] = &[("BatchNormalization", 3), ("BatchNormalization", 4), ("Clip", 1), ("Clip", 2)];
        self.nodes.iter().flat_map(|n| STATE_INPUTS.iter().filter(|(op, _)| *op == n.op_type).filter_map(|(_, i)| n.input.get(*i).cloned())).collect()
    }

    /// Number of parameter elements (float initializers that are not state), the count
    /// PyTorch's `sum(p.numel() for p in model.parameters())` gives.
    pub fn parameter_count(&self) -> i64 {
        let state = self.non_parameter_initializers();
        self.initializers.iter().filter(|(name, t)| is_float(t.kind()) && !state.contains(name)).map(|(_, t)| t.numel() as i64).sum()
    }
}

/// A Constant node that produces initializer `init`, its value kept as it is in the file.
fn constant_node(init: &onnx_protobuf::TensorProto) -> NodeProto {
    let mut n = NodeProto::new();
    n.op_type = "Constant".into();
    n.name = format!("initializer {}", init.name);
    n.output.push(init.name.clone());
    n.attribute.push(crate::onnx::attr::tensor("value", init.clone()));
    n
}

fn decl_of(v: &ValueInfoProto) -> ValueDecl {
    let mut elem_type = 0;
    let mut dims = Vec::new();
    if let Some(TypeValue::TensorType(tt)) = v.type_.as_ref().and_then(|t| t.value.as_ref()) {
        elem_type = tt.elem_type;
        if let Some(shape) = tt.shape.as_ref() {
            for d in &shape.dim {
                dims.push(match &d.value {
                    Some(tensor_shape_proto::dimension::Value::DimValue(v)) => Dim::Fixed(*v),
                    Some(tensor_shape_proto::dimension::Value::DimParam(p)) => Dim::Symbolic(p.clone()),
                    _ => Dim::Symbolic(String::new()),
                });
            }
        }
    }
    ValueDecl { name: v.name.clone(), elem_type, dims }
}

fn value_info(d: &ValueDecl) -> ValueInfoProto {
    let mut shape = TensorShapeProto::new();
    for dim in &d.dims {
        let mut sd = tensor_shape_proto::Dimension::new();
        sd.value = Some(match dim {
            Dim::Fixed(v) => tensor_shape_proto::dimension::Value::DimValue(*v),
            Dim::Symbolic(p) => tensor_shape_proto::dimension::Value::DimParam(p.clone()),
        });
        shape.dim.push(sd);
    }
    let mut tt = onnx_protobuf::type_proto::Tensor::new();
    tt.elem_type = d.elem_type;
    tt.shape = protobuf::MessageField::some(shape);
    let mut ty = TypeProto::new();
    ty.value = Some(TypeValue::TensorType(tt));
    let mut v = ValueInfoProto::new();
    v.name = d.name.clone();
    v.type_ = protobuf::MessageField::some(ty);
    v
}
