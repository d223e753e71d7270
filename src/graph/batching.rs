//! Batched execution of graphs that declare a fixed batch of 1 (design.md §1, "relax a fixed
//! batch"): the relaxed graph is used only when a self-check shows it equals per-sample
//! execution of the original graph; otherwise every batch runs one sample at a time. The graphs
//! run here are frozen (teachers, inspection): constant subgraphs are folded at compile time.

use super::exec::{Executor, RunMode};
use super::ir::Graph;
use super::passes::relax_fixed_batch;
use tch::{Device, Kind, Tensor};

pub struct BatchRunner {
    exec: Executor,
    per_sample: bool,
    /// How batches run, for plans and reports.
    pub execution: String,
}

impl BatchRunner {
    /// Compiles `graph` (relaxing it in place when it has a fixed batch of 1) to fetch `fetch`
    /// on `device`. `sample_shape` is one input sample's shape with its batch dimension of 1.
    ///
    /// The graph comes in on the CPU and leaves on `device`: whether the relaxed graph equals
    /// per-sample execution is decided on the CPU, where kernels do not change with the batch
    /// size, so a GPU library picking other algorithms for a batch of 3 and a batch of 1 cannot
    /// silently send a teacher one sample at a time. The check runs in fp32; the graph's float
    /// initializers are then cast once to `kind` (a frozen teacher in bf16 or fp16), whose
    /// callers feed inputs of that type.
    pub fn compile(graph: &mut Graph, fetch: &[String], device: Device, sample_shape: &[i64], kind: Kind) -> anyhow::Result<BatchRunner> {
        let on_cpu = device == Device::Cpu && kind == Kind::Float;
        let strict = Executor::compile_frozen(graph, fetch, Device::Cpu)?;
        // The graph as it came, for a device that must run it unrelaxed.
        let original = if on_cpu { None } else { Some(graph.detached_copy()) };
        let relaxed = relax_fixed_batch(graph)?;
        let on_device = |graph: &mut Graph| -> anyhow::Result<Executor> {
            graph.cast_floats(kind);
            graph.to_device(device);
            Executor::compile_frozen(graph, fetch, device)
        };
        if !relaxed.changed() {
            let exec = if on_cpu { strict } else { on_device(graph)? };
            return Ok(BatchRunner { exec, per_sample: false, execution: "batched".into() });
        }
        let candidate = Executor::compile_frozen(graph, fetch, Device::Cpu)?;
        if matches_per_sample(&candidate, &strict, sample_shape)? {
            let execution = format!("batched (fixed batch of 1 relaxed; {} Reshape(s) rewritten)", relaxed.reshapes.len());
            let exec = if on_cpu { candidate } else { on_device(graph)? };
            return Ok(BatchRunner { exec, per_sample: false, execution });
        }
        let exec = match original {
            None => strict,
            Some(o) => {
                *graph = o;
                on_device(graph)?
            }
        };
        Ok(BatchRunner { exec, per_sample: true, execution: "per sample (fixed batch of 1 could not be relaxed safely)".into() })
    }

    /// Runs a batch in eval mode and returns the fetched values, batched.
    pub fn run(&self, x: &Tensor) -> anyhow::Result<Vec<Tensor>> {
        if !self.per_sample {
            return self.exec.run(&[x], RunMode::Eval);
        }
        per_sample(&self.exec, x)
    }
}

fn per_sample(exec: &Executor, x: &Tensor) -> anyhow::Result<Vec<Tensor>> {
    let runs: Vec<Vec<Tensor>> = (0..x.size()[0]).map(|i| exec.run(&[&x.narrow(0, i, 1)], RunMode::Eval)).collect::<anyhow::Result<_>>()?;
    Ok((0..runs.first().map_or(0, Vec::len)).map(|k| Tensor::cat(&runs.iter().map(|r| r[k].shallow_clone()).collect::<Vec<_>>(), 0)).collect())
}

/// Runs three random samples batched through `relaxed` and one by one through `strict`, both
/// compiled for the CPU.
fn matches_per_sample(relaxed: &Executor, strict: &Executor, sample_shape: &[i64]) -> anyhow::Result<bool> {
    let _guard = tch::no_grad_guard();
    let mut shape = sample_shape.to_vec();
    shape[0] = 3;
    let x = Tensor::randn(shape.as_slice(), (Kind::Float, Device::Cpu));
    let Ok(batched) = relaxed.run(&[&x], RunMode::Eval) else { return Ok(false) };
    let singles = per_sample(strict, &x)?;
    Ok(batched.len() == singles.len() && batched.iter().zip(&singles).all(|(b, s)| b.size() == s.size() && crate::metrics::max_rel_diff(b, s) < 1e-5))
}
