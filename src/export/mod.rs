//! Everything written to disk as a model: the float student (`float`), its fidelity in ONNX
//! Runtime (`fidelity`), the quantized QDQ file (`quantized`) and the passes that lay it out for
//! ONNX Runtime's integer kernels (`int8_storage`, `pad_depthwise`, `integer_pool`,
//! `matmul_nbits`), ONNX Runtime format copies (`ort_format`), and the metadata keys every file
//! carries (`metadata`). The training side of
//! quantization (LSQ, QDQ insertion, the QAT stage) is `quant`'s.

pub mod fidelity;
pub mod float;
pub mod int8_storage;
pub mod integer_pool;
pub mod matmul_nbits;
pub mod metadata;
pub mod ort_format;
pub mod pad_depthwise;
pub mod quantized;

pub use fidelity::{validate_export, Fidelity};
pub use float::{export_student, file_record, onnx_model, write_onnx, ExportedFile};
