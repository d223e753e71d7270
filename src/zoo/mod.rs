//! Built-in student architectures as graph builders, looked up by name.
//!
//! Each builder returns a freshly initialised `Graph` (seeded through tch's global generator);
//! the names of nodes and parameters follow module paths.

mod mobilenetv2;
mod mobilenetv2_imagenet;
mod mobilenetv3;
mod resnet_cifar;
mod resnet_imagenet;
mod shufflenetv1;
mod shufflenetv2;
mod vgg;
mod wrn;

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

/// One built-in architecture: its recipe name, builder, family and the image size it is made for.
pub struct Arch {
    pub name: &'static str,
    build: Build,
    pub family: &'static str,
    pub image_size: i64,
}

const fn cifar(name: &'static str, build: Build, family: &'static str) -> Arch {
    Arch { name, build, family, image_size: 32 }
}

const fn imagenet(name: &'static str, build: Build, family: &'static str) -> Arch {
    Arch { name, build, family, image_size: 224 }
}

/// Architecture names the recipe accepts, with their builders.
pub const ARCHS: &[Arch] = &[
    cifar("resnet8", resnet_cifar::build, "CIFAR ResNet"),
    cifar("resnet14", resnet_cifar::build, "CIFAR ResNet"),
    cifar("resnet20", resnet_cifar::build, "CIFAR ResNet"),
    cifar("resnet32", resnet_cifar::build, "CIFAR ResNet"),
    cifar("resnet44", resnet_cifar::build, "CIFAR ResNet"),
    cifar("resnet56", resnet_cifar::build, "CIFAR ResNet"),
    cifar("resnet110", resnet_cifar::build, "CIFAR ResNet"),
    cifar("resnet8x4", resnet_cifar::build, "CIFAR ResNet"),
    cifar("resnet32x4", resnet_cifar::build, "CIFAR ResNet"),
    cifar("wrn_16_1", wrn::build, "Wide ResNet"),
    cifar("wrn_16_2", wrn::build, "Wide ResNet"),
    cifar("wrn_40_1", wrn::build, "Wide ResNet"),
    cifar("wrn_40_2", wrn::build, "Wide ResNet"),
    cifar("vgg8", vgg::build, "CIFAR VGG (BN)"),
    cifar("vgg11", vgg::build, "CIFAR VGG (BN)"),
    cifar("vgg13", vgg::build, "CIFAR VGG (BN)"),
    cifar("vgg16", vgg::build, "CIFAR VGG (BN)"),
    cifar("vgg19", vgg::build, "CIFAR VGG (BN)"),
    cifar("mobilenetv2", mobilenetv2::build, "CIFAR MobileNetV2"),
    cifar("shufflev1", shufflenetv1::build, "CIFAR ShuffleNetV1"),
    cifar("shufflev2", shufflenetv2::build, "CIFAR ShuffleNetV2"),
    imagenet("resnet18", resnet_imagenet::build, "torchvision ResNet"),
    imagenet("resnet34", resnet_imagenet::build, "torchvision ResNet"),
    imagenet("mobilenetv2_imagenet", mobilenetv2_imagenet::build, "torchvision MobileNetV2"),
    imagenet("mobilenetv3_small", mobilenetv3::build, "torchvision MobileNetV3"),
    imagenet("mobilenetv3_large", mobilenetv3::build, "torchvision MobileNetV3"),
];

pub fn names() -> Vec<&'static str> {
    ARCHS.iter().map(|a| a.name).collect()
}

pub fn find(name: &str) -> anyhow::Result<&'static Arch> {
    ARCHS.iter().find(|a| a.name == name).ok_or_else(|| bad_input!("unknown student architecture `{name}` (known: {})", names().join(", ")))
}

pub fn build(arch: &str, spec: &ArchSpec, device: Device) -> anyhow::Result<Graph> {
    let a = find(arch)?;
    if spec.width <= 0.0 {
        return Err(bad_input!("student.width must be positive, got {}", spec.width));
    }
    if spec.image_size < 8 || spec.num_classes < 1 {
        return Err(bad_input!("{arch} needs images of at least 8×8 pixels and at least one class (got {} px, {} classes)", spec.image_size, spec.num_classes));
    }
    (a.build)(arch, spec, device)
}
