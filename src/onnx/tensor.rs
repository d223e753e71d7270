//! Conversion between ONNX `TensorProto` and tch tensors, for every element type a vision
//! classifier stores (float, float16, double, the integer types, bool).
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

/// The ONNX element type for a tch kind.
/// ONNX's name of element type `data_type` (`UINT16`, `FLOAT8E4M3FN`), or its number.
pub fn type_name(data_type: i32) -> String {
    use protobuf::Enum;
    DataType::from_i32(data_type).map_or_else(|| format!("#{data_type}"), |d| format!("{d:?}"))
}

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
    let kind = kind_of(t.data_type).ok_or_else(|| bad_input!("tensor `{}`: unsupported element type {}", t.name, t.data_type))?;
    let dims: Vec<i64> = t.dims.clone();
    let numel = dims
        .iter()
        .try_fold(1i64, |n, &d| if d < 0 { None } else { n.checked_mul(d) })
        .filter(|&n| n <= MAX_ELEMENTS)
        .ok_or_else(|| bad_input!("tensor `{}`: shape {dims:?} is negative or holds more than {MAX_ELEMENTS} values", t.name))?;
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
