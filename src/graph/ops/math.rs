//! Element-wise math and logic beyond arithmetic: Sign, Round, Floor, Ceil, Sin, Cos, IsNaN,
//! IsInf, Not, And, Or, Xor, LessOrEqual, GreaterOrEqual, and the activations exporters of
//! binarized and Keras networks emit: Selu, Celu, Softsign, ThresholdedRelu, Mish, Swish.
//!
//! Sign keeps NaN; Round rounds half to even; IsInf's `detect_positive`/`detect_negative`
//! choose the infinities it reports. Before opset 7 the logical ops broadcast as the arithmetic
//! ones did (`broadcast`, `axis`: see `arith.rs`).

use super::{legacy_binary, single, unary, Kernel, NodeCtx, Registry};
use tch::Tensor;

pub fn register(reg: &mut Registry) {
    reg.insert("Sign", sign);
    reg.insert("Round", round);
    reg.insert("Floor", floor);
    reg.insert("Ceil", ceil);
    reg.insert("Sin", sin);
    reg.insert("Cos", cos);
    reg.insert("IsNaN", is_nan);
    reg.insert("IsInf", is_inf);
    reg.insert("Not", not);
    reg.insert("And", and);
    reg.insert("Or", or);
    reg.insert("Xor", xor);
    reg.insert("LessOrEqual", less_or_equal);
    reg.insert("GreaterOrEqual", greater_or_equal);
    reg.insert("Selu", selu);
    reg.insert("Celu", celu);
    reg.insert("Softsign", softsign);
    reg.insert("ThresholdedRelu", thresholded_relu);
    reg.insert("Mish", mish);
    reg.insert("Swish", swish);
}

fn sign(_: &NodeCtx) -> anyhow::Result<Kernel> {
    Ok(single(|ins, _| {
        let x = ins.get(0)?;
        let s = x.f_sign()?;
        Ok(if super::is_float(x.kind()) { x.f_where_self(&x.f_isnan()?, &s)? } else { s })
    }))
}

fn round(_: &NodeCtx) -> anyhow::Result<Kernel> {
    // torch's round is half to even, as ONNX's.
    Ok(unary(Tensor::f_round))
}

fn floor(_: &NodeCtx) -> anyhow::Result<Kernel> {
    Ok(unary(Tensor::f_floor))
}

fn ceil(_: &NodeCtx) -> anyhow::Result<Kernel> {
    Ok(unary(Tensor::f_ceil))
}

fn sin(_: &NodeCtx) -> anyhow::Result<Kernel> {
    Ok(unary(Tensor::f_sin))
}

fn cos(_: &NodeCtx) -> anyhow::Result<Kernel> {
    Ok(unary(Tensor::f_cos))
}

fn is_nan(_: &NodeCtx) -> anyhow::Result<Kernel> {
    Ok(unary(Tensor::f_isnan))
}

fn is_inf(ctx: &NodeCtx) -> anyhow::Result<Kernel> {
    let a = ctx.attrs();
    let (pos, neg) = (a.int_or("detect_positive", 1)? != 0, a.int_or("detect_negative", 1)? != 0);
    Ok(single(move |ins, _| {
        let x = ins.get(0)?;
        Ok(match (pos, neg) {
            (true, true) => x.f_isinf()?,
            (true, false) => x.f_isposinf()?,
            (false, true) => x.f_isneginf()?,
            (false, false) => x.f_isinf()?.f_logical_and(&x.f_isnan()?)?,
        })
    }))
}

fn not(_: &NodeCtx) -> anyhow::Result<Kernel> {
    Ok(unary(Tensor::f_logical_not))
}

fn and(ctx: &NodeCtx) -> anyhow::Result<Kernel> {
    legacy_binary(ctx, Tensor::f_logical_and)
}

fn or(ctx: &NodeCtx) -> anyhow::Result<Kernel> {
    legacy_binary(ctx, Tensor::f_logical_or)
}

fn xor(ctx: &NodeCtx) -> anyhow::Result<Kernel> {
    legacy_binary(ctx, Tensor::f_logical_xor)
}

fn less_or_equal(ctx: &NodeCtx) -> anyhow::Result<Kernel> {
    legacy_binary(ctx, Tensor::f_le_tensor)
}

fn greater_or_equal(ctx: &NodeCtx) -> anyhow::Result<Kernel> {
    legacy_binary(ctx, Tensor::f_ge_tensor)
}

fn selu(ctx: &NodeCtx) -> anyhow::Result<Kernel> {
    let a = ctx.attrs();
    let alpha = a.float_or("alpha", 1.673_263_2)? as f64;
    let gamma = a.float_or("gamma", 1.050_701)? as f64;
    Ok(single(move |ins, _| {
        let x = ins.get(0)?;
        let negative = x.f_exp()?.f_sub_scalar(1.0)?.f_mul_scalar(alpha)?;
        Ok(x.f_where_self(&x.f_gt(0.0)?, &negative)?.f_mul_scalar(gamma)?)
    }))
}

fn celu(ctx: &NodeCtx) -> anyhow::Result<Kernel> {
    let alpha = ctx.attrs().float_or("alpha", 1.0)? as f64;
    Ok(single(move |ins, _| {
        let x = ins.get(0)?;
        let negative = x.f_div_scalar(alpha)?.f_exp()?.f_sub_scalar(1.0)?.f_mul_scalar(alpha)?.f_clamp_max(0.0)?;
        Ok(x.f_clamp_min(0.0)?.f_add(&negative)?)
    }))
}

fn softsign(_: &NodeCtx) -> anyhow::Result<Kernel> {
    Ok(single(|ins, _| {
        let x = ins.get(0)?;
        Ok(x.f_div(&x.f_abs()?.f_add_scalar(1.0)?)?)
    }))
}

fn thresholded_relu(ctx: &NodeCtx) -> anyhow::Result<Kernel> {
    let alpha = ctx.attrs().float_or("alpha", 1.0)? as f64;
    Ok(single(move |ins, _| {
        let x = ins.get(0)?;
        Ok(x.f_where_self(&x.f_gt(alpha)?, &x.f_zeros_like()?)?)
    }))
}

fn mish(_: &NodeCtx) -> anyhow::Result<Kernel> {
    Ok(single(|ins, _| {
        let x = ins.get(0)?;
        Ok(x.f_mul(&x.f_softplus()?.f_tanh()?)?)
    }))
}

fn swish(ctx: &NodeCtx) -> anyhow::Result<Kernel> {
    let alpha = ctx.attrs().float_or("alpha", 1.0)? as f64;
    Ok(single(move |ins, _| {
        let x = ins.get(0)?;
        Ok(x.f_mul(&x.f_mul_scalar(alpha)?.f_sigmoid()?)?)
    }))
}
