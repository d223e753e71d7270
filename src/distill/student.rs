//! The trainable student: a graph whose float initializers are parameters (requires_grad, updated
//! in place by the optimizer), except BatchNormalization's running statistics and Clip bounds,
//! which are state and constants.

use crate::data::preprocess::Preprocess;
use crate::data::ImageSet;
use crate::graph::ir::is_float;
use crate::graph::{Executor, Graph, RunMode};
use tch::{Device, Tensor};

pub struct Student {
    pub graph: Graph,
    exec: Executor,
    device: Device,
}

impl Student {
    pub fn new(mut graph: Graph, device: Device) -> anyhow::Result<Student> {
        graph.to_device(device);
        let frozen = graph.non_parameter_initializers();
        for (name, t) in graph.initializers.iter_mut() {
            if is_float(t.kind()) && !frozen.contains(name) {
                *t = t.detach().set_requires_grad(true);
            }
        }
        let fetch = vec![graph.outputs[0].name.clone()];
        let exec = Executor::compile(&graph, &fetch, device)?;
        Ok(Student { graph, exec, device })
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

    /// Eval-mode logits for a whole set, on the CPU, [N, C].
    pub fn logits(&self, set: &ImageSet, pre: &Preprocess, batch: i64) -> anyhow::Result<Tensor> {
        let _guard = tch::no_grad_guard();
        let n = set.len() as i64;
        let mut parts = Vec::new();
        let mut start = 0;
        while start < n {
            let len = batch.min(n - start);
            let x = pre.apply(&set.images.narrow(0, start, len), self.device);
            parts.push(self.forward(&x, RunMode::Eval)?.to_device(Device::Cpu));
            start += len;
        }
        Ok(Tensor::cat(&parts, 0))
    }
}
