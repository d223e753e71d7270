//! Neural-network layers: Conv, BatchNormalization, MaxPool, AveragePool, GlobalAveragePool,
//! GlobalMaxPool, LayerNormalization, LRN.
//!
//! Spec notes handled here: `pads` is [x1_begin, x2_begin, …, x1_end, x2_end]; asymmetric pads
//! are applied explicitly before the op (−∞ for MaxPool); `auto_pad` SAME_UPPER/SAME_LOWER put the
//! odd pixel at the end/start; AveragePool's `count_include_pad` defaults to 0 in ONNX;
//! BatchNormalization's `momentum` is ONNX's (0.9 = 1 − torch momentum) and in training mode the
//! running statistics are updated in place. The pools take 1 to 3 spatial dimensions; pads
//! beyond half the kernel are applied explicitly too, and an AveragePool libtorch's pooling
//! cannot compute (dilations, such pads) is a window sum divided by each window's count.

use super::{single, Kernel, NodeCtx, Registry};
use crate::bad_input;
use crate::onnx::attr::Attrs;
use tch::Tensor;

pub fn register(reg: &mut Registry) {
    reg.insert("Conv", conv);
    reg.insert("BatchNormalization", batch_norm);
    reg.insert("MaxPool", max_pool);
    reg.insert("AveragePool", average_pool);
    reg.insert("GlobalAveragePool", global_average_pool);
    reg.insert("GlobalMaxPool", global_max_pool);
    reg.insert("LayerNormalization", layer_norm);
    reg.insert("LRN", lrn);
}

/// Spatial window attributes shared by Conv and the pools.
#[derive(Clone, Debug)]
struct Window {
    kernel: Option<Vec<i64>>,
    strides: Option<Vec<i64>>,
    dilations: Option<Vec<i64>>,
    pads: Option<Vec<i64>>,
    auto_pad: String,
}

impl Window {
    fn read(a: &Attrs) -> anyhow::Result<Window> {
        let auto_pad = a.string("auto_pad")?.unwrap_or_else(|| "NOTSET".into());
        if !matches!(auto_pad.as_str(), "NOTSET" | "VALID" | "SAME_UPPER" | "SAME_LOWER") {
            return Err(a.unsupported("auto_pad", &auto_pad));
        }
        Ok(Window { kernel: a.ints("kernel_shape")?, strides: a.ints("strides")?, dilations: a.ints("dilations")?, pads: a.ints("pads")?, auto_pad })
    }

    /// The attributes must fit `nd` spatial dimensions, with positive kernel, strides and
    /// dilations and non-negative pads (ONNX leaves anything else undefined).
    fn check(&self, ins: &super::Inputs, nd: usize) -> anyhow::Result<()> {
        let fields =
            [("kernel_shape", &self.kernel, nd, 1), ("strides", &self.strides, nd, 1), ("dilations", &self.dilations, nd, 1), ("pads", &self.pads, 2 * nd, 0)];
        for (name, values, len, min) in fields {
            let Some(v) = values else { continue };
            if v.len() != len || v.iter().any(|&x| x < min) {
                return Err(bad_input!(
                    "node `{}` ({}): `{name}` {v:?} does not fit an input with {nd} spatial dimensions ({len} values, each at least {min})",
                    ins.node.name,
                    ins.node.op_type
                ));
            }
        }
        Ok(())
    }

    fn ones(v: &Option<Vec<i64>>, nd: usize) -> Vec<i64> {
        v.clone().unwrap_or_else(|| vec![1; nd])
    }

    /// Begin and end padding per spatial dimension for an input of spatial size `input`.
    fn pads(&self, input: &[i64], kernel: &[i64]) -> (Vec<i64>, Vec<i64>) {
        let nd = input.len();
        let strides = Self::ones(&self.strides, nd);
        let dil = Self::ones(&self.dilations, nd);
        match self.auto_pad.as_str() {
            "VALID" => (vec![0; nd], vec![0; nd]),
            "SAME_UPPER" | "SAME_LOWER" => {
                let (mut b, mut e) = (vec![0; nd], vec![0; nd]);
                for i in 0..nd {
                    let out = (input[i] + strides[i] - 1) / strides[i];
                    let total = ((out - 1) * strides[i] + (kernel[i] - 1) * dil[i] + 1 - input[i]).max(0);
                    let small = total / 2;
                    let (lo, hi) = if self.auto_pad == "SAME_UPPER" { (small, total - small) } else { (total - small, small) };
                    b[i] = lo;
                    e[i] = hi;
                }
                (b, e)
            }
            _ => match &self.pads {
                Some(p) if p.len() == 2 * nd => (p[..nd].to_vec(), p[nd..].to_vec()),
                _ => (vec![0; nd], vec![0; nd]),
            },
        }
    }
}

/// Pads asymmetrically where needed and returns the input with the symmetric padding left for
/// the op itself.
fn apply_pads(x: &Tensor, begin: &[i64], end: &[i64], fill: f64) -> anyhow::Result<(Tensor, Vec<i64>)> {
    if begin == end {
        return Ok((x.shallow_clone(), begin.to_vec()));
    }
    // torch's pad list runs from the last dimension backwards: [w_begin, w_end, h_begin, h_end].
    let mut spec = Vec::with_capacity(begin.len() * 2);
    for i in (0..begin.len()).rev() {
        spec.push(begin[i]);
        spec.push(end[i]);
    }
    Ok((x.f_pad(spec.as_slice(), "constant", Some(fill))?, vec![0; begin.len()]))
}

fn conv(ctx: &NodeCtx) -> anyhow::Result<Kernel> {
    let a = ctx.attrs();
    let win = Window::read(&a)?;
    let group = a.int_or("group", 1)?;
    Ok(single(move |ins, rc| {
        let x = ins.get(0)?;
        let w = ins.get(1)?;
        if x.dim() < 3 || w.dim() != x.dim() {
            return Err(bad_input!("node `{}` (Conv): input {:?} and weight {:?} must have the same rank, at least 3", ins.node.name, x.size(), w.size()));
        }
        let nd = w.dim() - 2;
        win.check(ins, nd)?;
        let kernel = win.kernel.clone().unwrap_or_else(|| w.size()[2..].to_vec());
        let spatial = &x.size()[2..];
        let (b, e) = win.pads(spatial, &kernel);
        let (x, pad) = apply_pads(x, &b, &e, 0.0)?;
        let strides = Window::ones(&win.strides, nd);
        let dil = Window::ones(&win.dilations, nd);
        let zeros = vec![0i64; nd];
        // libtorch's convolution with this scope's numerics given per call (its global
        // defaults allow TF32 in cuDNN); on the CPU the flags change nothing.
        let n = rc.numerics;
        let (s, p, d, z) = (strides.as_slice(), pad.as_slice(), dil.as_slice(), zeros.as_slice());
        Ok(x.f_internal_convolution(w, ins.opt(2), s, p, d, false, z, group, n.benchmark, n.deterministic, true, n.allow_tf32)?)
    }))
}

fn batch_norm(ctx: &NodeCtx) -> anyhow::Result<Kernel> {
    let a = ctx.attrs();
    let eps = a.float_or("epsilon", 1e-5)? as f64;
    let momentum = 1.0 - a.float_or("momentum", 0.9)? as f64;
    // training_mode (14+) with its running statistics asked for as outputs: an exported
    // training step, normalizing by the batch's statistics (the biased variance) and giving the
    // updated averages as outputs, the inputs untouched.
    if a.int_or("training_mode", 0)? != 0 && ctx.node.output.iter().skip(1).any(|o| !o.is_empty()) {
        return Ok(Box::new(move |ins: &super::Inputs, _| {
            let x = ins.get(0)?;
            let dims: Vec<i64> = (0..x.dim() as i64).filter(|&d| d != 1).collect();
            // The statistics in the parameters' type: float32 for a bf16 or fp16 input
            // (`Graph::cast_floats`), which libtorch's mixed-type kernel requires.
            let wide = x.f_to_kind(ins.get(1)?.kind())?;
            let mean = wide.f_mean_dim(dims.as_slice(), false, None::<tch::Kind>)?;
            let var = wide.f_var_correction(dims.as_slice(), tch::Scalar::int(0), false)?;
            let y = x.f_batch_norm(Some(ins.get(1)?), Some(ins.get(2)?), Some(&mean), Some(&var), false, 0.0, eps, true)?;
            let keep = 1.0 - momentum;
            let running_mean = ins.get(3)?.f_mul_scalar(keep)?.f_add(&mean.f_mul_scalar(momentum)?)?;
            let running_var = ins.get(4)?.f_mul_scalar(keep)?.f_add(&var.f_mul_scalar(momentum)?)?;
            Ok(vec![y, running_mean, running_var])
        }));
    }
    Ok(single(move |ins, rc| {
        let x = ins.get(0)?;
        Ok(x.f_batch_norm(Some(ins.get(1)?), Some(ins.get(2)?), Some(ins.get(3)?), Some(ins.get(4)?), rc.train, momentum, eps, true)?)
    }))
}

/// The number of spatial dimensions of a pooling input: 1 to 3 (a 3- to 5-D tensor).
fn pool_dims(ins: &super::Inputs, x: &Tensor) -> anyhow::Result<usize> {
    match x.dim() {
        3..=5 => Ok(x.dim() - 2),
        _ => Err(bad_input!(
            "node `{}` ({}): pooling takes a 3- to 5-D input (1 to 3 spatial dimensions), got shape {:?}",
            ins.node.name,
            ins.node.op_type,
            x.size()
        )),
    }
}

/// Whether libtorch's pooling can take `begin`/`end` itself: symmetric, and at most half the
/// kernel (its limit); otherwise the input is padded explicitly first.
fn torch_pads_fit(begin: &[i64], end: &[i64], kernel: &[i64]) -> bool {
    begin == end && begin.iter().zip(kernel).all(|(&p, &k)| p <= k / 2)
}

/// `x` padded explicitly by `begin`/`end` on its spatial dimensions with `fill`.
fn pad_spatial(x: &Tensor, begin: &[i64], end: &[i64], fill: f64) -> anyhow::Result<Tensor> {
    let spec: Vec<i64> = (0..begin.len()).rev().flat_map(|i| [begin[i], end[i]]).collect();
    Ok(x.f_pad(spec.as_slice(), "constant", Some(fill))?)
}

fn max_pool(ctx: &NodeCtx) -> anyhow::Result<Kernel> {
    let a = ctx.attrs();
    let win = Window::read(&a)?;
    let ceil = a.int_or("ceil_mode", 0)? != 0;
    let column_major = match a.int_or("storage_order", 0)? {
        0 => false,
        1 => true,
        other => return Err(a.unsupported("storage_order", other)),
    };
    let kernel = win.kernel.clone().ok_or_else(|| bad_input!("node `{}` (MaxPool): kernel_shape is required", ctx.node.name))?;
    let with_indices = ctx.node.output.get(1).is_some_and(|o| !o.is_empty());
    Ok(Box::new(move |ins: &super::Inputs, _| {
        let x = ins.get(0)?;
        let nd = pool_dims(ins, x)?;
        win.check(ins, nd)?;
        let (b, e) = win.pads(&x.size()[2..], &kernel);
        let dims = x.size();
        let fits = torch_pads_fit(&b, &e, &kernel);
        let (x, pad) = if fits { (x.shallow_clone(), b.clone()) } else { (pad_spatial(x, &b, &e, f64::NEG_INFINITY)?, vec![0; nd]) };
        let strides = Window::ones(&win.strides, nd);
        let dil = Window::ones(&win.dilations, nd);
        let (k, s, p, d) = (kernel.as_slice(), strides.as_slice(), pad.as_slice(), dil.as_slice());
        if !with_indices {
            return Ok(vec![match nd {
                1 => x.f_max_pool1d(k, s, p, d, ceil)?,
                2 => x.f_max_pool2d(k, s, p, d, ceil)?,
                _ => x.f_max_pool3d(k, s, p, d, ceil)?,
            }]);
        }
        // Indices: libtorch's count within each [H, W] plane of the (unpadded) input, row-major;
        // ONNX's over the whole tensor, row-major (or column-major within the plane with
        // storage_order 1). Explicitly padded input would shift them.
        if nd != 2 || !fits {
            return Err(bad_input!(
                "node `{}` (MaxPool): the Indices output is supported for 2-D pooling with symmetric pads of at most half the kernel",
                ins.node.name
            ));
        }
        let (y, idx) = x.f_max_pool2d_with_indices(k, s, p, d, ceil)?;
        let idx =
            if column_major { idx.f_remainder(dims[3])?.f_mul_scalar(dims[2])?.f_add(&idx.f_div_tensor_mode(&Tensor::from(dims[3]), "trunc")?)? } else { idx };
        let (n, c, plane) = (dims[0], dims[1], dims[2] * dims[3]);
        let offset = Tensor::f_arange(n * c, (tch::Kind::Int64, idx.device()))?.f_mul_scalar(plane)?.f_view([n, c, 1, 1])?;
        Ok(vec![y, idx.f_add(&offset)?])
    }))
}

fn average_pool(ctx: &NodeCtx) -> anyhow::Result<Kernel> {
    let a = ctx.attrs();
    let win = Window::read(&a)?;
    let ceil = a.int_or("ceil_mode", 0)? != 0;
    let include_pad = a.int_or("count_include_pad", 0)? != 0;
    let kernel = win.kernel.clone().ok_or_else(|| bad_input!("node `{}` (AveragePool): kernel_shape is required", ctx.node.name))?;
    Ok(single(move |ins, _| {
        let x = ins.get(0)?;
        let nd = pool_dims(ins, x)?;
        win.check(ins, nd)?;
        let (b, e) = win.pads(&x.size()[2..], &kernel);
        let strides = Window::ones(&win.strides, nd);
        let dil = Window::ones(&win.dilations, nd);
        let plain = dil.iter().all(|&v| v == 1) && torch_pads_fit(&b, &e, &kernel);
        let (k, s, p) = (kernel.as_slice(), strides.as_slice(), b.as_slice());
        if plain {
            return Ok(match nd {
                1 => x.f_avg_pool1d(k, s, p, ceil, include_pad)?,
                2 => x.f_avg_pool2d(k, s, p, ceil, include_pad, None::<i64>)?,
                _ => x.f_avg_pool3d(k, s, p, ceil, include_pad, None::<i64>)?,
            });
        }
        window_mean(x, &kernel, &strides, &dil, &b, &e, ceil, include_pad)
    }))
}

/// AveragePool as ONNX defines it where libtorch's pooling cannot take it (dilations, pads
/// beyond half the kernel or asymmetric): the window sums of the zero-padded input, as a
/// depthwise convolution with a kernel of ones, divided by each window's count of elements
/// (the pads included with `count_include_pad`; never the overhang a ceil-mode window has past
/// the pads).
#[allow(clippy::too_many_arguments)]
fn window_mean(x: &Tensor, kernel: &[i64], strides: &[i64], dil: &[i64], begin: &[i64], end: &[i64], ceil: bool, include_pad: bool) -> anyhow::Result<Tensor> {
    let nd = kernel.len();
    let dims = x.size();
    let c = dims[1];
    // The ceil-mode overhang: extra zeros after the end pads so the last window fits.
    let mut extra = vec![0i64; nd];
    if ceil {
        for i in 0..nd {
            let span = dims[i + 2] + begin[i] + end[i] - dil[i] * (kernel[i] - 1) - 1;
            let floor_out = span / strides[i] + 1;
            let mut ceil_out = (span + strides[i] - 1) / strides[i] + 1;
            // The last window must start inside the input or its begin padding.
            if (ceil_out - 1) * strides[i] >= dims[i + 2] + begin[i] {
                ceil_out -= 1;
            }
            extra[i] = ((ceil_out - 1) * strides[i] + dil[i] * (kernel[i] - 1) + 1 - (dims[i + 2] + begin[i] + end[i])).max(0);
            debug_assert!(ceil_out >= floor_out);
        }
    }
    let end_all: Vec<i64> = end.iter().zip(&extra).map(|(e, x)| e + x).collect();
    let padded = pad_spatial(x, begin, &end_all, 0.0)?;
    let mut wshape = vec![c, 1];
    wshape.extend_from_slice(kernel);
    let ones_w = Tensor::f_ones(wshape.as_slice(), (x.kind(), x.device()))?;
    let zeros = vec![0i64; nd];
    let sums = padded.f_convolution(&ones_w, None::<&Tensor>, strides, zeros.as_slice(), dil, false, zeros.as_slice(), c)?;
    // Where each window counts: the input, and with count_include_pad its pads.
    let mut mshape = vec![1, 1];
    mshape.extend_from_slice(&dims[2..]);
    let mask = Tensor::f_ones(mshape.as_slice(), (x.kind(), x.device()))?;
    let mask = if include_pad { pad_spatial(&mask, begin, end, 1.0)? } else { pad_spatial(&mask, begin, end, 0.0)? };
    let mask = pad_spatial(&mask, &zeros, &extra, 0.0)?;
    let mut one = vec![1i64, 1];
    one.extend_from_slice(kernel);
    let counts = mask.f_convolution(
        &Tensor::f_ones(one.as_slice(), (x.kind(), x.device()))?,
        None::<&Tensor>,
        strides,
        zeros.as_slice(),
        dil,
        false,
        zeros.as_slice(),
        1,
    )?;
    Ok(sums.f_div(&counts.f_clamp_min(1.0)?)?)
}

fn global_average_pool(_: &NodeCtx) -> anyhow::Result<Kernel> {
    Ok(single(|ins, _| {
        let x = ins.get(0)?;
        let dims: Vec<i64> = (2..x.dim() as i64).collect();
        Ok(x.f_mean_dim(dims.as_slice(), true, None::<tch::Kind>)?)
    }))
}

fn global_max_pool(_: &NodeCtx) -> anyhow::Result<Kernel> {
    Ok(single(|ins, _| {
        let x = ins.get(0)?;
        let dims: Vec<i64> = (2..x.dim() as i64).collect();
        Ok(x.f_amax(dims.as_slice(), true)?)
    }))
}

fn layer_norm(ctx: &NodeCtx) -> anyhow::Result<Kernel> {
    let a = ctx.attrs();
    let axis = a.int_or("axis", -1)?;
    let eps = a.float_or("epsilon", 1e-5)? as f64;
    let node = ctx.node.clone();
    let stash = a.int_or("stash_type", 1)?;
    if stash != 1 {
        return Err(a.unsupported("stash_type", stash));
    }
    // Y, and the optional Mean and InvStdDev (float, the input's shape with the normalized
    // dimensions kept as 1), which libtorch's native kernel computes alongside.
    Ok(Box::new(move |ins: &super::Inputs, _| {
        let x = ins.get(0)?;
        let rank = x.dim() as i64;
        let ax = super::norm_axis(&node, axis, rank)?;
        let shape = x.size()[ax as usize..].to_vec();
        // A bf16 or fp16 input with float32 parameters (`Graph::cast_floats`) is normalized in
        // float32 and rounded once: libtorch's CUDA kernel takes one type for all three.
        let (wide, narrow) = match ins.opt(1) {
            Some(w) if w.kind() != x.kind() => (x.f_to_kind(w.kind())?, Some(x.kind())),
            _ => (x.shallow_clone(), None),
        };
        let (y, mean, rstd) = wide.f_native_layer_norm(shape.as_slice(), ins.opt(1), ins.opt(2), eps)?;
        let y = match narrow {
            Some(kind) => y.f_to_kind(kind)?,
            None => y,
        };
        Ok(vec![y, mean.f_to_kind(tch::Kind::Float)?, rstd.f_to_kind(tch::Kind::Float)?])
    }))
}

/// LRN (AlexNet, GoogLeNet in the old zoo): x / (bias + alpha/size · Σ_window x²)^beta over a
/// window of `size` channels centred on each channel (floor((size−1)/2) before, ceil after).
fn lrn(ctx: &NodeCtx) -> anyhow::Result<Kernel> {
    let a = ctx.attrs();
    let size = a.int("size")?.ok_or_else(|| bad_input!("node `{}` (LRN): size is required", ctx.node.name))?;
    let alpha = a.float_or("alpha", 1e-4)? as f64;
    let beta = a.float_or("beta", 0.75)? as f64;
    let bias = a.float_or("bias", 1.0)? as f64;
    Ok(single(move |ins, _| {
        let x = ins.get(0)?;
        let (before, after) = ((size - 1) / 2, size / 2);
        let sq = x.f_square()?.f_unsqueeze(1)?;
        // Sum over the channel window as a 3-D average pool over (C, H=1-window, W=1-window).
        let padded = sq.f_constant_pad_nd([0, 0, 0, 0, before, after].as_slice())?;
        let window = padded.f_avg_pool3d([size, 1, 1].as_slice(), [1, 1, 1].as_slice(), [0, 0, 0].as_slice(), false, true, None::<i64>)?.f_squeeze_dim(1)?;
        let denom = window.f_mul_scalar(alpha)?.f_add_scalar(bias)?.f_pow_tensor_scalar(beta)?;
        Ok(x.f_div(&denom)?)
    }))
}
