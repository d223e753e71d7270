//! Conversion between ONNX `TensorProto` and tch tensors, for every element type a vision
//! classifier stores (float, float16, double, the integer types, bool), and for the types held
//! in another storage ([`storage_kind`]): uint16 in int32, uint32 and uint64 in int64 (uint64
//! values past 2^63 − 1 are refused), int4/uint4 unpacked into int8/uint8, the float8 types in
//! libtorch's float8 kinds, float4e2m1 and float8e8m0 as the float32 values they stand for.
//!
//! External data must already be inlined by `model_file`; this file only sees bytes in memory.

use crate::bad_input;
use onnx_protobuf::tensor_proto::DataType;
use onnx_protobuf::TensorProto;
use tch::{Kind, Tensor};

/// The tch kind for an ONNX element type, or `None` for types we cannot hold (string, complex…).
pub fn kind_of(data_type: i32) -> Option<Kind> {
    Some(match data_type {
        x if x == DataType::FLOAT as i32 => Kind::Float,
        x if x == DataType::UINT8 as i32 => Kind::Uint8,
        x if x == DataType::INT8 as i32 => Kind::Int8,
        x if x == DataType::INT16 as i32 => Kind::Int16,
        x if x == DataType::INT32 as i32 => Kind::Int,
        x if x == DataType::INT64 as i32 => Kind::Int64,
        x if x == DataType::BOOL as i32 => Kind::Bool,
        x if x == DataType::FLOAT16 as i32 => Kind::Half,
        x if x == DataType::DOUBLE as i32 => Kind::Double,
        x if x == DataType::BFLOAT16 as i32 => Kind::BFloat16,
        _ => return None,
    })
}

/// ONNX element types that have no tch kind of their own (numbers of `TensorProto.DataType`;
/// the protobuf crate predates the last two).
pub mod carried {
    pub const UINT16: i32 = 4;
    pub const UINT32: i32 = 12;
    pub const UINT64: i32 = 13;
    pub const FLOAT8E4M3FN: i32 = 17;
    pub const FLOAT8E4M3FNUZ: i32 = 18;
    pub const FLOAT8E5M2: i32 = 19;
    pub const FLOAT8E5M2FNUZ: i32 = 20;
    pub const UINT4: i32 = 21;
    pub const INT4: i32 = 22;
    pub const FLOAT4E2M1: i32 = 23;
    pub const FLOAT8E8M0: i32 = 24;
}

/// The tch kind a value of ONNX element type `data_type` is held in: its own ([`kind_of`]), or
/// for a carried type one that holds every value exactly; `None` for types we cannot hold.
pub fn storage_kind(data_type: i32) -> Option<Kind> {
    use carried::*;
    kind_of(data_type).or(match data_type {
        UINT16 => Some(Kind::Int),
        UINT32 | UINT64 => Some(Kind::Int64),
        FLOAT8E4M3FN => Some(Kind::Float8e4m3fn),
        FLOAT8E4M3FNUZ => Some(Kind::Float8e4m3fnuz),
        FLOAT8E5M2 => Some(Kind::Float8e5m2),
        FLOAT8E5M2FNUZ => Some(Kind::Float8e5m2fnuz),
        UINT4 => Some(Kind::Uint8),
        INT4 => Some(Kind::Int8),
        FLOAT4E2M1 | FLOAT8E8M0 => Some(Kind::Float),
        _ => None,
    })
}

/// Whether `data_type` is held in another storage (or, for float8, a kind few ops take): the
/// values of such a type are read only by the ops `graph::types` allows.
pub fn is_carried(data_type: i32) -> bool {
    kind_of(data_type).is_none() && storage_kind(data_type).is_some()
}

/// The value a float4e2m1 code (low 4 bits: sign, 2 exponent bits, 1 mantissa bit) stands for.
pub fn float4e2m1_value(code: u8) -> f32 {
    const MAGNITUDES: [f32; 8] = [0.0, 0.5, 1.0, 1.5, 2.0, 3.0, 4.0, 6.0];
    let m = MAGNITUDES[(code & 7) as usize];
    if code & 8 != 0 {
        -m
    } else {
        m
    }
}

/// The value a float8e8m0 code (a bare exponent, bias 127; 0xFF is NaN) stands for.
pub fn float8e8m0_value(code: u8) -> f32 {
    match code {
        0xFF => f32::NAN,
        0 => f32::from_bits(0x0040_0000), // 2^-127, a float32 subnormal
        e => f32::from_bits((e as u32) << 23),
    }
}

/// The element bytes of `t` for a carried type (raw data, else the typed field ONNX stores the
/// type in), `per` bytes per element; 4-bit types come back packed, two per byte.
fn carried_bytes(t: &TensorProto, per: usize) -> Vec<u8> {
    if !t.raw_data.is_empty() {
        return t.raw_data.clone();
    }
    match per {
        1 => t.int32_data.iter().map(|v| *v as u8).collect(),
        2 => t.int32_data.iter().flat_map(|v| (*v as u16).to_le_bytes()).collect(),
        _ => t.uint64_data.iter().flat_map(|v| v.to_le_bytes()[..per].to_vec()).collect(),
    }
}

/// Decodes a tensor of a carried type into its storage kind.
fn carried_to_tch(t: &TensorProto, dims: &[i64], numel: usize) -> anyhow::Result<Tensor> {
    use carried::*;
    let dt = t.data_type;
    let what = || format!("tensor `{}` ({})", t.name, type_name(dt));
    let four_bit = matches!(dt, UINT4 | INT4 | FLOAT4E2M1);
    let per = match dt {
        UINT16 => 2,
        UINT32 => 4,
        UINT64 => 8,
        _ => 1,
    };
    let bytes = carried_bytes(t, per);
    let want = if four_bit { numel.div_ceil(2) } else { numel * per };
    if bytes.len() != want {
        return Err(bad_input!("{}: holds {} bytes, shape {dims:?} needs {want}", what(), bytes.len()));
    }
    let flat = match dt {
        UINT16 => Tensor::from_slice(&bytes.chunks_exact(2).map(|c| u16::from_le_bytes([c[0], c[1]]) as i32).collect::<Vec<_>>()),
        UINT32 => Tensor::from_slice(&bytes.chunks_exact(4).map(|c| u32::from_le_bytes(c.try_into().unwrap()) as i64).collect::<Vec<_>>()),
        UINT64 => {
            let v: Vec<u64> = bytes.chunks_exact(8).map(|c| u64::from_le_bytes(c.try_into().unwrap())).collect();
            if let Some(big) = v.iter().find(|&&x| x > i64::MAX as u64) {
                return Err(bad_input!("{}: value {big} is past 2^63 − 1, the largest UINT64 this tool holds", what()));
            }
            Tensor::from_slice(&v.iter().map(|&x| x as i64).collect::<Vec<_>>())
        }
        FLOAT8E8M0 => Tensor::from_slice(&bytes.iter().map(|&b| float8e8m0_value(b)).collect::<Vec<_>>()),
        _ if four_bit => {
            let codes = bytes.iter().flat_map(|b| [b & 0x0F, b >> 4]).take(numel);
            match dt {
                UINT4 => Tensor::from_slice(&codes.collect::<Vec<u8>>()),
                INT4 => Tensor::from_slice(&codes.map(|c| ((c << 4) as i8) >> 4).collect::<Vec<i8>>()),
                _ => Tensor::from_slice(&codes.map(float4e2m1_value).collect::<Vec<f32>>()),
            }
        }
        _ => Tensor::f_from_data_size(&bytes, &[numel as i64], storage_kind(dt).expect("a float8 type"))?,
    };
    Ok(flat.f_reshape(dims)?)
}

/// ONNX's name of element type `data_type` (`UINT16`, `FLOAT8E4M3FN`), or its number.
pub fn type_name(data_type: i32) -> String {
    use protobuf::Enum;
    match data_type {
        carried::FLOAT4E2M1 => return "FLOAT4E2M1".into(),
        carried::FLOAT8E8M0 => return "FLOAT8E8M0".into(),
        _ => {}
    }
    DataType::from_i32(data_type).map_or_else(|| format!("#{data_type}"), |d| format!("{d:?}"))
}

/// The ONNX element type for a tch kind.
pub fn data_type_of(kind: Kind) -> anyhow::Result<DataType> {
    Ok(match kind {
        Kind::Float => DataType::FLOAT,
        Kind::Uint8 => DataType::UINT8,
        Kind::Int8 => DataType::INT8,
        Kind::Int16 => DataType::INT16,
        Kind::Int => DataType::INT32,
        Kind::Int64 => DataType::INT64,
        Kind::Bool => DataType::BOOL,
        Kind::Half => DataType::FLOAT16,
        Kind::Double => DataType::DOUBLE,
        Kind::BFloat16 => DataType::BFLOAT16,
        other => anyhow::bail!("no ONNX element type for tch kind {other:?}"),
    })
}

/// The most values one tensor may declare (2^31: 8 GiB of float32; a model's weights stay far
/// below, and a corrupted shape is refused before anything is allocated).
pub const MAX_ELEMENTS: i64 = 1 << 31;

/// Decodes a tensor held in memory (raw bytes or the typed repeated fields).
pub fn to_tch(t: &TensorProto) -> anyhow::Result<Tensor> {
    let dims: Vec<i64> = t.dims.clone();
    let numel = dims
        .iter()
        .try_fold(1i64, |n, &d| if d < 0 { None } else { n.checked_mul(d) })
        .filter(|&n| n <= MAX_ELEMENTS)
        .ok_or_else(|| bad_input!("tensor `{}`: shape {dims:?} is negative or holds more than {MAX_ELEMENTS} values", t.name))?;
    if is_carried(t.data_type) {
        return carried_to_tch(t, &dims, numel as usize);
    }
    let kind = kind_of(t.data_type).ok_or_else(|| bad_input!("tensor `{}`: unsupported element type {}", t.name, type_name(t.data_type)))?;
    if !t.raw_data.is_empty() {
        let want = numel as usize * kind.elt_size_in_bytes();
        if t.raw_data.len() != want {
            return Err(bad_input!("tensor `{}`: raw_data has {} bytes, shape {:?} of {:?} needs {want}", t.name, t.raw_data.len(), dims, kind));
        }
        return Ok(Tensor::f_from_data_size(&t.raw_data, &dims, kind)?);
    }
    let flat = match kind {
        Kind::Float => Tensor::from_slice(&t.float_data),
        Kind::Double => Tensor::from_slice(&t.double_data),
        Kind::Int64 => Tensor::from_slice(&t.int64_data),
        Kind::Half | Kind::BFloat16 => {
            // 16-bit floats are stored as their bit patterns in int32_data.
            let bits: Vec<u8> = t.int32_data.iter().flat_map(|v| (*v as u16).to_le_bytes()).collect();
            Tensor::from_data_size(&bits, &[t.int32_data.len() as i64], kind)
        }
        _ => Tensor::from_slice(&t.int32_data).to_kind(kind),
    };
    if flat.numel() as i64 != numel {
        return Err(bad_input!("tensor `{}`: holds {} values, shape {:?} needs {numel}", t.name, flat.numel(), dims));
    }
    Ok(flat.f_reshape(&dims)?)
}

/// Encodes a tch tensor (any device) as a `TensorProto` with `raw_data`.
pub fn from_tch(name: &str, t: &Tensor) -> anyhow::Result<TensorProto> {
    let t = t.detach().to_device(tch::Device::Cpu).contiguous();
    let kind = t.kind();
    let mut p = TensorProto::new();
    p.name = name.to_string();
    p.dims = t.size();
    p.data_type = data_type_of(kind)? as i32;
    let numel = t.numel();
    let mut bytes = vec![0u8; numel * kind.elt_size_in_bytes()];
    crate::host::bytes(&t, &mut bytes)?;
    p.raw_data = bytes;
    Ok(p)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_trip_float_and_int64() {
        let t = Tensor::from_slice(&[1.5f32, -2.0, 3.25, 4.0, 5.0, 6.0]).reshape([2, 3]);
        let back = to_tch(&from_tch("w", &t).unwrap()).unwrap();
        assert_eq!(back.size(), vec![2, 3]);
        assert!(back.equal(&t));
        let i = Tensor::from_slice(&[1i64, -1, 7]);
        assert!(to_tch(&from_tch("s", &i).unwrap()).unwrap().equal(&i));
    }

    #[test]
    fn typed_fields_decode() {
        let mut p = TensorProto::new();
        p.name = "c".into();
        p.data_type = DataType::FLOAT as i32;
        p.dims = vec![2];
        p.float_data = vec![0.5, 2.0];
        let t = to_tch(&p).unwrap();
        assert_eq!(crate::host::vec::<f32>(&t).unwrap(), vec![0.5, 2.0]);
        p.dims = vec![3];
        assert!(to_tch(&p).is_err(), "a count mismatch must be an error");
    }
}
