//! Graph passes that rewrite a graph in place.
//!
//! `relax_fixed_batch`: models exported with a batch of 1 declare `[1, …]` inputs and may bake
//! the batch into Reshape constants (`[1, -1]`). The pass makes the batch dimension symbolic and
//! rewrites a leading 1 of a constant Reshape target to 0 ("copy the input's dimension"). That
//! rewrite is only right when the Reshape's input carries the batch first; the caller checks
//! batched results against per-sample ones and falls back to per-sample execution otherwise.
//!
//! `channels_last_conv_weights`: convolution weights laid out NHWC in memory for the CPU.

use super::ir::{Dim, Graph};
use crate::onnx::tensor::to_tch;
use tch::{Kind, Tensor};

/// What the pass changed, for the plan and the report.
#[derive(Debug, Default, Clone, PartialEq)]
pub struct Relaxed {
    pub inputs: Vec<String>,
    pub reshapes: Vec<String>,
}

impl Relaxed {
    pub fn changed(&self) -> bool {
        !self.inputs.is_empty()
    }
}

pub fn relax_fixed_batch(graph: &mut Graph) -> anyhow::Result<Relaxed> {
    let mut relaxed = Relaxed::default();
    for d in graph.inputs.iter_mut() {
        if d.dims.first() == Some(&Dim::Fixed(1)) {
            d.dims[0] = Dim::Symbolic("batch".into());
            relaxed.inputs.push(d.name.clone());
        }
    }
    if !relaxed.changed() {
        return Ok(relaxed);
    }
    for d in graph.outputs.iter_mut() {
        if d.dims.first() == Some(&Dim::Fixed(1)) {
            d.dims[0] = Dim::Symbolic("batch".into());
        }
    }
    for i in 0..graph.nodes.len() {
        if graph.nodes[i].op_type != "Reshape" || graph.nodes[i].input.len() < 2 {
            continue;
        }
        let shape_name = graph.nodes[i].input[1].clone();
        let Some(target) = constant_ints(graph, &shape_name)? else { continue };
        if target.first() != Some(&1) || target.len() < 2 {
            continue;
        }
        let mut new_target = target.clone();
        new_target[0] = 0;
        let new_name = format!("{shape_name}__batch_relaxed");
        if graph.initializer(&new_name).is_none() {
            graph.initializers.push((new_name.clone(), Tensor::from_slice(&new_target)));
        }
        graph.nodes[i].input[1] = new_name;
        relaxed.reshapes.push(graph.nodes[i].name.clone());
    }
    Ok(relaxed)
}

/// The value of an int64 constant (initializer or Constant node output), if it is one.
fn constant_ints(graph: &Graph, name: &str) -> anyhow::Result<Option<Vec<i64>>> {
    if let Some(t) = graph.initializer(name) {
        if t.kind() == Kind::Int64 {
            return Ok(Some(crate::host::vec::<i64>(&t.flatten(0, -1))?));
        }
        return Ok(None);
    }
    let producer = graph.nodes.iter().find(|n| n.op_type == "Constant" && n.output.first().map(String::as_str) == Some(name));
    if let Some(node) = producer {
        if let Some(t) = crate::onnx::attr::Attrs::new(node).tensor("value")? {
            let t = to_tch(t)?;
            if t.kind() == Kind::Int64 {
                return Ok(Some(crate::host::vec::<i64>(&t.flatten(0, -1))?));
            }
        }
    }
    Ok(None)
}

/// Gives every 2-D convolution weight initializer channels-last strides: the same values, laid
/// out NHWC in memory. A convolution with such a weight runs in that format in oneDNN, and the
/// layers after it follow, which skips the layout reorders of every call on the CPU. What reads
/// raw bytes (export, checkpoints) makes tensors contiguous first.
pub fn channels_last_conv_weights(graph: &mut Graph) {
    let weights: std::collections::HashSet<String> = graph.nodes.iter().filter(|n| n.op_type == "Conv").filter_map(|n| n.input.get(1).cloned()).collect();
    for (name, t) in graph.initializers.iter_mut() {
        if t.dim() == 4 && super::ops::is_float(t.kind()) && weights.contains(name) {
            *t = t.detach().permute([0, 2, 3, 1]).contiguous().permute([0, 3, 1, 2]);
        }
    }
}
