//! Export layout for the classifier's pooling: when a GlobalAveragePool of dequantized values
//! feeds a Flatten (or Reshape) whose output is quantized, the same quantizer is applied to the
//! pool's own output too. Flatten leaves values as they are, and requantizing a value already on
//! the grid with the same step and zero point returns it, so in ONNX's semantics the file
//! computes what it did. ONNX Runtime then runs the pool as `QLinearGlobalAveragePool` in the
//! channels-last int8 layout of the convolutions before it, without the transpose back to
//! channels-first, the dequantization and the float pool (docs/quantization.md). Its integer mean
//! is rounded once, in integer arithmetic, where the float pool's mean was rounded by the
//! quantizer after it: a mean within float error of a half step may land one step apart, which
//! the report's agreement between the fake-quant student and the file would show.

use crate::graph::Graph;
use crate::host::HostRead;
use crate::quant::qdq::qdq_node;

/// Ops that only rearrange the pooled values.
const REARRANGE: &[&str] = &["Flatten", "Reshape"];

/// ONNX Runtime's integer pool refuses an input-to-output step ratio over the pooled count from
/// 256 up; such a pool stays float.
const MAX_STEP_RATIO: f64 = 256.0;

/// Quantizes the output of every such pool; returns the pools' node names.
pub fn quantize_pool_outputs(graph: &mut Graph) -> Vec<String> {
    let mut done = Vec::new();
    // From the last node back, so inserting after a pool leaves the earlier indices valid.
    for pool in (0..graph.nodes.len()).rev() {
        if graph.nodes[pool].op_type != "GlobalAveragePool" {
            continue;
        }
        let Some((q, rearrange)) = quantizer_after(graph, pool) else { continue };
        let pooled = graph.nodes[pool].output[0].clone();
        let base = format!("{pooled}.quant");
        // A copy of the quantizer keeps its attributes (axis, output type).
        let mut requantize = graph.nodes[q].clone();
        requantize.name = format!("{base}.q");
        requantize.input[0] = pooled;
        requantize.output = vec![requantize.name.clone()];
        let params: Vec<&str> = requantize.input[1..].iter().map(String::as_str).collect();
        let mut dq_inputs = vec![requantize.name.as_str()];
        dq_inputs.extend(params);
        let dequantize = qdq_node("DequantizeLinear", &format!("{base}.dq"), &dq_inputs, None);
        graph.nodes[rearrange].input[0] = dequantize.output[0].clone();
        done.push(graph.nodes[pool].name.clone());
        graph.nodes.splice(pool + 1..pool + 1, [requantize, dequantize]);
    }
    done.reverse();
    done
}

/// For a pool of dequantized values read by one Flatten/Reshape alone, itself read by one
/// per-tensor QuantizeLinear alone (none of them a graph output): that quantizer and the
/// rearranging node.
fn quantizer_after(graph: &Graph, pool: usize) -> Option<(usize, usize)> {
    let p = &graph.nodes[pool];
    let source = &graph.nodes[graph.producer(p.input.first()?)?];
    if source.op_type != "DequantizeLinear" {
        return None;
    }
    let pooled = p.output.first()?;
    let [r] = graph.readers(pooled)[..] else { return None };
    let rearrange = &graph.nodes[r];
    let flat = rearrange.output.first()?;
    if !REARRANGE.contains(&rearrange.op_type.as_str()) || rearrange.input[0] != *pooled || graph.is_output(pooled) || graph.is_output(flat) {
        return None;
    }
    let [q] = graph.readers(flat)[..] else { return None };
    let quantizer = &graph.nodes[q];
    let scalar = |name: Option<&String>| name.and_then(|n| graph.initializer(n)).filter(|t| t.numel() == 1).map(|t| t.read_f64());
    let per_tensor = quantizer.input.get(2).is_none_or(|z| z.is_empty() || scalar(Some(z)).is_some());
    let (Some(step_in), Some(step_out)) = (scalar(source.input.get(1)), scalar(quantizer.input.get(1))) else { return None };
    (quantizer.op_type == "QuantizeLinear" && per_tensor && step_in / step_out < MAX_STEP_RATIO).then_some((q, r))
}
