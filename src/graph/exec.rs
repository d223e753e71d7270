//! The executor: compiles a graph once (every op checked and built, constants folded, value
//! lifetimes computed) and then runs it on tch tensors, freeing each value after its last use.
//!
//! All unsupported nodes are reported together, each by name, before anything runs.

use super::ir::Graph;
use super::ops::{self, HostConst, Inputs, Kernel, NodeCtx, RunCtx};
use super::ops::{is_float, unsupported_nodes};
use crate::bad_input;
use onnx_protobuf::NodeProto;
use std::collections::{HashMap, HashSet};
use tch::{Device, Tensor};

/// (value name, shape) of every value a traced run computed, in execution order.
pub type ValueShapes = Vec<(String, Vec<i64>)>;

/// Whether a run trains (BatchNormalization on batch statistics) or evaluates.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum RunMode {
    Eval,
    Train,
}

struct Step {
    node: NodeProto,
    kernel: Kernel,
    inputs: Vec<Option<usize>>,
    outputs: Vec<Option<usize>>,
    /// Slots whose last reader is this step.
    free: Vec<usize>,
}

/// The largest constant whose values are copied to the host at compile time (shapes, axes,
/// Clip bounds, quantization parameters are far smaller).
const HOST_CONST_MAX: i64 = 64;

/// A compiled graph, ready to run on fixed inputs and fetch fixed outputs.
pub struct Executor {
    consts: Vec<(usize, Tensor)>,
    /// Host copies of the small constants that are not trainable, by slot: what kernels read as
    /// operands (Slice bounds, Reshape shapes, Clip bounds) is resolved here, once.
    host: HashMap<usize, HostConst>,
    inputs: Vec<usize>,
    fetch: Vec<usize>,
    steps: Vec<Step>,
    slots: usize,
    /// The type FLOAT values run in ([`RunCtx::float`]).
    float: tch::Kind,
}

/// An arithmetic kernel whose result holds an unsigned type kept in a wider signed kind: its
/// values wrap as the type's own arithmetic does (`graph::types`).
fn wrap_unsigned(node: &NodeProto, kernel: Kernel, out_type: i32) -> Kernel {
    if !super::types::is_unsigned(out_type) || !super::types::ARITH.contains(&node.op_type.as_str()) {
        return kernel;
    }
    let node = node.clone();
    Box::new(move |ins, rc| kernel(ins, rc)?.iter().map(|t| ops::convert::wrap_int(t, out_type, &node)).collect())
}

/// The ops whose weights make a layer: the classifier head ends at the last of them.
const WEIGHTED: &[&str] = &["Conv", "ConvTranspose", "Gemm", "MatMul"];

/// The nodes of a graph's classifier head: from each graph output back through the nodes that
/// compute it up to and including the last weighted layer (a Gemm, or SqueezeNet's last Conv
/// and the pooling and softmax after it), at most 16 nodes a path.
fn output_head(graph: &Graph) -> HashSet<usize> {
    let mut head = HashSet::new();
    let mut stack: Vec<(String, usize)> = graph.outputs.iter().map(|o| (o.name.clone(), 0)).collect();
    while let Some((value, depth)) = stack.pop() {
        let Some(i) = graph.producer(&value) else { continue };
        if depth >= 16 || !head.insert(i) {
            continue;
        }
        let node = &graph.nodes[i];
        if WEIGHTED.contains(&node.op_type.as_str()) {
            continue;
        }
        stack.extend(node.input.iter().filter(|n| !n.is_empty()).map(|n| (n.clone(), depth + 1)));
    }
    head
}

/// A node of the classifier head of a bf16 or fp16 graph ([`output_head`]), run in float32: its
/// inputs widened (exactly), its output never rounded to the narrow type. The head is where
/// that rounding costs agreement: logits near a tie, or a softmax's probabilities, that fp32
/// tells apart and bf16 does not (mixed precision keeps the head and softmax in fp32 for the
/// same reason).
fn in_float32(kernel: Kernel) -> Kernel {
    Box::new(move |ins, rc| {
        let widen = |t: &Tensor| if matches!(t.kind(), tch::Kind::BFloat16 | tch::Kind::Half) { t.f_to_kind(tch::Kind::Float) } else { Ok(t.shallow_clone()) };
        let wide: Vec<Option<Tensor>> = ins.values.iter().map(|v| v.map(widen).transpose()).collect::<Result<_, _>>()?;
        let inputs = Inputs { node: ins.node, values: wide.iter().map(|t| t.as_ref()).collect(), host: ins.host.clone() };
        kernel(&inputs, &RunCtx { train: rc.train, numerics: rc.numerics, float: tch::Kind::Float })
    })
}

impl Executor {
    /// Compiles `graph` to produce the values named in `fetch`. Float constants created by
    /// folding go to `device`; graph initializers are used where they are.
    pub fn compile(graph: &Graph, fetch: &[String], device: Device) -> anyhow::Result<Executor> {
        Executor::compile_with(graph, fetch, device, false)
    }

    /// Compiles a frozen graph (a teacher): its float initializers never change, so every
    /// subgraph computed from initializers alone (weight transposes and reshapes, the
    /// dequantization of a quantized model's weights) is folded once here, not run per batch.
    pub fn compile_frozen(graph: &Graph, fetch: &[String], device: Device) -> anyhow::Result<Executor> {
        Executor::compile_with(graph, fetch, device, true)
    }

    fn compile_with(graph: &Graph, fetch: &[String], device: Device, frozen: bool) -> anyhow::Result<Executor> {
        let unsupported = unsupported_nodes(&graph.nodes);
        if !unsupported.is_empty() {
            return Err(bad_input!("graph `{}` has unsupported ops: {}", graph.name, unsupported.join(", ")));
        }
        let types = super::types::CarriedTypes::infer(graph)?;
        // A graph whose float initializers were cast to bf16 or fp16 runs in that type.
        let float = graph.initializers.iter().map(|(_, t)| t.kind()).find(|k| matches!(k, tch::Kind::BFloat16 | tch::Kind::Half)).unwrap_or(tch::Kind::Float);
        let mut slot_of: HashMap<String, usize> = HashMap::new();
        let mut consts = Vec::new();
        let mut constant_slots = HashSet::new();
        for (name, t) in &graph.initializers {
            let s = slot_of.len();
            slot_of.insert(name.clone(), s);
            // Integer initializers (shapes, axes) can feed constant folding; float ones may be
            // trainable parameters and must stay live inputs of the nodes that read them,
            // unless the graph is frozen.
            if frozen || !is_float(t.kind()) {
                constant_slots.insert(s);
            }
            consts.push((s, t.shallow_clone()));
        }
        let mut inputs = Vec::new();
        for d in &graph.inputs {
            let s = slot_of.len();
            slot_of.insert(d.name.clone(), s);
            inputs.push(s);
        }
        let mut steps = Vec::new();
        let mut build_errors = Vec::new();
        let head = if float == tch::Kind::Float { HashSet::new() } else { output_head(graph) };
        for (node_index, node) in graph.nodes.iter().enumerate() {
            let mut ins = Vec::new();
            for name in &node.input {
                if name.is_empty() {
                    ins.push(None);
                    continue;
                }
                let s = *slot_of
                    .get(name)
                    .ok_or_else(|| bad_input!("node `{}` ({}) reads `{name}`, which no earlier node, input or initializer defines", node.name, node.op_type))?;
                ins.push(Some(s));
            }
            let mut outs = Vec::new();
            for name in &node.output {
                if name.is_empty() {
                    outs.push(None);
                    continue;
                }
                let s = slot_of.len();
                slot_of.insert(name.clone(), s);
                outs.push(Some(s));
            }
            let builder = ops::registry().get(&node.op_type).expect("checked above");
            let in_types = node.input.iter().map(|n| types.of(n)).collect();
            match builder(&NodeCtx { node, opset: graph.opset, in_types }) {
                Ok(kernel) => {
                    let kernel = wrap_unsigned(node, kernel, node.output.first().map_or(0, |o| types.of(o)));
                    let kernel = if head.contains(&node_index) { in_float32(kernel) } else { kernel };
                    steps.push(Step { node: node.clone(), kernel, inputs: ins, outputs: outs, free: vec![] })
                }
                Err(e) => build_errors.push(format!("{e:#}")),
            }
        }
        if !build_errors.is_empty() {
            return Err(bad_input!("graph `{}`: {}", graph.name, build_errors.join("; ")));
        }
        let fetch: Vec<usize> = fetch
            .iter()
            .map(|n| slot_of.get(n).copied().ok_or_else(|| bad_input!("graph `{}` has no value named `{n}`", graph.name)))
            .collect::<anyhow::Result<_>>()?;
        let mut exec = Executor { consts, host: HashMap::new(), inputs, fetch, steps, slots: slot_of.len(), float };
        exec.fold_constants(&constant_slots, device)?;
        exec.resolve_host_constants()?;
        exec.plan_frees();
        Ok(exec)
    }

    /// Copies to the host, once, every small constant a kernel may read as an operand: integer
    /// ones and float ones that do not train (a trainable one may be replaced or updated).
    fn resolve_host_constants(&mut self) -> anyhow::Result<()> {
        let read: HashSet<usize> = self.steps.iter().flat_map(|s| s.inputs.iter().flatten().copied()).collect();
        for (slot, t) in &self.consts {
            if read.contains(slot) && t.numel() as i64 <= HOST_CONST_MAX && !t.requires_grad() {
                self.host.insert(*slot, HostConst::of(t)?);
            }
        }
        Ok(())
    }

    fn host_of(&self, step: &Step) -> Vec<Option<&HostConst>> {
        step.inputs.iter().map(|s| s.and_then(|s| self.host.get(&s))).collect()
    }

    /// Evaluates, once, every node whose inputs are all constants (Constant nodes and shape
    /// arithmetic on integer initializers), and drops those nodes from the plan.
    fn fold_constants(&mut self, constant_slots: &HashSet<usize>, device: Device) -> anyhow::Result<()> {
        let mut known: HashMap<usize, Tensor> = self.consts.iter().filter(|(s, _)| constant_slots.contains(s)).map(|(s, t)| (*s, t.shallow_clone())).collect();
        let ctx = RunCtx { train: false, numerics: super::Numerics::EXACT, float: self.float };
        let mut kept = Vec::new();
        for step in std::mem::take(&mut self.steps) {
            let foldable = step.inputs.iter().flatten().all(|s| known.contains_key(s));
            if !foldable {
                kept.push(step);
                continue;
            }
            let values = step.inputs.iter().map(|s| s.and_then(|s| known.get(&s))).collect();
            let outs = (step.kernel)(&Inputs { node: &step.node, values, host: vec![] }, &ctx)
                .map_err(|e| crate::error::in_node(e, format!("folding constant node `{}` ({})", step.node.name, step.node.op_type)))?;
            for (slot, t) in step.outputs.iter().zip(outs) {
                if let Some(s) = slot {
                    let t = if is_float(t.kind()) { t.to_device(device) } else { t };
                    self.consts.push((*s, t.shallow_clone()));
                    known.insert(*s, t);
                }
            }
        }
        self.steps = kept;
        Ok(())
    }

    fn plan_frees(&mut self) {
        let keep: HashSet<usize> = self.fetch.iter().chain(self.consts.iter().map(|(s, _)| s)).copied().collect();
        let mut last = HashMap::new();
        for (i, step) in self.steps.iter().enumerate() {
            for s in step.inputs.iter().flatten() {
                last.insert(*s, i);
            }
        }
        for (slot, i) in last {
            if !keep.contains(&slot) {
                self.steps[i].free.push(slot);
            }
        }
    }

    /// Runs the graph on `inputs` (in declared order) and returns the fetched values.
    pub fn run(&self, inputs: &[&Tensor], mode: RunMode) -> anyhow::Result<Vec<Tensor>> {
        self.run_observed(inputs, mode, &[], &mut |_, _| {})
    }

    /// Runs with some graph initializers replaced, each given by its position in the graph's
    /// `initializers`: a functional forward at other parameter values (a meta-learning
    /// lookahead differentiates through them).
    pub fn run_with(&self, inputs: &[&Tensor], mode: RunMode, replaced: &[(usize, Tensor)]) -> anyhow::Result<Vec<Tensor>> {
        self.run_observed(inputs, mode, replaced, &mut |_, _| {})
    }

    /// Runs the graph and also returns the shape of every value computed at run time, in
    /// execution order (for `inspect`'s tap listing).
    pub fn run_traced(&self, inputs: &[&Tensor]) -> anyhow::Result<(Vec<Tensor>, ValueShapes)> {
        let mut shapes = Vec::new();
        let outs = self.run_observed(inputs, RunMode::Eval, &[], &mut |name, t| shapes.push((name.to_string(), t.size())))?;
        Ok((outs, shapes))
    }

    fn run_observed(
        &self,
        inputs: &[&Tensor],
        mode: RunMode,
        replaced: &[(usize, Tensor)],
        observe: &mut dyn FnMut(&str, &Tensor),
    ) -> anyhow::Result<Vec<Tensor>> {
        anyhow::ensure!(inputs.len() == self.inputs.len(), "graph expects {} inputs, got {}", self.inputs.len(), inputs.len());
        let mut slots: Vec<Option<Tensor>> = (0..self.slots).map(|_| None).collect();
        for (s, t) in &self.consts {
            slots[*s] = Some(t.shallow_clone());
        }
        // Initializers occupy the first slots, in graph order.
        for (s, t) in replaced {
            anyhow::ensure!(slots.get(*s).is_some_and(|v| v.is_some()), "initializer #{s} is not a constant of this graph");
            slots[*s] = Some(t.shallow_clone());
        }
        for (s, t) in self.inputs.iter().zip(inputs) {
            slots[*s] = Some(t.shallow_clone());
        }
        let ctx = RunCtx { train: mode == RunMode::Train, numerics: super::Numerics::current(), float: self.float };
        for step in &self.steps {
            let values = step.inputs.iter().map(|s| s.and_then(|s| slots[s].as_ref())).collect();
            // A replaced initializer is no longer the constant its host copy holds.
            let mut host = self.host_of(step);
            for (k, s) in step.inputs.iter().enumerate() {
                if s.is_some_and(|s| replaced.iter().any(|(r, _)| *r == s)) {
                    host[k] = None;
                }
            }
            let outs = (step.kernel)(&Inputs { node: &step.node, values, host }, &ctx)
                .map_err(|e| crate::error::in_node(e, format!("running node `{}` ({})", step.node.name, step.node.op_type)))?;
            let mut outs = outs.into_iter();
            for (slot, name) in step.outputs.iter().zip(&step.node.output) {
                let t = outs.next();
                if let (Some(s), Some(t)) = (slot, t) {
                    observe(name, &t);
                    slots[*s] = Some(t);
                }
            }
            for s in &step.free {
                slots[*s] = None;
            }
        }
        self.fetch.iter().map(|s| slots[*s].as_ref().map(|t| t.shallow_clone()).ok_or_else(|| anyhow::anyhow!("a fetched value was not produced"))).collect()
    }
}

/// A node of the executor's tests: one output, named after it, no attributes.
#[cfg(test)]
fn test_node(op: &str, inputs: &[&str], output: &str) -> NodeProto {
    let mut n = NodeProto::new();
    n.op_type = op.into();
    n.name = output.into();
    n.input = inputs.iter().map(|s| s.to_string()).collect();
    n.output = vec![output.into()];
    n
}

#[cfg(test)]
mod qdq_tests {
    //! The QuantizeLinear/DequantizeLinear kernels (ops/quant.rs) run through the executor.
    use super::test_node as node;
    use super::{Executor, RunMode};
    use crate::graph::ir::{Dim, Graph, ValueDecl};
    use crate::host::HostRead;
    use tch::{Device, Kind, Tensor};

    /// In training mode a Q → DQ pair is fake quantization: the values lie on the grid, x gets a
    /// straight-through gradient inside the range and none outside, and the scale gets LSQ's.
    #[test]
    fn qdq_trains_as_fake_quantization() {
        let scale = Tensor::from(0.5f32).set_requires_grad(true);
        let graph = Graph {
            name: "qdq".into(),
            opset: 13,
            producer: "test".into(),
            inputs: vec![ValueDecl { name: "x".into(), elem_type: 1, dims: vec![Dim::Fixed(4)] }],
            outputs: vec![ValueDecl { name: "y".into(), elem_type: 1, dims: vec![Dim::Fixed(4)] }],
            initializers: vec![("s".into(), scale.shallow_clone()), ("z".into(), Tensor::from(0i8))],
            nodes: vec![node("QuantizeLinear", &["x", "s", "z"], "q"), node("DequantizeLinear", &["q", "s", "z"], "y")],
            metadata: vec![],
        };
        let exec = Executor::compile(&graph, &["y".to_string()], Device::Cpu).unwrap();
        let x = Tensor::from_slice(&[0.3f32, -1.1, 70.0, -80.0]).set_requires_grad(true);
        let y = exec.run(&[&x], RunMode::Train).unwrap().remove(0);
        let got: Vec<f32> = crate::host::vec(&y.detach()).unwrap();
        assert_eq!(got, vec![0.5, -1.0, 63.5, -64.0]); // round(0.6)=1, round(-2.2)=-2, saturated at 127 and -128
        y.sum(Kind::Float).backward();
        let gx: Vec<f32> = crate::host::vec(&x.grad()).unwrap();
        assert_eq!(gx, vec![1.0, 1.0, 0.0, 0.0]);
        // d/ds Σ y: in range round(x/s) − x/s (0.4 and 0.2), saturated q (127 and −128).
        let gs = scale.grad().read_f64();
        assert!((gs - (0.4 + 0.2 + 127.0 - 128.0)).abs() < 1e-5, "{gs}");
        // In eval mode QuantizeLinear yields int8, as ONNX says.
        let q = Executor::compile(&graph, &["q".to_string()], Device::Cpu).unwrap().run(&[&x.detach()], RunMode::Eval).unwrap().remove(0);
        assert_eq!(q.kind(), Kind::Int8);
    }
}

#[cfg(test)]
mod frozen_tests {
    use super::test_node as node;
    use super::Executor;
    use crate::graph::ir::{Dim, Graph, ValueDecl};
    use crate::graph::RunMode;
    use tch::{Device, Tensor};

    /// A frozen graph folds the subgraph computed from its float initializers alone (here the
    /// transpose of a weight) once at compile time; the result is unchanged.
    #[test]
    fn frozen_graphs_fold_float_constant_subgraphs() {
        let w = Tensor::from_slice(&[1.0f32, -2.0, 3.0, 4.0, 5.0, -6.0]).view([2, 3]);
        let graph = Graph {
            name: "frozen".into(),
            opset: 13,
            producer: "test".into(),
            inputs: vec![ValueDecl { name: "x".into(), elem_type: 1, dims: vec![Dim::Fixed(1), Dim::Fixed(3)] }],
            outputs: vec![ValueDecl { name: "y".into(), elem_type: 1, dims: vec![] }],
            initializers: vec![("w".into(), w)],
            nodes: vec![node("Transpose", &["w"], "wt"), node("Relu", &["wt"], "wr"), node("MatMul", &["x", "wr"], "y")],
            metadata: vec![],
        };
        let fetch = ["y".to_string()];
        let live = Executor::compile(&graph, &fetch, Device::Cpu).unwrap();
        let frozen = Executor::compile_frozen(&graph, &fetch, Device::Cpu).unwrap();
        assert_eq!((live.steps.len(), frozen.steps.len()), (3, 1), "Transpose and Relu folded");
        let x = Tensor::from_slice(&[1.0f32, 0.5, -1.0]).view([1, 3]);
        let a = live.run(&[&x], RunMode::Eval).unwrap().remove(0);
        let b = frozen.run(&[&x], RunMode::Eval).unwrap().remove(0);
        assert!(a.equal(&b) && a.size() == vec![1, 2], "{a} {b}");
    }

    /// In a bf16 graph the classifier head (the last weighted layer and what follows it) runs in
    /// float32: logits 8.0 and 8.03 (equal once rounded to bf16) come back unrounded and tell
    /// the classes apart, while the layers before stay in bf16.
    #[test]
    fn the_output_layer_of_a_bf16_graph_runs_in_float32() {
        let w = Tensor::from_slice(&[1.0f32, 1.0]).view([1, 2]);
        let b = Tensor::from_slice(&[0.0f32, 0.03]);
        let mut graph = Graph {
            name: "bf16".into(),
            opset: 13,
            producer: "test".into(),
            inputs: vec![ValueDecl { name: "x".into(), elem_type: 1, dims: vec![Dim::Fixed(1), Dim::Fixed(1)] }],
            outputs: vec![ValueDecl { name: "y".into(), elem_type: 1, dims: vec![] }],
            initializers: vec![("w0".into(), Tensor::from_slice(&[1.0f32]).view([1, 1])), ("w".into(), w), ("b".into(), b)],
            nodes: vec![node("MatMul", &["x", "w0"], "h"), node("Relu", &["h"], "r"), node("MatMul", &["r", "w"], "m"), node("Add", &["m", "b"], "y")],
            metadata: vec![],
        };
        graph.cast_floats(tch::Kind::BFloat16);
        let fetch = ["y".to_string(), "r".to_string()];
        let exec = Executor::compile_frozen(&graph, &fetch, Device::Cpu).unwrap();
        let x = Tensor::from_slice(&[8.0f32]).view([1, 1]).to_kind(tch::Kind::BFloat16);
        let out = exec.run(&[&x], RunMode::Eval).unwrap();
        assert_eq!(out[0].kind(), tch::Kind::Float, "the graph output comes back in float32");
        assert_eq!(out[1].kind(), tch::Kind::BFloat16, "a layer before the head stays in bf16");
        let y: Vec<f32> = crate::host::vec(&out[0].flatten(0, -1)).unwrap();
        assert!(y[1] > y[0], "the second class wins in float32: {y:?}");
        let rounded: Vec<f32> = crate::host::vec(&out[0].flatten(0, -1).to_kind(tch::Kind::BFloat16).to_kind(tch::Kind::Float)).unwrap();
        assert_eq!(rounded[0], rounded[1], "bf16 would tie them");
    }

    /// A bf16 graph keeps its BatchNormalization parameters in float32 and the node computes in
    /// float32 on the bf16 input: x = 100.5 (exact in bf16) with running mean 100.3 and
    /// variance 0.01 normalizes to 0.2 / √0.01 = 2.0. Rounded to bf16 (steps of 0.5 above 64),
    /// the mean would be 100.5 and the result 0. When another op reads one of the parameters,
    /// all of them are cast.
    #[test]
    fn batch_norm_parameters_of_a_bf16_graph_stay_in_float32() {
        let scalar = |v: f32| Tensor::from_slice(&[v]);
        let graph = |bn_scale: &str| Graph {
            name: "bn".into(),
            opset: 13,
            producer: "test".into(),
            inputs: vec![ValueDecl { name: "x".into(), elem_type: 1, dims: vec![Dim::Fixed(1), Dim::Fixed(1)] }],
            outputs: vec![ValueDecl { name: "y".into(), elem_type: 1, dims: vec![] }],
            initializers: vec![
                ("scale".into(), scalar(1.0)),
                ("zero".into(), scalar(0.0)),
                ("mean".into(), scalar(100.3)),
                ("var".into(), scalar(0.01)),
                ("w".into(), Tensor::from_slice(&[1.0f32]).view([1, 1])),
                ("one".into(), scalar(1.0)),
            ],
            nodes: vec![
                node("BatchNormalization", &["x", bn_scale, "zero", "mean", "var"], "n"),
                node("MatMul", &["n", "w"], "m"),
                node("Mul", &["m", "one"], "y"),
            ],
            metadata: vec![],
        };
        let kinds = |g: &Graph| g.initializers.iter().map(|(_, t)| t.kind()).collect::<Vec<_>>();
        let (f32, bf16) = (tch::Kind::Float, tch::Kind::BFloat16);
        let mut shared = graph("one");
        shared.cast_floats(bf16);
        assert_eq!(kinds(&shared), [bf16; 6], "`one` is also read by Mul, so all of the node's parameters are cast");
        let mut own = graph("scale");
        own.cast_floats(bf16);
        assert_eq!(kinds(&own), [f32, f32, f32, f32, bf16, bf16]);
        let fetch = ["y".to_string(), "n".to_string()];
        let x = Tensor::from_slice(&[100.5f32]).view([1, 1]).to_kind(bf16);
        let run = |g: &Graph| Executor::compile_frozen(g, &fetch, Device::Cpu).unwrap().run(&[&x], RunMode::Eval).unwrap();
        let out = run(&own);
        assert_eq!(out[1].kind(), bf16, "the normalized value is stored in bf16, as its input");
        let y: Vec<f32> = crate::host::vec(&out[0].flatten(0, -1)).unwrap();
        assert!((y[0] - 2.0).abs() < 0.02, "float32 statistics normalize 100.5 to 2.0: {y:?}");
        let rounded: Vec<f32> = crate::host::vec(&run(&shared)[0].flatten(0, -1)).unwrap();
        assert!(rounded[0].abs() < 0.02, "bf16 statistics round the mean to 100.5: {rounded:?}");
        // A file that stores fp16 run in float32 (an fp32 teacher on a device): every
        // initializer becomes float32, the kept parameters too.
        let mut stored_half = graph("scale");
        stored_half.initializers.iter_mut().for_each(|(_, t)| *t = t.to_kind(tch::Kind::Half));
        stored_half.cast_floats(f32);
        assert_eq!(kinds(&stored_half), [f32; 6]);
    }

    /// Every op of `NORM_PARAMS` runs on a bf16 input with the float32 parameters the cast
    /// leaves it: one kernel, the output in bf16 and equal to the float32 result rounded once.
    #[test]
    fn every_normalization_op_takes_a_bf16_input_with_float32_parameters() {
        for (op, params) in crate::graph::ir::NORM_PARAMS {
            // Fixed values spread over [-3, 3] (random ones could make a row nearly constant,
            // where normalizing magnifies the input's own bf16 rounding).
            let x = (Tensor::arange(72, (tch::Kind::Float, Device::Cpu)) * 0.7).sin().view([2, 4, 3, 3]) * 3.0;
            let mut n = node(op, &["x", "p1", "p2", "p3", "p4"][..params.end], "y");
            if *op == "GroupNormalization" {
                n.attribute.push(crate::onnx::attr::int("num_groups", 2));
            }
            // Per normalized element, per group (opset 18), per channel.
            let width = match *op {
                "LayerNormalization" => 3,
                "GroupNormalization" => 2,
                _ => 4,
            };
            let initializers =
                (1..params.end).map(|i| (format!("p{i}"), Tensor::arange(width, (tch::Kind::Float, Device::Cpu)) * 0.3 + 0.1 * i as f64 + 0.5)).collect();
            let mut graph = Graph {
                name: op.to_string(),
                opset: 18,
                producer: "test".into(),
                inputs: vec![ValueDecl { name: "x".into(), elem_type: 1, dims: vec![] }],
                outputs: vec![ValueDecl { name: "y".into(), elem_type: 1, dims: vec![] }],
                initializers,
                nodes: vec![n],
                metadata: vec![],
            };
            let fetch = ["y".to_string()];
            let reference = Executor::compile_frozen(&graph, &fetch, Device::Cpu).unwrap().run(&[&x], RunMode::Eval).unwrap().remove(0);
            graph.cast_floats(tch::Kind::BFloat16);
            assert!(graph.initializers.iter().all(|(_, t)| t.kind() == tch::Kind::Float), "{op}");
            let narrow = x.to_kind(tch::Kind::BFloat16);
            let y = Executor::compile_frozen(&graph, &fetch, Device::Cpu).unwrap().run(&[&narrow], RunMode::Eval).unwrap().remove(0);
            assert_eq!(y.kind(), tch::Kind::BFloat16, "{op}");
            let err = crate::metrics::max_rel_diff(&y, &reference);
            assert!(err < 1e-2, "{op}: max rel diff {err}");
        }
        // BatchNormalization exported in training mode, its running statistics as outputs:
        // the batch statistics are taken in float32, as the parameters.
        let mut n = node("BatchNormalization", &["x", "p1", "p2", "p3", "p4"], "y");
        n.output.extend(["running_mean".to_string(), "running_var".to_string()]);
        n.attribute.push(crate::onnx::attr::int("training_mode", 1));
        let ones = || Tensor::ones([4], (tch::Kind::Float, Device::Cpu));
        let mut graph = Graph {
            name: "bn_train".into(),
            opset: 15,
            producer: "test".into(),
            inputs: vec![ValueDecl { name: "x".into(), elem_type: 1, dims: vec![] }],
            outputs: vec![ValueDecl { name: "y".into(), elem_type: 1, dims: vec![] }],
            initializers: (1..5).map(|i| (format!("p{i}"), ones())).collect(),
            nodes: vec![n],
            metadata: vec![],
        };
        graph.cast_floats(tch::Kind::BFloat16);
        let x = (Tensor::arange(72, (tch::Kind::Float, Device::Cpu)) * 0.7).sin().view([2, 4, 3, 3]);
        let fetch = ["y".to_string(), "running_mean".to_string()];
        let out = Executor::compile_frozen(&graph, &fetch, Device::Cpu).unwrap().run(&[&x.to_kind(tch::Kind::BFloat16)], RunMode::Eval).unwrap();
        assert_eq!((out[0].kind(), out[1].kind()), (tch::Kind::BFloat16, tch::Kind::Float));
    }
}
