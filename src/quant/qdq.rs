//! The quantization-aware student: QuantizeLinear → (integer Clip below 8 bits) →
//! DequantizeLinear pairs inserted on the weights (per output channel, narrow symmetric grid)
//! and on the data inputs (per tensor) of every Conv and Gemm, with learned scales as float
//! initializers. The executor runs such a pair as LSQ-style fake quantization in training, so
//! the graph trains as a QAT model and is exported as itself. BatchNorm must be folded first.

use super::lsq::{initial_step, Grid};
use crate::graph::{Executor, Graph, RunMode};
use crate::onnx::attr;
use onnx_protobuf::NodeProto;
use std::collections::HashMap;
use tch::{Kind, Tensor};

/// Bit widths of one quantized layer.
#[derive(Clone, Copy, Debug, PartialEq, Eq, serde::Serialize)]
pub struct LayerBits {
    pub weights: u32,
    pub activations: u32,
}

/// What `insert_qdq` quantized, per Conv/Gemm node.
#[derive(Clone, Debug, serde::Serialize)]
pub struct QuantizedLayer {
    pub node: String,
    pub op: String,
    pub bits: LayerBits,
}

fn qdq_node(op: &str, name: &str, inputs: &[&str], axis: Option<i64>) -> NodeProto {
    let mut n = NodeProto::new();
    n.op_type = op.into();
    n.name = name.into();
    n.input = inputs.iter().map(|s| s.to_string()).collect();
    n.output = vec![name.to_string()];
    if let Some(a) = axis {
        n.attribute = vec![attr::int("axis", a)];
    }
    n
}

/// Inserts Q→(Clip)→DQ on `x`, its nodes and initializers named `{base}.…`; the dequantized
/// value is `{base}.dq`. `scale` is the initial step (a scalar, or 1-D along `axis`).
#[allow(clippy::too_many_arguments)]
fn insert_pair(graph: &mut Graph, new_nodes: &mut Vec<NodeProto>, x: &str, base: &str, scale: Tensor, bits: u32, axis: Option<i64>, grid: Grid) {
    let zp = Tensor::zeros(scale.size().as_slice(), (Kind::Int8, tch::Device::Cpu));
    graph.initializers.push((format!("{base}.scale"), scale));
    graph.initializers.push((format!("{base}.zero_point"), zp));
    let (s, z) = (format!("{base}.scale"), format!("{base}.zero_point"));
    new_nodes.push(qdq_node("QuantizeLinear", &format!("{base}.q"), &[x, &s, &z], axis));
    let mut q = format!("{base}.q");
    if bits < 8 {
        graph.initializers.push((format!("{base}.lo"), Tensor::from(grid.lo as i8)));
        graph.initializers.push((format!("{base}.hi"), Tensor::from(grid.hi as i8)));
        new_nodes.push(qdq_node("Clip", &format!("{base}.clip"), &[&q, &format!("{base}.lo"), &format!("{base}.hi")], None));
        q = format!("{base}.clip");
    }
    new_nodes.push(qdq_node("DequantizeLinear", &format!("{base}.dq"), &[&q, &s, &z], axis));
}

/// Quantizes every Conv and Gemm of `graph` (BatchNorm already folded): `bits(node_index,
/// count)` gives each layer's widths. Activation steps start from LSQ's rule on the values of one
/// calibration batch `calibration` (eval mode), weight steps from the weights.
pub fn insert_qdq(graph: &mut Graph, calibration: &Tensor, bits: &dyn Fn(usize, usize) -> LayerBits) -> anyhow::Result<Vec<QuantizedLayer>> {
    let layers: Vec<usize> = graph.nodes.iter().enumerate().filter(|(_, n)| n.op_type == "Conv" || n.op_type == "Gemm").map(|(i, _)| i).collect();
    // Activation statistics from one eval run.
    let data_inputs: Vec<String> = layers.iter().map(|&i| graph.nodes[i].input[0].clone()).collect();
    let layer_outputs: Vec<String> = layers.iter().map(|&i| graph.nodes[i].output[0].clone()).collect();
    let mut fetch: Vec<String> = data_inputs.iter().chain(&layer_outputs).cloned().collect();
    fetch.sort();
    fetch.dedup();
    let exec = Executor::compile(graph, &fetch, calibration.device())?;
    let values: HashMap<String, Tensor> = fetch.iter().cloned().zip(tch::no_grad(|| exec.run(&[calibration], RunMode::Eval))?).collect();
    let mut report = Vec::new();
    let mut rewritten = Vec::new();
    let mut outputs_renamed: Vec<(String, String)> = Vec::new();
    let count = layers.len();
    for (pos, node) in std::mem::take(&mut graph.nodes).into_iter().enumerate() {
        let Some(k) = layers.iter().position(|&i| i == pos) else {
            rewritten.push(node);
            continue;
        };
        let b = bits(k, count);
        let mut node = node;
        let mut new_nodes = Vec::new();
        // Data input: a pair of this layer's own (ONNX Runtime fuses a DequantizeLinear into one
        // node only, and would merge pairs with the same scale initializer).
        let x = node.input[0].clone();
        // Signed with zero point 0 even after a ReLU: portable to TensorRT, and ONNX Runtime
        // rewrites it to uint8 on x86 itself (runtime-notes §3.5).
        let grid = Grid::signed(b.activations);
        let step = initial_step(&values[&x], grid, None).to_kind(Kind::Float).reshape([] as [i64; 0]).to_device(tch::Device::Cpu);
        let base = format!("{}.input.quant", node.name);
        insert_pair(graph, &mut new_nodes, &x, &base, step, b.activations, None, grid);
        node.input[0] = format!("{base}.dq");
        // Weights: per output channel.
        let w = node.input[1].clone();
        let weight = graph.initializer(&w).ok_or_else(|| anyhow::anyhow!("`{}`'s weight `{w}` is not an initializer", node.name))?.detach().to_device(tch::Device::Cpu);
        let trans_b = node.op_type == "Gemm" && node.attribute.iter().any(|a| a.name == "transB" && a.i == 1);
        let axis = if node.op_type == "Conv" || trans_b { 0 } else { 1 };
        let grid = Grid::weights(b.weights);
        let step = initial_step(&weight, grid, Some(axis)).to_kind(Kind::Float);
        insert_pair(graph, &mut new_nodes, &w, &format!("{w}.quant"), step, b.weights, Some(axis), grid);
        node.input[1] = format!("{w}.quant.dq");
        report.push(QuantizedLayer { node: node.name.clone(), op: node.op_type.clone(), bits: b });
        rewritten.extend(new_nodes);
        // A conv's output too, so ONNX Runtime sees DQ → Conv → Q and runs an integer kernel;
        // every reader takes the dequantized value.
        // (Gemm fuses without an output Q, and the classifier's logits stay float.)
        let y = node.output[0].clone();
        let is_conv = node.op_type == "Conv";
        rewritten.push(node);
        if is_conv && !graph.outputs.iter().any(|o| o.name == y) {
            let grid = Grid::signed(8);
            let step = initial_step(&values[&y], grid, None).to_kind(Kind::Float).reshape([] as [i64; 0]).to_device(tch::Device::Cpu);
            let mut pair = Vec::new();
            insert_pair(graph, &mut pair, &y, &format!("{y}.quant"), step, 8, None, grid);
            let dq = format!("{y}.quant.dq");
            outputs_renamed.push((y.clone(), dq));
            rewritten.extend(pair);
        }
    }
    // Readers of a quantized output read its dequantized value (the pairs themselves read y).
    for (y, dq) in &outputs_renamed {
        for n in rewritten.iter_mut().filter(|n| n.op_type != "QuantizeLinear" || n.input[0] != *y) {
            for i in n.input.iter_mut().filter(|i| *i == y) {
                *i = dq.clone();
            }
        }
    }
    graph.nodes = rewritten;
    Ok(report)
}

/// For export: every QuantizeLinear (and integer Clip) applied to a weight initializer is
/// computed once and stored as an int8 initializer that its DequantizeLinear reads, so the file
/// holds the integers (a quarter of the float bytes) and no float copy of the weights. Returns
/// the number of weights converted.
pub fn store_weights_as_int8(graph: &mut Graph) -> anyhow::Result<usize> {
    let mut converted = 0;
    let names: Vec<String> = graph.nodes.iter().filter(|n| n.op_type == "QuantizeLinear" && graph.initializer(&n.input[0]).is_some()).map(|n| n.name.clone()).collect();
    for q_name in names {
        let q = graph.nodes.iter().find(|n| n.name == q_name).expect("listed above").clone();
        let (w, s) = (&q.input[0], &q.input[1]);
        let weight = graph.initializer(w).expect("an initializer").detach().to_device(tch::Device::Cpu).to_kind(Kind::Float);
        let scale = graph.initializer(s).ok_or_else(|| anyhow::anyhow!("`{q_name}`: scale is not an initializer"))?.detach().to_device(tch::Device::Cpu);
        let mut shape = vec![1i64; weight.dim()];
        let axis = q.attribute.iter().find(|a| a.name == "axis").map_or(1, |a| a.i);
        let scale = if scale.numel() > 1 {
            shape[axis as usize] = -1;
            scale.reshape(shape.as_slice())
        } else {
            scale.reshape([] as [i64; 0])
        };
        let mut ints = (&weight / &scale).round().clamp(-128.0, 127.0);
        // A following integer Clip narrows the grid; apply it here and drop it.
        let last = q.output[0].clone();
        if let Some(clip) = graph.nodes.iter().find(|n| n.op_type == "Clip" && n.input[0] == last).cloned() {
            let bound = |i: usize| graph.initializer(&clip.input[i]).map(|t| t.to_kind(Kind::Double).double_value(&[]));
            if let (Some(lo), Some(hi)) = (bound(1), bound(2)) {
                ints = ints.clamp(lo, hi);
                graph.nodes.retain(|n| n.name != clip.name);
                for n in graph.nodes.iter_mut() {
                    for i in n.input.iter_mut().filter(|i| **i == clip.output[0]) {
                        *i = last.clone();
                    }
                }
            }
        }
        let stored = format!("{w}.int8");
        graph.initializers.push((stored.clone(), ints.to_kind(Kind::Int8)));
        graph.nodes.retain(|n| n.name != q_name);
        for n in graph.nodes.iter_mut() {
            for i in n.input.iter_mut().filter(|i| **i == last) {
                *i = stored.clone();
            }
        }
        converted += 1;
    }
    // Float weights nothing reads any more.
    let used: std::collections::HashSet<String> = graph.nodes.iter().flat_map(|n| n.input.iter().cloned()).collect();
    graph.initializers.retain(|(n, _)| used.contains(n));
    Ok(converted)
}
