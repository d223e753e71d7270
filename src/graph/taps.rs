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

/// Ops that only pass a value on (looked through when walking back from the output).
const PASS_THROUGH: &[&str] = &["Identity", "Softmax", "LogSoftmax", "Flatten", "Reshape", "Squeeze", "Dropout"];

pub fn candidate_taps(graph: &Graph, shapes: &[(String, Vec<i64>)]) -> Vec<Tap> {
    let maps: Vec<&(String, Vec<i64>)> = shapes.iter().filter(|(_, s)| s.len() == 4 && s[2] * s[3] > 1).collect();
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
