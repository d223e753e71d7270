//! Built-in student architectures as graph builders, looked up by name.
//!
//! Each builder returns a freshly initialised `Graph` (seeded through tch's global generator);
//! the names of nodes and parameters follow module paths.

mod mobilenetv2;
mod mobilenetv2_imagenet;
mod resnet_cifar;
mod resnet_imagenet;

use crate::bad_input;
use crate::graph::Graph;
use tch::Device;

/// What every architecture needs to know.
#[derive(Clone, Debug)]
pub struct ArchSpec {
    pub num_classes: i64,
    pub width: f64,
    pub image_size: i64,
}

type Build = fn(&str, &ArchSpec, Device) -> anyhow::Result<Graph>;

/// Architecture names the recipe accepts, with their builders.
const ARCHS: &[(&str, Build)] = &[
    ("resnet8", resnet_cifar::build),
    ("resnet14", resnet_cifar::build),
    ("resnet20", resnet_cifar::build),
    ("resnet32", resnet_cifar::build),
    ("resnet44", resnet_cifar::build),
    ("resnet56", resnet_cifar::build),
    ("resnet110", resnet_cifar::build),
    ("mobilenetv2", mobilenetv2::build),
    ("resnet18", resnet_imagenet::build),
    ("resnet34", resnet_imagenet::build),
    ("mobilenetv2_imagenet", mobilenetv2_imagenet::build),
];

pub fn names() -> Vec<&'static str> {
    ARCHS.iter().map(|(n, _)| *n).collect()
}

pub fn build(arch: &str, spec: &ArchSpec, device: Device) -> anyhow::Result<Graph> {
    let (_, f) = ARCHS
        .iter()
        .find(|(n, _)| *n == arch)
        .ok_or_else(|| bad_input!("unknown student architecture `{arch}` (known: {})", names().join(", ")))?;
    if spec.width <= 0.0 {
        return Err(bad_input!("student.width must be positive, got {}", spec.width));
    }
    f(arch, spec, device)
}
