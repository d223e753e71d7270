//! The op registry: one small builder per ONNX op, registered per family file (tract's table,
//! burn-onnx's one family per file). A builder reads and normalizes the node's attributes once,
//! at compile time, and returns the kernel that runs it on tch tensors.
//!
//! Conventions every kernel follows: fallible tch calls (`f_*`), so bad models give errors and
//! never panics; integer tensors (shapes, indices) stay on the host.

mod activation;
mod arith;
mod nn;
mod reduce;
mod shape;

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
}

/// A node's runtime inputs, with accessors whose errors name the node.
pub struct Inputs<'a> {
    pub node: &'a NodeProto,
    pub values: Vec<Option<&'a Tensor>>,
}

impl<'a> Inputs<'a> {
    pub fn get(&self, i: usize) -> anyhow::Result<&'a Tensor> {
        self.opt(i).ok_or_else(|| {
            bad_input!("node `{}` ({}): required input {i} is missing", self.node.name, self.node.op_type)
        })
    }

    pub fn opt(&self, i: usize) -> Option<&'a Tensor> {
        self.values.get(i).copied().flatten()
    }

    /// An integer input (shape, axes, indices) read to the host as a vector.
    pub fn ints(&self, i: usize) -> anyhow::Result<Vec<i64>> {
        let t = self.get(i)?;
        let t = t.f_to_kind(tch::Kind::Int64)?.f_flatten(0, -1)?;
        Ok(Vec::<i64>::try_from(&t)?)
    }

    pub fn opt_ints(&self, i: usize) -> anyhow::Result<Option<Vec<i64>>> {
        match self.opt(i) {
            None => Ok(None),
            Some(_) => self.ints(i).map(Some),
        }
    }

    /// A scalar input read to the host (Clip bounds, Range arguments).
    pub fn opt_scalar(&self, i: usize) -> anyhow::Result<Option<f64>> {
        match self.opt(i) {
            None => Ok(None),
            Some(t) => Ok(Some(t.f_to_kind(tch::Kind::Double)?.f_flatten(0, -1)?.f_double_value(&[0])?)),
        }
    }
}

/// A compiled node: runs on its inputs and returns its outputs in order.
pub type Kernel = Box<dyn Fn(&Inputs, &RunCtx) -> anyhow::Result<Vec<Tensor>> + Send + Sync>;

/// What a builder sees: the node and the model's default-domain opset.
pub struct NodeCtx<'a> {
    pub node: &'a NodeProto,
    pub opset: i64,
}

impl<'a> NodeCtx<'a> {
    pub fn attrs(&self) -> Attrs<'a> {
        Attrs::new(self.node)
    }
}

pub type Builder = fn(&NodeCtx) -> anyhow::Result<Kernel>;

/// ONNX op type → builder, for the default domain.
pub struct Registry {
    builders: BTreeMap<&'static str, Builder>,
}

impl Registry {
    pub fn insert(&mut self, op_type: &'static str, builder: Builder) {
        self.builders.insert(op_type, builder);
    }

    pub fn get(&self, op_type: &str) -> Option<Builder> {
        self.builders.get(op_type).copied()
    }

    /// Every supported op type, sorted.
    pub fn op_types(&self) -> impl Iterator<Item = &'static str> + '_ {
        self.builders.keys().copied()
    }
}

/// The registry of every op this build supports.
pub fn registry() -> &'static Registry {
    static REGISTRY: OnceLock<Registry> = OnceLock::new();
    REGISTRY.get_or_init(|| {
        let mut reg = Registry { builders: BTreeMap::new() };
        activation::register(&mut reg);
        arith::register(&mut reg);
        nn::register(&mut reg);
        reduce::register(&mut reg);
        shape::register(&mut reg);
        reg
    })
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

/// A kernel applying one fallible broadcasting tch method to the two inputs; a host-side
/// operand (shape arithmetic, scalar constants) is moved to the other's device first.
pub fn binary(f: fn(&Tensor, &Tensor) -> Result<Tensor, tch::TchError>) -> Kernel {
    single(move |ins, _| {
        let a = ins.get(0)?;
        let b = ins.get(1)?;
        if b.device() != a.device() && b.dim() > 0 {
            return Ok(f(a, &b.f_to_device(a.device())?)?);
        }
        Ok(f(a, b)?)
    })
}

/// Normalizes a possibly negative axis against a rank, with an error naming the node.
pub fn norm_axis(node: &NodeProto, axis: i64, rank: i64) -> anyhow::Result<i64> {
    let a = if axis < 0 { axis + rank } else { axis };
    if a < 0 || a >= rank.max(1) {
        return Err(bad_input!("node `{}` ({}): axis {axis} out of range for rank {rank}", node.name, node.op_type));
    }
    Ok(a)
}
