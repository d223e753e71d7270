//! Export layout for ONNX Runtime's int8 depthwise kernel: a depthwise convolution whose channel
//! count is not a multiple of `CHANNEL_BLOCK` gets zero channels up to the next multiple, with
//! the convolution that feeds it producing as many (zero) channels and the convolutions that read
//! it ignoring them (zero weights, zero point 0). The file computes exactly what it computed
//! before: the integer sums gain only zero terms.
//!
//! Measured with ONNX Runtime 1.31.1's profiler on a 2-core AVX-512 VNNI CPU (docs/quantization.md):
//! the 3×3 depthwise QLinearConv of MobileNetV2 0.5 with 72 channels at 16×16, batch 32, one
//! thread, took 398 µs; the same layer padded to 80 channels, 161 µs.

use crate::graph::Graph;
use crate::host::HostRead;
use crate::onnx::attr::{self, Attrs};
use onnx_protobuf::NodeProto;
use serde::Serialize;
use tch::{Kind, Tensor};

/// Channels the int8 depthwise kernel processes at once; other counts take a slower path.
pub const CHANNEL_BLOCK: i64 = 16;

/// Ops between the convolutions that act on each element alone (given per-tensor parameters),
/// so extra channels pass through them untouched.
const ELEMENTWISE: &[&str] = &["QuantizeLinear", "DequantizeLinear", "Relu", "Clip"];

/// One padded depthwise convolution.
#[derive(Clone, Debug, Serialize)]
pub struct PaddedDepthwise {
    /// The depthwise convolution's node name.
    pub node: String,
    /// Its channels as trained.
    pub channels: i64,
    /// Its channels in the file.
    pub padded_to: i64,
    /// The convolution whose output channels were padded to feed it.
    pub producer: String,
    /// The convolutions that read it, whose input channels were padded with zero weights.
    pub readers: Vec<String>,
}

/// A convolution's weight as the export stores it: integers behind a DequantizeLinear with zero
/// point 0, every part of it read by this convolution alone.
struct StoredWeight {
    ints: String,
    /// The integers' shape, at least 3-D.
    shape: Vec<i64>,
    scale: String,
    zero_point: Option<String>,
}

/// Pads every depthwise convolution of the exported graph (weights already stored as integers)
/// whose neighbourhood allows it; returns what it padded.
pub fn pad_depthwise_channels(graph: &mut Graph) -> anyhow::Result<Vec<PaddedDepthwise>> {
    let mut padded = Vec::new();
    // Padding changes initializers and attributes only, so node indices stay valid.
    for d in 0..graph.nodes.len() {
        if graph.nodes[d].op_type != "Conv" {
            continue;
        }
        let Some(plan) = plan_padding(graph, d)? else { continue };
        apply(graph, &plan)?;
        padded.push(PaddedDepthwise {
            node: graph.nodes[d].name.clone(),
            channels: plan.channels,
            padded_to: plan.padded_to,
            producer: graph.nodes[plan.producer].name.clone(),
            readers: plan.readers.iter().map(|&r| graph.nodes[r].name.clone()).collect(),
        });
    }
    Ok(padded)
}

/// Node indices of one padding: the depthwise convolution, the convolution feeding it and those
/// reading it, with its channel counts before and after.
struct Plan {
    depthwise: usize,
    producer: usize,
    readers: Vec<usize>,
    channels: i64,
    padded_to: i64,
}

fn group(node: &NodeProto) -> anyhow::Result<i64> {
    Attrs::new(node).int_or("group", 1)
}

fn plan_padding(graph: &Graph, d: usize) -> anyhow::Result<Option<Plan>> {
    let node = &graph.nodes[d];
    let Some(w) = stored_weight(graph, node) else { return Ok(None) };
    let channels = w.shape[0];
    if w.shape[1] != 1 || group(node)? != channels || channels <= 1 || channels % CHANNEL_BLOCK == 0 {
        return Ok(None);
    }
    if !pads_with(graph, node, channels) {
        return Ok(None);
    }
    let Some(producer) = upstream_conv(graph, &node.input[0])? else { return Ok(None) };
    let p = &graph.nodes[producer];
    let Some(pw) = stored_weight(graph, p) else { return Ok(None) };
    if pw.shape[0] != channels || !pads_with(graph, p, channels) {
        return Ok(None);
    }
    let mut readers = Vec::new();
    if !downstream_convs(graph, &node.output[0], &mut readers)? || readers.is_empty() {
        return Ok(None);
    }
    for &r in &readers {
        match stored_weight(graph, &graph.nodes[r]) {
            Some(rw) if rw.shape[1] == channels => {}
            _ => return Ok(None),
        }
    }
    let padded_to = (channels + CHANNEL_BLOCK - 1) / CHANNEL_BLOCK * CHANNEL_BLOCK;
    Ok(Some(Plan { depthwise: d, producer, readers, channels, padded_to }))
}

/// The weight of `conv` if it is stored as (at least 3-D) integers behind a DequantizeLinear
/// that nothing else reads, with a zero point 0 and every input read by that DequantizeLinear
/// alone.
fn stored_weight(graph: &Graph, conv: &NodeProto) -> Option<StoredWeight> {
    let w = conv.input.get(1)?;
    let dq = &graph.nodes[graph.producer(w)?];
    if dq.op_type != "DequantizeLinear" || graph.readers(w).len() != 1 {
        return None;
    }
    let owned = |name: &String| graph.initializer(name).is_some() && graph.readers(name).len() == 1;
    let ints = dq.input.first().filter(|i| owned(i))?;
    let values = graph.initializer(ints)?;
    if values.kind() != Kind::Int8 || values.dim() < 3 {
        return None;
    }
    let scale = dq.input.get(1).filter(|s| owned(s))?;
    let zero_point = match dq.input.get(2).filter(|z| !z.is_empty()) {
        Some(z) if owned(z) && graph.initializer(z)?.abs().max().read_i64() == 0 => Some(z.clone()),
        Some(_) => return None,
        None => None,
    };
    // A per-channel scale must run along the output channels.
    if graph.initializer(scale)?.numel() > 1 && Attrs::new(dq).int_or("axis", 1).ok()? != 0 {
        return None;
    }
    Some(StoredWeight { ints: ints.clone(), shape: values.size(), scale: scale.clone(), zero_point })
}

/// Whether the output channels of `conv` can grow: its bias, if any, is an initializer of one
/// value per channel that nothing else reads.
fn pads_with(graph: &Graph, conv: &NodeProto, channels: i64) -> bool {
    match conv.input.get(2).filter(|b| !b.is_empty()) {
        None => true,
        Some(b) => graph.initializer(b).is_some_and(|t| t.numel() as i64 == channels) && graph.readers(b).len() == 1,
    }
}

/// Whether `node` passes channels through one by one: an elementwise op whose other inputs are
/// scalars.
fn elementwise(graph: &Graph, node: &NodeProto) -> bool {
    ELEMENTWISE.contains(&node.op_type.as_str())
        && node.input.iter().skip(1).filter(|i| !i.is_empty()).all(|i| graph.initializer(i).is_some_and(|t| t.numel() == 1))
}

/// The group-1 convolution that produces `value` through elementwise ops, each step read by the
/// next alone.
fn upstream_conv(graph: &Graph, value: &str) -> anyhow::Result<Option<usize>> {
    let mut v = value.to_string();
    loop {
        if graph.readers(&v).len() != 1 || graph.is_output(&v) {
            return Ok(None);
        }
        let Some(p) = graph.producer(&v) else { return Ok(None) };
        let n = &graph.nodes[p];
        if n.op_type == "Conv" {
            return Ok((group(n)? == 1).then_some(p));
        }
        if !elementwise(graph, n) {
            return Ok(None);
        }
        v = n.input[0].clone();
    }
}

/// Collects the group-1 convolutions that read `value` through elementwise ops; false when
/// anything else reads it.
fn downstream_convs(graph: &Graph, value: &str, found: &mut Vec<usize>) -> anyhow::Result<bool> {
    if graph.is_output(value) {
        return Ok(false);
    }
    for r in graph.readers(value) {
        let n = &graph.nodes[r];
        let only_first = n.input[0] == value && n.input.iter().skip(1).all(|i| i != value);
        if n.op_type == "Conv" && only_first && group(n)? == 1 {
            found.push(r);
        } else if elementwise(graph, n) && only_first {
            if !downstream_convs(graph, &n.output[0], found)? {
                return Ok(false);
            }
        } else {
            return Ok(false);
        }
    }
    Ok(true)
}

/// What the new slices of a padded tensor hold.
enum Fill {
    Zero,
    /// Copies of the last slice: a padded channel's step is a real one, so ONNX Runtime's
    /// requantization factors stay in their usual range.
    LastSlice,
}

/// Appends `extra` slices along `axis` to the initializer `name`.
fn grow_initializer(graph: &mut Graph, name: &str, axis: i64, extra: i64, fill: Fill) {
    let t = graph.initializer(name).expect("checked by plan_padding");
    let len = t.size()[axis as usize];
    let tail = match fill {
        Fill::Zero => {
            let mut shape = t.size();
            shape[axis as usize] = extra;
            Tensor::zeros(shape.as_slice(), (t.kind(), t.device()))
        }
        Fill::LastSlice => t.narrow(axis, len - 1, 1).repeat_interleave_self_int(extra, Some(axis), None),
    };
    let grown = Tensor::cat(&[t.shallow_clone(), tail], axis);
    graph.set_initializer(name, grown);
}

/// Grows the output channels of a convolution: zero weights and bias.
fn grow_outputs(graph: &mut Graph, conv: usize, extra: i64) {
    let node = graph.nodes[conv].clone();
    let w = stored_weight(graph, &node).expect("checked by plan_padding");
    grow_initializer(graph, &w.ints, 0, extra, Fill::Zero);
    if graph.initializer(&w.scale).expect("checked").numel() > 1 {
        grow_initializer(graph, &w.scale, 0, extra, Fill::LastSlice);
    }
    if let Some(z) = w.zero_point.filter(|z| graph.initializer(z).expect("checked").numel() > 1) {
        grow_initializer(graph, &z, 0, extra, Fill::Zero);
    }
    if let Some(b) = node.input.get(2).filter(|b| !b.is_empty()) {
        grow_initializer(graph, b, 0, extra, Fill::Zero);
    }
}

fn apply(graph: &mut Graph, plan: &Plan) -> anyhow::Result<()> {
    let extra = plan.padded_to - plan.channels;
    grow_outputs(graph, plan.producer, extra);
    grow_outputs(graph, plan.depthwise, extra);
    let d = &mut graph.nodes[plan.depthwise];
    d.attribute.retain(|a| a.name != "group");
    d.attribute.push(attr::int("group", plan.padded_to));
    for &r in &plan.readers {
        let node = graph.nodes[r].clone();
        let w = stored_weight(graph, &node).ok_or_else(|| anyhow::anyhow!("`{}`: weight changed while padding", node.name))?;
        grow_initializer(graph, &w.ints, 1, extra, Fill::Zero);
    }
    Ok(())
}
