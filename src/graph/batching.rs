//! Batched execution of graphs that declare a fixed batch of 1 (design.md §1, "relax a fixed
//! batch"): the relaxed graph is used only when a self-check shows it equals per-sample
//! execution of the original graph; otherwise every batch runs one sample at a time.

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
    /// Compiles `graph` (relaxing it in place when it has a fixed batch of 1) to fetch `fetch`.
    /// `sample_shape` is one input sample's shape with its batch dimension of 1.
    pub fn compile(graph: &mut Graph, fetch: &[String], device: Device, sample_shape: &[i64]) -> anyhow::Result<BatchRunner> {
        let strict = Executor::compile(graph, fetch, device)?;
        let relaxed = relax_fixed_batch(graph)?;
        if !relaxed.changed() {
            return Ok(BatchRunner { exec: strict, per_sample: false, execution: "batched".into() });
        }
        let candidate = Executor::compile(graph, fetch, device)?;
        if matches_per_sample(&candidate, &strict, device, sample_shape)? {
            let execution = format!("batched (fixed batch of 1 relaxed; {} Reshape(s) rewritten)", relaxed.reshapes.len());
            return Ok(BatchRunner { exec: candidate, per_sample: false, execution });
        }
        Ok(BatchRunner { exec: strict, per_sample: true, execution: "per sample (fixed batch of 1 could not be relaxed safely)".into() })
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

/// Runs three random samples batched through `relaxed` and one by one through `strict`.
fn matches_per_sample(relaxed: &Executor, strict: &Executor, device: Device, sample_shape: &[i64]) -> anyhow::Result<bool> {
    let _guard = tch::no_grad_guard();
    let mut shape = sample_shape.to_vec();
    shape[0] = 3;
    let x = Tensor::randn(shape.as_slice(), (Kind::Float, device));
    let Ok(batched) = relaxed.run(&[&x], RunMode::Eval) else { return Ok(false) };
    let singles = per_sample(strict, &x)?;
    Ok(batched.len() == singles.len() && batched.iter().zip(&singles).all(|(b, s)| b.size() == s.size() && crate::metrics::max_rel_diff(b, s) < 1e-5))
}
