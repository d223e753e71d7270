//! Layout ops that rearrange or regroup values without computing on them: Reshape, Flatten,
//! Transpose, Concat, Split, Squeeze, Unsqueeze, Identity, Dropout, Tile, DepthToSpace (DCR and
//! CRD modes), SpaceToDepth, Trilu.
//!
//! Opset differences handled: Reshape's target is an attribute before opset 5, and its 0 copies
//! the input dimension unless `allowzero` (14+); Squeeze/Unsqueeze/Split take `axes`/`split` as
//! attributes before 13 and as inputs from 13 (Split's `num_outputs` from 18); Dropout in
//! inference is the identity.

use super::{norm_axis, single, Inputs, Kernel, NodeCtx, Registry};
use crate::bad_input;
use tch::Tensor;

pub fn register(reg: &mut Registry) {
    reg.insert("Reshape", reshape);
    reg.insert("Flatten", flatten);
    reg.insert("Transpose", transpose);
    reg.insert("Concat", concat);
    reg.insert("Split", split);
    reg.insert("Squeeze", squeeze);
    reg.insert("Unsqueeze", unsqueeze);
    reg.insert("Identity", identity);
    reg.insert("Dropout", dropout);
    reg.insert("Tile", tile);
    reg.insert("DepthToSpace", depth_to_space);
    reg.insert("SpaceToDepth", space_to_depth);
    reg.insert("Trilu", trilu);
}

fn tile(_: &NodeCtx) -> anyhow::Result<Kernel> {
    Ok(single(|ins, _| {
        let x = ins.get(0)?;
        let repeats = ins.ints(1)?;
        if repeats.len() != x.dim() || repeats.iter().any(|&r| r < 0) {
            return Err(bad_input!("node `{}` (Tile): repeats {repeats:?} for an input of shape {:?}", ins.node.name, x.size()));
        }
        Ok(x.f_repeat(repeats.as_slice())?)
    }))
}

/// The 4-D input of DepthToSpace/SpaceToDepth and its block size, checked.
fn blocked(ins: &Inputs, block: i64) -> anyhow::Result<[i64; 4]> {
    let x = ins.get(0)?;
    let d = x.size();
    if x.dim() != 4 || block <= 0 {
        return Err(bad_input!("node `{}` ({}): a 4-D input and a positive blocksize, got {d:?} and {block}", ins.node.name, ins.node.op_type));
    }
    Ok([d[0], d[1], d[2], d[3]])
}

fn depth_to_space(ctx: &NodeCtx) -> anyhow::Result<Kernel> {
    let a = ctx.attrs();
    let b = a.int("blocksize")?.ok_or_else(|| bad_input!("node `{}` (DepthToSpace): blocksize is required", ctx.node.name))?;
    let crd = match a.string("mode")?.as_deref().unwrap_or("DCR") {
        "DCR" => false,
        "CRD" => true,
        other => return Err(a.unsupported("mode", other)),
    };
    Ok(single(move |ins, _| {
        let [n, c, h, w] = blocked(ins, b)?;
        if c % (b * b) != 0 {
            return Err(bad_input!("node `{}` (DepthToSpace): {c} channels do not divide into blocks of {b}x{b}", ins.node.name));
        }
        let x = ins.get(0)?;
        // DCR: depth is [b, b, C'] (column, row block first); CRD: [C', b, b].
        let y = if crd {
            x.f_reshape([n, c / (b * b), b, b, h, w])?.f_permute([0, 1, 4, 2, 5, 3])?
        } else {
            x.f_reshape([n, b, b, c / (b * b), h, w])?.f_permute([0, 3, 4, 1, 5, 2])?
        };
        Ok(y.f_reshape([n, c / (b * b), h * b, w * b])?)
    }))
}

fn space_to_depth(ctx: &NodeCtx) -> anyhow::Result<Kernel> {
    let b = ctx.attrs().int("blocksize")?.ok_or_else(|| bad_input!("node `{}` (SpaceToDepth): blocksize is required", ctx.node.name))?;
    Ok(single(move |ins, _| {
        let [n, c, h, w] = blocked(ins, b)?;
        if h % b != 0 || w % b != 0 {
            return Err(bad_input!("node `{}` (SpaceToDepth): {h}x{w} does not divide into blocks of {b}x{b}", ins.node.name));
        }
        let y = ins.get(0)?.f_reshape([n, c, h / b, b, w / b, b])?.f_permute([0, 3, 5, 1, 2, 4])?;
        Ok(y.f_reshape([n, c * b * b, h / b, w / b])?)
    }))
}

fn trilu(ctx: &NodeCtx) -> anyhow::Result<Kernel> {
    let upper = ctx.attrs().int_or("upper", 1)? != 0;
    Ok(single(move |ins, _| {
        let x = ins.get(0)?;
        let k = ins.opt_ints(1)?.and_then(|v| v.first().copied()).unwrap_or(0);
        if x.dim() < 2 {
            return Err(bad_input!("node `{}` (Trilu): input {:?} needs at least 2 dimensions", ins.node.name, x.size()));
        }
        Ok(if upper { x.f_triu(k)? } else { x.f_tril(k)? })
    }))
}

fn reshape(ctx: &NodeCtx) -> anyhow::Result<Kernel> {
    let allowzero = ctx.attrs().int_or("allowzero", 0)? != 0;
    // Before opset 5 the target shape is an attribute.
    let attr_shape = if ctx.opset < 5 { ctx.attrs().ints("shape")? } else { None };
    Ok(single(move |ins, _| {
        let x = ins.get(0)?;
        let mut target = match &attr_shape {
            Some(s) => s.clone(),
            None => ins.ints(1)?,
        };
        if !allowzero {
            let dims = x.size();
            for (i, d) in target.iter_mut().enumerate() {
                if *d == 0 {
                    *d = *dims.get(i).ok_or_else(|| bad_input!("node `{}` (Reshape): 0 at position {i} beyond the input rank", ins.node.name))?;
                }
            }
        }
        x.f_reshape(target.as_slice()).map_err(|e| bad_input!("node `{}` (Reshape): cannot reshape {:?} to {:?}: {e}", ins.node.name, x.size(), target))
    }))
}

fn flatten(ctx: &NodeCtx) -> anyhow::Result<Kernel> {
    let axis = ctx.attrs().int_or("axis", 1)?;
    Ok(single(move |ins, _| {
        let x = ins.get(0)?;
        let rank = x.dim() as i64;
        let a = if axis < 0 { axis + rank } else { axis };
        if !(0..=rank).contains(&a) {
            return Err(bad_input!("node `{}` (Flatten): axis {axis} is outside -{rank}..={rank} for an input of shape {:?}", ins.node.name, x.size()));
        }
        let dims = x.size();
        let outer: i64 = dims[..a as usize].iter().product();
        Ok(x.f_reshape([outer, -1])?)
    }))
}

fn transpose(ctx: &NodeCtx) -> anyhow::Result<Kernel> {
    let perm = ctx.attrs().ints("perm")?;
    Ok(single(move |ins, _| {
        let x = ins.get(0)?;
        let perm = perm.clone().unwrap_or_else(|| (0..x.dim() as i64).rev().collect());
        Ok(x.f_permute(perm.as_slice())?)
    }))
}

fn concat(ctx: &NodeCtx) -> anyhow::Result<Kernel> {
    let axis = ctx.attrs().int("axis")?.ok_or_else(|| bad_input!("node `{}` (Concat): axis is required", ctx.node.name))?;
    Ok(single(move |ins, _| {
        let first = ins.get(0)?;
        let a = norm_axis(ins.node, axis, first.dim() as i64)?;
        let device = ins.compute_device();
        let parts: Vec<Tensor> = (0..ins.values.len()).filter(|i| ins.opt(*i).is_some()).map(|i| ins.on(i, device)).collect::<anyhow::Result<_>>()?;
        Ok(Tensor::f_cat(&parts, a)?)
    }))
}

fn split(ctx: &NodeCtx) -> anyhow::Result<Kernel> {
    let a = ctx.attrs();
    let axis = a.int_or("axis", 0)?;
    let attr_split = if ctx.opset < 13 { a.ints("split")? } else { None };
    let num_outputs = ctx.node.output.len() as i64;
    let opset = ctx.opset;
    Ok(Box::new(move |ins: &Inputs, _| {
        let x = ins.get(0)?;
        let ax = norm_axis(ins.node, axis, x.dim() as i64)?;
        let sizes = if opset >= 13 { ins.opt_ints(1)? } else { attr_split.clone() };
        let sizes = match sizes {
            Some(s) => s,
            None => {
                let n = x.size()[ax as usize];
                let chunk = (n + num_outputs - 1) / num_outputs;
                (0..num_outputs).map(|i| (n - i * chunk).clamp(0, chunk)).collect()
            }
        };
        Ok(x.f_split_with_sizes(sizes.as_slice(), ax)?)
    }))
}

fn axes_arg(ins: &Inputs, attr: &Option<Vec<i64>>, opset: i64) -> anyhow::Result<Option<Vec<i64>>> {
    if opset >= 13 {
        ins.opt_ints(1)
    } else {
        Ok(attr.clone())
    }
}

fn squeeze(ctx: &NodeCtx) -> anyhow::Result<Kernel> {
    let attr = ctx.attrs().ints("axes")?;
    let opset = ctx.opset;
    Ok(single(move |ins, _| {
        let x = ins.get(0)?;
        let rank = x.dim() as i64;
        match axes_arg(ins, &attr, opset)? {
            None => Ok(x.f_squeeze()?),
            Some(axes) => {
                let mut axes: Vec<i64> = axes.iter().map(|&a| norm_axis(ins.node, a, rank)).collect::<Result<_, _>>()?;
                axes.sort_unstable();
                let mut y = x.shallow_clone();
                for a in axes.iter().rev() {
                    y = y.f_squeeze_dim(*a)?;
                }
                Ok(y)
            }
        }
    }))
}

fn unsqueeze(ctx: &NodeCtx) -> anyhow::Result<Kernel> {
    let attr = ctx.attrs().ints("axes")?;
    let opset = ctx.opset;
    Ok(single(move |ins, _| {
        let x = ins.get(0)?;
        let axes = axes_arg(ins, &attr, opset)?.ok_or_else(|| bad_input!("node `{}` (Unsqueeze): axes are required", ins.node.name))?;
        let out_rank = x.dim() as i64 + axes.len() as i64;
        let mut axes: Vec<i64> = axes.iter().map(|&a| norm_axis(ins.node, a, out_rank)).collect::<Result<_, _>>()?;
        axes.sort_unstable();
        let mut y = x.shallow_clone();
        for a in axes {
            y = y.f_unsqueeze(a)?;
        }
        Ok(y)
    }))
}

fn identity(_: &NodeCtx) -> anyhow::Result<Kernel> {
    Ok(single(|ins, _| Ok(ins.get(0)?.shallow_clone())))
}

/// Dropout as a frozen model runs it: the identity, with its optional mask all true. In
/// training mode (the `training_mode` input, 12+) with a positive ratio it draws random masks,
/// which a teacher cannot reproduce: refused, naming the node; with ratio 0 it is the identity.
fn dropout(ctx: &NodeCtx) -> anyhow::Result<Kernel> {
    let attr_ratio = if ctx.opset < 12 { ctx.attrs().float_or("ratio", 0.5)? as f64 } else { 0.5 };
    let opset = ctx.opset;
    Ok(Box::new(move |ins: &Inputs, _| {
        let x = ins.get(0)?;
        let training = if opset >= 12 { ins.opt_scalar(2)?.is_some_and(|t| t != 0.0) } else { false };
        if training {
            let ratio = if opset >= 12 { ins.opt_scalar(1)?.unwrap_or(0.5) } else { attr_ratio };
            if ratio != 0.0 {
                return Err(bad_input!(
                    "node `{}` (Dropout): training_mode is true with ratio {ratio}: it would drop random values, which a model run for its outputs cannot reproduce",
                    ins.node.name
                ));
            }
        }
        let mask = x.f_ones_like()?.f_to_kind(tch::Kind::Bool)?;
        Ok(vec![x.shallow_clone(), mask])
    }))
}
