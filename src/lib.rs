//! `compress`: distil ONNX image-classifier teachers into a small student, export and validate it.
//!
//! The binary in `main.rs` is a thin shell over this library; integration tests drive the binary.

pub mod cli;
pub mod compare;
pub mod data;
pub mod distill;
pub mod error;
pub mod export;
pub mod graph;
pub mod onnx;
pub mod pipeline;
pub mod progress;
pub mod quant;
pub mod recipe;
pub mod report;
pub mod runtime;
pub mod teacher;
pub mod zoo;
pub mod metrics;
