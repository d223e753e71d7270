//! Reductions: ReduceMean, ReduceSum, ReduceMax, ReduceMin.
//!
//! Opset differences handled: `axes` is an attribute before opset 18 (13 for ReduceSum) and an
//! optional input afterwards; with no axes the op reduces over all dimensions unless
//! `noop_with_empty_axes` is set. Max and Min over an empty set give −∞ and +∞.

use super::{norm_axis, single, Kernel, NodeCtx, Registry};

pub fn register(reg: &mut Registry) {
    reg.insert("ReduceMean", reduce_mean);
    reg.insert("ReduceSum", reduce_sum);
    reg.insert("ReduceMax", reduce_max);
    reg.insert("ReduceMin", reduce_min);
}

#[derive(Clone, Copy)]
enum How {
    Mean,
    Sum,
    Max,
    Min,
}

fn reduce_mean(ctx: &NodeCtx) -> anyhow::Result<Kernel> {
    reduce(ctx, How::Mean, 18)
}

fn reduce_sum(ctx: &NodeCtx) -> anyhow::Result<Kernel> {
    reduce(ctx, How::Sum, 13)
}

fn reduce_max(ctx: &NodeCtx) -> anyhow::Result<Kernel> {
    reduce(ctx, How::Max, 18)
}

fn reduce_min(ctx: &NodeCtx) -> anyhow::Result<Kernel> {
    reduce(ctx, How::Min, 18)
}

fn reduce(ctx: &NodeCtx, how: How, axes_input_since: i64) -> anyhow::Result<Kernel> {
    let a = ctx.attrs();
    let keepdims = a.int_or("keepdims", 1)? != 0;
    let noop_empty = a.int_or("noop_with_empty_axes", 0)? != 0;
    let attr_axes = if ctx.opset < axes_input_since { a.ints("axes")? } else { None };
    let from_input = ctx.opset >= axes_input_since;
    let node = ctx.node.clone();
    Ok(single(move |ins, _| {
        let x = ins.get(0)?;
        let rank = x.dim() as i64;
        let axes = if from_input { ins.opt_ints(1)? } else { attr_axes.clone() };
        let axes: Vec<i64> = match axes {
            Some(v) if !v.is_empty() => v.iter().map(|&ax| norm_axis(&node, ax, rank)).collect::<Result<_, _>>()?,
            _ if noop_empty => return Ok(x.shallow_clone()),
            _ => (0..rank).collect(),
        };
        // Max and Min over an empty set give the identity of the reduction: −∞ and +∞ for
        // floats (the type's extremes for integers), as ONNX defines it.
        let sizes = x.size();
        if matches!(how, How::Max | How::Min) && axes.iter().any(|&a| sizes[a as usize] == 0) {
            let shape: Vec<i64> = (0..rank).filter_map(|d| if axes.contains(&d) { keepdims.then_some(1) } else { Some(sizes[d as usize]) }).collect();
            let fill = empty_identity(x.kind(), matches!(how, How::Max));
            return Ok(tch::Tensor::f_full(shape.as_slice(), fill, (x.kind(), x.device()))?);
        }
        Ok(match how {
            How::Mean => x.f_mean_dim(axes.as_slice(), keepdims, None::<tch::Kind>)?,
            How::Sum => x.f_sum_dim_intlist(axes.as_slice(), keepdims, None::<tch::Kind>)?,
            How::Max => x.f_amax(axes.as_slice(), keepdims)?,
            How::Min => x.f_amin(axes.as_slice(), keepdims)?,
        })
    }))
}

/// The identity of a Max (or Min) reduction for values of `kind`: what an empty set gives.
fn empty_identity(kind: tch::Kind, max: bool) -> f64 {
    use tch::Kind::*;
    let (lo, hi) = match kind {
        Uint8 => (0.0, 255.0),
        Int8 => (-128.0, 127.0),
        Int16 => (i16::MIN as f64, i16::MAX as f64),
        Int => (i32::MIN as f64, i32::MAX as f64),
        Int64 => (i64::MIN as f64, i64::MAX as f64),
        Bool => (0.0, 1.0),
        _ => (f64::NEG_INFINITY, f64::INFINITY),
    };
    if max {
        lo
    } else {
        hi
    }
}
