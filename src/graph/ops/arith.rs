//! Arithmetic with NumPy broadcasting and the linear-algebra ops: Add, Sub, Mul, Div, Pow, Sqrt,
//! Exp, Log, Neg, Abs, Reciprocal, Mod, Equal, Less, Greater, Where, the variadic Sum, Max, Min,
//! Mean, and MatMul, Gemm, Einsum.
//!
//! ONNX integer division truncates toward zero (torch's `/` would give floats). Gemm computes
//! alpha·A'·B' + beta·C with optional transposes; C is optional from opset 11. Before opset 7
//! the binary ops broadcast only with `broadcast` = 1, aligning the second operand at `axis`
//! (old Caffe2 exports add biases so). Einsum takes ONNX's equation as torch's einsum does.

use super::is_float;
use super::{binary, legacy_binary, single, unary, Kernel, NodeCtx, Registry};
use tch::Tensor;

pub fn register(reg: &mut Registry) {
    reg.insert("Add", add);
    reg.insert("Sub", sub);
    reg.insert("Mul", mul);
    reg.insert("Div", div);
    reg.insert("Pow", pow);
    reg.insert("Sqrt", sqrt);
    reg.insert("Exp", exp);
    reg.insert("Log", log);
    reg.insert("Neg", neg);
    reg.insert("Abs", abs);
    reg.insert("Reciprocal", reciprocal);
    reg.insert("Mod", modulo);
    reg.insert("Equal", equal);
    reg.insert("Less", less);
    reg.insert("Greater", greater);
    reg.insert("Where", where_);
    reg.insert("Sum", sum);
    reg.insert("Max", max);
    reg.insert("Min", min);
    reg.insert("Mean", mean);
    reg.insert("MatMul", matmul);
    reg.insert("Gemm", gemm);
    reg.insert("Einsum", einsum);
}

fn add(ctx: &NodeCtx) -> anyhow::Result<Kernel> {
    legacy_binary(ctx, Tensor::f_add)
}

fn sub(ctx: &NodeCtx) -> anyhow::Result<Kernel> {
    legacy_binary(ctx, Tensor::f_sub)
}

fn mul(ctx: &NodeCtx) -> anyhow::Result<Kernel> {
    legacy_binary(ctx, Tensor::f_mul)
}

fn div(ctx: &NodeCtx) -> anyhow::Result<Kernel> {
    legacy_binary(ctx, |a, b| if is_float(a.kind()) { a.f_div(b) } else { a.f_div_tensor_mode(b, "trunc") })
}

fn pow(ctx: &NodeCtx) -> anyhow::Result<Kernel> {
    legacy_binary(ctx, |a, b| a.f_pow(b)?.f_to_kind(a.kind()))
}

fn sqrt(_: &NodeCtx) -> anyhow::Result<Kernel> {
    Ok(unary(Tensor::f_sqrt))
}

fn exp(_: &NodeCtx) -> anyhow::Result<Kernel> {
    Ok(unary(Tensor::f_exp))
}

fn log(_: &NodeCtx) -> anyhow::Result<Kernel> {
    Ok(unary(Tensor::f_log))
}

fn neg(_: &NodeCtx) -> anyhow::Result<Kernel> {
    Ok(unary(Tensor::f_neg))
}

fn abs(_: &NodeCtx) -> anyhow::Result<Kernel> {
    Ok(unary(Tensor::f_abs))
}

fn reciprocal(_: &NodeCtx) -> anyhow::Result<Kernel> {
    Ok(unary(Tensor::f_reciprocal))
}

/// Mod: `fmod=0` takes the divisor's sign (Python's %, torch `remainder`), `fmod=1` the
/// dividend's (C's fmod); float inputs require `fmod=1` by the spec.
fn modulo(ctx: &NodeCtx) -> anyhow::Result<Kernel> {
    Ok(if ctx.attrs().int_or("fmod", 0)? != 0 { binary(Tensor::f_fmod_tensor) } else { binary(Tensor::f_remainder_tensor) })
}

fn equal(ctx: &NodeCtx) -> anyhow::Result<Kernel> {
    legacy_binary(ctx, Tensor::f_eq_tensor)
}

fn less(ctx: &NodeCtx) -> anyhow::Result<Kernel> {
    legacy_binary(ctx, Tensor::f_lt_tensor)
}

fn greater(ctx: &NodeCtx) -> anyhow::Result<Kernel> {
    legacy_binary(ctx, Tensor::f_gt_tensor)
}

fn where_(_: &NodeCtx) -> anyhow::Result<Kernel> {
    Ok(single(|ins, _| {
        let d = ins.compute_device();
        Ok(ins.on(1, d)?.f_where_self(&ins.on(0, d)?, &ins.on(2, d)?)?)
    }))
}

/// Sum, Max, Min, Mean: element-wise over any number of broadcast inputs (older zoo models
/// use Sum for residual additions).
fn variadic(f: fn(&Tensor, &Tensor) -> Result<Tensor, tch::TchError>, mean: bool) -> Kernel {
    single(move |ins, _| {
        let d = ins.compute_device();
        let present: Vec<usize> = (0..ins.values.len()).filter(|i| ins.opt(*i).is_some()).collect();
        let mut acc = ins.on(present[0], d)?;
        for &i in &present[1..] {
            acc = f(&acc, &ins.on(i, d)?)?;
        }
        Ok(if mean { acc.f_div_scalar(present.len() as f64)? } else { acc })
    })
}

fn sum(_: &NodeCtx) -> anyhow::Result<Kernel> {
    Ok(variadic(Tensor::f_add, false))
}

fn max(_: &NodeCtx) -> anyhow::Result<Kernel> {
    Ok(variadic(Tensor::f_maximum, false))
}

fn min(_: &NodeCtx) -> anyhow::Result<Kernel> {
    Ok(variadic(Tensor::f_minimum, false))
}

fn mean(_: &NodeCtx) -> anyhow::Result<Kernel> {
    Ok(variadic(Tensor::f_add, true))
}

fn matmul(_: &NodeCtx) -> anyhow::Result<Kernel> {
    Ok(binary(Tensor::f_matmul))
}

fn gemm(ctx: &NodeCtx) -> anyhow::Result<Kernel> {
    let a = ctx.attrs();
    let alpha = a.float_or("alpha", 1.0)? as f64;
    let beta = a.float_or("beta", 1.0)? as f64;
    let trans_a = a.int_or("transA", 0)? != 0;
    let trans_b = a.int_or("transB", 0)? != 0;
    Ok(single(move |ins, _| {
        let x = ins.get(0)?;
        let w = ins.get(1)?;
        let x = if trans_a { x.f_transpose(0, 1)? } else { x.shallow_clone() };
        let mut y = if trans_b && alpha == 1.0 {
            // The common Linear case: one fused call.
            x.f_linear(w, None::<Tensor>)?
        } else {
            let w = if trans_b { w.f_transpose(0, 1)? } else { w.shallow_clone() };
            x.f_matmul(&w)?.f_mul_scalar(alpha)?
        };
        if let Some(c) = ins.opt(2) {
            y = if beta == 1.0 { y.f_add(c)? } else { y.f_add(&c.f_mul_scalar(beta)?)? };
        }
        Ok(y)
    }))
}

fn einsum(ctx: &NodeCtx) -> anyhow::Result<Kernel> {
    let a = ctx.attrs();
    let equation = a.string("equation")?.ok_or_else(|| crate::bad_input!("node `{}` (Einsum): `equation` is required", ctx.node.name))?;
    // torch's parser takes no spaces.
    let equation: String = equation.chars().filter(|c| !c.is_whitespace()).collect();
    Ok(single(move |ins, _| {
        let d = ins.compute_device();
        let operands: Vec<Tensor> = (0..ins.values.len()).map(|i| ins.on(i, d)).collect::<Result<_, _>>()?;
        Ok(Tensor::f_einsum(&equation, &operands, None::<&[i64]>)?)
    }))
}
