//! Quantization-aware training: fake quantization with learned step sizes (LSQ). The graph
//! rewrite that inserts it and the QDQ export build on this (issue 6, in progress).

pub mod lsq;
pub mod qdq;
