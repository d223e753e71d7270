//! Element-wise activations: Relu, LeakyRelu, Clip, Sigmoid, HardSigmoid, HardSwish, Tanh, Erf,
//! Gelu, PRelu, Elu, Softplus, Softmax, LogSoftmax, Hardmax.
//!
//! Opset differences handled: Clip bounds are attributes before opset 11 and optional inputs
//! from 11 (an empty input name means unbounded); Softmax/LogSoftmax/Hardmax before opset 13
//! flatten the input to 2-D at `axis` (default 1), from 13 they work on one axis (default -1).
//! PRelu's slope of C values applies per channel before opset 7, and broadcasts as NumPy's
//! from 7.

use super::{norm_axis, single, unary, Kernel, NodeCtx, Registry};
use tch::Tensor;

pub fn register(reg: &mut Registry) {
    reg.insert("Relu", relu);
    reg.insert("LeakyRelu", leaky_relu);
    reg.insert("Clip", clip);
    reg.insert("Sigmoid", sigmoid);
    reg.insert("HardSigmoid", hard_sigmoid);
    reg.insert("HardSwish", hard_swish);
    reg.insert("Tanh", tanh);
    reg.insert("Erf", erf);
    reg.insert("Gelu", gelu);
    reg.insert("PRelu", prelu);
    reg.insert("Elu", elu);
    reg.insert("Softplus", softplus);
    reg.insert("Softmax", softmax);
    reg.insert("LogSoftmax", log_softmax);
    reg.insert("Hardmax", hardmax);
}

fn relu(_: &NodeCtx) -> anyhow::Result<Kernel> {
    Ok(unary(Tensor::f_relu))
}

fn leaky_relu(ctx: &NodeCtx) -> anyhow::Result<Kernel> {
    let alpha = ctx.attrs().float_or("alpha", 0.01)? as f64;
    Ok(single(move |ins, _| {
        let x = ins.get(0)?;
        Ok(x.f_where_self(&x.f_ge(0.0)?, &x.f_mul_scalar(alpha)?)?)
    }))
}

fn clip(ctx: &NodeCtx) -> anyhow::Result<Kernel> {
    if ctx.opset < 11 {
        let a = ctx.attrs();
        let lo = a.float_or("min", f32::MIN)? as f64;
        let hi = a.float_or("max", f32::MAX)? as f64;
        return Ok(single(move |ins, _| Ok(ins.get(0)?.f_clamp(lo, hi)?)));
    }
    Ok(single(|ins, _| {
        let x = ins.get(0)?;
        let lo = ins.opt_scalar(1)?;
        let hi = ins.opt_scalar(2)?;
        let out = match (lo, hi) {
            (Some(l), Some(h)) => x.f_clamp(l, h)?,
            (Some(l), None) => x.f_clamp_min(l)?,
            (None, Some(h)) => x.f_clamp_max(h)?,
            (None, None) => x.shallow_clone(),
        };
        // The bounds are read as f64: on an integer input libtorch promotes to float, while
        // ONNX's Clip keeps the input's type (its bounds share it, so nothing is rounded).
        Ok(if out.kind() == x.kind() { out } else { out.f_to_kind(x.kind())? })
    }))
}

fn sigmoid(_: &NodeCtx) -> anyhow::Result<Kernel> {
    Ok(unary(Tensor::f_sigmoid))
}

fn hard_sigmoid(ctx: &NodeCtx) -> anyhow::Result<Kernel> {
    let a = ctx.attrs();
    let alpha = a.float_or("alpha", 0.2)? as f64;
    let beta = a.float_or("beta", 0.5)? as f64;
    Ok(single(move |ins, _| Ok(ins.get(0)?.f_mul_scalar(alpha)?.f_add_scalar(beta)?.f_clamp(0.0, 1.0)?)))
}

fn hard_swish(_: &NodeCtx) -> anyhow::Result<Kernel> {
    Ok(unary(Tensor::f_hardswish))
}

fn tanh(_: &NodeCtx) -> anyhow::Result<Kernel> {
    Ok(unary(Tensor::f_tanh))
}

fn erf(_: &NodeCtx) -> anyhow::Result<Kernel> {
    Ok(unary(Tensor::f_erf))
}

fn gelu(ctx: &NodeCtx) -> anyhow::Result<Kernel> {
    let approximate = ctx.attrs().string("approximate")?.unwrap_or_else(|| "none".into());
    if approximate != "none" && approximate != "tanh" {
        return Err(ctx.attrs().unsupported("approximate", &approximate));
    }
    Ok(single(move |ins, _| Ok(ins.get(0)?.f_gelu(&approximate)?)))
}

fn prelu(ctx: &NodeCtx) -> anyhow::Result<Kernel> {
    if ctx.opset < 7 {
        // Before opset 7 a slope of C values applies per channel (dimension 1).
        return Ok(single(|ins, _| {
            let d = ins.compute_device();
            let (x, slope) = (ins.on(0, d)?, ins.on(1, d)?);
            let slope = if slope.dim() == 1 && x.dim() > 2 && slope.size()[0] == x.size()[1] {
                let mut shape = vec![-1i64];
                shape.extend(std::iter::repeat_n(1, x.dim() - 2));
                slope.f_reshape(shape.as_slice())?
            } else {
                slope
            };
            Ok(x.f_where_self(&x.f_ge(0.0)?, &x.f_mul(&slope)?)?)
        }));
    }
    // ONNX broadcasts the slope unidirectionally (torch's prelu wants it per channel only).
    Ok(super::binary(|x, slope| x.f_where_self(&x.f_ge(0.0)?, &x.f_mul(slope)?)))
}

fn elu(ctx: &NodeCtx) -> anyhow::Result<Kernel> {
    let alpha = ctx.attrs().float_or("alpha", 1.0)? as f64;
    Ok(single(move |ins, _| {
        let x = ins.get(0)?;
        Ok(x.f_where_self(&x.f_ge(0.0)?, &x.f_exp()?.f_sub_scalar(1.0)?.f_mul_scalar(alpha)?)?)
    }))
}

fn softplus(_: &NodeCtx) -> anyhow::Result<Kernel> {
    Ok(unary(Tensor::f_softplus))
}

/// Which of the softmax family a node computes.
#[derive(Clone, Copy)]
enum Soft {
    Max,
    LogMax,
    /// 1 at the first maximum, 0 elsewhere.
    Hard,
}

fn softmax(ctx: &NodeCtx) -> anyhow::Result<Kernel> {
    softmax_like(ctx, Soft::Max)
}

fn log_softmax(ctx: &NodeCtx) -> anyhow::Result<Kernel> {
    softmax_like(ctx, Soft::LogMax)
}

fn hardmax(ctx: &NodeCtx) -> anyhow::Result<Kernel> {
    softmax_like(ctx, Soft::Hard)
}

fn softmax_like(ctx: &NodeCtx, how: Soft) -> anyhow::Result<Kernel> {
    let legacy = ctx.opset < 13;
    let axis = ctx.attrs().int_or("axis", if legacy { 1 } else { -1 })?;
    let node = ctx.node.clone();
    Ok(single(move |ins, _| {
        let x = ins.get(0)?;
        let rank = x.dim() as i64;
        let a = norm_axis(&node, axis, rank)?;
        let apply = |t: &tch::Tensor, d: i64| match how {
            Soft::Max => t.f_softmax(d, None::<tch::Kind>),
            Soft::LogMax => t.f_log_softmax(d, None::<tch::Kind>),
            Soft::Hard => t.f_zeros_like()?.f_scatter_value(d, &t.f_argmax(d, true)?, 1.0),
        };
        if !legacy || a == rank - 1 {
            return Ok(apply(x, a)?);
        }
        // Before opset 13 the op normalizes over all dimensions from `axis` on, flattened.
        let shape = x.size();
        let outer: i64 = shape[..a as usize].iter().product();
        let flat = x.f_reshape([outer, -1])?;
        Ok(apply(&flat, 1)?.f_reshape(&shape)?)
    }))
}
