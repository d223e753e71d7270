//! Quantization-aware training: fake quantization with learned step sizes (LSQ), the graph
//! rewrite that inserts it as QDQ pairs, the recipe's QAT student, and the quantized export
//! checked against the kernels ONNX Runtime really runs.

pub mod export;
pub mod integer_pool;
pub mod lsq;
pub mod matmul_nbits;
pub mod pad_depthwise;
pub mod qdq;
pub mod stage;
