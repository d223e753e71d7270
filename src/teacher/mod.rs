//! A teacher: an imported ONNX graph run frozen (no grad, eval mode) with its own preprocessing,
//! producing logits. Fixed-batch models are relaxed to run batched when a self-check proves the
//! relaxed graph equals per-sample execution; otherwise they run one sample at a time.

use crate::bad_input;
use crate::data::preprocess::Preprocess;
use crate::graph::passes::{relax_fixed_batch, Relaxed};
use crate::graph::{Executor, Graph, RunMode};
use crate::recipe::schema::TeacherOutput;
use sha2::{Digest, Sha256};
use std::collections::BTreeMap;
use std::path::PathBuf;
use tch::{Device, Kind, Tensor};

pub struct Teacher {
    pub name: String,
    pub path: PathBuf,
    pub sha256: String,
    pub preprocess: Preprocess,
    pub output: TeacherOutput,
    pub opset: i64,
    pub parameters: i64,
    /// How the graph is executed: batched, batched after relaxing a fixed batch, or per sample.
    pub execution: String,
    /// Number of classes the model predicts (its output width).
    pub num_classes: i64,
    /// Tap aliases, in the order `forward` returns the tapped values.
    pub taps: Vec<String>,
    per_sample: bool,
    exec: Executor,
    device: Device,
}

impl Teacher {
    pub fn load(spec: &TeacherSpec, image_size: i64, device: Device) -> anyhow::Result<Teacher> {
        let TeacherSpec { name, path, preprocess, output, taps } = spec;
        let (name, path, preprocess, output) = (name.as_str(), path.as_path(), preprocess.clone(), *output);
        let bytes = std::fs::read(path).map_err(|e| bad_input!("teacher `{name}`: cannot read {}: {e}", path.display()))?;
        let sha256 = hex(&Sha256::digest(&bytes));
        let model = crate::onnx::model_file::read(path)?;
        let origin = format!("teacher `{name}` ({})", path.display());
        let mut graph = Graph::from_model(&model, &origin)?;
        if graph.inputs.len() != 1 || graph.outputs.is_empty() {
            return Err(bad_input!("{origin}: expected one image input and at least one output, found {} inputs and {} outputs", graph.inputs.len(), graph.outputs.len()));
        }
        graph.to_device(device);
        let mut fetch = vec![graph.outputs[0].name.clone()];
        fetch.extend(taps.values().cloned());
        let strict = Executor::compile(&graph, &fetch, device).map_err(|e| e.context(origin.clone()))?;
        let relaxed: Relaxed = relax_fixed_batch(&mut graph)?;
        let mut teacher = Teacher {
            name: name.into(),
            path: path.to_path_buf(),
            sha256,
            preprocess,
            output,
            opset: graph.opset,
            parameters: graph.parameter_count(),
            execution: "batched".into(),
            num_classes: 0,
            taps: taps.keys().cloned().collect(),
            per_sample: false,
            exec: strict,
            device,
        };
        if relaxed.changed() {
            let relaxed_exec = Executor::compile(&graph, &fetch, device)?;
            if teacher.batched_matches_per_sample(&relaxed_exec, image_size)? {
                teacher.exec = relaxed_exec;
                teacher.execution = format!("batched (fixed batch of 1 relaxed; {} Reshape(s) rewritten)", relaxed.reshapes.len());
            } else {
                teacher.per_sample = true;
                teacher.execution = "per sample (fixed batch of 1 could not be relaxed safely)".into();
            }
        }
        teacher.num_classes = teacher.probe_classes(image_size).map_err(|e| e.context(origin))?;
        Ok(teacher)
    }

    /// Runs two random images and checks the first output is one score per class.
    fn probe_classes(&self, size: i64) -> anyhow::Result<i64> {
        let images = Tensor::randint(256, [2, size, size, 3], (Kind::Uint8, Device::Cpu));
        let (logits, _) = self.forward(&images)?;
        let shape = logits.size();
        if shape.len() != 2 || shape[0] != 2 || shape[1] < 2 {
            return Err(bad_input!("the first output is not a classifier's [batch, classes] scores: shape {shape:?} for a batch of 2"));
        }
        Ok(shape[1])
    }

    /// Runs the relaxed graph on a small random batch and compares with the strict graph run
    /// one sample at a time.
    fn batched_matches_per_sample(&self, relaxed: &Executor, size: i64) -> anyhow::Result<bool> {
        let _guard = tch::no_grad_guard();
        let images = Tensor::randint(256, [3, size, size, 3], (Kind::Uint8, Device::Cpu));
        let x = self.preprocess.apply(&images, self.device);
        let batched = match relaxed.run(&[&x], RunMode::Eval) {
            Ok(mut v) => v.remove(0),
            Err(_) => return Ok(false),
        };
        let singles: Vec<Tensor> = (0..3)
            .map(|i| self.exec.run(&[&x.narrow(0, i, 1)], RunMode::Eval).map(|mut v| v.remove(0)))
            .collect::<anyhow::Result<_>>()?;
        let per_sample = Tensor::cat(&singles, 0);
        Ok(batched.size() == per_sample.size() && crate::metrics::max_rel_diff(&batched, &per_sample) < 1e-5)
    }

    /// Teacher logits for a uint8 NHWC batch; probability outputs become log-probabilities,
    /// which are logits up to a per-sample constant.
    pub fn logits(&self, images_u8: &Tensor) -> anyhow::Result<Tensor> {
        Ok(self.forward(images_u8)?.0)
    }

    /// Logits and the tapped values (in `taps` order) for a uint8 NHWC batch, under no-grad.
    pub fn forward(&self, images_u8: &Tensor) -> anyhow::Result<(Tensor, Vec<Tensor>)> {
        let _guard = tch::no_grad_guard();
        let x = self.preprocess.apply(images_u8, self.device);
        let mut outs = if self.per_sample {
            let runs: Vec<Vec<Tensor>> =
                (0..x.size()[0]).map(|i| self.exec.run(&[&x.narrow(0, i, 1)], RunMode::Eval)).collect::<anyhow::Result<_>>()?;
            (0..runs.first().map_or(0, Vec::len))
                .map(|k| Tensor::cat(&runs.iter().map(|r| r[k].shallow_clone()).collect::<Vec<_>>(), 0))
                .collect()
        } else {
            self.exec.run(&[&x], RunMode::Eval)?
        };
        let out = outs.remove(0).to_kind(Kind::Float).flatten(1, -1);
        let logits = match self.output {
            TeacherOutput::Logits => out,
            TeacherOutput::Probabilities => out.clamp_min(1e-12).log(),
        };
        Ok((logits, outs))
    }
}

/// What the recipe says about one teacher.
pub struct TeacherSpec {
    pub name: String,
    pub path: PathBuf,
    pub preprocess: Preprocess,
    pub output: TeacherOutput,
    /// Alias → graph value name.
    pub taps: BTreeMap<String, String>,
}

pub fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}
