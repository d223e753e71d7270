//! The training side of quantization: fake quantization with learned step sizes (LSQ), the
//! graph rewrite that inserts it as QDQ pairs, and the recipe's QAT student. The quantized file
//! and its integer-kernel passes are `export`'s.

pub mod lsq;
pub mod qdq;
pub mod stage;
