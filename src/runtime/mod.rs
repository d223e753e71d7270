//! ONNX Runtime through `ort`: one environment per process (ORT allows no second one, which
//! matters for `cargo test`), the library located without user set-up, and sessions that run a
//! model on tch tensors. ONNX Runtime is the oracle for imports and the deployment target.

pub mod eval;
pub mod latency;

use crate::bad_input;
use ort::session::builder::GraphOptimizationLevel;
use ort::session::Session;
use ort::value::TensorRef;
use std::path::{Path, PathBuf};
use std::sync::OnceLock;
use tch::Tensor;

/// Where the ONNX Runtime library is: `ORT_DYLIB_PATH`, a `libonnxruntime.so*` beside the
/// executable, or the project environment's wheel recorded at build time.
pub fn dylib_path() -> anyhow::Result<PathBuf> {
    if let Some(p) = std::env::var_os("ORT_DYLIB_PATH") {
        return Ok(PathBuf::from(p));
    }
    if let Some(dir) = std::env::current_exe().ok().and_then(|e| e.parent().map(Path::to_path_buf)) {
        if let Ok(entries) = std::fs::read_dir(&dir) {
            let mut beside: Vec<PathBuf> = entries
                .flatten()
                .map(|e| e.path())
                .filter(|p| p.file_name().and_then(|n| n.to_str()).is_some_and(|n| n.starts_with("libonnxruntime.so.1")))
                .collect();
            beside.sort();
            if let Some(p) = beside.pop() {
                return Ok(p);
            }
        }
    }
    let built = env!("COMPRESS_DEFAULT_ORT_DYLIB");
    if !built.is_empty() && Path::new(built).exists() {
        return Ok(PathBuf::from(built));
    }
    anyhow::bail!(
        "cannot find the ONNX Runtime library: set ORT_DYLIB_PATH to libonnxruntime.so.1.31.x \
         (it ships in the `onnxruntime==1.31.1` wheel) or run through ./scripts/compress, which installs it"
    )
}

/// The process-wide ONNX Runtime environment, created on first use.
pub fn environment() -> anyhow::Result<&'static ort::environment::Environment> {
    static ENV: OnceLock<Result<ort::environment::Environment, String>> = OnceLock::new();
    let env = ENV.get_or_init(|| {
        let path = dylib_path().map_err(|e| format!("{e:#}"))?;
        let _ = LOADED_FROM.set(path.clone());
        let builder = ort::init_from(&path).map_err(|e| format!("loading ONNX Runtime from {}: {e}", path.display()))?;
        builder.with_name("compress").build().map_err(|e| format!("creating the ONNX Runtime environment: {e}"))
    });
    env.as_ref().map_err(|e| anyhow::anyhow!("{e}"))
}

static LOADED_FROM: OnceLock<PathBuf> = OnceLock::new();

/// The ONNX Runtime version, read from the loaded library's versioned file name
/// (`libonnxruntime.so.1.31.1`), which `ort::init_from` has already checked to be compatible.
pub fn version() -> String {
    if environment().is_err() {
        return "unavailable".into();
    }
    let name = LOADED_FROM.get().and_then(|p| p.file_name()).and_then(|n| n.to_str()).unwrap_or("");
    match name.split_once(".so.") {
        Some((_, v)) => v.to_string(),
        None => name.to_string(),
    }
}

/// A model loaded in ONNX Runtime on the CPU.
pub struct OrtModel {
    session: Session,
    /// The first input declares a fixed batch of 1: ORT refuses larger batches, so run per sample.
    pub fixed_batch_one: bool,
}

impl OrtModel {
    pub fn load(path: &Path, threads: usize) -> anyhow::Result<OrtModel> {
        let env = environment()?;
        let session = Session::builder(env)
            .and_then(|b| b.with_optimization_level(GraphOptimizationLevel::All).map_err(ort::Error::from))
            .and_then(|b| b.with_intra_threads(threads).map_err(ort::Error::from))
            .and_then(|b| b.with_intra_op_spinning(false).map_err(ort::Error::from))
            .and_then(|mut b| b.commit_from_file(path))
            .map_err(|e| bad_input!("ONNX Runtime cannot load {}: {e}", path.display()))?;
        let fixed_batch_one = session.inputs().first().and_then(|i| i.dtype().tensor_shape().map(|s| s.first() == Some(&1))).unwrap_or(false);
        Ok(OrtModel { session, fixed_batch_one })
    }

    /// The kernels ONNX Runtime actually runs for `path` (CPU, all graph optimizations), as
    /// (node name, domain-qualified op type) in its optimized model, which it writes and this
    /// reads back. A fused node keeps the name of the node it replaced, sometimes with a
    /// `_token_N` suffix. This is how a silent fall-back of quantized layers to float kernels is
    /// caught.
    pub fn optimized_nodes(path: &Path) -> anyhow::Result<Vec<(String, String)>> {
        let env = environment()?;
        let dir = tempfile::Builder::new().prefix("compress-optimized-").tempdir()?;
        let optimized = dir.path().join("optimized.onnx");
        Session::builder(env)
            .and_then(|b| b.with_optimization_level(GraphOptimizationLevel::All).map_err(ort::Error::from))
            .and_then(|b| b.with_optimized_model_path(&optimized).map_err(ort::Error::from))
            .and_then(|mut b| b.commit_from_file(path))
            .map_err(|e| bad_input!("ONNX Runtime cannot load {}: {e}", path.display()))?;
        let model = crate::onnx::model_file::read(&optimized)?;
        Ok(model
            .graph
            .as_ref()
            .map(|g| g.node.as_slice())
            .unwrap_or(&[])
            .iter()
            .map(|n| {
                let op = if n.domain.is_empty() || n.domain == "ai.onnx" { n.op_type.clone() } else { format!("{}::{}", n.domain, n.op_type) };
                (n.name.clone(), op)
            })
            .collect())
    }

    /// Writes `src` (an ONNX file) as an ONNX Runtime format file (`.ort`, what ONNX Runtime
    /// Mobile and its minimal builds load) at `dst`, by ONNX Runtime itself: the model is loaded
    /// with the basic, hardware-independent graph optimizations and saved in its own format.
    pub fn save_ort_format(src: &Path, dst: &Path) -> anyhow::Result<()> {
        let env = environment()?;
        Session::builder(env)
            .and_then(|b| b.with_optimization_level(GraphOptimizationLevel::Level1).map_err(ort::Error::from))
            .and_then(|b| b.with_config_entry("session.save_model_format", "ORT").map_err(ort::Error::from))
            .and_then(|b| b.with_optimized_model_path(dst).map_err(ort::Error::from))
            .and_then(|mut b| b.commit_from_file(src))
            .map_err(|e| anyhow::anyhow!("ONNX Runtime cannot write {} in its own format: {e}", src.display()))?;
        anyhow::ensure!(dst.is_file(), "ONNX Runtime wrote no file at {}", dst.display());
        Ok(())
    }

    /// [`OrtModel::optimized_nodes`] counted by op type.
    pub fn optimized_ops(path: &Path) -> anyhow::Result<std::collections::BTreeMap<String, usize>> {
        let mut counts = std::collections::BTreeMap::new();
        for (_, op) in Self::optimized_nodes(path)? {
            *counts.entry(op).or_insert(0) += 1;
        }
        Ok(counts)
    }

    /// The model's `metadata_props` entry `key`, if it has one.
    pub fn custom_metadata(&self, key: &str) -> Option<String> {
        self.session.metadata().ok()?.custom(key)
    }

    /// The first input's declared shape, a dynamic dimension as -1.
    pub fn input_shape(&self) -> Option<Vec<i64>> {
        let input = self.session.inputs().first()?;
        Some(input.dtype().tensor_shape()?.iter().copied().collect())
    }

    /// The first output's declared shape, a dynamic dimension as -1.
    pub fn output_shape(&self) -> Option<Vec<i64>> {
        let output = self.session.outputs().first()?;
        Some(output.dtype().tensor_shape()?.iter().copied().collect())
    }

    pub fn input_names(&self) -> Vec<String> {
        self.session.inputs().iter().map(|i| i.name().to_string()).collect()
    }

    pub fn output_names(&self) -> Vec<String> {
        self.session.outputs().iter().map(|o| o.name().to_string()).collect()
    }

    /// Runs the model on one float batch (already preprocessed, in the model's layout) and
    /// returns every output as a CPU float tensor.
    pub fn run(&mut self, x: &Tensor) -> anyhow::Result<Vec<Tensor>> {
        if self.fixed_batch_one && x.size()[0] > 1 {
            let mut per_output: Vec<Vec<Tensor>> = Vec::new();
            for i in 0..x.size()[0] {
                let outs = self.run_once(&x.narrow(0, i, 1))?;
                per_output.resize_with(outs.len(), Vec::new);
                for (k, o) in outs.into_iter().enumerate() {
                    per_output[k].push(o);
                }
            }
            return Ok(per_output.iter().map(|v| Tensor::cat(v, 0)).collect());
        }
        self.run_once(x)
    }

    /// Seconds per run of `iters` back-to-back runs on the batch `x` (converted once, outside
    /// the timing). A model with a fixed batch of 1 runs the batch one sample at a time, as
    /// [`OrtModel::run`] does.
    pub fn seconds_per_run(&mut self, x: &Tensor, iters: usize) -> anyhow::Result<f64> {
        let x = x.to_device(tch::Device::Cpu).to_kind(tch::Kind::Float).contiguous();
        let mut shape: Vec<usize> = x.size().iter().map(|&d| d as usize).collect();
        let data = crate::host::vec::<f32>(&x.flatten(0, -1))?;
        let pieces = if self.fixed_batch_one { std::mem::replace(&mut shape[0], 1) } else { 1 };
        let piece = data.len() / pieces.max(1);
        let started = std::time::Instant::now();
        for _ in 0..iters.max(1) {
            for chunk in data.chunks(piece.max(1)) {
                let input = TensorRef::from_array_view((shape.clone(), chunk))?;
                drop(self.session.run(ort::inputs![input])?);
            }
        }
        Ok(started.elapsed().as_secs_f64() / iters.max(1) as f64)
    }

    fn run_once(&mut self, x: &Tensor) -> anyhow::Result<Vec<Tensor>> {
        let x = x.to_device(tch::Device::Cpu).to_kind(tch::Kind::Float).contiguous();
        let shape: Vec<usize> = x.size().iter().map(|&d| d as usize).collect();
        let data = crate::host::vec::<f32>(&x.flatten(0, -1))?;
        let input = TensorRef::from_array_view((shape, data.as_slice()))?;
        let outputs = self.session.run(ort::inputs![input])?;
        let mut result = Vec::with_capacity(outputs.len());
        for (_, value) in outputs.iter() {
            let (shape, values) = value.try_extract_tensor::<f32>()?;
            let dims: Vec<i64> = shape.iter().copied().collect();
            result.push(Tensor::from_slice(values).reshape(dims.as_slice()));
        }
        Ok(result)
    }
}
