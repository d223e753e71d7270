//! The quantized file: the QAT graph with its weights stored as integers (int8, or packed int4
//! for linear layers below 8 bits), laid out for ONNX Runtime's integer kernels (depthwise
//! channels padded, the final pooling quantized) and with one DequantizeLinear per reader, then
//! opened with ONNX Runtime's optimized-model dump to record, per layer, the kernel it really
//! runs and what it stores.

use super::int8_storage::{compact_names, one_dequantize_per_reader, store_weights_as_int8};
use super::integer_pool::quantize_pool_outputs;
use super::matmul_nbits;
use super::pad_depthwise::{pad_depthwise_channels, PaddedDepthwise};
use crate::graph::Graph;
use crate::quant::qdq::QuantizedLayer;
use crate::runtime::OrtModel;
use serde::Serialize;
use std::collections::BTreeMap;
use std::path::Path;

/// ONNX Runtime kernels that compute on integers.
pub const INTEGER_KERNELS: &[&str] = &[
    "com.microsoft::QLinearConv",
    "QLinearConv",
    "com.microsoft::QGemm",
    "QLinearMatMul",
    "com.microsoft::MatMulIntegerToFloat",
    "MatMulInteger",
    "ConvInteger",
    "com.microsoft::MatMulNBits",
];

/// One quantized layer as exported.
#[derive(Clone, Debug, Serialize)]
pub struct LayerRecord {
    pub node: String,
    pub op: String,
    pub weight_bits: u32,
    pub activation_bits: u32,
    /// What the file stores for the weights, e.g. `int8`, or `int4 grid in int8`.
    pub weight_storage: String,
    /// The kernel ONNX Runtime runs for this layer after its graph optimizations.
    pub kernel: String,
    pub integer_kernel: bool,
}

#[derive(Debug, Serialize)]
pub struct QuantizedExport {
    /// The file's opset: the recipe's, raised to 21 when a linear layer stores packed int4
    /// weights.
    pub opset: i64,
    pub layers: Vec<LayerRecord>,
    /// Every op ONNX Runtime runs, counted by type.
    pub runtime_ops: BTreeMap<String, usize>,
    /// Depthwise convolutions given zero channels for ONNX Runtime's int8 kernel.
    pub padded_depthwise: Vec<PaddedDepthwise>,
    /// Global average pools whose output the file quantizes so that they can run on integers
    /// (`runtime_ops` says whether ONNX Runtime does).
    pub integer_pools: Vec<String>,
}

/// Writes `graph` (a QAT graph from `stage::quantized_graph`) to `path` in QDQ form and checks
/// which kernels ONNX Runtime runs for each of `layers`.
pub fn write_quantized(graph: &Graph, layers: &[QuantizedLayer], opset: i64, metadata: &[(&str, String)], path: &Path) -> anyhow::Result<QuantizedExport> {
    let mut graph = graph.detached_copy();
    graph.to_device(tch::Device::Cpu);
    store_weights_as_int8(&mut graph)?;
    let padded_depthwise = pad_depthwise_channels(&mut graph)?;
    let integer_pools = quantize_pool_outputs(&mut graph);
    one_dequantize_per_reader(&mut graph);
    compact_names(&mut graph);
    // Linear layers below 8 bits store packed int4 for MatMulNBits.
    let packed: Vec<&QuantizedLayer> = layers.iter().filter(|l| l.op == "Gemm" && l.bits.weights < 8).collect();
    let opset = if packed.is_empty() { opset } else { opset.max(matmul_nbits::OPSET) };
    let (mut model, _) = super::float::onnx_model(&graph, opset, false, metadata)?;
    for l in &packed {
        matmul_nbits::rewrite_gemm(&mut model, &l.node, l.bits.weights)?;
    }
    // Checked under a temporary name first: a file that ONNX Runtime cannot load never takes the
    // final name, and the failure is ours, not the recipe's (so not a bad-input error).
    let name = path.file_name().map(|n| n.to_string_lossy().into_owned()).unwrap_or_default();
    let checking = path.with_file_name(format!(".{name}.checking.onnx"));
    crate::onnx::model_file::write(&model, &checking)?;
    let nodes = match OrtModel::optimized_nodes(&checking) {
        Ok(nodes) => nodes,
        Err(e) => {
            let _ = std::fs::remove_file(&checking);
            return Err(anyhow::anyhow!("the quantized export of {} does not load in ONNX Runtime (an export bug, please report it): {e:#}", path.display()));
        }
    };
    std::fs::rename(&checking, path)?;
    let mut runtime_ops = BTreeMap::new();
    for (_, op) in &nodes {
        *runtime_ops.entry(op.clone()).or_insert(0) += 1;
    }
    let records = layers
        .iter()
        .map(|l| {
            let token = format!("{}_token_", l.node);
            let kernel = nodes.iter().find(|(n, _)| *n == l.node || n.starts_with(&token)).map(|(_, op)| op.clone()).unwrap_or_else(|| "(not found)".into());
            LayerRecord {
                node: l.node.clone(),
                op: l.op.clone(),
                weight_bits: l.bits.weights,
                activation_bits: l.bits.activations,
                weight_storage: match (l.bits.weights, l.op.as_str()) {
                    (8, _) => "int8".into(),
                    (b, "Gemm") => matmul_nbits::storage(b),
                    (b, _) => format!("int{b} grid in int8"),
                },
                integer_kernel: INTEGER_KERNELS.contains(&kernel.as_str()),
                kernel,
            }
        })
        .collect();
    Ok(QuantizedExport { opset, layers: records, runtime_ops, padded_depthwise, integer_pools })
}
