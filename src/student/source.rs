//! Where the student graph comes from: a zoo architecture, or the user's own ONNX file whose
//! initializers become trainable (optionally re-initialized the way PyTorch initializes each
//! layer type). Both are checked at plan time: supported ops, an NCHW RGB input, and one score
//! per class of the data.

use crate::bad_input;
use crate::graph::{Dim, Executor, Graph, RunMode};
use crate::recipe::schema::{Student as StudentSpec, StudentWeights};
use crate::zoo::{self, ArchSpec};
use std::collections::HashMap;
use tch::{Device, Kind, Tensor};

/// Builds the untrained (or stored-weight) student graph on `device`.
pub fn build(spec: &StudentSpec, arch: &ArchSpec, device: Device) -> anyhow::Result<Graph> {
    match (&spec.arch, &spec.onnx) {
        (Some(name), None) => zoo::build(name, arch, device),
        (None, Some(path)) => {
            let model = crate::onnx::model_file::read(path)?;
            let mut graph = Graph::from_model(&model, &format!("student.onnx ({})", path.display()))?;
            graph.to_device(device);
            if spec.weights == StudentWeights::Random {
                reinitialize(&mut graph);
            }
            check_classifier(&graph, arch, path, device)?;
            Ok(graph)
        }
        _ => Err(bad_input!("student: give exactly one of `arch` and `onnx`")),
    }
}

/// An NCHW input with 3 channels and an output of one score per class.
fn check_classifier(graph: &Graph, arch: &ArchSpec, path: &std::path::Path, device: Device) -> anyhow::Result<()> {
    let where_ = format!("student.onnx ({})", path.display());
    let input = match graph.inputs.as_slice() {
        [one] => one,
        _ => return Err(bad_input!("{where_}: expected one image input, found {}", graph.inputs.len())),
    };
    if input.dims.len() != 4 || input.dims.get(1) != Some(&Dim::Fixed(3)) {
        return Err(bad_input!("{where_}: input `{}` must be NCHW with 3 channels, declared {:?}", input.name, input.dims));
    }
    for d in &input.dims[2..] {
        if let Dim::Fixed(v) = d {
            if *v != arch.image_size {
                return Err(bad_input!(
                    "{where_}: input `{}` declares {v}-pixel sides but data.image_size is {} (export the student at that size)",
                    input.name,
                    arch.image_size
                ));
            }
        }
    }
    let exec = Executor::compile(graph, &[graph.outputs[0].name.clone()], device).map_err(|e| e.context(where_.clone()))?;
    let x = Tensor::zeros([2, 3, arch.image_size, arch.image_size], (Kind::Float, device));
    let out = tch::no_grad(|| exec.run(&[&x], RunMode::Eval)).map_err(|e| e.context(where_.clone()))?.remove(0);
    if out.size() != [2, arch.num_classes] {
        return Err(bad_input!("{where_}: the output must be [batch, {}] for this data's classes; a batch of 2 gives {:?}", arch.num_classes, out.size()));
    }
    Ok(())
}

/// Re-initializes an imported graph's weights as PyTorch does for fresh layers: Kaiming-normal
/// (fan-out) convolutions with zero bias, BatchNorm γ=1 β=0 and fresh statistics, and
/// uniform(±1/√fan_in) linear layers.
pub fn reinitialize(graph: &mut Graph) {
    let _guard = tch::no_grad_guard();
    let mut plan: HashMap<String, Init> = HashMap::new();
    for n in &graph.nodes {
        let slot = |i: usize| n.input.get(i).filter(|s| !s.is_empty()).cloned();
        match n.op_type.as_str() {
            "Conv" => {
                slot(1).map(|w| plan.insert(w, Init::KaimingFanOut));
                slot(2).map(|b| plan.insert(b, Init::Zeros));
            }
            "BatchNormalization" => {
                for (i, init) in [(1, Init::Ones), (2, Init::Zeros), (3, Init::Zeros), (4, Init::Ones)] {
                    slot(i).map(|v| plan.insert(v, init));
                }
            }
            "Gemm" | "MatMul" => {
                let trans_b = crate::onnx::attr::Attrs::new(n).int_or("transB", 0).unwrap_or(0) != 0;
                slot(1).map(|w| plan.insert(w, Init::Linear { trans_b }));
            }
            _ => {}
        }
    }
    for (name, t) in graph.initializers.iter_mut() {
        let Some(init) = plan.get(name) else { continue };
        let (size, opts) = (t.size(), (t.kind(), t.device()));
        *t = match *init {
            Init::Zeros => Tensor::zeros(size.as_slice(), opts),
            Init::Ones => Tensor::ones(size.as_slice(), opts),
            Init::KaimingFanOut => {
                let fan_out: i64 = size[0] * size[2..].iter().product::<i64>();
                Tensor::randn(size.as_slice(), opts) * (2.0 / fan_out as f64).sqrt()
            }
            Init::Linear { trans_b } => {
                let fan_in = if trans_b || size.len() < 2 { size[size.len() - 1] } else { size[0] };
                let bound = 1.0 / (fan_in as f64).sqrt();
                Tensor::rand(size.as_slice(), opts) * (2.0 * bound) - bound
            }
        };
    }
}

#[derive(Clone, Copy)]
enum Init {
    Zeros,
    Ones,
    KaimingFanOut,
    Linear { trans_b: bool },
}
