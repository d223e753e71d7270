//! Padding and resampling: Pad, Resize (and the older Upsample).
//!
//! Opset differences handled: Pad takes `pads` and `value` as attributes before opset 11 and as
//! inputs from 11, with `axes` from 18; modes constant, reflect, edge and wrap (18; any pad
//! size, by indices taken modulo each padded dimension).
//! Resize takes (X, scales) at opset 10 and (X, roi, scales, sizes) from 11, with `axes` and
//! `keep_aspect_ratio_policy` from 18; nearest (every rounding), linear and cubic
//! (`cubic_coeff_a`, `exclude_outside`, and `antialias`: the filter stretched by 1/scale when
//! downscaling) with every coordinate mapping, tf_crop_and_resize's `roi` and
//! `extrapolation_value` included, on any axes, computed as ONNX defines them (libtorch's
//! upsampling kernels where they agree).

use super::{Inputs, Kernel, NodeCtx, Registry};
use crate::bad_input;
use tch::Tensor;

pub fn register(reg: &mut Registry) {
    reg.insert("Pad", pad);
    reg.insert("Resize", resize);
    reg.insert("Upsample", resize);
}

fn pad(ctx: &NodeCtx) -> anyhow::Result<Kernel> {
    let a = ctx.attrs();
    let mode = a.string("mode")?.unwrap_or_else(|| "constant".into());
    let torch_mode = match mode.as_str() {
        "constant" => "constant",
        "reflect" => "reflect",
        "edge" => "replicate",
        "wrap" => "wrap",
        other => return Err(a.unsupported("mode", other)),
    };
    let legacy = ctx.opset < 11;
    let (attr_pads, attr_value) = (a.ints("pads")?, a.float_or("value", 0.0)? as f64);
    Ok(super::single(move |ins, _| {
        let x = ins.get(0)?;
        let rank = x.dim();
        let (pads, value) = if legacy {
            (attr_pads.clone().ok_or_else(|| bad_input!("node `{}` (Pad): pads required", ins.node.name))?, attr_value)
        } else {
            (ins.ints(1)?, ins.opt_scalar(2)?.unwrap_or(0.0))
        };
        let axes: Vec<i64> = match ins.opt_ints(3)? {
            Some(ax) => ax.iter().map(|&v| if v < 0 { v + rank as i64 } else { v }).collect(),
            None => (0..rank as i64).collect(),
        };
        if pads.len() != 2 * axes.len() {
            return Err(bad_input!("node `{}` (Pad): {} pads for {} axes", ins.node.name, pads.len(), axes.len()));
        }
        let mut begin = vec![0i64; rank];
        let mut end = vec![0i64; rank];
        for (k, &ax) in axes.iter().enumerate() {
            begin[ax as usize] = pads[k];
            end[ax as usize] = pads[k + axes.len()];
        }
        // torch lists (begin, end) pairs from the last dimension backwards, and only as far
        // as the first padded dimension.
        let first = (0..rank).find(|&d| begin[d] != 0 || end[d] != 0).unwrap_or(rank);
        let spec: Vec<i64> = (first..rank).rev().flat_map(|d| [begin[d], end[d]]).collect();
        if spec.is_empty() {
            return Ok(x.shallow_clone());
        }
        if torch_mode == "wrap" {
            // Each padded dimension read at (i mod size) for i from −begin to size + end.
            let mut y = x.shallow_clone();
            for d in first..rank {
                if begin[d] == 0 && end[d] == 0 {
                    continue;
                }
                let size = y.size()[d];
                if size == 0 {
                    return Err(bad_input!("node `{}` (Pad): wrap padding of the empty dimension {d}", ins.node.name));
                }
                let idx = Tensor::f_arange_start(-begin[d], size + end[d], (tch::Kind::Int64, y.device()))?.f_remainder(size)?;
                y = y.f_index_select(d as i64, &idx)?;
            }
            return Ok(y);
        }
        Ok(x.f_pad(spec.as_slice(), torch_mode, if torch_mode == "constant" { Some(value) } else { None })?)
    }))
}

/// How Resize picks or blends the input values around a source coordinate.
#[derive(Clone, Copy, PartialEq, Debug)]
enum Interp {
    Nearest(Rounding),
    Linear,
    /// Cubic convolution with coefficient `a`; `exclude_outside` gives the taps outside the
    /// input no weight (the others renormalized) instead of the edge value.
    Cubic {
        a: f64,
        exclude_outside: bool,
    },
}

/// Nearest's rounding of a fractional source coordinate.
#[derive(Clone, Copy, PartialEq, Debug)]
enum Rounding {
    RoundPreferFloor,
    RoundPreferCeil,
    Floor,
    Ceil,
}

/// ONNX's mapping from an output coordinate to an input coordinate.
#[derive(Clone, Copy, PartialEq, Debug)]
enum Coord {
    HalfPixel,
    HalfPixelSymmetric,
    PytorchHalfPixel,
    AlignCorners,
    Asymmetric,
    /// Coordinates within the region `roi` gives (normalized start and end per axis); outside
    /// the input, the output is `extrapolation_value`.
    TfCropAndResize,
}

/// How `sizes` is met when the aspect ratio must be kept (opset 18).
#[derive(Clone, Copy, PartialEq, Debug)]
enum Policy {
    Stretch,
    NotLarger,
    NotSmaller,
}

#[derive(Clone, Debug)]
struct ResizeSpec {
    interp: Interp,
    coord: Coord,
    policy: Policy,
    /// The axes `scales` and `sizes` refer to (opset 18), all when absent.
    axes: Option<Vec<i64>>,
    /// The input holding the scales: 1 for Upsample and Resize-10, 2 from 11 (after roi).
    scales_input: usize,
    /// Linear and cubic filters stretched by 1/scale when downscaling (opset 18).
    antialias: bool,
    /// tf_crop_and_resize's value outside the input.
    extrapolation: f64,
}

fn resize(ctx: &NodeCtx) -> anyhow::Result<Kernel> {
    let a = ctx.attrs();
    let legacy = ctx.node.op_type == "Upsample" || ctx.opset < 11;
    let mode = a.string("mode")?.unwrap_or_else(|| "nearest".into());
    // Upsample (and Resize-10) have no coordinate attribute and behave as `asymmetric` with
    // floor rounding.
    let coord_name = a.string("coordinate_transformation_mode")?.unwrap_or_else(|| if legacy { "asymmetric".into() } else { "half_pixel".into() });
    let nearest_mode = a.string("nearest_mode")?.unwrap_or_else(|| if legacy { "floor".into() } else { "round_prefer_floor".into() });
    let coord = match coord_name.as_str() {
        "half_pixel" => Coord::HalfPixel,
        "half_pixel_symmetric" => Coord::HalfPixelSymmetric,
        "pytorch_half_pixel" => Coord::PytorchHalfPixel,
        "align_corners" => Coord::AlignCorners,
        "asymmetric" => Coord::Asymmetric,
        "tf_crop_and_resize" if !legacy => Coord::TfCropAndResize,
        other => return Err(a.unsupported("coordinate_transformation_mode", other)),
    };
    let interp = match mode.as_str() {
        "nearest" => Interp::Nearest(match nearest_mode.as_str() {
            "round_prefer_floor" => Rounding::RoundPreferFloor,
            "round_prefer_ceil" => Rounding::RoundPreferCeil,
            "floor" => Rounding::Floor,
            "ceil" => Rounding::Ceil,
            other => return Err(a.unsupported("nearest_mode", other)),
        }),
        "linear" | "bilinear" => Interp::Linear,
        "cubic" => Interp::Cubic { a: a.float_or("cubic_coeff_a", -0.75)? as f64, exclude_outside: a.int_or("exclude_outside", 0)? != 0 },
        other => return Err(a.unsupported("mode", other)),
    };
    let policy = match a.string("keep_aspect_ratio_policy")?.as_deref().unwrap_or("stretch") {
        "stretch" => Policy::Stretch,
        "not_larger" => Policy::NotLarger,
        "not_smaller" => Policy::NotSmaller,
        other => return Err(a.unsupported("keep_aspect_ratio_policy", other)),
    };
    let spec = ResizeSpec {
        interp,
        coord,
        policy,
        axes: a.ints("axes")?,
        scales_input: if legacy { 1 } else { 2 },
        antialias: a.int_or("antialias", 0)? != 0,
        extrapolation: a.float_or("extrapolation_value", 0.0)? as f64,
    };
    Ok(super::single(move |ins, _| {
        let x = ins.get(0)?;
        let plan = axis_plan(ins, x, &spec)?;
        let roi = region(ins, x, &spec)?;
        if let Some(y) = fast_path(x, &plan, &spec)? {
            return Ok(y);
        }
        if !matches!(spec.interp, Interp::Nearest(_)) && !super::is_float(x.kind()) {
            return Err(bad_input!("node `{}` ({}): {:?} resizing of a {:?} tensor is not supported", ins.node.name, ins.node.op_type, spec.interp, x.kind()));
        }
        let mut y = x.shallow_clone();
        for (d, &(out, scale)) in plan.iter().enumerate() {
            let len = x.size()[d];
            if out == len && scale == 1.0 {
                continue;
            }
            y = resample_axis(&y, d as i64, len, out, scale, roi[d], &spec)?;
        }
        Ok(y)
    }))
}

/// Per axis of `x`: tf_crop_and_resize's region, normalized (start, end); (0, 1) for the axes
/// Resize leaves alone and for the other coordinate mappings.
fn region(ins: &Inputs, x: &Tensor, spec: &ResizeSpec) -> anyhow::Result<Vec<(f64, f64)>> {
    let rank = x.dim();
    let mut roi = vec![(0.0, 1.0); rank];
    if spec.coord != Coord::TfCropAndResize {
        return Ok(roi);
    }
    let axes: Vec<usize> = match &spec.axes {
        Some(ax) => ax.iter().map(|&v| super::norm_axis(ins.node, v, rank as i64).map(|a| a as usize)).collect::<anyhow::Result<_>>()?,
        None => (0..rank).collect(),
    };
    let values = match ins.opt(1) {
        Some(t) => crate::host::vec::<f64>(&t.f_to_kind(tch::Kind::Double)?.f_flatten(0, -1)?)?,
        None => vec![],
    };
    if values.len() != 2 * axes.len() {
        return Err(bad_input!("node `{}` (Resize): tf_crop_and_resize needs a roi of {} values, got {}", ins.node.name, 2 * axes.len(), values.len()));
    }
    for (k, &d) in axes.iter().enumerate() {
        roi[d] = (values[k], values[k + axes.len()]);
    }
    Ok(roi)
}

/// Per axis of `x`: the output length and the scale ONNX maps coordinates with (`scales`
/// given: ⌊length·scale⌋ and the scale itself; `sizes` given: the size and size / length, or
/// under a keep-aspect policy one common scale and round(length·scale)).
fn axis_plan(ins: &Inputs, x: &Tensor, spec: &ResizeSpec) -> anyhow::Result<Vec<(i64, f64)>> {
    let dims = x.size();
    let rank = dims.len() as i64;
    let axes: Vec<usize> = match &spec.axes {
        Some(ax) => ax.iter().map(|&v| super::norm_axis(ins.node, v, rank).map(|a| a as usize)).collect::<anyhow::Result<_>>()?,
        None => (0..dims.len()).collect(),
    };
    let mut plan: Vec<(i64, f64)> = dims.iter().map(|&l| (l, 1.0)).collect();
    let sizes = if spec.scales_input == 2 { ins.opt_ints(3)?.filter(|s| !s.is_empty()) } else { None };
    if let Some(sizes) = sizes {
        if sizes.len() != axes.len() {
            return Err(bad_input!("node `{}` (Resize): {} sizes for {} axes", ins.node.name, sizes.len(), axes.len()));
        }
        let ratios: Vec<f64> = axes.iter().zip(&sizes).map(|(&d, &s)| s as f64 / dims[d] as f64).collect();
        let common = match spec.policy {
            Policy::Stretch => None,
            Policy::NotLarger => ratios.iter().copied().reduce(f64::min),
            Policy::NotSmaller => ratios.iter().copied().reduce(f64::max),
        };
        for (k, &d) in axes.iter().enumerate() {
            plan[d] = match common {
                None => (sizes[k], ratios[k]),
                // numpy's rounding (half to even), as ONNX's reference computes it.
                Some(s) => ((s * dims[d] as f64).round_ties_even() as i64, s),
            };
        }
        return Ok(plan);
    }
    let t = ins.get(spec.scales_input)?.f_to_kind(tch::Kind::Double)?;
    let scales = crate::host::vec::<f64>(&t.f_flatten(0, -1)?)?;
    if scales.len() != axes.len() {
        return Err(bad_input!("node `{}` ({}): {} scales for {} axes", ins.node.name, ins.node.op_type, scales.len(), axes.len()));
    }
    for (k, &d) in axes.iter().enumerate() {
        if !(scales[k] > 0.0 && scales[k].is_finite()) {
            return Err(bad_input!("node `{}` ({}): scale {} is not positive", ins.node.name, ins.node.op_type, scales[k]));
        }
        plan[d] = ((dims[d] as f64 * scales[k]).floor() as i64, scales[k]);
    }
    Ok(plan)
}

/// libtorch's own upsampling kernels where they compute exactly ONNX's mapping (what exporters
/// write for 4-D images): nearest with asymmetric coordinates and floor rounding, and linear
/// with half_pixel, or align_corners when every length·scale is whole.
fn fast_path(x: &Tensor, plan: &[(i64, f64)], spec: &ResizeSpec) -> anyhow::Result<Option<Tensor>> {
    let dims = x.size();
    if dims.len() != 4 || plan[0] != (dims[0], 1.0) || plan[1] != (dims[1], 1.0) || !super::is_float(x.kind()) || spec.antialias {
        return Ok(None);
    }
    let out = [plan[2].0, plan[3].0];
    let (sh, sw) = (Some(plan[2].1), Some(plan[3].1));
    let whole = |d: usize| {
        let v = dims[d] as f64 * plan[d].1;
        (v - v.round()).abs() < 1e-9
    };
    Ok(match (spec.interp, spec.coord) {
        (Interp::Nearest(Rounding::Floor), Coord::Asymmetric) => Some(x.f_upsample_nearest2d(out.as_slice(), sh, sw)?),
        (Interp::Linear, Coord::HalfPixel) => Some(x.f_upsample_bilinear2d(out.as_slice(), false, sh, sw)?),
        (Interp::Linear, Coord::PytorchHalfPixel) if out[0] > 1 && out[1] > 1 => Some(x.f_upsample_bilinear2d(out.as_slice(), false, sh, sw)?),
        (Interp::Linear, Coord::AlignCorners) if whole(2) && whole(3) => Some(x.f_upsample_bilinear2d(out.as_slice(), true, sh, sw)?),
        _ => None,
    })
}

/// ONNX's source coordinate of output position `i` along an axis of `len` resized to `out`
/// with `scale` (`roi`: tf_crop_and_resize's normalized region); `None` where
/// tf_crop_and_resize falls outside the input.
fn source_coord(coord: Coord, i: i64, len: i64, out: i64, scale: f64, roi: (f64, f64)) -> Option<f64> {
    let (i, len_f) = (i as f64, len as f64);
    // ONNX's reference maps with the unrounded output length.
    let out_f = scale * len_f;
    Some(match coord {
        Coord::TfCropAndResize => {
            let span = (roi.1 - roi.0) * (len_f - 1.0);
            let x = if out_f == 1.0 { span / 2.0 } else { i * span / (out_f - 1.0) } + roi.0 * (len_f - 1.0);
            if x < 0.0 || x > len_f - 1.0 {
                return None;
            }
            x
        }
        Coord::HalfPixel => (i + 0.5) / scale - 0.5,
        Coord::PytorchHalfPixel => {
            if out_f == 1.0 {
                -0.5
            } else {
                (i + 0.5) / scale - 0.5
            }
        }
        Coord::HalfPixelSymmetric => {
            let adjustment = out as f64 / out_f;
            let offset = len_f / 2.0 * (1.0 - adjustment);
            offset + (i + 0.5) / scale - 0.5
        }
        Coord::AlignCorners => {
            if out_f == 1.0 {
                0.0
            } else {
                i * (len_f - 1.0) / (out_f - 1.0)
            }
        }
        Coord::Asymmetric => i / scale,
    })
}

/// The cubic convolution weights of the four taps around a point `t` past the first of the
/// middle two (ONNX's and Keys's, with coefficient `a`).
fn cubic_weights(t: f64, a: f64) -> [f64; 4] {
    let far = |u: f64| ((a * u - 5.0 * a) * u + 8.0 * a) * u - 4.0 * a;
    let near = |u: f64| ((a + 2.0) * u - (a + 3.0)) * u * u + 1.0;
    [far(t + 1.0), near(t), near(1.0 - t), far(2.0 - t)]
}

/// The taps of one output position at source coordinate `xs` (index, weight), before clamping
/// to the input. Linear and cubic measure from the pixel left of `xs` (a whole `xs` counts
/// from the pixel before it, as ONNX's reference does); with antialias the filter's support
/// grows by 1/scale when downscaling and its weights are normalized to sum to one.
fn taps_at(xs: f64, scale: f64, len: i64, spec: &ResizeSpec) -> Vec<(i64, f64)> {
    let floor = xs.floor();
    let (base, ratio) = if xs == floor { (floor as i64 - 1, 1.0) } else { (floor as i64, xs - floor) };
    let s = if spec.antialias { scale.min(1.0) } else { 1.0 };
    let mut taps: Vec<(i64, f64)> = match spec.interp {
        Interp::Nearest(r) => {
            let b = floor as i64;
            let t = xs - floor;
            let pick = if t == 0.0 {
                b
            } else {
                match r {
                    Rounding::RoundPreferFloor => b + (t > 0.5) as i64,
                    Rounding::RoundPreferCeil => b + (t >= 0.5) as i64,
                    Rounding::Floor => b,
                    Rounding::Ceil => b + 1,
                }
            };
            return vec![(pick, 1.0)];
        }
        Interp::Linear if s == 1.0 => vec![(base, 1.0 - ratio), (base + 1, ratio)],
        Interp::Linear => {
            let start = (-1.0 / s).floor() as i64 + 1;
            (start..2 - start).map(|o| (base + o, (1.0 - ((o as f64 - ratio) * s).abs()).clamp(0.0, 1.0))).collect()
        }
        Interp::Cubic { a, .. } if s == 1.0 => {
            let w = cubic_weights(ratio, a);
            (0..4).map(|j| (base - 1 + j as i64, w[j])).collect()
        }
        Interp::Cubic { a, .. } => {
            let keys = |u: f64| {
                let u = u.abs();
                if u <= 1.0 {
                    ((a + 2.0) * u - (a + 3.0)) * u * u + 1.0
                } else if u < 2.0 {
                    ((a * u - 5.0 * a) * u + 8.0 * a) * u - 4.0 * a
                } else {
                    0.0
                }
            };
            let start = (-2.0 / s).floor() as i64 + 1;
            (start..2 - start).map(|o| (base + o, keys(s * (o as f64 - ratio)))).collect()
        }
    };
    if spec.antialias {
        let sum: f64 = taps.iter().map(|t| t.1).sum();
        taps.iter_mut().for_each(|t| t.1 /= sum);
    }
    if let Interp::Cubic { exclude_outside: true, .. } = spec.interp {
        taps.iter_mut().filter(|t| t.0 < 0 || t.0 >= len).for_each(|t| t.1 = 0.0);
        let sum: f64 = taps.iter().map(|t| t.1).sum();
        taps.iter_mut().for_each(|t| t.1 /= sum);
    }
    taps
}

/// `x` resampled along axis `d` from `len` to `out` values: each output a weighted sum of input
/// values gathered by index (indices and weights computed here, on the host, per call), or
/// tf_crop_and_resize's extrapolation value where it falls outside the input.
#[allow(clippy::too_many_arguments)]
fn resample_axis(x: &Tensor, d: i64, len: i64, out: i64, scale: f64, roi: (f64, f64), spec: &ResizeSpec) -> anyhow::Result<Tensor> {
    let per_output: Vec<Option<Vec<(i64, f64)>>> =
        (0..out).map(|i| source_coord(spec.coord, i, len, out, scale, roi).map(|xs| taps_at(xs, scale, len, spec))).collect();
    let taps = per_output.iter().flatten().map(|t| t.len()).max().unwrap_or(1);
    let mut index = vec![vec![0i64; out as usize]; taps];
    let mut weight = vec![vec![0f64; out as usize]; taps];
    let mut outside = vec![false; out as usize];
    for (k, p) in per_output.iter().enumerate() {
        match p {
            None => outside[k] = true,
            Some(list) => {
                for (j, &(i, w)) in list.iter().enumerate() {
                    index[j][k] = i.clamp(0, len - 1);
                    weight[j][k] = w;
                }
            }
        }
    }
    let device = x.device();
    let mut shape = vec![1i64; x.dim()];
    shape[d as usize] = out;
    let mut y: Option<Tensor> = None;
    for j in 0..taps {
        let idx = crate::host::upload(&Tensor::from_slice(&index[j]), device)?;
        let picked = x.f_index_select(d, &idx)?;
        let term = if taps == 1 {
            picked
        } else {
            let w = crate::host::upload(&Tensor::from_slice(&weight[j]).f_to_kind(x.kind())?, device)?.f_view(shape.as_slice())?;
            picked.f_mul(&w)?
        };
        y = Some(match y {
            Some(acc) => acc.f_add(&term)?,
            None => term,
        });
    }
    let y = y.expect("at least one tap");
    if !outside.contains(&true) {
        return Ok(y);
    }
    let mask = crate::host::upload(&Tensor::from_slice(&outside), device)?.f_view(shape.as_slice())?;
    Ok(y.f_masked_fill(&mask, spec.extrapolation)?)
}
