//! Reductions: ReduceMean, ReduceSum, ReduceMax, ReduceMin, ReduceProd, ReduceL1, ReduceL2,
//! ReduceSumSquare, ReduceLogSum, ReduceLogSumExp; ArgMax, ArgMin, TopK, CumSum.
//!
//! Opset differences handled: `axes` is an attribute before opset 18 (13 for ReduceSum) and an
//! optional input afterwards; with no axes the op reduces over all dimensions unless
//! `noop_with_empty_axes` is set. Max and Min over an empty set give −∞ and +∞, a sum 0, a
//! product 1 (the log ones their logarithms). ArgMax/ArgMin give the first extreme index, the
//! last with `select_last_index`; TopK orders equal values by index (`largest`, `sorted`);
//! CumSum takes `exclusive` and `reverse`.

use super::{norm_axis, single, Kernel, NodeCtx, Registry};
use tch::Tensor;

pub fn register(reg: &mut Registry) {
    reg.insert("ReduceMean", reduce_mean);
    reg.insert("ReduceSum", reduce_sum);
    reg.insert("ReduceMax", reduce_max);
    reg.insert("ReduceMin", reduce_min);
    reg.insert("ReduceProd", |c| reduce(c, How::Prod, 18));
    reg.insert("ReduceL1", |c| reduce(c, How::L1, 18));
    reg.insert("ReduceL2", |c| reduce(c, How::L2, 18));
    reg.insert("ReduceSumSquare", |c| reduce(c, How::SumSquare, 18));
    reg.insert("ReduceLogSum", |c| reduce(c, How::LogSum, 18));
    reg.insert("ReduceLogSumExp", |c| reduce(c, How::LogSumExp, 18));
    reg.insert("ArgMax", |c| arg_extreme(c, true));
    reg.insert("ArgMin", |c| arg_extreme(c, false));
    reg.insert("TopK", top_k);
    reg.insert("CumSum", cum_sum);
}

#[derive(Clone, Copy)]
enum How {
    Mean,
    Sum,
    Max,
    Min,
    Prod,
    L1,
    L2,
    SumSquare,
    LogSum,
    LogSumExp,
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
            How::Prod => {
                // torch's prod takes one dimension at a time: the highest first.
                let mut sorted = axes.clone();
                sorted.sort_unstable_by(|a, b| b.cmp(a));
                sorted.iter().try_fold(x.shallow_clone(), |t, &d| t.f_prod_dim_int(d, keepdims, None::<tch::Kind>))?
            }
            How::L1 => x.f_abs()?.f_sum_dim_intlist(axes.as_slice(), keepdims, None::<tch::Kind>)?,
            How::SumSquare => x.f_square()?.f_sum_dim_intlist(axes.as_slice(), keepdims, None::<tch::Kind>)?,
            How::L2 => {
                let kind = x.kind();
                x.f_to_kind(tch::Kind::Double)?.f_square()?.f_sum_dim_intlist(axes.as_slice(), keepdims, None::<tch::Kind>)?.f_sqrt()?.f_to_kind(kind)?
            }
            How::LogSum => x.f_sum_dim_intlist(axes.as_slice(), keepdims, None::<tch::Kind>)?.f_log()?,
            How::LogSumExp => x.f_logsumexp(axes.as_slice(), keepdims)?,
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

fn arg_extreme(ctx: &NodeCtx, max: bool) -> anyhow::Result<Kernel> {
    let a = ctx.attrs();
    let axis = a.int_or("axis", 0)?;
    let keepdims = a.int_or("keepdims", 1)? != 0;
    let last = a.int_or("select_last_index", 0)? != 0;
    Ok(single(move |ins, _| {
        let x = ins.get(0)?;
        let d = norm_axis(ins.node, axis, x.dim() as i64)?;
        let pick = |t: &tch::Tensor| if max { t.f_argmax(d, keepdims) } else { t.f_argmin(d, keepdims) };
        if !last {
            return Ok(pick(x)?);
        }
        // The last extreme: the first one of the reversed axis, counted from the end.
        let n = x.size()[d as usize];
        Ok(pick(&x.f_flip([d])?)?.f_neg()?.f_add_scalar(n - 1)?)
    }))
}

fn top_k(ctx: &NodeCtx) -> anyhow::Result<Kernel> {
    let a = ctx.attrs();
    let axis = a.int_or("axis", -1)?;
    let largest = a.int_or("largest", 1)? != 0;
    let legacy_k = if ctx.opset < 10 { a.int("k")? } else { None };
    Ok(Box::new(move |ins: &super::Inputs, _| {
        let x = ins.get(0)?;
        let d = norm_axis(ins.node, axis, x.dim() as i64)?;
        let k = match legacy_k {
            Some(k) => k,
            None => *ins.ints(1)?.first().ok_or_else(|| crate::bad_input!("node `{}` (TopK): K is empty", ins.node.name))?,
        };
        let n = x.size()[d as usize];
        if k < 0 || k > n {
            return Err(crate::bad_input!("node `{}` (TopK): K = {k} for an axis of {n}", ins.node.name));
        }
        // A stable sort keeps equal values in index order, as ONNX asks (sorted or not).
        let (values, indices) = x.f_sort_stable(true, d, largest)?;
        Ok(vec![values.f_narrow(d, 0, k)?, indices.f_narrow(d, 0, k)?])
    }))
}

fn cum_sum(ctx: &NodeCtx) -> anyhow::Result<Kernel> {
    let a = ctx.attrs();
    let exclusive = a.int_or("exclusive", 0)? != 0;
    let reverse = a.int_or("reverse", 0)? != 0;
    Ok(single(move |ins, _| {
        let x = ins.get(0)?;
        let axis = *ins.ints(1)?.first().ok_or_else(|| crate::bad_input!("node `{}` (CumSum): axis is empty", ins.node.name))?;
        let d = norm_axis(ins.node, axis, x.dim() as i64)?;
        let x = if reverse { x.f_flip([d])? } else { x.shallow_clone() };
        let mut y = x.f_cumsum(d, x.kind())?;
        if exclusive {
            // Shift by one along the axis: a zero first, the last sum dropped.
            let n = x.size()[d as usize];
            let zero = y.f_narrow(d, 0, n.min(1))?.f_zeros_like()?;
            y = Tensor::f_cat(&[zero, y.f_narrow(d, 0, (n - 1).max(0))?], d)?;
        }
        Ok(if reverse { y.f_flip([d])? } else { y })
    }))
}
