//! Structure and shape ops: Reshape, Flatten, Transpose, Concat, Split, Squeeze, Unsqueeze,
//! Shape, Gather, Slice, Expand, ConstantOfShape, Constant, Range, Cast, Identity, Dropout.
//!
//! Opset differences handled: Reshape's target is an attribute before opset 5, and its 0 copies
//! the input dimension unless `allowzero` (14+);
//! Squeeze/Unsqueeze/Split take `axes`/`split` as attributes before 13 and as inputs from 13;
//! Slice takes attributes before 10 and inputs (with steps) from 10; Shape has start/end (15+);
//! a scalar Gather index removes the axis. Shape values are int64 tensors kept on the host.

use super::{norm_axis, single, Inputs, Kernel, NodeCtx, Registry};
use crate::bad_input;
use crate::onnx::tensor::{kind_of, to_tch};
use tch::{Device, Kind, Tensor};

pub fn register(reg: &mut Registry) {
    reg.insert("Reshape", reshape);
    reg.insert("Flatten", flatten);
    reg.insert("Transpose", transpose);
    reg.insert("Concat", concat);
    reg.insert("Split", split);
    reg.insert("Squeeze", squeeze);
    reg.insert("Unsqueeze", unsqueeze);
    reg.insert("Shape", shape);
    reg.insert("Gather", gather);
    reg.insert("Slice", slice);
    reg.insert("Expand", expand);
    reg.insert("ConstantOfShape", constant_of_shape);
    reg.insert("Constant", constant);
    reg.insert("Range", range);
    reg.insert("Cast", cast);
    reg.insert("Identity", identity);
    reg.insert("Dropout", identity);
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
        x.f_reshape(target.as_slice()).map_err(|e| {
            bad_input!("node `{}` (Reshape): cannot reshape {:?} to {:?}: {e}", ins.node.name, x.size(), target)
        })
    }))
}

fn flatten(ctx: &NodeCtx) -> anyhow::Result<Kernel> {
    let axis = ctx.attrs().int_or("axis", 1)?;
    Ok(single(move |ins, _| {
        let x = ins.get(0)?;
        let rank = x.dim() as i64;
        let a = if axis < 0 { axis + rank } else { axis };
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
        let axes = axes_arg(ins, &attr, opset)?
            .ok_or_else(|| bad_input!("node `{}` (Unsqueeze): axes are required", ins.node.name))?;
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

fn shape(ctx: &NodeCtx) -> anyhow::Result<Kernel> {
    let a = ctx.attrs();
    let start = a.int_or("start", 0)?;
    let end = a.int("end")?;
    Ok(single(move |ins, _| {
        let dims = ins.get(0)?.size();
        let r = dims.len() as i64;
        let clampi = |v: i64| (if v < 0 { v + r } else { v }).clamp(0, r) as usize;
        let (s, e) = (clampi(start), clampi(end.unwrap_or(r)));
        Ok(Tensor::from_slice(&dims[s..e.max(s)]))
    }))
}

fn gather(ctx: &NodeCtx) -> anyhow::Result<Kernel> {
    let axis = ctx.attrs().int_or("axis", 0)?;
    Ok(single(move |ins, _| {
        let data = ins.get(0)?;
        let idx = ins.get(1)?;
        let ax = norm_axis(ins.node, axis, data.dim() as i64)?;
        let n = data.size()[ax as usize];
        let idx = idx.f_to_kind(Kind::Int64)?.f_to_device(data.device())?;
        // Negative indices count from the end.
        let flat = idx.f_flatten(0, -1)?;
        let flat = flat.f_remainder(n)?;
        let picked = data.f_index_select(ax, &flat)?;
        let mut shape = data.size()[..ax as usize].to_vec();
        shape.extend(idx.size());
        shape.extend(&data.size()[ax as usize + 1..]);
        Ok(picked.f_reshape(shape.as_slice())?)
    }))
}

fn slice(ctx: &NodeCtx) -> anyhow::Result<Kernel> {
    let a = ctx.attrs();
    let legacy = ctx.opset < 10;
    let (s_attr, e_attr, a_attr) = (a.ints("starts")?, a.ints("ends")?, a.ints("axes")?);
    Ok(single(move |ins, _| {
        let x = ins.get(0)?;
        let (starts, ends, axes, steps) = if legacy {
            let s = s_attr.clone().ok_or_else(|| bad_input!("node `{}` (Slice): starts required", ins.node.name))?;
            let e = e_attr.clone().ok_or_else(|| bad_input!("node `{}` (Slice): ends required", ins.node.name))?;
            (s, e, a_attr.clone(), None)
        } else {
            (ins.ints(1)?, ins.ints(2)?, ins.opt_ints(3)?, ins.opt_ints(4)?)
        };
        let rank = x.dim() as i64;
        let axes = axes.unwrap_or_else(|| (0..starts.len() as i64).collect());
        let mut y = x.shallow_clone();
        for (i, &ax) in axes.iter().enumerate() {
            let ax = norm_axis(ins.node, ax, rank)?;
            let step = steps.as_ref().map_or(1, |s| s[i]);
            y = slice_one(&y, ax, starts[i], ends[i], step)?;
        }
        Ok(y)
    }))
}

/// One axis of Slice with ONNX's clamping rules, including negative steps.
fn slice_one(x: &Tensor, axis: i64, start: i64, end: i64, step: i64) -> anyhow::Result<Tensor> {
    let n = x.size()[axis as usize];
    anyhow::ensure!(step != 0, "Slice step 0");
    let fix = |v: i64| if v < 0 { v + n } else { v };
    if step > 0 {
        let s = fix(start).clamp(0, n);
        let e = fix(end).clamp(0, n);
        return Ok(x.f_slice(axis, s, e.max(s), step)?);
    }
    let s = fix(start).clamp(-1, n - 1);
    let e = fix(end).clamp(-1, n - 1);
    let idx: Vec<i64> = (0..).map(|k| s + k * step).take_while(|&v| v > e).collect();
    Ok(x.f_index_select(axis, &Tensor::from_slice(&idx).to_device(x.device()))?)
}

fn expand(_: &NodeCtx) -> anyhow::Result<Kernel> {
    Ok(single(|ins, _| {
        let x = ins.get(0)?;
        let shape = ins.ints(1)?;
        // Bidirectional broadcast: align ranks, then take the larger of each pair.
        let rank = shape.len().max(x.dim());
        let mut xs = vec![1i64; rank - x.dim()];
        xs.extend(x.size());
        let mut target = vec![1i64; rank - shape.len()];
        target.extend(&shape);
        let out: Vec<i64> = xs.iter().zip(&target).map(|(a, b)| if *a == 1 { *b } else { *a }).collect();
        Ok(x.f_reshape(xs.as_slice())?.f_expand(out.as_slice(), false)?.f_contiguous()?)
    }))
}

fn constant_of_shape(ctx: &NodeCtx) -> anyhow::Result<Kernel> {
    let value = match ctx.attrs().tensor("value")? {
        Some(t) => Held::of(t)?,
        None => Held { bytes: 0f32.to_le_bytes().to_vec(), dims: vec![1], kind: Kind::Float },
    };
    Ok(single(move |ins, _| {
        let shape = ins.ints(0)?;
        let v = value.tensor().f_reshape([1])?;
        Ok(v.f_expand(shape.as_slice(), false)?.f_contiguous()?)
    }))
}

/// A constant kept as bytes so kernels stay `Sync`; constant folding evaluates it once.
struct Held {
    bytes: Vec<u8>,
    dims: Vec<i64>,
    kind: Kind,
}

impl Held {
    fn of(t: &onnx_protobuf::TensorProto) -> anyhow::Result<Held> {
        let tt = to_tch(t)?;
        let mut bytes = vec![0u8; tt.numel() * tt.kind().elt_size_in_bytes()];
        tt.f_copy_data_u8(&mut bytes, tt.numel())?;
        Ok(Held { bytes, dims: tt.size(), kind: tt.kind() })
    }

    fn tensor(&self) -> Tensor {
        Tensor::from_data_size(&self.bytes, &self.dims, self.kind)
    }
}

fn constant(ctx: &NodeCtx) -> anyhow::Result<Kernel> {
    let a = ctx.attrs();
    let held = if let Some(t) = a.tensor("value")? {
        Held::of(t)?
    } else if let Some(v) = a.floats("value_floats")? {
        Held::of(&crate::onnx::tensor::from_tch("", &Tensor::from_slice(&v))?)?
    } else if let Some(v) = a.ints("value_ints")? {
        Held::of(&crate::onnx::tensor::from_tch("", &Tensor::from_slice(&v))?)?
    } else if a.has("value_float") {
        let v = a.float_or("value_float", 0.0)?;
        Held { bytes: v.to_le_bytes().to_vec(), dims: vec![], kind: Kind::Float }
    } else if let Some(v) = a.int("value_int")? {
        Held { bytes: v.to_le_bytes().to_vec(), dims: vec![], kind: Kind::Int64 }
    } else {
        return Err(bad_input!("node `{}` (Constant): no supported value attribute", ctx.node.name));
    };
    Ok(single(move |_, _| Ok(held.tensor())))
}

fn range(_: &NodeCtx) -> anyhow::Result<Kernel> {
    Ok(single(|ins, _| {
        let kind = ins.get(0)?.kind();
        let (s, l, d) = (ins.opt_scalar(0)?.unwrap_or(0.0), ins.opt_scalar(1)?.unwrap_or(0.0), ins.opt_scalar(2)?.unwrap_or(1.0));
        Ok(Tensor::f_arange_start_step(s, l, d, (kind, Device::Cpu))?)
    }))
}

fn cast(ctx: &NodeCtx) -> anyhow::Result<Kernel> {
    let to = ctx.attrs().int("to")?.ok_or_else(|| bad_input!("node `{}` (Cast): `to` is required", ctx.node.name))?;
    let kind = kind_of(to as i32).ok_or_else(|| ctx.attrs().unsupported("to", to))?;
    Ok(single(move |ins, _| Ok(ins.get(0)?.f_to_kind(kind)?)))
}

fn identity(_: &NodeCtx) -> anyhow::Result<Kernel> {
    // Dropout in inference is the identity; its optional mask output is not produced.
    Ok(single(|ins, _| Ok(ins.get(0)?.shallow_clone())))
}
