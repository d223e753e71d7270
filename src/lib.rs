//! `compress`: distil ONNX image-classifier teachers into a small student, export and validate it.
//!
//! The binary in `main.rs` is a thin shell over this library; integration tests drive the binary.
//!
//! # Dependency rule
//!
//! Modules are layered, top to bottom; a module imports only from layers below its own, never
//! from its own layer or above, and nothing imports `pipeline` or `cli`. Inside a module the
//! files import each other without cycles. `tests/layering.rs` reads the block below and checks
//! every `crate::` path in `src/` against it.
//!
//! ```text
//! cli
//! pipeline
//! report
//! export distill
//! student teacher
//! quant
//! zoo
//! graph runtime recipe
//! onnx data device dist
//! fsio metrics progress
//! error host
//! ```
//!
//! - `cli`: one file per subcommand; `pipeline`: the only code that runs more than one stage
//!   (the run, the plan, the comparison, the output folder);
//! - `report`: report.json/report.md and gates; `export`: every model file we write and its
//!   check in ONNX Runtime; `distill`: the trainer, methods, losses, optimizer, checkpoints;
//! - `student`, `teacher`: the two kinds of model; `quant`: the training side of quantization;
//!   `zoo`: built-in student architectures;
//! - `graph`: the IR, its passes and executor; `runtime`: ONNX Runtime; `recipe`: the schema;
//! - leaves: `onnx` (protobuf I/O), `data`, `device`, `dist` (data parallel on c10d), `fsio` (atomic writes, hashes), `metrics`,
//!   `progress`, `error`; `host` (every read of tensor values into host memory, counted).

pub mod cli;
pub mod data;
pub mod device;
pub mod dist;
pub mod distill;
pub mod error;
pub mod export;
pub mod fsio;
pub mod graph;
pub mod host;
pub mod metrics;
pub mod onnx;
pub mod pipeline;
pub mod progress;
pub mod quant;
pub mod recipe;
pub mod report;
pub mod runtime;
pub mod student;
pub mod teacher;
pub mod zoo;
