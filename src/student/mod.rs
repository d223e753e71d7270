//! The trainable student: a graph whose float initializers are parameters (requires_grad, updated
//! in place by the optimizer), except BatchNormalization's running statistics and Clip bounds,
//! which are state and constants.
//! `source` builds the graph it starts from (a zoo architecture or the user's ONNX file).

pub mod source;

use crate::bad_input;
use crate::data::preprocess::Preprocess;
use crate::data::ImageSet;
use crate::graph::ops::is_float;
use crate::graph::taps::{named_taps, NamedTap};
use crate::graph::{Dim, Executor, Graph, RunMode};
use tch::{Device, Kind, Tensor};

pub struct Student {
    pub graph: Graph,
    exec: Executor,
    device: Device,
    /// Extra values fetched with the logits, in the order `forward_with_taps` returns them.
    taps: Vec<NamedTap>,
}

/// The student's named taps (`stage1` … `stageN`, `pooled`, `logits`) with their shapes for one
/// image, found by one traced eval-mode run on zeros.
pub fn student_taps(graph: &Graph) -> anyhow::Result<Vec<NamedTap>> {
    Ok(named_taps(graph, &probe_shapes(graph)?))
}

/// The shape of every computed value for one image (a traced eval-mode run on zeros).
fn probe_shapes(graph: &Graph) -> anyhow::Result<Vec<(String, Vec<i64>)>> {
    let input = graph.inputs.first().ok_or_else(|| bad_input!("the student graph has no input"))?;
    let shape: Vec<i64> = input
        .dims
        .iter()
        .enumerate()
        .map(|(i, d)| match d {
            Dim::Fixed(v) if i > 0 => *v,
            _ => 1,
        })
        .collect();
    let fetch: Vec<String> = graph.outputs.iter().map(|o| o.name.clone()).collect();
    let device = graph.initializers.iter().map(|(_, t)| t.device()).find(|d| *d != Device::Cpu).unwrap_or(Device::Cpu);
    let exec = Executor::compile(graph, &fetch, device)?;
    let probe = Tensor::zeros(shape.as_slice(), (Kind::Float, device));
    let (_, shapes) = tch::no_grad(|| exec.run_traced(&[&probe]))?;
    Ok(shapes)
}

impl Student {
    pub fn new(graph: Graph, device: Device) -> anyhow::Result<Student> {
        Student::with_taps(graph, device, &[])
    }

    /// A student that also returns the named values `taps` (aliases such as `stage2`, or any
    /// value name of the graph) from `forward_with_taps`.
    pub fn with_taps(mut graph: Graph, device: Device, taps: &[String]) -> anyhow::Result<Student> {
        let resolved = if taps.is_empty() { vec![] } else { resolve_taps(&graph, taps)? };
        graph.to_device(device);
        let frozen = graph.non_parameter_initializers();
        if device == Device::Cpu {
            // Measured 1.29× on a ResNet-20 training step (docs/benchmarks.md); on CUDA the
            // student stays NCHW until measured there.
            crate::graph::passes::channels_last_conv_weights(&mut graph);
        }
        for (name, t) in graph.initializers.iter_mut() {
            if is_float(t.kind()) && !frozen.contains(name) {
                *t = t.detach().set_requires_grad(true);
            }
        }
        let mut fetch = vec![graph.outputs[0].name.clone()];
        fetch.extend(resolved.iter().map(|t| t.value.clone()));
        let exec = Executor::compile(&graph, &fetch, device)?;
        Ok(Student { graph, exec, device, taps: resolved })
    }

    /// The taps `forward_with_taps` returns, in order.
    pub fn taps(&self) -> &[NamedTap] {
        &self.taps
    }

    /// The trainable parameters, by name (shallow handles on the graph's tensors).
    pub fn parameters(&self) -> Vec<(String, Tensor)> {
        self.graph.initializers.iter().filter(|(_, t)| t.requires_grad()).map(|(n, t)| (n.clone(), t.shallow_clone())).collect()
    }

    /// Every initializer (parameters and BatchNorm state), for checkpoints.
    pub fn state(&self) -> Vec<(String, Tensor)> {
        self.graph.initializers.iter().map(|(n, t)| (n.clone(), t.shallow_clone())).collect()
    }

    /// Copies saved values into the graph's tensors in place (the executor shares them).
    pub fn load_state(&self, saved: &std::collections::HashMap<String, Tensor>) -> anyhow::Result<()> {
        let _guard = tch::no_grad_guard();
        for (name, t) in &self.graph.initializers {
            let src = saved.get(name).ok_or_else(|| anyhow::anyhow!("the checkpoint has no `{name}`"))?;
            anyhow::ensure!(src.size() == t.size(), "checkpoint `{name}` has shape {:?}, the model {:?}", src.size(), t.size());
            let mut dst = t.shallow_clone();
            dst.f_copy_(src)?;
        }
        Ok(())
    }

    pub fn device(&self) -> Device {
        self.device
    }

    pub fn forward(&self, x: &Tensor, mode: RunMode) -> anyhow::Result<Tensor> {
        Ok(self.exec.run(&[x], mode)?.remove(0))
    }

    /// `forward_with_taps` with some parameters replaced by other tensors (by name), e.g. a
    /// lookahead θ' = θ − lr·∇θ L that gradients flow back through.
    pub fn forward_with_params(&self, x: &Tensor, mode: RunMode, params: &[(String, Tensor)]) -> anyhow::Result<(Tensor, Vec<Tensor>)> {
        let replaced = params
            .iter()
            .map(|(name, t)| {
                let i = self.graph.initializers.iter().position(|(n, _)| n == name).ok_or_else(|| anyhow::anyhow!("the student has no parameter `{name}`"))?;
                Ok((i, t.shallow_clone()))
            })
            .collect::<anyhow::Result<Vec<_>>>()?;
        let mut outs = self.exec.run_with(&[x], mode, &replaced)?;
        let logits = outs.remove(0);
        Ok((logits, outs))
    }

    /// The logits and then each tap's value, in the order of `taps()`.
    pub fn forward_with_taps(&self, x: &Tensor, mode: RunMode) -> anyhow::Result<(Tensor, Vec<Tensor>)> {
        let mut outs = self.exec.run(&[x], mode)?;
        let logits = outs.remove(0);
        Ok((logits, outs))
    }

    /// Eval-mode logits for a whole set, on the CPU, [N, C].
    pub fn logits(&self, set: &ImageSet, pre: &Preprocess, batch: i64) -> anyhow::Result<Tensor> {
        let _guard = tch::no_grad_guard();
        let n = set.len() as i64;
        let mut parts = Vec::new();
        let mut start = 0;
        while start < n {
            let len = batch.min(n - start);
            let x = pre.f_apply(&set.images.narrow(0, start, len), self.device)?;
            parts.push(self.forward(&x, RunMode::Eval)?.to_device(Device::Cpu));
            start += len;
        }
        Ok(Tensor::cat(&parts, 0))
    }
}

/// Finds each wanted tap among the named taps (by alias) or the graph's values (by name).
pub fn resolve_taps(graph: &Graph, wanted: &[String]) -> anyhow::Result<Vec<NamedTap>> {
    let shapes = probe_shapes(graph)?;
    let named = named_taps(graph, &shapes);
    wanted
        .iter()
        .map(|w| {
            if let Some(t) = named.iter().find(|t| &t.alias == w) {
                return Ok(t.clone());
            }
            if let Some((_, shape)) = shapes.iter().find(|(n, _)| n == w) {
                return Ok(NamedTap { alias: w.clone(), value: w.clone(), shape: shape.clone() });
            }
            let aliases: Vec<&str> = named.iter().map(|t| t.alias.as_str()).collect();
            Err(bad_input!("the student has no tap `{w}` (named taps: {}; or give a value name from the graph)", aliases.join(", ")))
        })
        .collect()
}
