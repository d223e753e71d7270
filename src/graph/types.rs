//! The element types held in another storage (uint16/32/64, int4/uint4, the float8 types,
//! float4e2m1, float8e8m0: `onnx::tensor::storage_kind`): which values of a graph hold one, and
//! which ops may read them. Their storage is exact, but only data movement, casts,
//! quantization and (for the unsigned integers) arithmetic, comparisons and orderings know what
//! such values mean; any other op reading one is refused by name when the graph is compiled,
//! never run on storage that would give another number.

use super::ir::Graph;
use crate::bad_input;
use crate::onnx::attr::Attrs;
use crate::onnx::tensor::carried::{UINT16, UINT32, UINT64};
use crate::onnx::tensor::{is_carried, type_name};
use onnx_protobuf::NodeProto;
use std::collections::HashMap;

/// Ops that move values without computing with them: their outputs hold input 0's type.
const MOVE: &[&str] = &["Identity", "Reshape", "Flatten", "Squeeze", "Unsqueeze", "Transpose", "Concat", "Split", "Gather", "Slice", "Expand"];
/// Arithmetic the unsigned types take (results wrap as the type does; Pow's follow its base).
pub const ARITH: &[&str] = &["Add", "Sub", "Mul", "Div", "Mod", "Max", "Min", "Pow"];
/// Comparisons and orderings the unsigned types take (their storage orders as they do).
const COMPARE: &[&str] = &["Equal", "Less", "Greater", "LessOrEqual", "GreaterOrEqual", "ArgMax", "ArgMin", "TopK", "ReduceMax", "ReduceMin"];
/// Ops that convert from or to a carried type, or read only the shape.
const CONVERT: &[&str] = &["Cast", "CastLike", "QuantizeLinear", "DequantizeLinear", "Shape", "Size"];

/// Whether `ty` is one of the unsigned integer types held in a wider signed kind.
pub fn is_unsigned(ty: i32) -> bool {
    matches!(ty, UINT16 | UINT32 | UINT64)
}

/// The carried type of every value of a graph that holds one, by name.
#[derive(Debug, Default)]
pub struct CarriedTypes(HashMap<String, i32>);

impl CarriedTypes {
    /// The carried type of value `name`, 0 when it holds a type of its own kind.
    pub fn of(&self, name: &str) -> i32 {
        self.0.get(name).copied().unwrap_or(0)
    }

    /// Follows the carried types from the graph's inputs and constants through its nodes;
    /// every node that reads one and may not is refused, all of them in one error.
    pub fn infer(graph: &Graph) -> anyhow::Result<CarriedTypes> {
        let mut types = CarriedTypes::default();
        for d in &graph.inputs {
            if is_carried(d.elem_type) {
                types.0.insert(d.name.clone(), d.elem_type);
            }
        }
        let mut refused = Vec::new();
        for node in &graph.nodes {
            let ins: Vec<i32> = node.input.iter().map(|n| types.of(n)).collect();
            let op = node.op_type.as_str();
            for (name, &ty) in node.input.iter().zip(&ins).filter(|(_, &t)| t != 0) {
                let allowed = MOVE.contains(&op) || CONVERT.contains(&op) || (is_unsigned(ty) && (ARITH.contains(&op) || COMPARE.contains(&op)));
                if !allowed {
                    refused.push(format!(
                        "node `{}` ({op}) reads `{name}` of element type {}, which this tool computes with only in casts, quantization and data movement (and, for the unsigned integers, arithmetic, comparisons and orderings)",
                        node.name,
                        type_name(ty)
                    ));
                }
            }
            let out = output_type(node, &ins)?;
            // TopK's second output is its int64 indices.
            let typed = if op == "TopK" { 1 } else { node.output.len() };
            for o in node.output.iter().take(typed).filter(|o| !o.is_empty() && out != 0) {
                types.0.insert(o.clone(), out);
            }
        }
        if !refused.is_empty() {
            return Err(bad_input!("graph `{}`: {}", graph.name, refused.join("; ")));
        }
        Ok(types)
    }
}

/// The carried type a node's outputs hold (0 for a type of its own kind), given its inputs'.
fn output_type(node: &NodeProto, ins: &[i32]) -> anyhow::Result<i32> {
    let a = Attrs::new(node);
    let carried = |t: i32| if is_carried(t) { t } else { 0 };
    let first = ins.first().copied().unwrap_or(0);
    Ok(match node.op_type.as_str() {
        "Cast" => carried(a.int("to")?.unwrap_or(0) as i32),
        "CastLike" => ins.get(1).copied().unwrap_or(0),
        "QuantizeLinear" => match ins.get(2).copied().unwrap_or(0) {
            0 => carried(a.int("output_dtype")?.unwrap_or(0) as i32),
            zp => zp,
        },
        "Constant" | "ConstantOfShape" => a.tensor("value")?.map_or(0, |t| carried(t.data_type)),
        op if MOVE.contains(&op) || ARITH.contains(&op) || matches!(op, "TopK" | "ReduceMax" | "ReduceMin") => first,
        _ => 0,
    })
}
