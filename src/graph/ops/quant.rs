//! Quantization: QuantizeLinear and DequantizeLinear, QDQ models' two ops.
//!
//! Opset differences handled: per-tensor scales from opset 10; a 1-D scale (and zero point)
//! applies along `axis` (default 1) from 13. QuantizeLinear rounds half to even and saturates to
//! its zero point's type (uint8 without one); DequantizeLinear computes (x − zero_point)·scale
//! in the scale's type. Int8 and uint8 (and int32 for DequantizeLinear) are supported; the
//! 4-bit, 16-bit and float8 types and `block_size` of opset 19–21 are not yet.
//!
//! In training mode QuantizeLinear keeps a float tensor of the integer values and rounds with a
//! straight-through gradient, so a Q → (integer Clip) → DQ chain is fake quantization whose
//! gradient reaches x and the scale: a student graph carrying QDQ pairs trains as a
//! quantization-aware model and exports as itself.

use super::{norm_axis, single, Inputs, Kernel, NodeCtx, Registry};
use crate::bad_input;
use tch::{Kind, Tensor};

pub fn register(reg: &mut Registry) {
    reg.insert("QuantizeLinear", quantize_linear);
    reg.insert("DequantizeLinear", dequantize_linear);
}

/// `t` (a scale or zero point) shaped to broadcast against `x`: as is when it has one element,
/// along `axis` when it is 1-D.
fn along_axis(ins: &Inputs, t: &Tensor, x: &Tensor, axis: i64) -> anyhow::Result<Tensor> {
    if t.numel() <= 1 {
        return Ok(t.reshape([] as [i64; 0]));
    }
    let a = norm_axis(ins.node, axis, x.dim() as i64)?;
    if t.dim() != 1 || t.size()[0] != x.size()[a as usize] {
        return Err(bad_input!(
            "node `{}` ({}): a per-axis scale must be 1-D with {} entries (axis {a}), got {:?}",
            ins.node.name,
            ins.node.op_type,
            x.size()[a as usize],
            t.size()
        ));
    }
    let mut shape = vec![1i64; x.dim()];
    shape[a as usize] = -1;
    Ok(t.reshape(shape.as_slice()))
}

/// The saturation range of an integer type.
fn range(kind: Kind, node: &onnx_protobuf::NodeProto) -> anyhow::Result<(f64, f64)> {
    match kind {
        Kind::Int8 => Ok((-128.0, 127.0)),
        Kind::Uint8 => Ok((0.0, 255.0)),
        other => Err(bad_input!("node `{}` (QuantizeLinear): zero point of type {other:?} is not supported (int8, uint8)", node.name)),
    }
}

fn quantize_linear(ctx: &NodeCtx) -> anyhow::Result<Kernel> {
    let axis = ctx.attrs().int_or("axis", 1)?;
    Ok(single(move |ins, rc| {
        let x = ins.get(0)?;
        let device = x.device();
        let scale = along_axis(ins, &ins.on(1, device)?, x, axis)?.to_kind(x.kind());
        let (zp, kind) = match ins.opt(2) {
            Some(z) => (along_axis(ins, &crate::host::upload(z, device)?, x, axis)?, z.kind()),
            None => (Tensor::zeros([], (Kind::Uint8, device)), Kind::Uint8),
        };
        let (lo, hi) = range(kind, ins.node)?;
        let scaled = x / &scale;
        if rc.train {
            // Straight-through rounding; clamp passes no gradient outside the range.
            let rounded = (scaled.round() - &scaled).detach() + &scaled;
            return Ok((rounded + zp.to_kind(x.kind())).clamp(lo, hi));
        }
        Ok((scaled.round() + zp.to_kind(x.kind())).clamp(lo, hi).to_kind(kind))
    }))
}

fn dequantize_linear(ctx: &NodeCtx) -> anyhow::Result<Kernel> {
    let axis = ctx.attrs().int_or("axis", 1)?;
    Ok(single(move |ins, _| {
        let x = ins.get(0)?;
        let device = ins.compute_device();
        let x = crate::host::upload(x, device)?;
        let scale = ins.on(1, device)?;
        let float = if matches!(scale.kind(), Kind::Float | Kind::Double | Kind::Half | Kind::BFloat16) { scale.kind() } else { Kind::Float };
        let scale = along_axis(ins, &scale, &x, axis)?.to_kind(float);
        let centered = match ins.opt(2) {
            Some(z) => x.to_kind(float) - along_axis(ins, &crate::host::upload(z, device)?, &x, axis)?.to_kind(float),
            None => x.to_kind(float),
        };
        Ok(centered * scale)
    }))
}
