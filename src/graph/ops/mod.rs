//! The op registry: one small builder per ONNX op, registered per family file (tract's table,
//! burn-onnx's one family per file). A builder reads and normalizes the node's attributes once,
//! at compile time, and returns the kernel that runs it on tch tensors.
//!
//! Conventions every kernel follows: fallible tch calls (`f_*`), so bad models give errors and
//! never panics; integer tensors (shapes, indices) stay on the host.

mod activation;
mod arith;
pub mod convert;
mod layout;
mod math;
mod nn;
mod norm;
mod quant;
mod reduce;
mod shape;
mod spatial;

use crate::bad_input;
use crate::onnx::attr::Attrs;
use onnx_protobuf::NodeProto;
use std::collections::BTreeMap;
use std::sync::OnceLock;
use tch::Tensor;

/// What a kernel may depend on besides its inputs.
pub struct RunCtx {
    /// Training mode: BatchNormalization uses batch statistics and updates its running ones.
    pub train: bool,
    /// What float kernels may trade for speed on a GPU (TF32, autotuning, determinism).
    pub numerics: super::Numerics,
    /// The type the graph's FLOAT values run in: fp32, or bf16/fp16 for a frozen model whose
    /// weights were cast; constants and casts the graph creates follow it.
    pub float: tch::Kind,
}

impl RunCtx {
    /// `t` in the graph's float type when it is an fp32 value the graph created.
    pub fn float_of(&self, t: Tensor) -> anyhow::Result<Tensor> {
        Ok(if t.kind() == tch::Kind::Float && self.float != tch::Kind::Float { t.f_to_kind(self.float)? } else { t })
    }
}

/// A node's runtime inputs, with accessors whose errors name the node.
pub struct Inputs<'a> {
    pub node: &'a NodeProto,
    pub values: Vec<Option<&'a Tensor>>,
    /// The host copies of the inputs that are compile-time constants (by position; shorter or
    /// empty when none are), so reading a constant operand never touches the device.
    pub host: Vec<Option<&'a HostConst>>,
}

/// A small constant's values read once when the graph is compiled: exact integers for an
/// integer tensor (truncated floats otherwise, as a cast to int64 gives) and floats.
pub struct HostConst {
    pub ints: Vec<i64>,
    pub floats: Vec<f64>,
}

impl HostConst {
    /// The values of `t` (a constant), read to the host once.
    pub fn of(t: &Tensor) -> anyhow::Result<HostConst> {
        let flat = t.f_flatten(0, -1)?;
        if is_float(t.kind()) {
            let floats = crate::host::vec::<f64>(&flat.f_to_kind(tch::Kind::Double)?)?;
            Ok(HostConst { ints: floats.iter().map(|&v| v as i64).collect(), floats })
        } else {
            let ints = crate::host::vec::<i64>(&flat.f_to_kind(tch::Kind::Int64)?)?;
            Ok(HostConst { floats: ints.iter().map(|&v| v as f64).collect(), ints })
        }
    }
}

impl<'a> Inputs<'a> {
    pub fn get(&self, i: usize) -> anyhow::Result<&'a Tensor> {
        self.opt(i).ok_or_else(|| bad_input!("node `{}` ({}): required input {i} is missing", self.node.name, self.node.op_type))
    }

    pub fn opt(&self, i: usize) -> Option<&'a Tensor> {
        self.values.get(i).copied().flatten()
    }

    fn host_const(&self, i: usize) -> Option<&'a HostConst> {
        self.host.get(i).copied().flatten()
    }

    /// An integer input (shape, axes, indices) as a vector: a constant's compile-time copy, or
    /// the values of a tensor computed on the host (shape arithmetic).
    pub fn ints(&self, i: usize) -> anyhow::Result<Vec<i64>> {
        if let Some(c) = self.host_const(i) {
            return Ok(c.ints.clone());
        }
        Ok(crate::host::host_ints(self.get(i)?)?)
    }

    pub fn opt_ints(&self, i: usize) -> anyhow::Result<Option<Vec<i64>>> {
        match self.opt(i) {
            None => Ok(None),
            Some(_) => self.ints(i).map(Some),
        }
    }

    /// Where a multi-input op computes: the device of any input that is not on the host, else
    /// the host. Keeps activations on the accelerator when they meet host-side constants.
    pub fn compute_device(&self) -> tch::Device {
        self.values.iter().flatten().map(|t| t.device()).find(|d| *d != tch::Device::Cpu).unwrap_or(tch::Device::Cpu)
    }

    /// Input `i` on `device` (0-dim host scalars stay where they are: torch mixes them freely).
    pub fn on(&self, i: usize, device: tch::Device) -> anyhow::Result<Tensor> {
        let t = self.get(i)?;
        Ok(if t.device() == device || (t.dim() == 0 && t.device() == tch::Device::Cpu) { t.shallow_clone() } else { crate::host::upload(t, device)? })
    }

    /// A scalar input on the host (Clip bounds, Range arguments): a constant's compile-time
    /// copy, else read (and counted: on an accelerator it waits for the device).
    pub fn opt_scalar(&self, i: usize) -> anyhow::Result<Option<f64>> {
        if let (Some(_), Some(c)) = (self.opt(i), self.host_const(i)) {
            return c
                .floats
                .first()
                .copied()
                .map(Some)
                .ok_or_else(|| bad_input!("node `{}` ({}): input {i} is empty, expected a scalar", self.node.name, self.node.op_type));
        }
        match self.opt(i) {
            None => Ok(None),
            Some(t) => Ok(Some(crate::host::try_f64(&t.f_flatten(0, -1)?.f_get(0)?)?)),
        }
    }
}

/// A compiled node: runs on its inputs and returns its outputs in order.
pub type Kernel = Box<dyn Fn(&Inputs, &RunCtx) -> anyhow::Result<Vec<Tensor>> + Send + Sync>;

/// What a builder sees: the node, the model's default-domain opset, and the ONNX element type
/// of each input that holds a carried type (`graph::types`; 0 for the others).
pub struct NodeCtx<'a> {
    pub node: &'a NodeProto,
    pub opset: i64,
    pub in_types: Vec<i32>,
}

impl NodeCtx<'_> {
    /// The carried type of input `i` (0 when it holds a type of its own kind, or is absent).
    pub fn carried(&self, i: usize) -> i32 {
        self.in_types.get(i).copied().unwrap_or(0)
    }
}

impl<'a> NodeCtx<'a> {
    pub fn attrs(&self) -> Attrs<'a> {
        Attrs::new(self.node)
    }
}

pub type Builder = fn(&NodeCtx) -> anyhow::Result<Kernel>;

/// ONNX op type → builder (and the family file that defines it), for the default domain.
pub struct Registry {
    builders: BTreeMap<&'static str, (Builder, &'static str)>,
    family: &'static str,
}

impl Registry {
    pub fn insert(&mut self, op_type: &'static str, builder: Builder) {
        self.builders.insert(op_type, (builder, self.family));
    }

    pub fn get(&self, op_type: &str) -> Option<Builder> {
        self.builders.get(op_type).map(|(b, _)| *b)
    }

    /// Every supported op type, sorted.
    pub fn op_types(&self) -> impl Iterator<Item = &'static str> + '_ {
        self.builders.keys().copied()
    }
}

/// One op family: its file (whose `//!` header documents the spec notes handled) and the
/// function that registers its ops.
struct Family {
    file: &'static str,
    source: &'static str,
    register: fn(&mut Registry),
}

const FAMILIES: &[Family] = &[
    Family { file: "activation.rs", source: include_str!("activation.rs"), register: activation::register },
    Family { file: "arith.rs", source: include_str!("arith.rs"), register: arith::register },
    Family { file: "math.rs", source: include_str!("math.rs"), register: math::register },
    Family { file: "nn.rs", source: include_str!("nn.rs"), register: nn::register },
    Family { file: "norm.rs", source: include_str!("norm.rs"), register: norm::register },
    Family { file: "reduce.rs", source: include_str!("reduce.rs"), register: reduce::register },
    Family { file: "layout.rs", source: include_str!("layout.rs"), register: layout::register },
    Family { file: "shape.rs", source: include_str!("shape.rs"), register: shape::register },
    Family { file: "spatial.rs", source: include_str!("spatial.rs"), register: spatial::register },
    Family { file: "quant.rs", source: include_str!("quant.rs"), register: quant::register },
];

/// The registry of every op this build supports.
pub fn registry() -> &'static Registry {
    static REGISTRY: OnceLock<Registry> = OnceLock::new();
    REGISTRY.get_or_init(|| {
        let mut reg = Registry { builders: BTreeMap::new(), family: "" };
        for f in FAMILIES {
            reg.family = f.file;
            (f.register)(&mut reg);
        }
        reg
    })
}

/// Every node the registry cannot run, as `node `name` (Op)` strings. Control flow (If, Loop,
/// Scan) and other domains are among them.
pub fn unsupported_nodes(nodes: &[NodeProto]) -> Vec<String> {
    let reg = registry();
    nodes
        .iter()
        .filter(|n| !is_default_domain(n) || reg.get(&n.op_type).is_none())
        .map(|n| {
            let domain = if is_default_domain(n) { String::new() } else { format!("{}::", n.domain) };
            format!("node `{}` ({domain}{})", n.name, n.op_type)
        })
        .collect()
}

/// Whether `kind` is a floating-point kind (the values that train and move between devices).
pub fn is_float(kind: tch::Kind) -> bool {
    matches!(kind, tch::Kind::Float | tch::Kind::Double | tch::Kind::Half | tch::Kind::BFloat16)
}

/// What ONNX's own node test cases gave, as `tests/onnx_conformance.rs` records it.
const CONFORMANCE: &str = include_str!("../../../tests/fixtures/onnx_conformance.json");

/// `docs/SUPPORTED_OPS.md`, generated from the registry, the family files' headers and the
/// recorded ONNX node test cases.
pub fn supported_ops_markdown() -> String {
    let reg = registry();
    let conformance: serde_json::Value = serde_json::from_str(CONFORMANCE).unwrap_or_default();
    let per_op = &conformance["per_op"];
    let mut s = String::from(
        "# Supported ONNX ops\n\nGenerated from the op registry (`src/graph/ops/`) by the test \
         `graph::ops::tests::supported_ops_doc_is_in_sync`; regenerate with\n\
         `UPDATE_SUPPORTED_OPS=1 ./scripts/test supported_ops`. Default ONNX domain only; every op \
         is checked against ONNX Runtime in `tests/ops_vs_ort.rs`, and against ONNX's own backend node \
         test cases (generated from the `onnx` package by `scripts/onnx-node-cases`) in \
         `tests/onnx_conformance.rs`.\n",
    );
    s.push_str(&format!("\n{} ops in {} families.\n", reg.builders.len(), FAMILIES.len()));
    s.push_str(&format!(
        "\nONNX {} node cases: {} of the {} cases whose ops are all registered pass ({} generated); every \
         other one is refused by name (listed at the end with its reason), none computes a different result. \
         A case counts under its first node's op.\n",
        conformance["onnx"].as_str().unwrap_or("?"),
        conformance["passed"],
        conformance["cases_of_registered_ops"],
        conformance["cases_generated"]
    ));
    if let Some(stored) = conformance["stored_model_suites"].as_object().filter(|m| !m.is_empty()) {
        let each: Vec<String> = stored.iter().map(|(suite, c)| format!("{suite} {} of {}", c[0], c[1])).collect();
        s.push_str(&format!(
            "\nThe `onnx` package's stored model cases (small modules exported by PyTorch's exporter), \
             of registered ops: {}.\n",
            each.join(", ")
        ));
    }
    for f in FAMILIES {
        let header: Vec<&str> = f.source.lines().take_while(|l| l.starts_with("//!")).map(|l| l.trim_start_matches("//!").trim()).collect();
        s.push_str(&format!(
            "\n## `{}`\n\n{}\n\n| op | ONNX node cases passed / run | ONNX specification |\n|---|---|---|\n",
            f.file,
            header.join("\n").trim()
        ));
        for (op, (_, family)) in &reg.builders {
            if *family == f.file {
                let cases = per_op.get(*op).map_or_else(|| "–".to_string(), |c| format!("{} / {}", c[0], c[1]));
                s.push_str(&format!("| {op} | {cases} | https://onnx.ai/onnx/operators/onnx__{op}.html |\n"));
            }
        }
    }
    if let Some(refused) = conformance["not_passing"].as_object().filter(|m| !m.is_empty()) {
        s.push_str("\n## ONNX node cases refused\n\n| case | outcome | reason |\n|---|---|---|\n");
        for (case, r) in refused {
            let reason = r["reason"].as_str().unwrap_or("").replace('|', "\\|");
            s.push_str(&format!("| {case} | {} | {reason} |\n", r["outcome"].as_str().unwrap_or("")));
        }
    }
    s
}

/// True when the node is in a domain we execute (the default ONNX domain).
pub fn is_default_domain(node: &NodeProto) -> bool {
    node.domain.is_empty() || node.domain == "ai.onnx"
}

/// Wraps a one-output computation as a kernel.
pub fn single<F>(f: F) -> Kernel
where
    F: Fn(&Inputs, &RunCtx) -> anyhow::Result<Tensor> + Send + Sync + 'static,
{
    Box::new(move |ins, ctx| Ok(vec![f(ins, ctx)?]))
}

/// A kernel applying one fallible tch method to the single input (`Tensor::f_relu`, …).
pub fn unary(f: fn(&Tensor) -> Result<Tensor, tch::TchError>) -> Kernel {
    single(move |ins, _| Ok(f(ins.get(0)?)?))
}

/// A kernel applying one fallible broadcasting tch method to the two inputs, on their common
/// device (see [`Inputs::compute_device`]).
pub fn binary(f: fn(&Tensor, &Tensor) -> Result<Tensor, tch::TchError>) -> Kernel {
    single(move |ins, _| {
        let d = ins.compute_device();
        Ok(f(&ins.on(0, d)?, &ins.on(1, d)?)?)
    })
}

/// [`binary`], with the broadcasting of opsets before 7 as well: there `broadcast` = 1 aligns
/// the second input with the first at `axis` (by default with its trailing dimensions), and
/// without it the shapes must be equal (old Caffe2 and CNTK exports add a bias this way).
pub fn legacy_binary(ctx: &NodeCtx, f: fn(&Tensor, &Tensor) -> Result<Tensor, tch::TchError>) -> anyhow::Result<Kernel> {
    let a = ctx.attrs();
    if ctx.opset >= 7 || a.int_or("broadcast", 0)? == 0 {
        return Ok(binary(f));
    }
    let axis = a.int("axis")?;
    Ok(single(move |ins, _| {
        let d = ins.compute_device();
        let (x, y) = (ins.on(0, d)?, ins.on(1, d)?);
        let y = match axis {
            Some(ax) => {
                let ax = norm_axis(ins.node, ax, x.dim() as i64)?;
                let trailing = x.dim() as i64 - ax - y.dim() as i64;
                if trailing < 0 {
                    return Err(bad_input!(
                        "node `{}` ({}): a {:?} operand cannot align at axis {ax} of {:?}",
                        ins.node.name,
                        ins.node.op_type,
                        y.size(),
                        x.size()
                    ));
                }
                let mut shape = y.size();
                shape.extend(std::iter::repeat_n(1, trailing as usize));
                y.f_reshape(shape.as_slice())?
            }
            None => y,
        };
        Ok(f(&x, &y)?)
    }))
}

/// Normalizes a possibly negative axis against a rank, with an error naming the node.
pub fn norm_axis(node: &NodeProto, axis: i64, rank: i64) -> anyhow::Result<i64> {
    let a = if axis < 0 { axis + rank } else { axis };
    if a < 0 || a >= rank.max(1) {
        return Err(bad_input!("node `{}` ({}): axis {axis} out of range for rank {rank}", node.name, node.op_type));
    }
    Ok(a)
}

#[cfg(test)]
mod tests {
    #[test]
    fn supported_ops_doc_is_in_sync() {
        let path = concat!(env!("CARGO_MANIFEST_DIR"), "/docs/SUPPORTED_OPS.md");
        let want = super::supported_ops_markdown();
        if std::env::var_os("UPDATE_SUPPORTED_OPS").is_some() {
            std::fs::write(path, &want).unwrap();
        }
        let have = std::fs::read_to_string(path).unwrap_or_default();
        assert!(have == want, "docs/SUPPORTED_OPS.md is out of date: run UPDATE_SUPPORTED_OPS=1 ./scripts/test supported_ops");
    }
}
