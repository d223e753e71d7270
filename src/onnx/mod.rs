//! ONNX files: reading and writing `ModelProto` (with external data and path safety), tensor
//! conversion between `TensorProto` and tch, and typed attribute access.
//!
//! Nothing here knows about graphs or execution; `crate::graph` builds on these pieces.

pub mod attr;
pub mod model_file;
pub mod tensor;

pub use onnx_protobuf::{AttributeProto, GraphProto, ModelProto, NodeProto, TensorProto};
