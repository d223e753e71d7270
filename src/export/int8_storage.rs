//! The quantized file's storage passes on the QAT graph: weights computed once and stored as
//! int8 initializers, one DequantizeLinear per reader (so every reader fuses into an integer
//! kernel), and short names for what the quantization added.

use crate::graph::Graph;
use crate::host::HostRead;
use crate::quant::qdq::GRAD_SCALES_KEY;
use onnx_protobuf::NodeProto;
use std::collections::HashMap;
use tch::Kind;

/// For export: every QuantizeLinear (and integer Clip) applied to a weight initializer is
/// computed once and stored as an int8 initializer that its DequantizeLinear reads, so the file
/// holds the integers (a quarter of the float bytes) and no float copy of the weights. Returns
/// the number of weights converted.
pub fn store_weights_as_int8(graph: &mut Graph) -> anyhow::Result<usize> {
    let mut converted = 0;
    let names: Vec<String> =
        graph.nodes.iter().filter(|n| n.op_type == "QuantizeLinear" && graph.initializer(&n.input[0]).is_some()).map(|n| n.name.clone()).collect();
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
            let bound = |i: usize| graph.initializer(&clip.input[i]).map(|t| t.to_kind(Kind::Double).read_f64());
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
        // A convolution's weight DequantizeLinear needs no zero point (0 is the default); ONNX
        // Runtime fuses QGemm only with one, so a Gemm's keeps it.
        let conv_readers: std::collections::HashSet<String> =
            graph.nodes.iter().filter(|n| n.op_type == "Conv").flat_map(|n| n.input.iter().cloned()).collect();
        let other_readers: std::collections::HashSet<String> =
            graph.nodes.iter().filter(|n| n.op_type != "Conv").flat_map(|n| n.input.iter().cloned()).collect();
        for n in graph.nodes.iter_mut() {
            if !n.input.contains(&last) {
                continue;
            }
            for i in n.input.iter_mut().filter(|i| **i == last) {
                *i = stored.clone();
            }
            let out = &n.output[0];
            if n.op_type == "DequantizeLinear" && n.input.len() == 3 && conv_readers.contains(out) && !other_readers.contains(out) {
                n.input.truncate(2);
            }
        }
        converted += 1;
    }
    // Float weights nothing reads any more.
    let used: std::collections::HashSet<String> = graph.nodes.iter().flat_map(|n| n.input.iter().cloned()).collect();
    graph.initializers.retain(|(n, _)| used.contains(n));
    Ok(converted)
}

/// For export: short names for everything the quantization added (initializers, Q/DQ/Clip
/// nodes and their outputs: `q0`, `q1`, …), which otherwise weigh several percent of a small
/// model's file; the layers and every original tensor keep their names. Integer weights are
/// named after the float weights they replace.
pub fn compact_names(graph: &mut Graph) {
    let taken: std::collections::HashSet<String> = graph
        .initializers
        .iter()
        .map(|(n, _)| n.clone())
        .chain(graph.nodes.iter().flat_map(|n| n.input.iter().chain(n.output.iter()).cloned()))
        .chain(graph.inputs.iter().chain(graph.outputs.iter()).map(|v| v.name.clone()))
        .collect();
    let mut map: HashMap<String, String> = HashMap::new();
    let mut next = 0usize;
    let mut short = |name: &str| -> String {
        if let Some(w) = name.strip_suffix(".int8").filter(|w| !taken.contains(*w)) {
            return w.to_string();
        }
        if !name.contains(".quant.") {
            return name.to_string();
        }
        map.entry(name.to_string())
            .or_insert_with(|| loop {
                next += 1;
                let candidate = format!("q{}", next - 1);
                if !taken.contains(&candidate) {
                    break candidate;
                }
            })
            .clone()
    };
    for (name, _) in graph.initializers.iter_mut() {
        *name = short(name);
    }
    for n in graph.nodes.iter_mut() {
        for i in n.input.iter_mut().chain(n.output.iter_mut()) {
            *i = short(i);
        }
        if matches!(n.op_type.as_str(), "QuantizeLinear" | "DequantizeLinear" | "Clip") && n.name.contains(".quant.") {
            n.name = n.output[0].clone();
        }
    }
    graph.metadata.retain(|(k, _)| k != GRAD_SCALES_KEY);
}

/// For export: a DequantizeLinear read by several nodes becomes one copy per reader, each with
/// its own copy of the scale and zero point. ONNX Runtime folds a DequantizeLinear into one
/// integer kernel only, and merges DequantizeLinears with identical inputs, so a shared one would
/// leave all but one of its readers on float kernels. Returns the number of copies added.
pub fn one_dequantize_per_reader(graph: &mut Graph) -> usize {
    let mut added = 0;
    let dqs: Vec<NodeProto> = graph.nodes.iter().filter(|n| n.op_type == "DequantizeLinear").cloned().collect();
    for dq in dqs {
        let out = &dq.output[0];
        let readers = graph.readers(out);
        if readers.len() < 2 || graph.is_output(out) {
            continue;
        }
        let mut copies = Vec::new();
        for (k, &r) in readers.iter().enumerate().skip(1) {
            let mut copy = dq.clone();
            copy.name = format!("{}.{k}", dq.name);
            copy.output = vec![format!("{out}.{k}")];
            for i in 1..copy.input.len() {
                let name = format!("{}.{k}", copy.input[i]);
                let value = graph.initializer(&copy.input[i]).map(|t| t.detach().copy());
                if let Some(v) = value {
                    graph.initializers.push((name.clone(), v));
                    copy.input[i] = name;
                }
            }
            for i in graph.nodes[r].input.iter_mut().filter(|i| *i == out) {
                *i = copy.output[0].clone();
            }
            copies.push(copy);
        }
        added += copies.len();
        let at = graph.nodes.iter().position(|n| n.name == dq.name).expect("listed above");
        graph.nodes.splice(at + 1..at + 1, copies);
    }
    added
}
