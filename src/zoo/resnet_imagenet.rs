//! ImageNet-style ResNet-18/34 (He et al. 2016; torchvision's `resnet18`/`resnet34`): a 7×7
//! stride-2 stem with max pooling, four stages of BasicBlocks with 64·w…512·w channels, global
//! pooling and `fc`. Parameter names and counts equal torchvision's, so its weights load by name.

use super::resnet_cifar::basic_stages;
use super::ArchSpec;
use crate::graph::builder::{ConvSpec, GraphBuilder};
use crate::graph::Graph;
use tch::Device;

pub fn build(arch: &str, spec: &ArchSpec, device: Device) -> anyhow::Result<Graph> {
    let blocks: [i64; 4] = if arch == "resnet34" { [3, 4, 6, 3] } else { [2, 2, 2, 2] };
    let widths: Vec<i64> = [64.0, 128.0, 256.0, 512.0].iter().map(|c| ((c * spec.width).round() as i64).max(1)).collect();
    let mut b = GraphBuilder::new(arch, 13, 3, spec.image_size, device);
    let x = b.input();
    let x = b.conv("conv1", &x, ConvSpec::new(3, widths[0], 7, 2));
    let x = b.batch_norm("bn1", &x, widths[0]);
    let x = b.relu("relu", &x);
    let x = b.max_pool("maxpool", &x, 3, 2, 1);
    let (x, cin) = basic_stages(&mut b, &x, widths[0], &widths, &blocks);
    let x = b.pool_flatten("avgpool", &x);
    let x = b.linear("fc", &x, cin, spec.num_classes);
    Ok(b.finish(&x, spec.num_classes))
}
