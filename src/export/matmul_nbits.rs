//! Low-bit storage for linear layers: a Gemm whose weights are on a 4- or 2-bit grid is written
//! as DequantizeLinear(int4 weights, blocked along K) → Gemm (transB = 0), the pattern
//! ONNX Runtime fuses into `com.microsoft::MatMulNBits` (runtime-notes §3.2). The file stores
//! two weights per byte; the block scales repeat the per-output-channel steps that trained.
//!
//! A 2-bit grid is stored in int4 too: ONNX Runtime 1.31 loads and fuses int2 weights, but its
//! CPU MatMulNBits computed wrong values with them in our check (relative error above 1 for
//! N = 10 outputs, K = 32…1280), while int4 matched a float matmul of the same weights within
//! 1% (the kernel quantizes the activations to int8 per block). Int4 needs opset 21 (IR 10).

use onnx_protobuf::{ModelProto, NodeProto, TensorProto};

/// The largest block size ONNX Runtime 1.31 fuses into MatMulNBits (from 512 on it leaves a
/// float DequantizeLinear → Gemm). Blocks are the next power of two ≥ max(K, 16), at most this;
/// every block of a column repeats that column's trained step.
pub const MAX_BLOCK: usize = 256;

/// The TensorProto data type of int4.
pub const INT4: i32 = 22;

/// Packs signed integers (each within the `bits`-bit range) LSB-first: element i goes into
/// byte i·bits/8 at bit offset (i·bits) mod 8, as two's complement of `bits` bits.
pub fn pack(values: &[i8], bits: u32) -> Vec<u8> {
    let per_byte = (8 / bits) as usize;
    let mask = (1u16 << bits) as u8 - 1;
    let mut out = vec![0u8; values.len().div_ceil(per_byte)];
    for (i, &v) in values.iter().enumerate() {
        out[i / per_byte] |= ((v as u8) & mask) << ((i % per_byte) as u32 * bits);
    }
    out
}

/// The opset a file with int4 initializers needs.
pub const OPSET: i64 = 21;

/// What a linear layer with `bits`-bit weights stores.
pub fn storage(bits: u32) -> String {
    if bits == 4 {
        "int4, packed 2 per byte".into()
    } else {
        format!("int{bits} grid in int4, packed 2 per byte")
    }
}

fn find_init<'a>(model: &'a ModelProto, name: &str) -> Option<&'a TensorProto> {
    model.graph.as_ref()?.initializer.iter().find(|t| t.name == name)
}

/// Rewrites Gemm `gemm` (transA = 0, alpha = beta = 1, its weight read through a per-channel int8
/// DequantizeLinear on axis 0, the values on the `bits`-bit grid) to read blocked int4 weights.
/// The model's opset must already allow the type ([`OPSET`]).
pub fn rewrite_gemm(model: &mut ModelProto, gemm: &str, bits: u32) -> anyhow::Result<()> {
    let graph = model.graph.as_ref().ok_or_else(|| anyhow::anyhow!("the model has no graph"))?;
    let node = graph.node.iter().find(|n| n.name == gemm).ok_or_else(|| anyhow::anyhow!("no Gemm `{gemm}`"))?;
    let attr = |name: &str, default: i64| node.attribute.iter().find(|a| a.name == name).map_or(default, |a| a.i);
    anyhow::ensure!(attr("transA", 0) == 0, "Gemm `{gemm}`: expected transA = 0");
    let trans_b = attr("transB", 0) == 1;
    let alpha_one = node.attribute.iter().find(|a| a.name == "alpha").is_none_or(|a| a.f == 1.0);
    let beta_one = node.attribute.iter().find(|a| a.name == "beta").is_none_or(|a| a.f == 1.0);
    anyhow::ensure!(alpha_one && beta_one, "Gemm `{gemm}`: expected alpha = beta = 1");
    let dq_out = node.input[1].clone();
    let dq: &NodeProto = graph
        .node
        .iter()
        .find(|n| n.op_type == "DequantizeLinear" && n.output[0] == dq_out)
        .ok_or_else(|| anyhow::anyhow!("Gemm `{gemm}`: its weight is not dequantized"))?;
    let (w_name, s_name) = (dq.input[0].clone(), dq.input[1].clone());
    let w = find_init(model, &w_name).ok_or_else(|| anyhow::anyhow!("`{w_name}` is not an initializer"))?;
    anyhow::ensure!(w.data_type == onnx_protobuf::tensor_proto::DataType::INT8 as i32 && w.dims.len() == 2, "`{w_name}`: expected a 2-D int8 initializer");
    // Stored [N, K] with transB, else [K, N]; the scales run along N either way.
    let (n, k) = if trans_b { (w.dims[0] as usize, w.dims[1] as usize) } else { (w.dims[1] as usize, w.dims[0] as usize) };
    let ints: Vec<i8> = if !w.raw_data.is_empty() { w.raw_data.iter().map(|&b| b as i8).collect() } else { w.int32_data.iter().map(|&v| v as i8).collect() };
    anyhow::ensure!(ints.len() == n * k, "`{w_name}`: {} values for shape [{n}, {k}]", ints.len());
    let hi = (1i8 << (bits - 1)) - 1;
    anyhow::ensure!(ints.iter().all(|&v| v >= -hi && v <= hi), "`{w_name}`: values outside the {bits}-bit grid");
    // [K, N], row-major.
    let transposed: Vec<i8> = if trans_b { (0..k).flat_map(|kk| (0..n).map(move |nn| (kk, nn))).map(|(kk, nn)| ints[nn * k + kk]).collect() } else { ints };
    let scale = find_init(model, &s_name).ok_or_else(|| anyhow::anyhow!("`{s_name}` is not an initializer"))?.clone();
    anyhow::ensure!(scale.dims == [n as i64], "`{s_name}`: expected {n} per-channel scales");
    let block = k.max(16).next_power_of_two().min(MAX_BLOCK);
    let blocks = k.div_ceil(block);

    let mut packed = TensorProto::new();
    packed.name = format!("{w_name}.int4");
    packed.dims = vec![k as i64, n as i64];
    packed.data_type = INT4;
    packed.raw_data = pack(&transposed, 4);
    let mut blocked_scale = scale;
    blocked_scale.name = format!("{s_name}.blocked");
    blocked_scale.dims = vec![blocks as i64, n as i64];
    if !blocked_scale.raw_data.is_empty() {
        blocked_scale.raw_data = blocked_scale.raw_data.repeat(blocks);
    } else {
        blocked_scale.float_data = blocked_scale.float_data.repeat(blocks);
    }

    let mut new_dq = NodeProto::new();
    new_dq.op_type = "DequantizeLinear".into();
    new_dq.name = format!("{}.int4", dq.name);
    new_dq.input = vec![packed.name.clone(), blocked_scale.name.clone()];
    new_dq.output = vec![format!("{dq_out}.int4")];
    new_dq.attribute = vec![crate::onnx::attr::int("axis", 0), crate::onnx::attr::int("block_size", block as i64)];
    let dq_name = dq.name.clone();
    let zp_name = dq.input.get(2).cloned().unwrap_or_default();

    let graph = model.graph.as_mut().expect("checked above");
    let at = graph.node.iter().position(|n| n.name == dq_name).expect("found above");
    graph.node[at] = new_dq.clone();
    let node = graph.node.iter_mut().find(|n| n.name == gemm).expect("found above");
    node.input[1] = new_dq.output[0].clone();
    node.attribute.retain(|a| a.name != "transB");
    graph.initializer.retain(|t| t.name != w_name && t.name != s_name && t.name != zp_name);
    graph.initializer.push(packed);
    graph.initializer.push(blocked_scale);
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Two per byte, first element in the low nibble; four per byte for 2 bits, LSB first
    /// (runtime-notes §3.3).
    #[test]
    fn packs_low_bits_first() {
        assert_eq!(pack(&[1, -1, 7, -8], 4), vec![0xF1, 0x87]);
        assert_eq!(pack(&[1, -1, 0, -2], 2), vec![0b10_00_11_01]);
        assert_eq!(pack(&[3], 4), vec![0x03]);
    }
}
