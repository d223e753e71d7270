//! Reductions: ReduceMean, ReduceSum, ReduceMax, ReduceMin.
//!
//! Opset differences handled: `axes` is an attribute before opset 18 (13 for ReduceSum) and an
//! optional input afterwards; with no axes the op reduces over all dimensions unless
//! `noop_with_empty_axes` is set.

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
        Ok(match how {
            How::Mean => x.f_mean_dim(axes.as_slice(), keepdims, None::<tch::Kind>)?,
            How::Sum => x.f_sum_dim_intlist(axes.as_slice(), keepdims, None::<tch::Kind>)?,
            How::Max => x.f_amax(axes.as_slice(), keepdims)?,
            How::Min => x.f_amin(axes.as_slice(), keepdims)?,
        })
    }))
}
