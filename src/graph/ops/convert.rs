//! Conversions into the element types held in another storage (`onnx::tensor::storage_kind`),
//! as ONNX's Cast defines them; Cast, CastLike, QuantizeLinear and the unsigned arithmetic the
//! executor narrows use them.
//!
//! Integer targets take fixed-point values by discarding higher bits (200 → uint4 8); a float
//! outside an integer type's range is undefined in the spec, and gives 0 for the 4-bit types as
//! ONNX's reference does. A UINT64 value past 2^63 − 1, which no storage here holds, is an
//! error, never a wrong number. Float8 targets round to nearest even and, with `saturate`
//! (the default), clamp to the largest finite value (±∞ included); without it they overflow to
//! NaN (±∞ for E5M2). float4e2m1 rounds to nearest even and saturates at ±6 (NaN gives 0, as
//! the reference does). float8e8m0 keeps the exponent, rounding up (or to nearest, or down) by
//! the fraction, saturating at 2^127; ±∞ give 2^127 with `saturate`, NaN otherwise.

use crate::bad_input;
use crate::onnx::tensor::carried::*;
use crate::onnx::tensor::storage_kind;
use onnx_protobuf::NodeProto;
use tch::{Kind, Tensor};

/// How a float becomes a float8e8m0 exponent (Cast's `round_mode`, opset 24).
#[derive(Clone, Copy, Debug, PartialEq)]
pub enum RoundMode {
    Up,
    Nearest,
    Down,
}

impl RoundMode {
    pub fn parse(s: &str) -> Option<RoundMode> {
        match s {
            "up" => Some(RoundMode::Up),
            "nearest" => Some(RoundMode::Nearest),
            "down" => Some(RoundMode::Down),
            _ => None,
        }
    }
}

/// Cast's options for the float8 and float8e8m0 targets.
#[derive(Clone, Copy, Debug)]
pub struct CastOptions {
    pub saturate: bool,
    pub round: RoundMode,
}

impl Default for CastOptions {
    fn default() -> Self {
        CastOptions { saturate: true, round: RoundMode::Up }
    }
}

/// A float kind, the float8 ones included.
fn is_floating(k: Kind) -> bool {
    super::is_float(k) || matches!(k, Kind::Float8e4m3fn | Kind::Float8e4m3fnuz | Kind::Float8e5m2 | Kind::Float8e5m2fnuz)
}

/// The largest finite value of a float8 type.
fn float8_max(ty: i32) -> f64 {
    match ty {
        FLOAT8E4M3FN => 448.0,
        FLOAT8E4M3FNUZ => 240.0,
        _ => 57344.0,
    }
}

/// `x` (any storage) converted to the carried type `ty`, in `ty`'s storage kind.
pub fn to_carried(x: &Tensor, ty: i32, opts: CastOptions, node: &NodeProto) -> anyhow::Result<Tensor> {
    let float_in = is_floating(x.kind());
    Ok(match ty {
        UINT16 | UINT32 | UINT64 | INT4 | UINT4 => {
            if float_in && matches!(ty, INT4 | UINT4) {
                // Out of range (undefined in the spec) gives 0, as ONNX's reference does.
                let (lo, hi) = int_range(ty).expect("an integer type");
                let t = x.f_to_kind(Kind::Double)?.f_trunc()?;
                let inside = t.f_ge(lo)?.f_logical_and(&t.f_le(hi)?)?;
                t.f_where_self(&inside, &Tensor::f_zeros([], (Kind::Double, x.device()))?)?.f_to_kind(storage_kind(ty).expect("carried"))?
            } else {
                let ints = if float_in { x.f_to_kind(Kind::Double)?.f_trunc()?.f_to_kind(Kind::Int64)? } else { x.f_to_kind(Kind::Int64)? };
                wrap_int(&ints, ty, node)?
            }
        }
        FLOAT8E4M3FN | FLOAT8E4M3FNUZ | FLOAT8E5M2 | FLOAT8E5M2FNUZ => {
            let f = x.f_to_kind(Kind::Float)?;
            let f = if opts.saturate {
                let m = float8_max(ty);
                f.f_clamp(-m, m)?
            } else {
                f
            };
            f.f_to_kind(storage_kind(ty).expect("carried"))?
        }
        FLOAT4E2M1 => float4e2m1(&x.f_to_kind(Kind::Float)?)?,
        FLOAT8E8M0 => float8e8m0(&x.f_to_kind(Kind::Float)?, opts)?,
        other => return Err(bad_input!("node `{}` ({}): no conversion to element type {other}", node.name, node.op_type)),
    })
}

/// The range of a carried integer type (the exact values its storage holds for it).
pub fn int_range(ty: i32) -> Option<(f64, f64)> {
    Some(match ty {
        UINT16 => (0.0, 65535.0),
        UINT32 => (0.0, 4294967295.0),
        UINT64 => (0.0, i64::MAX as f64),
        INT4 => (-8.0, 7.0),
        UINT4 => (0.0, 15.0),
        _ => return None,
    })
}

/// Integer values (int64) brought into the carried integer type `ty` by discarding higher bits,
/// as a fixed-point cast (and the type's own arithmetic) does.
pub fn wrap_int(ints: &Tensor, ty: i32, node: &NodeProto) -> anyhow::Result<Tensor> {
    let i = ints.f_to_kind(Kind::Int64)?;
    Ok(match ty {
        UINT16 => i.f_bitwise_and(0xFFFF)?.f_to_kind(Kind::Int)?,
        UINT32 => i.f_bitwise_and(0xFFFF_FFFF)?,
        UINT4 => i.f_bitwise_and(0xF)?.f_to_kind(Kind::Uint8)?,
        INT4 => i.f_bitwise_and(0xF)?.f_bitwise_xor(8)?.f_sub_scalar(8)?.f_to_kind(Kind::Int8)?,
        UINT64 => {
            // Storage is int64: a negative value stands for one past 2^63 − 1.
            let past = crate::host::try_f64(&i.f_lt(0)?.f_any()?.f_to_kind(Kind::Double)?)? != 0.0;
            if past {
                return Err(bad_input!(
                    "node `{}` ({}): a UINT64 result past 2^63 − 1, the largest this tool holds (UINT64 is held in int64)",
                    node.name,
                    node.op_type
                ));
            }
            i
        }
        other => return Err(bad_input!("node `{}` ({}): element type {other} is not an integer type held in another storage", node.name, node.op_type)),
    })
}

/// float32 values rounded to float4e2m1 (nearest, ties to even; saturating at ±6; NaN → 0),
/// held as the float32 values they stand for.
fn float4e2m1(f: &Tensor) -> anyhow::Result<Tensor> {
    let m = f.f_abs()?;
    // (threshold, inclusive, level): at a tie the even code wins, so half the thresholds take
    // the tie upward and half do not.
    const STEPS: [(f64, bool, f64); 7] =
        [(0.25, false, 0.5), (0.75, true, 1.0), (1.25, false, 1.5), (1.75, true, 2.0), (2.5, false, 3.0), (3.5, true, 4.0), (5.0, false, 6.0)];
    let mut out = Tensor::f_zeros_like(&m)?;
    for (t, inclusive, level) in STEPS {
        let above = if inclusive { m.f_ge(t)? } else { m.f_gt(t)? };
        out = Tensor::f_full_like(&m, level)?.f_where_self(&above, &out)?;
    }
    Ok(out.f_copysign(f)?)
}

/// float32 values rounded to float8e8m0 (a power of two), held as the float32 they stand for.
fn float8e8m0(f: &Tensor, opts: CastOptions) -> anyhow::Result<Tensor> {
    let bits = f.f_contiguous()?.f_view_dtype(Kind::Int)?.f_to_kind(Kind::Int64)?;
    let exponent = bits.f_bitwise_right_shift_tensor_scalar(23)?.f_bitwise_and(0xFF)?;
    let fraction = bits.f_bitwise_and(0x7F_FFFF)?;
    let special = exponent.f_eq(0xFF)?;
    let up = match opts.round {
        RoundMode::Up => fraction.f_gt(0)?,
        // At or past 1.5·2^e; an exact tie rounds up (as ONNX's reference does) but from a
        // subnormal.
        RoundMode::Nearest => {
            let guard = fraction.f_bitwise_and(0x40_0000)?.f_gt(0)?;
            let rest = fraction.f_bitwise_and(0x3F_FFFF)?.f_gt(0)?;
            guard.f_logical_and(&rest.f_logical_or(&exponent.f_gt(0)?)?)?
        }
        RoundMode::Down => Tensor::f_zeros_like(&fraction)?.f_to_kind(Kind::Bool)?,
    };
    let up = up.f_logical_and(&special.f_logical_not()?)?;
    let up = if opts.saturate { up.f_logical_and(&exponent.f_ne(0xFE)?)? } else { up };
    let code = exponent.f_add(&up.f_to_kind(Kind::Int64)?)?;
    // ±∞ saturate to the largest value; NaN, and ±∞ without saturation, are NaN (code 0xFF).
    let infinite = special.f_logical_and(&fraction.f_eq(0)?)?;
    let code = if opts.saturate { Tensor::f_full_like(&code, 0xFE)?.f_where_self(&infinite, &code)? } else { code };
    // Code c stands for 2^(c − 127): float32 bits c << 23, and 2^-127 (a subnormal) for 0.
    let value = code.f_bitwise_left_shift_tensor_scalar(23)?.f_to_kind(Kind::Int)?.f_view_dtype(Kind::Float)?;
    let value = Tensor::f_full_like(&value, 2f64.powi(-127))?.f_where_self(&code.f_eq(0)?, &value)?;
    Ok(Tensor::f_full_like(&value, f64::NAN)?.f_where_self(&code.f_eq(0xFF)?, &value)?)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn node() -> NodeProto {
        NodeProto::new()
    }

    fn floats(t: &Tensor) -> Vec<f32> {
        crate::host::vec::<f32>(&t.to_kind(Kind::Float)).unwrap()
    }

    #[test]
    fn integers_wrap_by_discarding_higher_bits() {
        let x = Tensor::from_slice(&[200i64, -1, 70000, 15, 16]);
        assert_eq!(crate::host::vec::<u8>(&wrap_int(&x, UINT4, &node()).unwrap()).unwrap(), vec![8, 15, 0, 15, 0]);
        assert_eq!(crate::host::vec::<i8>(&wrap_int(&x, INT4, &node()).unwrap()).unwrap(), vec![-8, -1, 0, -1, 0]);
        assert_eq!(crate::host::vec::<i32>(&wrap_int(&x, UINT16, &node()).unwrap()).unwrap(), vec![200, 65535, 4464, 15, 16]);
        assert!(wrap_int(&x, UINT64, &node()).is_err(), "−1 as UINT64 is past 2^63 − 1");
    }

    #[test]
    fn four_bit_from_float_is_zero_outside_the_range() {
        let x = Tensor::from_slice(&[-9.0f32, -8.0, 7.9, 8.0, 2.5]);
        let y = to_carried(&x, INT4, CastOptions::default(), &node()).unwrap();
        assert_eq!(crate::host::vec::<i8>(&y).unwrap(), vec![0, -8, 7, 0, 2]);
    }

    #[test]
    fn float8_saturates_or_overflows() {
        let x = Tensor::from_slice(&[1e6f32, f32::INFINITY, -f32::INFINITY, 0.48, 449.0]);
        let sat = floats(&to_carried(&x, FLOAT8E4M3FN, CastOptions::default(), &node()).unwrap());
        assert_eq!(sat, vec![448.0, 448.0, -448.0, 0.46875, 448.0]);
        let raw = floats(&to_carried(&x, FLOAT8E5M2, CastOptions { saturate: false, round: RoundMode::Up }, &node()).unwrap());
        assert_eq!(raw[..3], [f32::INFINITY, f32::INFINITY, -f32::INFINITY]);
    }

    #[test]
    fn float4e2m1_rounds_to_nearest_even() {
        let x = Tensor::from_slice(&[0.25f32, 0.26, 0.75, 1.25, 2.5, 3.5, 5.0, 5.1, -1e6, f32::NAN]);
        let y = floats(&to_carried(&x, FLOAT4E2M1, CastOptions::default(), &node()).unwrap());
        assert_eq!(y, vec![0.0, 0.5, 1.0, 1.0, 2.0, 4.0, 4.0, 6.0, -6.0, 0.0]);
    }

    #[test]
    fn float8e8m0_keeps_the_exponent() {
        let x = Tensor::from_slice(&[0.0f32, 0.124, 0.25, 1.1, 1.5, f32::INFINITY, 3e38]);
        let up = floats(&to_carried(&x, FLOAT8E8M0, CastOptions::default(), &node()).unwrap());
        assert_eq!(up, vec![2f32.powi(-127), 0.125, 0.25, 2.0, 2.0, 2f32.powi(127), 2f32.powi(127)]);
        let down = floats(&to_carried(&x, FLOAT8E8M0, CastOptions { saturate: false, round: RoundMode::Down }, &node()).unwrap());
        assert_eq!(down[..5], [2f32.powi(-127), 0.0625, 0.25, 1.0, 1.0]);
        assert!(down[5].is_nan(), "∞ without saturation is NaN");
    }
}
