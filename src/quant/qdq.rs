//! The quantization-aware student: QuantizeLinear → (integer Clip below 8 bits) →
//! DequantizeLinear pairs inserted on the weights (per output channel, symmetric: ±7 and ±1
//! below 8 bits, the int8 range at 8) and on the activations (per tensor) of every Conv and
//! Gemm, with learned scales as float initializers. The executor runs such a pair as LSQ-style fake quantization in training, so
//! the graph trains as a QAT model and is exported as itself. BatchNorm must be folded first.

use super::lsq::{mse_step, Grid};
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

pub fn qdq_node(op: &str, name: &str, inputs: &[&str], axis: Option<i64>) -> NodeProto {
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
/// value is `{base}.dq`. `scale` is the initial step (a scalar, or 1-D along `axis`); the
/// integers are stored in uint8 when `unsigned`, else int8.
#[allow(clippy::too_many_arguments)]
fn insert_pair(
    graph: &mut Graph,
    new_nodes: &mut Vec<NodeProto>,
    x: &str,
    base: &str,
    scale: Tensor,
    bits: u32,
    axis: Option<i64>,
    grid: Grid,
    unsigned: bool,
) {
    // LSQ's gradient scale of a weight step: the elements of its channel share it. (An
    // activation's is recorded by the caller, which knows the per-sample size.)
    if let (Some(a), Some(w)) = (axis, graph.initializer(x)) {
        let per_step = w.numel() as i64 / w.size()[a as usize];
        add_grad_scale(graph, &format!("{base}.scale"), per_step, grid);
    }
    // Weights: int8, zero point 0. Activations: uint8, with zero point 0 on the unsigned grid
    // and 128 on the signed one (the same values as int8 with zero point 0; ONNX Runtime's x86
    // kernels take uint8 activations, and its own int8 → uint8 rewrite skips a quantized tensor
    // read by several layers, leaving them on float kernels).
    let (storage, offset) = match (axis, unsigned) {
        (Some(_), _) => (Kind::Int8, 0),
        (None, true) => (Kind::Uint8, 0),
        (None, false) => (Kind::Uint8, 128),
    };
    let zp = Tensor::full(scale.size().as_slice(), offset, (storage, tch::Device::Cpu));
    graph.initializers.push((format!("{base}.scale"), scale));
    graph.initializers.push((format!("{base}.zero_point"), zp));
    let (s, z) = (format!("{base}.scale"), format!("{base}.zero_point"));
    new_nodes.push(qdq_node("QuantizeLinear", &format!("{base}.q"), &[x, &s, &z], axis));
    let mut q = format!("{base}.q");
    if bits < 8 {
        let bound = |v: i64| Tensor::from((v + offset) as i32).to_kind(storage);
        graph.initializers.push((format!("{base}.lo"), bound(grid.lo)));
        graph.initializers.push((format!("{base}.hi"), bound(grid.hi)));
        new_nodes.push(qdq_node("Clip", &format!("{base}.clip"), &[&q, &format!("{base}.lo"), &format!("{base}.hi")], None));
        q = format!("{base}.clip");
    }
    new_nodes.push(qdq_node("DequantizeLinear", &format!("{base}.dq"), &[&q, &s, &z], axis));
}

/// The activation width reported for a layer whose input stays float.
pub const FLOAT_BITS: u32 = 32;

/// A linear layer below 8 bits is quantized weight-only: ONNX Runtime's low-bit kernel
/// (MatMulNBits) takes float activations, and a DequantizeLinear on them blocks its fusion.
fn weight_only(node: &NodeProto, bits: LayerBits) -> bool {
    node.op_type == "Gemm" && bits.weights < 8
}

/// One activation tensor to quantize: its width, and whether it is non-negative (a ReLU's
/// output, stored as uint8 on the unsigned grid so no code is spent on negative values).
#[derive(Clone, Copy, Debug)]
struct Activation {
    bits: u32,
    unsigned: bool,
}

/// The tensor a conv's (or an addition's) result ends in: its output, or the output of a ReLU
/// that alone reads it (ONNX Runtime folds such a ReLU into the integer kernel when the
/// quantizer after it is unsigned).
fn result_of(graph: &Graph, conv_output: &str) -> (String, bool) {
    match graph.readers(conv_output)[..] {
        [r] if graph.nodes[r].op_type == "Relu" && !graph.is_output(conv_output) => (graph.nodes[r].output[0].clone(), true),
        _ => (conv_output.to_string(), false),
    }
}

/// Quantizes every Conv and Gemm of `graph` (BatchNorm already folded): `bits(layer_index,
/// count)` gives each layer's widths.
///
/// - Weights: a Q→(Clip)→DQ pair per channel (axis 0 for Conv and Gemm with transB, 1 for plain
///   Gemm), int8 storage, zero point 0; an integer Clip narrows the grid to ±7 or ±1 below 8
///   bits (at 8 bits QuantizeLinear saturates to the int8 range).
/// - Activations, quantized once per tensor (every reader takes the dequantized value): the
///   data input of every layer (but a linear layer below 8 bits: weight-only, see
///   [`weight_only`]) at that layer's activation width (the widest when several layers
///   read it), and the result of every Conv and Add (after its ReLU) at 8 bits when no layer
///   reads it directly, so ONNX Runtime sees DQ → Conv/Add → Q everywhere and runs integer
///   kernels.
///   Non-negative tensors (ReLU outputs) use the unsigned grid (uint8, zero point 0), others the
///   signed grid (uint8, zero point 128). An 8-bit classifier's logits are quantized too.
///
/// Steps start at the MSE-optimal clip ([`mse_step`]): activations' on one eval-mode
/// calibration batch, weights' per channel.
pub fn insert_qdq(graph: &mut Graph, calibration: &Tensor, bits: &dyn Fn(usize, usize) -> LayerBits) -> anyhow::Result<Vec<QuantizedLayer>> {
    let layers: Vec<usize> = graph.nodes.iter().enumerate().filter(|(_, n)| n.op_type == "Conv" || n.op_type == "Gemm").map(|(i, _)| i).collect();
    let count = layers.len();
    let layer_bits: Vec<LayerBits> = (0..count).map(|k| bits(k, count)).collect();
    let produced_by_relu = |t: &str| graph.nodes.iter().any(|n| n.op_type == "Relu" && n.output[0] == t);
    // Tensors to quantize, in a deterministic order.
    let mut activations: Vec<(String, Activation)> = Vec::new();
    // A tensor read by several layers takes the widest of their widths; the 8-bit quantizers
    // added only so ONNX Runtime can fuse apply where no layer already quantizes the tensor.
    let mut add = |t: String, a: Activation, widen: bool| match activations.iter_mut().find(|(n, _)| *n == t) {
        Some((_, old)) if widen => old.bits = old.bits.max(a.bits),
        Some(_) => {}
        None => activations.push((t, a)),
    };
    for (k, &i) in layers.iter().enumerate() {
        if weight_only(&graph.nodes[i], layer_bits[k]) {
            continue;
        }
        let x = graph.nodes[i].input[0].clone();
        let unsigned = produced_by_relu(&x);
        add(x, Activation { bits: layer_bits[k].activations, unsigned }, true);
    }
    for node in graph.nodes.iter().filter(|n| n.op_type == "Conv" || n.op_type == "Add") {
        let (result, unsigned) = result_of(graph, &node.output[0]);
        let read_weight_only = layers.iter().enumerate().any(|(k, &i)| graph.nodes[i].input[0] == result && weight_only(&graph.nodes[i], layer_bits[k]));
        if !graph.is_output(&result) && !read_weight_only {
            add(result, Activation { bits: 8, unsigned }, false);
        }
    }
    // An 8-bit classifier's logits too: ONNX Runtime runs DQ → Gemm → Q as QGemm, and leaves a
    // Gemm without the Q in float. A Gemm that writes a graph output writes `{logits}.gemm`
    // instead, and the DQ gives back `logits`.
    let mut logits = Vec::new();
    for (k, &i) in layers.iter().enumerate() {
        let y = graph.nodes[i].output[0].clone();
        if graph.nodes[i].op_type != "Gemm" || layer_bits[k].weights != 8 {
            continue;
        }
        if graph.is_output(&y) {
            graph.nodes[i].output[0] = format!("{y}.gemm");
            add(format!("{y}.gemm"), Activation { bits: 8, unsigned: false }, false);
            logits.push(y);
        } else {
            add(y, Activation { bits: 8, unsigned: false }, false);
        }
    }
    // Activation statistics from one eval run.
    let fetch: Vec<String> = activations.iter().map(|(n, _)| n.clone()).collect();
    let exec = Executor::compile(graph, &fetch, calibration.device())?;
    let values: HashMap<String, Tensor> = fetch.iter().cloned().zip(tch::no_grad(|| exec.run(&[calibration], RunMode::Eval))?).collect();
    let grid_of = |a: &Activation| if a.unsigned { Grid::unsigned(a.bits) } else { Grid::signed(a.bits) };
    let mut pairs: HashMap<String, Vec<NodeProto>> = HashMap::new();
    let batch = calibration.size()[0].max(1);
    for (t, a) in &activations {
        let grid = grid_of(a);
        let step = mse_step(&values[t], grid, None).to_kind(Kind::Float).reshape([] as [i64; 0]).to_device(tch::Device::Cpu);
        let mut nodes = Vec::new();
        insert_pair(graph, &mut nodes, t, &format!("{t}.quant"), step, a.bits, None, grid, a.unsigned);
        add_grad_scale(graph, &format!("{t}.quant.scale"), values[t].numel() as i64 / batch, grid);
        pairs.insert(t.clone(), nodes);
    }
    let mut report = Vec::new();
    let mut rewritten = Vec::new();
    let mut quantized_weights = std::collections::HashSet::new();
    for input in graph.inputs.clone() {
        rewritten.extend(pairs.remove(&input.name).unwrap_or_default());
    }
    for (pos, mut node) in std::mem::take(&mut graph.nodes).into_iter().enumerate() {
        if let Some(k) = layers.iter().position(|&i| i == pos) {
            let mut b = layer_bits[k];
            if let Some((_, a)) = activations.iter().find(|(t, _)| *t == node.input[0]) {
                b.activations = a.bits; // the width its input is quantized at (the widest reader's)
            }
            let w = node.input[1].clone();
            // A weight shared with an earlier layer keeps that layer's quantization.
            if quantized_weights.insert(w.clone()) {
                let weight = graph
                    .initializer(&w)
                    .ok_or_else(|| anyhow::anyhow!("`{}`'s weight `{w}` is not an initializer", node.name))?
                    .detach()
                    .to_device(tch::Device::Cpu);
                let trans_b = node.op_type == "Gemm" && node.attribute.iter().any(|a| a.name == "transB" && a.i == 1);
                let axis = if node.op_type == "Conv" || trans_b { 0 } else { 1 };
                let grid = Grid::weights(b.weights);
                let step = mse_step(&weight, grid, Some(axis)).to_kind(Kind::Float);
                insert_pair(graph, &mut rewritten, &w, &format!("{w}.quant"), step, b.weights, Some(axis), grid, false);
            }
            node.input[1] = format!("{w}.quant.dq");
            let bits = if weight_only(&node, b) { LayerBits { weights: b.weights, activations: FLOAT_BITS } } else { b };
            report.push(QuantizedLayer { node: node.name.clone(), op: node.op_type.clone(), bits });
        }
        let outputs = node.output.clone();
        rewritten.push(node);
        for o in outputs {
            rewritten.extend(pairs.remove(&o).unwrap_or_default());
        }
    }
    // Readers of a quantized tensor read its dequantized value (its own Q still reads it).
    for (t, _) in &activations {
        let q = format!("{t}.quant.q");
        let dq = format!("{t}.quant.dq");
        for n in rewritten.iter_mut().filter(|n| n.name != q) {
            for i in n.input.iter_mut().filter(|i| *i == t) {
                *i = dq.clone();
            }
        }
    }
    for y in logits {
        let dq = format!("{y}.gemm.quant.dq");
        for n in rewritten.iter_mut().filter(|n| n.name == dq) {
            n.output[0] = y.clone();
        }
    }
    graph.nodes = rewritten;
    Ok(report)
}

/// The metadata key holding LSQ's gradient scale per learned step, as a JSON map from the
/// scale initializer's name to g = 1/√(N·Q_P).
pub const GRAD_SCALES_KEY: &str = "compress.lsq_grad_scales";

/// Records g = 1/√(N·Q_P) for step `scale` shared by `per_step` elements (N = 0: not known
/// here, recorded later by the caller).
fn add_grad_scale(graph: &mut Graph, scale: &str, per_step: i64, grid: Grid) {
    if per_step <= 0 {
        return;
    }
    let g = 1.0 / ((per_step * grid.hi.max(1)) as f64).sqrt();
    let mut map: serde_json::Map<String, serde_json::Value> =
        graph.metadata.iter().find(|(k, _)| k == GRAD_SCALES_KEY).and_then(|(_, v)| serde_json::from_str(v).ok()).unwrap_or_default();
    map.insert(scale.to_string(), serde_json::json!(g));
    graph.metadata.retain(|(k, _)| k != GRAD_SCALES_KEY);
    graph.metadata.push((GRAD_SCALES_KEY.into(), serde_json::Value::Object(map).to_string()));
}

/// The gradient scales recorded by [`insert_qdq`] (empty for a graph without them).
pub fn lsq_grad_scales(graph: &Graph) -> anyhow::Result<HashMap<String, f64>> {
    match graph.metadata.iter().find(|(k, _)| k == GRAD_SCALES_KEY) {
        None => Ok(HashMap::new()),
        Some((_, v)) => serde_json::from_str(v).map_err(|e| anyhow::anyhow!("metadata `{GRAD_SCALES_KEY}`: {e}")),
    }
}

/// Rounds the float bias of every layer with quantized input and weights, in place, to the
/// int32 grid ONNX Runtime stores it on: step s_x·s_w per output channel, the product taken in
/// float32 as ONNX Runtime takes it. ONNX Runtime quantizes a float bias itself when it fuses
/// the integer kernel; rounded here, the fake-quant student computes with the same bias. Left
/// unrounded, the half-step differences moved enough values across a rounding boundary that a
/// W4A4 ResNet-20's file agreed with its float simulation on 96.7% of 1,000 test images;
/// rounded, on all of them. Returns the number of biases rounded.
pub fn snap_biases(graph: &Graph) -> anyhow::Result<usize> {
    let _guard = tch::no_grad_guard();
    let scale_of = |value: &str| -> Option<Tensor> {
        let dq = Some(&graph.nodes[graph.producer(value)?]).filter(|n| n.op_type == "DequantizeLinear")?;
        graph.initializer(&dq.input[1]).map(|t| t.detach().to_kind(Kind::Float))
    };
    let mut snapped = 0;
    let mut seen = std::collections::HashSet::new();
    for node in graph.nodes.iter().filter(|n| (n.op_type == "Conv" || n.op_type == "Gemm") && n.input.len() > 2) {
        let (Some(sx), Some(sw), Some(bias)) = (scale_of(&node.input[0]), scale_of(&node.input[1]), graph.initializer(&node.input[2])) else {
            continue;
        };
        let step = (sx.reshape([-1]) * sw.reshape([-1])).to_device(bias.device());
        // A broadcast bias, or one shared with an earlier layer, keeps its float value.
        if bias.numel() != step.numel() || !seen.insert(node.input[2].clone()) {
            continue;
        }
        let rounded = (bias.detach().to_kind(Kind::Float) / &step).round() * &step;
        bias.shallow_clone().f_copy_(&rounded.to_kind(bias.kind()))?;
        snapped += 1;
    }
    Ok(snapped)
}
