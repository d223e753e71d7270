//! The trainable student: a graph whose float initializers are registered as parameters of a
//! tch `VarStore` (so libtorch's SGD updates them in place), except BatchNormalization's running
//! statistics and Clip bounds, which are state and constants, not parameters.

use crate::data::preprocess::Preprocess;
use crate::data::ImageSet;
use crate::graph::ir::is_float;
use crate::graph::{Executor, Graph, RunMode};
use tch::{nn, Device, Tensor};

pub struct Student {
    pub graph: Graph,
    pub vs: nn::VarStore,
    exec: Executor,
    device: Device,
}

impl Student {
    pub fn new(mut graph: Graph, device: Device) -> anyhow::Result<Student> {
        graph.to_device(device);
        let frozen = graph.non_parameter_initializers();
        let vs = nn::VarStore::new(device);
        let root = vs.root();
        for (name, t) in graph.initializers.iter_mut() {
            if is_float(t.kind()) && !frozen.contains(name) {
                // VarStore paths use '.' as a separator; the graph keeps the real name.
                *t = root.add(&name.replace('.', "__"), t.detach(), true);
            }
        }
        let fetch = vec![graph.outputs[0].name.clone()];
        let exec = Executor::compile(&graph, &fetch, device)?;
        Ok(Student { graph, vs, exec, device })
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
