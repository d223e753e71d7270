//! A teacher: an imported ONNX graph run frozen (no grad, eval mode) with its own preprocessing,
//! producing logits. Fixed-batch models are relaxed to run batched when a self-check proves the
//! relaxed graph equals per-sample execution; otherwise they run one sample at a time.

pub mod evaluate;

use crate::bad_input;
use crate::data::preprocess::{Layout, Preprocess};
use crate::graph::batching::BatchRunner;
use crate::graph::Graph;
use crate::recipe::schema::{Precision, TeacherOutput};
use anyhow::Context;
use std::collections::BTreeMap;
use std::path::PathBuf;
use tch::{Device, Kind, Tensor};

/// A teacher's classifier as a linear map from its pooled features: logits = x·Wᵀ + b.
#[derive(Debug)]
pub struct Head {
    /// [C, d]
    pub weight: Tensor,
    /// [C]
    pub bias: Tensor,
}

pub struct Teacher {
    pub name: String,
    pub path: PathBuf,
    pub sha256: String,
    pub preprocess: Preprocess,
    /// `preprocess` with its constants on the teacher's device, built once at load.
    normalizer: crate::data::preprocess::Normalizer,
    pub output: TeacherOutput,
    pub opset: i64,
    pub parameters: i64,
    /// How the graph is executed: batched, batched after relaxing a fixed batch, or per sample.
    pub execution: String,
    /// Number of classes the model predicts (its output width).
    pub num_classes: i64,
    /// Tap aliases, in the order `forward` returns the tapped values: the recipe's `taps`, then
    /// the named taps the distillation method asks for (`stage2`, `last_stage`, `pooled`, ...).
    pub taps: Vec<String>,
    /// Each tap's shape for one image (batch axis included).
    pub tap_shapes: Vec<Vec<i64>>,
    /// The linear classifier that produces the logits, when the method asks for it.
    pub head: Option<Head>,
    /// `(height, width)` of the images this teacher is given.
    pub input_hw: (i64, i64),
    runner: BatchRunner,
    precision: Precision,
}

impl Teacher {
    pub fn load(spec: &TeacherSpec, image_size: i64, device: Device) -> anyhow::Result<Teacher> {
        let TeacherSpec { name, path, preprocess, output, taps, precision, method_taps, head, size } = spec;
        if *precision == Precision::Fp16 && device == Device::Cpu {
            return Err(bad_input!("teacher `{name}`: precision fp16 needs a CUDA device (running on cpu); bf16 runs on both"));
        }
        let (name, path, preprocess, output) = (name.as_str(), path.as_path(), preprocess.clone(), *output);
        let bytes = std::fs::read(path).map_err(|e| bad_input!("teacher `{name}`: cannot read {}: {e}", path.display()))?;
        let sha256 = crate::fsio::sha256_hex(&bytes);
        let model = crate::onnx::model_file::read(path)?;
        let origin = format!("teacher `{name}` ({})", path.display());
        let mut graph = Graph::from_model(&model, &origin)?;
        if graph.inputs.len() != 1 || graph.outputs.is_empty() {
            return Err(bad_input!(
                "{origin}: expected one image input and at least one output, found {} inputs and {} outputs",
                graph.inputs.len(),
                graph.outputs.len()
            ));
        }
        check_layout(&graph, &preprocess.layout, &origin)?;
        check_output_kind(&graph, output, &origin)?;
        let declared = declared_hw(&graph, &preprocess.layout);
        let (h, w) = match (size, declared) {
            (Some(s), Some(d)) if d != (*s as i64, *s as i64) => {
                return Err(bad_input!(
                    "{origin}: input.size is {s} but the model's input declares a fixed {}x{} image (height x width); \
                     give input.size: {} or leave it out",
                    d.0,
                    d.1,
                    d.0
                ))
            }
            (Some(s), _) => (*s as i64, *s as i64),
            (None, Some(d)) => d,
            (None, None) => (image_size, image_size),
        };
        let sample = match preprocess.layout {
            Layout::Nchw => [1, 3, h, w],
            Layout::Nhwc => [1, h, w, 3],
        };
        let ResolvedTaps { aliases: tap_names, values: tap_values, shapes: tap_shapes } =
            resolve_taps(&graph, &sample, taps, method_taps).map_err(|e| e.context(origin.clone()))?;
        let head = if *head { crate::graph::taps::linear_head(&graph).map(|(weight, bias)| Head { weight, bias }) } else { None };
        let mut fetch = vec![graph.outputs[0].name.clone()];
        fetch.extend(tap_values);
        if device == Device::Cpu {
            // Frozen weights in oneDNN's preferred layout (docs/benchmarks.md).
            crate::graph::passes::channels_last_conv_weights(&mut graph);
        }
        // Compiled from the CPU (where the batch-relaxation check runs), onto the device.
        let runner = BatchRunner::compile(&mut graph, &fetch, device, &sample, precision.kind()).map_err(|e| e.context(origin.clone()))?;
        let mut teacher = Teacher {
            name: name.into(),
            path: path.to_path_buf(),
            sha256,
            normalizer: preprocess.on(device).map_err(|e| e.context(origin.clone()))?,
            preprocess,
            output,
            opset: graph.opset,
            parameters: graph.parameter_count(),
            execution: runner.execution.clone(),
            num_classes: 0,
            taps: tap_names,
            tap_shapes,
            head,
            input_hw: (h, w),
            runner,
            precision: *precision,
        };
        teacher.num_classes = teacher.probe_classes().map_err(|e| e.context(origin))?;
        Ok(teacher)
    }

    /// Runs two random images and checks the first output is one score per class.
    fn probe_classes(&self) -> anyhow::Result<i64> {
        let (h, w) = self.input_hw;
        let images = Tensor::randint(256, [2, h, w, 3], (Kind::Uint8, Device::Cpu));
        let (logits, _) = self.forward(&images)?;
        let shape = logits.size();
        if shape.len() != 2 || shape[0] != 2 || shape[1] < 2 {
            return Err(bad_input!("the first output is not a classifier's [batch, classes] scores: shape {shape:?} for a batch of 2"));
        }
        Ok(shape[1])
    }

    /// Everything its logits on an image depend on besides the image, as text: the file, the
    /// preprocessing, the precision, the output kind, the input size and how the graph runs.
    pub fn cache_identity(&self) -> String {
        format!("{} {:?} {:?} {:?} {:?} {}", self.sha256, self.preprocess, self.precision, self.output, self.input_hw, self.execution)
    }

    /// Teacher logits for a uint8 NHWC batch; probability outputs become log-probabilities,
    /// which are logits up to a per-sample constant.
    pub fn logits(&self, images_u8: &Tensor) -> anyhow::Result<Tensor> {
        Ok(self.forward(images_u8)?.0)
    }

    /// Logits and the tapped values (in `taps` order) for a uint8 NHWC batch, under no-grad.
    pub fn forward(&self, images_u8: &Tensor) -> anyhow::Result<(Tensor, Vec<Tensor>)> {
        let x = self.prepare(images_u8)?;
        self.forward_prepared(&x)
    }

    /// The teacher's input for a uint8 NHWC batch: scaled, normalized, in its layout (fp32).
    /// Teachers with equal [`Teacher::preprocess`] prepare equal inputs, so a batch's input is
    /// prepared once for all of them.
    pub fn prepare(&self, images_u8: &Tensor) -> anyhow::Result<Tensor> {
        let _guard = tch::no_grad_guard();
        self.normalizer.apply(images_u8).with_context(|| format!("teacher `{}`: preparing its input", self.name))
    }

    /// [`Teacher::forward`] on an input made by [`Teacher::prepare`].
    pub fn forward_prepared(&self, x: &Tensor) -> anyhow::Result<(Tensor, Vec<Tensor>)> {
        let _guard = tch::no_grad_guard();
        // The weights were cast once at load; the input follows, the outputs come back fp32.
        let kind = self.precision.kind();
        let x = if kind == Kind::Float { x.shallow_clone() } else { x.to_kind(kind) };
        let mut outs = self.runner.run(&x)?;
        let out = outs.remove(0).to_kind(Kind::Float).flatten(1, -1);
        Ok((self.as_logits(out), outs.into_iter().map(|t| t.to_kind(Kind::Float)).collect()))
    }

    /// The model's output as logits: itself, or the log of probabilities (clamped at 1e-12).
    pub fn as_logits(&self, out: Tensor) -> Tensor {
        match self.output {
            TeacherOutput::Logits => out,
            TeacherOutput::Probabilities => out.clamp_min(1e-12).log(),
        }
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
    pub precision: Precision,
    /// Named taps the distillation method needs (resolved unless `taps` defines the alias).
    pub method_taps: Vec<String>,
    /// Extract the linear classifier head (CA-MKD's feature weights).
    pub head: bool,
    /// The recipe's `input.size`: the side of the images this teacher is given.
    pub size: Option<u32>,
}

/// The `(height, width)` the graph's image input declares, when both are fixed numbers.
/// Refuses a layout the model's declared input contradicts: a fixed 3 on the other channel
/// axis (a Keras/tf2onnx model is NHWC) and not on this one, before libtorch would fail deep in
/// the first convolution.
fn check_layout(graph: &Graph, layout: &Layout, origin: &str) -> anyhow::Result<()> {
    use crate::graph::ir::Dim;
    let Some(input) = graph.inputs.first() else { return Ok(()) };
    let [_, second, _, last] = input.dims.as_slice() else { return Ok(()) };
    let three = Dim::Fixed(3);
    let (fix, want) = match layout {
        Layout::Nchw if *second != three && *last == three => ("nhwc", "channels last (NHWC)"),
        Layout::Nhwc if *second == three && *last != three => ("nchw", "channels first (NCHW)"),
        _ => return Ok(()),
    };
    let dims: Vec<String> = input
        .dims
        .iter()
        .map(|d| match d {
            Dim::Fixed(n) => n.to_string(),
            Dim::Symbolic(s) if s.is_empty() => "?".into(),
            Dim::Symbolic(s) => s.clone(),
        })
        .collect();
    Err(bad_input!(
        "{origin}: its input `{}` is declared [{}], which is {want}, but input.layout is {}: use `layout: {fix}`",
        input.name,
        dims.join(", "),
        if fix == "nhwc" { "nchw" } else { "nhwc" }
    ))
}

/// Refuses `output: logits` for a model whose output comes straight from a Softmax: its log
/// must be taken (`output: probabilities`), or distillation would read probabilities as logits.
fn check_output_kind(graph: &Graph, output: TeacherOutput, origin: &str) -> anyhow::Result<()> {
    if output != TeacherOutput::Logits {
        return Ok(());
    }
    let Some(first) = graph.outputs.first() else { return Ok(()) };
    let mut value = first.name.clone();
    for _ in 0..8 {
        let Some(node) = graph.nodes.iter().find(|n| n.output.first() == Some(&value)) else { return Ok(()) };
        match node.op_type.as_str() {
            "Softmax" => {
                return Err(bad_input!(
                    "{origin}: its output `{}` is computed by the Softmax node `{}`, so it holds probabilities: set `output: probabilities`",
                    first.name,
                    node.name
                ))
            }
            "Identity" | "Squeeze" | "Reshape" | "Flatten" | "Dropout" | "Transpose" => match node.input.first() {
                Some(v) => value = v.clone(),
                None => return Ok(()),
            },
            _ => return Ok(()),
        }
    }
    Ok(())
}

fn declared_hw(graph: &Graph, layout: &Layout) -> Option<(i64, i64)> {
    use crate::graph::ir::Dim;
    let dims = &graph.inputs.first()?.dims;
    // Only an input whose channel axis says 3 where the layout puts it is read as an image;
    // anything else is left to the checks that run the graph.
    let (c, h, w) = match (layout, dims.as_slice()) {
        (Layout::Nchw, [_, c, h, w]) | (Layout::Nhwc, [_, h, w, c]) => (c, h, w),
        _ => return None,
    };
    if *c != Dim::Fixed(3) {
        return None;
    }
    match (h, w) {
        (Dim::Fixed(h), Dim::Fixed(w)) if *h > 0 && *w > 0 => Some((*h, *w)),
        _ => None,
    }
}

/// The recipe's taps plus the method's named ones (aliases, graph values, shapes for one image),
/// found from one traced run of the graph on zeros.
fn resolve_taps(graph: &Graph, sample: &[i64], user: &BTreeMap<String, String>, wanted: &[String]) -> anyhow::Result<ResolvedTaps> {
    if user.is_empty() && wanted.is_empty() {
        return Ok(ResolvedTaps::default());
    }
    let outputs: Vec<String> = graph.outputs.iter().map(|o| o.name.clone()).collect();
    let exec = crate::graph::Executor::compile(graph, &outputs, Device::Cpu)?;
    let probe = Tensor::zeros(sample, (Kind::Float, Device::Cpu));
    let (_, shapes) = tch::no_grad(|| exec.run_traced(&[&probe]))?;
    let named = crate::graph::taps::named_taps(graph, &shapes);
    let shape_of = |v: &str| shapes.iter().find(|(n, _)| n == v).map(|(_, s)| s.clone());
    let (mut aliases, mut values, mut dims) = (Vec::new(), Vec::new(), Vec::new());
    for (alias, value) in user {
        aliases.push(alias.clone());
        values.push(value.clone());
        dims.push(shape_of(value).unwrap_or_default());
    }
    for alias in wanted.iter().filter(|a| !user.contains_key(*a)) {
        let tap = named.iter().find(|t| &t.alias == alias).ok_or_else(|| {
            let known: Vec<&str> = named.iter().map(|t| t.alias.as_str()).collect();
            bad_input!(
                "the distillation method needs tap `{alias}`, which this model does not have (it has: {}); name a value for it under teachers[].taps",
                known.join(", ")
            )
        })?;
        aliases.push(alias.clone());
        values.push(tap.value.clone());
        dims.push(tap.shape.clone());
    }
    Ok(ResolvedTaps { aliases, values, shapes: dims })
}

/// A teacher's taps: aliases, the graph values they read, and their shapes for one image.
#[derive(Default)]
struct ResolvedTaps {
    aliases: Vec<String>,
    values: Vec<String>,
    shapes: Vec<Vec<i64>>,
}
