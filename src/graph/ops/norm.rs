//! Normalizations over instances, groups and vectors: InstanceNormalization,
//! GroupNormalization, LpNormalization (BatchNormalization and LayerNormalization are in
//! `nn.rs`).
//!
//! GroupNormalization's scale and bias are per group at opsets 18–20 and per channel from 21;
//! statistics are the biased variance over each group, computed in float32 at least (its
//! `stash_type`). LpNormalization divides by the p-norm (1 or 2) along `axis`, as ONNX does,
//! with no epsilon.

use super::{norm_axis, single, Kernel, NodeCtx, Registry};
use crate::bad_input;
use tch::{Kind, Tensor};

pub fn register(reg: &mut Registry) {
    reg.insert("InstanceNormalization", instance_norm);
    reg.insert("GroupNormalization", group_norm);
    reg.insert("LpNormalization", lp_norm);
}

/// `v` (one value per channel) shaped to broadcast over an input of rank `rank`.
fn per_channel(v: &Tensor, rank: usize) -> anyhow::Result<Tensor> {
    let mut shape = vec![1i64; rank];
    shape[1] = -1;
    Ok(v.f_reshape(shape.as_slice())?)
}

fn instance_norm(ctx: &NodeCtx) -> anyhow::Result<Kernel> {
    let eps = ctx.attrs().float_or("epsilon", 1e-5)? as f64;
    Ok(single(move |ins, _| {
        let x = ins.get(0)?;
        if x.dim() < 3 {
            return Err(bad_input!("node `{}` (InstanceNormalization): input {:?} needs at least 3 dimensions", ins.node.name, x.size()));
        }
        Ok(x.f_instance_norm(Some(ins.get(1)?), Some(ins.get(2)?), None::<&Tensor>, None::<&Tensor>, true, 0.0, eps, false)?)
    }))
}

fn group_norm(ctx: &NodeCtx) -> anyhow::Result<Kernel> {
    let a = ctx.attrs();
    let eps = a.float_or("epsilon", 1e-5)? as f64;
    let groups = a.int("num_groups")?.ok_or_else(|| bad_input!("node `{}` (GroupNormalization): num_groups is required", ctx.node.name))?;
    let per_group = ctx.opset < 21;
    Ok(single(move |ins, _| {
        let x = ins.get(0)?;
        let dims = x.size();
        if x.dim() < 3 || groups <= 0 || dims[1] % groups != 0 {
            return Err(bad_input!("node `{}` (GroupNormalization): {groups} groups for an input of shape {dims:?}", ins.node.name));
        }
        let kind = x.kind();
        let work = if kind == Kind::Double { Kind::Double } else { Kind::Float };
        let grouped = x.f_to_kind(work)?.f_reshape([dims[0], groups, -1])?;
        let mean = grouped.f_mean_dim([2i64].as_slice(), true, None::<Kind>)?;
        let var = grouped.f_var_correction([2i64].as_slice(), tch::Scalar::int(0), true)?;
        let normalized = grouped.f_sub(&mean)?.f_div(&var.f_add_scalar(eps)?.f_sqrt()?)?.f_reshape(dims.as_slice())?;
        let (scale, bias) = (ins.get(1)?, ins.get(2)?);
        let (scale, bias) = if per_group {
            let each = dims[1] / groups;
            (scale.f_repeat_interleave_self_int(each, Some(0), None::<i64>)?, bias.f_repeat_interleave_self_int(each, Some(0), None::<i64>)?)
        } else {
            (scale.shallow_clone(), bias.shallow_clone())
        };
        // The affine step in the working type too, rounded once to the input's type (a bf16
        // graph keeps the parameters in float32: `Graph::cast_floats`).
        let (scale, bias) = (per_channel(&scale.f_to_kind(work)?, x.dim())?, per_channel(&bias.f_to_kind(work)?, x.dim())?);
        Ok(normalized.f_mul(&scale)?.f_add(&bias)?.f_to_kind(kind)?)
    }))
}

fn lp_norm(ctx: &NodeCtx) -> anyhow::Result<Kernel> {
    let a = ctx.attrs();
    let axis = a.int_or("axis", -1)?;
    let p = a.int_or("p", 2)?;
    if p != 1 && p != 2 {
        return Err(a.unsupported("p", p));
    }
    Ok(single(move |ins, _| {
        let x = ins.get(0)?;
        let d = norm_axis(ins.node, axis, x.dim() as i64)?;
        let norm = x.f_norm_scalaropt_dim(p, [d].as_slice(), true)?;
        Ok(x.f_div(&norm)?)
    }))
}
