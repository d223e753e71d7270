//! Shape computation, constants and conversions: Shape, Size, Gather, GatherElements, Slice,
//! Expand, ConstantOfShape,
//! Constant, Range, Cast, CastLike (to the types held in another storage through `convert`).
//!
//! Opset differences handled: Slice takes attributes before 10 and inputs (with steps) from 10;
//! Shape has start/end (15+); a scalar Gather index removes the axis. Shape values are int64
//! tensors kept on the host, so shape arithmetic never waits on an accelerator.

use super::{convert, norm_axis, single, Kernel, NodeCtx, Registry};
use crate::bad_input;
use crate::onnx::tensor::{kind_of, to_tch};
use tch::{Device, Kind, Tensor};

pub fn register(reg: &mut Registry) {
    reg.insert("Shape", shape);
    reg.insert("Size", size);
    reg.insert("GatherElements", gather_elements);
    reg.insert("Gather", gather);
    reg.insert("Slice", slice);
    reg.insert("Expand", expand);
    reg.insert("ConstantOfShape", constant_of_shape);
    reg.insert("Constant", constant);
    reg.insert("Range", range);
    reg.insert("Cast", cast);
    reg.insert("CastLike", cast_like);
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
        let idx = crate::host::upload(&idx.f_to_kind(Kind::Int64)?, data.device())?;
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
    Ok(x.f_index_select(axis, &crate::host::upload(&Tensor::from_slice(&idx), x.device())?)?)
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
    Ok(single(move |ins, rc| {
        let shape = ins.ints(0)?;
        let v = rc.float_of(value.tensor())?.f_reshape([1])?;
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
        crate::host::bytes(&tt, &mut bytes)?;
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
    Ok(single(move |_, rc| rc.float_of(held.tensor())))
}

/// The longest Range computed (a model's shape arithmetic never needs more).
const MAX_RANGE: i64 = 1 << 24;

fn range(_: &NodeCtx) -> anyhow::Result<Kernel> {
    Ok(single(|ins, _| {
        let kind = ins.get(0)?.kind();
        let (s, l, d) = (ins.opt_scalar(0)?.unwrap_or(0.0), ins.opt_scalar(1)?.unwrap_or(0.0), ins.opt_scalar(2)?.unwrap_or(1.0));
        // ONNX: max(ceil((limit − start) / delta), 0) elements; bounds that disagree with the
        // step's sign give an empty range, where torch's arange fails.
        let n = ((l - s) / d).ceil().max(0.0);
        if d == 0.0 || !n.is_finite() || n > MAX_RANGE as f64 {
            return Err(bad_input!("node `{}` (Range): start {s}, limit {l}, delta {d} do not make a range of at most {MAX_RANGE} values", ins.node.name));
        }
        if n == 0.0 {
            return Ok(Tensor::f_empty([0], (kind, Device::Cpu))?);
        }
        Ok(Tensor::f_arange_start_step(s, l, d, (kind, Device::Cpu))?)
    }))
}

fn cast(ctx: &NodeCtx) -> anyhow::Result<Kernel> {
    let a = ctx.attrs();
    let to = a.int("to")?.ok_or_else(|| bad_input!("node `{}` (Cast): `to` is required", ctx.node.name))? as i32;
    if crate::onnx::tensor::is_carried(to) {
        let opts = cast_options(ctx)?;
        let node = ctx.node.clone();
        return Ok(single(move |ins, _| convert::to_carried(ins.get(0)?, to, opts, &node)));
    }
    let kind = kind_of(to).ok_or_else(|| a.unsupported("to", to))?;
    // A cast to FLOAT in a graph that runs in bf16 or fp16 goes to that type.
    Ok(single(move |ins, rc| Ok(ins.get(0)?.f_to_kind(if kind == Kind::Float { rc.float } else { kind })?)))
}

/// Cast's `saturate` (opset 19; float8 targets) and `round_mode` (opset 24; float8e8m0).
fn cast_options(ctx: &NodeCtx) -> anyhow::Result<convert::CastOptions> {
    let a = ctx.attrs();
    let round = match a.string("round_mode")? {
        None => convert::RoundMode::Up,
        Some(m) => convert::RoundMode::parse(&m).ok_or_else(|| a.unsupported("round_mode", &m))?,
    };
    Ok(convert::CastOptions { saturate: a.int_or("saturate", 1)? != 0, round })
}

/// CastLike (15+): the first input converted to the element type of the second (unoptimized
/// torch.export graphs use it around every scalar constant).
fn cast_like(ctx: &NodeCtx) -> anyhow::Result<Kernel> {
    let to = ctx.carried(1);
    if to != 0 {
        let opts = cast_options(ctx)?;
        let node = ctx.node.clone();
        return Ok(single(move |ins, _| convert::to_carried(ins.get(0)?, to, opts, &node)));
    }
    Ok(single(|ins, _| Ok(ins.get(0)?.f_to_kind(ins.get(1)?.kind())?)))
}

fn size(_: &NodeCtx) -> anyhow::Result<Kernel> {
    Ok(single(|ins, _| Ok(Tensor::from(ins.get(0)?.numel() as i64))))
}

/// GatherElements: torch's gather, with ONNX's negative indices counted from the end.
fn gather_elements(ctx: &NodeCtx) -> anyhow::Result<Kernel> {
    let axis = ctx.attrs().int_or("axis", 0)?;
    Ok(single(move |ins, _| {
        let x = ins.get(0)?;
        let d = norm_axis(ins.node, axis, x.dim() as i64)?;
        let n = x.size()[d as usize];
        let idx = crate::host::upload(ins.get(1)?, x.device())?.f_to_kind(Kind::Int64)?;
        let idx = idx.f_add(&idx.f_lt(0)?.f_to_kind(Kind::Int64)?.f_mul_scalar(n)?)?;
        Ok(x.f_gather(d, &idx, false)?)
    }))
}
