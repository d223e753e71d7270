//! The graph IR shared by teachers and students, its executor on tch, and graph passes.
//!
//! A graph keeps ONNX's own node representation (`NodeProto`), so import and export are direct
//! and the exported student is the trained graph by construction (design.md §1).

pub mod batching;
pub mod builder;
pub mod exec;
pub mod fold_bn;
pub mod ir;
pub mod numerics;
pub mod ops;
pub mod passes;
pub mod taps;
pub mod types;

pub use exec::{Executor, RunMode};
pub use ir::{Dim, Graph, ValueDecl};
pub use numerics::Numerics;
