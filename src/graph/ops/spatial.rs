//! Padding and resampling: Pad, Resize (and the older Upsample).
//!
//! Opset differences handled: Pad takes `pads` and `value` as attributes before opset 11 and as
//! inputs from 11, with `axes` from 18; modes constant, reflect and edge (wrap is refused).
//! Resize takes (X, scales) at opset 10 and (X, roi, scales, sizes) from 11; supported are the
//! combinations exporters write for 4-D images: nearest with asymmetric coordinates and floor
//! rounding (torch's `nearest`), and linear with half_pixel, pytorch_half_pixel or
//! align_corners (torch's `bilinear`). Other combinations are refused, naming the node.

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
        Ok(x.f_pad(spec.as_slice(), torch_mode, if torch_mode == "constant" { Some(value) } else { None })?)
    }))
}

#[derive(Clone, Copy)]
enum Mode {
    NearestFloorAsymmetric,
    /// `pytorch`: pytorch_half_pixel, which maps an output of length 1 to the input's first
    /// pixel where half_pixel (torch's bilinear) takes its centre.
    Linear {
        align_corners: bool,
        pytorch: bool,
    },
}

fn resize(ctx: &NodeCtx) -> anyhow::Result<Kernel> {
    let a = ctx.attrs();
    let mode = a.string("mode")?.unwrap_or_else(|| "nearest".into());
    let coord = a.string("coordinate_transformation_mode")?.unwrap_or_else(|| {
        // Upsample (and Resize-10) have no such attribute and behave as `asymmetric`.
        if ctx.node.op_type == "Upsample" || ctx.opset < 11 {
            "asymmetric".into()
        } else {
            "half_pixel".into()
        }
    });
    let nearest_mode = a.string("nearest_mode")?.unwrap_or_else(|| if ctx.opset < 11 { "floor".into() } else { "round_prefer_floor".into() });
    let how = match (mode.as_str(), coord.as_str()) {
        ("nearest", "asymmetric") if nearest_mode == "floor" => Mode::NearestFloorAsymmetric,
        ("linear" | "bilinear", "half_pixel") => Mode::Linear { align_corners: false, pytorch: false },
        ("linear" | "bilinear", "pytorch_half_pixel") => Mode::Linear { align_corners: false, pytorch: true },
        ("linear" | "bilinear", "align_corners") => Mode::Linear { align_corners: true, pytorch: false },
        _ => return Err(a.unsupported("mode", format!("{mode} with {coord} coordinates and {nearest_mode} rounding"))),
    };
    if a.int_or("antialias", 0)? != 0 {
        return Err(a.unsupported("antialias", 1));
    }
    let scales_input = if ctx.opset < 11 || ctx.node.op_type == "Upsample" { 1 } else { 2 };
    Ok(super::single(move |ins, _| {
        let x = ins.get(0)?;
        if x.dim() != 4 {
            return Err(bad_input!("node `{}` ({}): only 4-D image tensors are supported, got {:?}", ins.node.name, ins.node.op_type, x.size()));
        }
        let Target { size: out, scales } = target_size(ins, x, scales_input)?;
        let refuse = |why: &str| bad_input!("node `{}` ({}): {why}, which is not supported", ins.node.name, ins.node.op_type);
        Ok(match how {
            Mode::NearestFloorAsymmetric => x.f_upsample_nearest2d(out.as_slice(), scales.map(|s| s.0), scales.map(|s| s.1))?,
            Mode::Linear { pytorch: true, .. } if out.contains(&1) && !x.size()[2..].contains(&1) => {
                return Err(refuse("pytorch_half_pixel linear resizing to a length of 1"));
            }
            Mode::Linear { align_corners: true, .. } if scales.is_some_and(|(h, w)| !integral(x.size()[2], h) || !integral(x.size()[3], w)) => {
                // ONNX maps align_corners coordinates with the unrounded length·scale.
                return Err(refuse("align_corners linear resizing by scales that give a fractional length"));
            }
            Mode::Linear { align_corners, .. } => x.f_upsample_bilinear2d(out.as_slice(), align_corners, scales.map(|s| s.0), scales.map(|s| s.1))?,
        })
    }))
}

/// Whether `length · scale` is a whole number.
fn integral(length: i64, scale: f64) -> bool {
    let v = length as f64 * scale;
    (v - v.round()).abs() < 1e-9
}

/// Output [H, W] and, when scales were given, the (h, w) scale factors ONNX defines the
/// coordinate mapping with.
struct Target {
    size: Vec<i64>,
    scales: Option<(f64, f64)>,
}

fn target_size(ins: &Inputs, x: &Tensor, scales_input: usize) -> anyhow::Result<Target> {
    let dims = x.size();
    let sizes = if scales_input == 2 { ins.opt_ints(3)? } else { None };
    if let Some(s) = sizes.filter(|s| !s.is_empty()) {
        anyhow::ensure!(s.len() == 4 && s[0] == dims[0] && s[1] == dims[1], "node `{}`: only spatial resizing is supported", ins.node.name);
        return Ok(Target { size: s[2..].to_vec(), scales: None });
    }
    let t = ins.get(scales_input)?.f_to_kind(tch::Kind::Double)?;
    let scales = crate::host::vec::<f64>(&t.f_flatten(0, -1)?)?;
    anyhow::ensure!(scales.len() == 4 && scales[0] == 1.0 && scales[1] == 1.0, "node `{}`: only spatial resizing is supported", ins.node.name);
    let out = vec![(dims[2] as f64 * scales[2]).floor() as i64, (dims[3] as f64 * scales[3]).floor() as i64];
    Ok(Target { size: out, scales: Some((scales[2], scales[3])) })
}
