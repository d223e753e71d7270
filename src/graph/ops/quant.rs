//! Quantization: QuantizeLinear and DequantizeLinear, QDQ models' two ops.
//!
//! Opset differences handled: per-tensor scales from opset 10; a 1-D scale (and zero point)
//! applies along `axis` (default 1) from 13; `block_size` (21) gives one scale per block of
//! that many elements along `axis`. QuantizeLinear rounds half to even and saturates to its
//! output type: the zero point's, else `output_dtype` (21), else uint8; int8, uint8, int16,
//! uint16, int4 and uint4, or a float8 or float4e2m1 type (rounded to nearest even, saturating
//! unless `saturate` is 0 for float8). DequantizeLinear computes (x − zero_point)·scale in the scale's type, for
//! x of any of those types or int32.
//!
//! In training mode QuantizeLinear keeps a float tensor of the integer values and rounds with a
//! straight-through gradient, so a Q → (integer Clip) → DQ chain is fake quantization whose
//! gradient reaches x and the scale: a student graph carrying QDQ pairs trains as a
//! quantization-aware model and exports as itself.

use super::{convert, norm_axis, single, Inputs, Kernel, NodeCtx, Registry};
use crate::bad_input;
use tch::{Kind, Tensor};

pub fn register(reg: &mut Registry) {
    reg.insert("QuantizeLinear", quantize_linear);
    reg.insert("DequantizeLinear", dequantize_linear);
}

/// `t` (a scale or zero point) shaped to broadcast against `x`: as is when it has one element,
/// along `axis` when it is 1-D, and repeated over each block of `block` elements along `axis`
/// when it has `x`'s rank (blocked quantization).
fn along_axis(ins: &Inputs, t: &Tensor, x: &Tensor, axis: i64, block: i64) -> anyhow::Result<Tensor> {
    if t.numel() <= 1 && block == 0 {
        return Ok(t.reshape([] as [i64; 0]));
    }
    let a = norm_axis(ins.node, axis, x.dim() as i64)? as usize;
    let xs = x.size();
    if block > 0 {
        let mut want = xs.clone();
        want[a] = (xs[a] + block - 1) / block;
        if t.size() != want {
            return Err(bad_input!(
                "node `{}` ({}): a blocked scale for shape {xs:?} (block {block} along axis {a}) must have shape {want:?}, got {:?}",
                ins.node.name,
                ins.node.op_type,
                t.size()
            ));
        }
        return Ok(t.f_repeat_interleave_self_int(block, Some(a as i64), None::<i64>)?.f_narrow(a as i64, 0, xs[a])?);
    }
    if t.dim() != 1 || t.size()[0] != xs[a] {
        return Err(bad_input!(
            "node `{}` ({}): a per-axis scale must be 1-D with {} entries (axis {a}), got {:?}",
            ins.node.name,
            ins.node.op_type,
            xs[a],
            t.size()
        ));
    }
    let mut shape = vec![1i64; x.dim()];
    shape[a] = -1;
    Ok(t.reshape(shape.as_slice()))
}

/// What QuantizeLinear produces for output type `ty`: an integer range held in a storage
/// kind, or a float8 or float4e2m1 type.
enum Target {
    Int { lo: f64, hi: f64, storage: Kind },
    Float(i32),
}

fn target(ty: i32, node: &onnx_protobuf::NodeProto) -> anyhow::Result<Target> {
    use crate::onnx::tensor::carried::*;
    use onnx_protobuf::tensor_proto::DataType;
    let storage = crate::onnx::tensor::storage_kind(ty);
    Ok(match ty {
        x if x == DataType::INT8 as i32 => Target::Int { lo: -128.0, hi: 127.0, storage: Kind::Int8 },
        x if x == DataType::UINT8 as i32 => Target::Int { lo: 0.0, hi: 255.0, storage: Kind::Uint8 },
        x if x == DataType::INT16 as i32 => Target::Int { lo: -32768.0, hi: 32767.0, storage: Kind::Int16 },
        UINT16 | INT4 | UINT4 => {
            let (lo, hi) = convert::int_range(ty).expect("an integer type");
            Target::Int { lo, hi, storage: storage.expect("carried") }
        }
        FLOAT8E4M3FN | FLOAT8E4M3FNUZ | FLOAT8E5M2 | FLOAT8E5M2FNUZ | FLOAT4E2M1 => Target::Float(ty),
        other => {
            return Err(bad_input!(
                "node `{}` (QuantizeLinear): output type {} is not supported (int8, uint8, int16, uint16, int4, uint4, float8, float4e2m1)",
                node.name,
                crate::onnx::tensor::type_name(other)
            ))
        }
    })
}

fn quantize_linear(ctx: &NodeCtx) -> anyhow::Result<Kernel> {
    let a = ctx.attrs();
    let axis = a.int_or("axis", 1)?;
    let block = a.int_or("block_size", 0)?;
    let saturate = a.int_or("saturate", 1)? != 0;
    let output_dtype = a.int_or("output_dtype", 0)? as i32;
    let zp_carried = ctx.carried(2);
    Ok(single(move |ins, rc| {
        let x = ins.get(0)?;
        let device = x.device();
        let scale = along_axis(ins, &ins.on(1, device)?, x, axis, block)?.to_kind(x.kind());
        let zp = match ins.opt(2) {
            Some(z) => Some(along_axis(ins, &crate::host::upload(z, device)?, x, axis, block)?),
            None => None,
        };
        let ty = match (&zp, zp_carried) {
            (_, t) if t != 0 => t,
            (Some(z), _) => crate::onnx::tensor::data_type_of(z.kind())? as i32,
            (None, _) if output_dtype != 0 => output_dtype,
            (None, _) => onnx_protobuf::tensor_proto::DataType::UINT8 as i32,
        };
        let scaled = x / &scale;
        let shifted = |v: Tensor| -> anyhow::Result<Tensor> {
            Ok(match &zp {
                Some(z) => v + z.f_to_kind(x.kind())?,
                None => v,
            })
        };
        match target(ty, ins.node)? {
            Target::Float(ty) => convert::to_carried(&shifted(scaled)?, ty, convert::CastOptions { saturate, ..Default::default() }, ins.node),
            Target::Int { lo, hi, storage } => {
                if rc.train {
                    // Straight-through rounding; clamp passes no gradient outside the range.
                    let rounded = (scaled.round() - &scaled).detach() + &scaled;
                    return Ok(shifted(rounded)?.clamp(lo, hi));
                }
                Ok(shifted(scaled.round())?.clamp(lo, hi).to_kind(storage))
            }
        }
    }))
}

fn dequantize_linear(ctx: &NodeCtx) -> anyhow::Result<Kernel> {
    let a = ctx.attrs();
    let axis = a.int_or("axis", 1)?;
    let block = a.int_or("block_size", 0)?;
    Ok(single(move |ins, _| {
        let x = ins.get(0)?;
        let device = ins.compute_device();
        let x = crate::host::upload(x, device)?;
        let scale = ins.on(1, device)?;
        let float = if matches!(scale.kind(), Kind::Float | Kind::Double | Kind::Half | Kind::BFloat16) { scale.kind() } else { Kind::Float };
        let scale = along_axis(ins, &scale, &x, axis, block)?.to_kind(float);
        let centered = match ins.opt(2) {
            Some(z) => x.to_kind(float) - along_axis(ins, &crate::host::upload(z, device)?, &x, axis, block)?.to_kind(float),
            None => x.to_kind(float),
        };
        Ok(centered * scale)
    }))
}
