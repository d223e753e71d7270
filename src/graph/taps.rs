//! Candidate feature taps of a graph, found from the shapes of one traced run: the end of each
//! spatial stage (the last 4-D map at each resolution), the last feature map before global
//! pooling, and the pooled vector the classifier reads. Any value can be tapped by name; these
//! are the ones feature distillation usually wants, listed so users need no graph viewer.

use super::ir::Graph;
use serde::Serialize;

#[derive(Clone, Debug, Serialize, PartialEq)]
pub struct Tap {
    pub name: String,
    pub shape: Vec<i64>,
    /// `stage`, `last_feature_map` or `pooled`.
    pub role: &'static str,
}

/// Ops whose output is still a convolutional feature map when their (first computed) input is
/// one: activations, normalization, pooling, elementwise arithmetic, concatenation, resizing.
const MAP_PRESERVING: &[&str] = &[
    "Relu",
    "LeakyRelu",
    "Clip",
    "Sigmoid",
    "HardSigmoid",
    "HardSwish",
    "Tanh",
    "Elu",
    "Selu",
    "PRelu",
    "BatchNormalization",
    "InstanceNormalization",
    "MaxPool",
    "AveragePool",
    "Add",
    "Sub",
    "Mul",
    "Div",
    "Concat",
    "Identity",
    "Dropout",
    "Pad",
    "Resize",
    "Upsample",
];

/// The values that are convolutional feature maps: Conv outputs and what map-preserving ops
/// make of them. A 4-D value reached through Transpose, Reshape or MatMul (attention scores,
/// patch sequences) is not one.
fn conv_feature_maps(graph: &Graph) -> std::collections::HashSet<String> {
    let mut maps = std::collections::HashSet::new();
    for n in &graph.nodes {
        let from_map = n.input.iter().any(|i| maps.contains(i));
        if n.op_type == "Conv" || (MAP_PRESERVING.contains(&n.op_type.as_str()) && from_map) {
            maps.extend(n.output.iter().cloned());
        }
    }
    maps
}

/// Ops that only pass a value on (looked through when walking back from the output).
const PASS_THROUGH: &[&str] = &["Identity", "Softmax", "LogSoftmax", "Flatten", "Reshape", "Squeeze", "Dropout"];

pub fn candidate_taps(graph: &Graph, shapes: &[(String, Vec<i64>)]) -> Vec<Tap> {
    let conv_maps = conv_feature_maps(graph);
    let maps: Vec<&(String, Vec<i64>)> = shapes.iter().filter(|(n, s)| s.len() == 4 && s[2] * s[3] > 1 && conv_maps.contains(n)).collect();
    let mut taps = Vec::new();
    // Stage ends: the last map at each resolution, in order of first appearance.
    let mut resolutions: Vec<(i64, i64)> = Vec::new();
    for (_, s) in &maps {
        if !resolutions.contains(&(s[2], s[3])) {
            resolutions.push((s[2], s[3]));
        }
    }
    for r in &resolutions {
        if let Some((name, shape)) = maps.iter().rev().find(|(_, s)| (s[2], s[3]) == *r) {
            taps.push(Tap { name: name.clone(), shape: shape.clone(), role: "stage" });
        }
    }
    if let Some((name, shape)) = maps.last() {
        taps.push(Tap { name: name.clone(), shape: shape.clone(), role: "last_feature_map" });
    }
    if let Some(name) = pooled_vector(graph) {
        if let Some((_, shape)) = shapes.iter().find(|(n, _)| *n == name) {
            taps.push(Tap { name, shape: shape.clone(), role: "pooled" });
        }
    }
    taps
}

/// The input of the classifier (the Gemm/MatMul that produces the first output), walking back
/// through ops that only reshape or normalize.
fn pooled_vector(graph: &Graph) -> Option<String> {
    let mut value = graph.outputs.first()?.name.clone();
    for _ in 0..8 {
        let node = graph.nodes.iter().find(|n| n.output.first() == Some(&value))?;
        match node.op_type.as_str() {
            "Gemm" | "MatMul" => return node.input.first().cloned(),
            "Add" => {
                // MatMul + Add (bias): follow the operand that is computed, not the constant.
                value = node.input.iter().find(|i| graph.initializer(i).is_none())?.clone();
            }
            op if PASS_THROUGH.contains(&op) => value = node.input.first()?.clone(),
            _ => return None,
        }
    }
    None
}

/// A student tap under the name feature-distillation recipes use: `stage1` … `stageN`, `pooled`
/// or `logits`, with the graph value it reads and its shape for one image.
#[derive(Clone, Debug, Serialize, PartialEq)]
pub struct NamedTap {
    pub alias: String,
    pub value: String,
    pub shape: Vec<i64>,
}

/// The named taps of a model: `stage1` … `stageN` and `last_stage` (= `stageN`), `pooled` and
/// `logits`. Stage ends come from the builder's record in the graph metadata
/// (`builder::STAGES_KEY`) and, for a graph that has none (an imported teacher or student), from
/// the resolution changes in `shapes`; `pooled` is the classifier's input and `logits` the first
/// output.
pub fn named_taps(graph: &Graph, shapes: &[(String, Vec<i64>)]) -> Vec<NamedTap> {
    let shape_of = |v: &str| shapes.iter().find(|(n, _)| n == v).map(|(_, s)| s.clone());
    let recorded = graph.metadata.iter().find(|(k, _)| k == super::builder::STAGES_KEY).map(|(_, v)| v.clone());
    let stages: Vec<String> = match recorded {
        Some(list) => list.split(',').map(str::to_string).collect(),
        None => candidate_taps(graph, shapes).into_iter().filter(|t| t.role == "stage").map(|t| t.name).collect(),
    };
    let mut taps: Vec<NamedTap> =
        stages.iter().enumerate().filter_map(|(i, v)| Some(NamedTap { alias: format!("stage{}", i + 1), value: v.clone(), shape: shape_of(v)? })).collect();
    if let Some(last) = taps.last() {
        taps.push(NamedTap { alias: "last_stage".into(), ..last.clone() });
    }
    if let Some(v) = pooled_vector(graph) {
        if let Some(shape) = shape_of(&v) {
            taps.push(NamedTap { alias: "pooled".into(), value: v, shape });
        }
    }
    if let Some(out) = graph.outputs.first() {
        if let Some(shape) = shape_of(&out.name) {
            taps.push(NamedTap { alias: "logits".into(), value: out.name.clone(), shape });
        }
    }
    taps
}

/// The classifier that produces the first output, as logits = x·Wᵀ + b with W [C, d] and b [C]:
/// a Gemm (alpha = beta = 1, no transA) or a MatMul followed by an Add, reached from the output
/// through ops that only reshape or normalize. None when the head is anything else.
pub fn linear_head(graph: &Graph) -> Option<(tch::Tensor, tch::Tensor)> {
    use crate::onnx::attr::Attrs;
    let mut value = graph.outputs.first()?.name.clone();
    let mut bias: Option<tch::Tensor> = None;
    for _ in 0..8 {
        let node = graph.nodes.iter().find(|n| n.output.first() == Some(&value))?;
        match node.op_type.as_str() {
            "Gemm" => {
                let a = Attrs::new(node);
                if a.float_or("alpha", 1.0).ok()? != 1.0 || a.float_or("beta", 1.0).ok()? != 1.0 || a.int_or("transA", 0).ok()? != 0 {
                    return None;
                }
                let w = graph.initializer(node.input.get(1)?)?.shallow_clone();
                let w = if a.int_or("transB", 0).ok()? == 1 { w } else { w.tr() };
                let b = match node.input.get(2).filter(|b| !b.is_empty()) {
                    Some(b) => graph.initializer(b)?.flatten(0, -1),
                    None => tch::Tensor::zeros([w.size()[0]], (w.kind(), w.device())),
                };
                return Some((w.detach().to_kind(tch::Kind::Float), b.detach().to_kind(tch::Kind::Float)));
            }
            "MatMul" => {
                let w = graph.initializer(node.input.get(1)?)?.tr();
                let b = bias.take().unwrap_or_else(|| tch::Tensor::zeros([w.size()[0]], (w.kind(), w.device())));
                return Some((w.detach().to_kind(tch::Kind::Float), b.detach().to_kind(tch::Kind::Float)));
            }
            "Add" if bias.is_none() => {
                let constant = node.input.iter().find_map(|i| graph.initializer(i))?;
                bias = Some(constant.flatten(0, -1));
                value = node.input.iter().find(|i| graph.initializer(i).is_none())?.clone();
            }
            op if PASS_THROUGH.contains(&op) => value = node.input.first()?.clone(),
            _ => return None,
        }
    }
    None
}
