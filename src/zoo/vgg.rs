//! VGG with BatchNorm for CIFAR (Simonyan & Zisserman 2015; RepDistiller's `vgg8/11/13/16/19`):
//! five blocks of conv3×3 (with bias) → BN → ReLU, 2×2 max pooling after the first three, global
//! average pooling after the fifth and one linear classifier on 512·w features. At 32×32 the
//! fourth pooling never applies (the reference only pools there for 64-pixel maps). Stage taps
//! are blocks 1 to 4 (RepDistiller's feats[1..=4]).

use super::ArchSpec;
use crate::graph::builder::{ConvSpec, GraphBuilder};
use crate::graph::Graph;
use tch::Device;

/// Channels of each conv, block by block.
fn config(arch: &str) -> Option<[&'static [i64]; 5]> {
    Some(match arch {
        "vgg8" => [&[64], &[128], &[256], &[512], &[512]],
        "vgg11" => [&[64], &[128], &[256, 256], &[512, 512], &[512, 512]],
        "vgg13" => [&[64, 64], &[128, 128], &[256, 256], &[512, 512], &[512, 512]],
        "vgg16" => [&[64, 64], &[128, 128], &[256, 256, 256], &[512, 512, 512], &[512, 512, 512]],
        "vgg19" => [&[64, 64], &[128, 128], &[256, 256, 256, 256], &[512, 512, 512, 512], &[512, 512, 512, 512]],
        _ => return None,
    })
}

pub fn build(arch: &str, spec: &ArchSpec, device: Device) -> anyhow::Result<Graph> {
    let blocks = config(arch).ok_or_else(|| crate::bad_input!("unknown VGG `{arch}`"))?;
    let scale = |c: i64| ((c as f64 * spec.width).round() as i64).max(1);
    let mut b = GraphBuilder::new(arch, 13, 3, spec.image_size, device);
    let mut x = b.input();
    let mut cin = 3;
    let mut size = spec.image_size;
    for (i, convs) in blocks.iter().enumerate() {
        for (j, &c) in convs.iter().enumerate() {
            let cout = scale(c);
            let p = format!("block{i}.{}", 3 * j);
            x = b.conv(&p, &x, ConvSpec::new(cin, cout, 3, 1).bias());
            x = b.batch_norm(&format!("block{i}.{}", 3 * j + 1), &x, cout);
            x = b.relu(&format!("block{i}.{}", 3 * j + 2), &x);
            cin = cout;
        }
        // block0 plays the stem's part in RepDistiller's feats (f0), so the stage taps are
        // block1 … block4 and `stageK` is its feats[K], as for the other CIFAR families.
        if i > 0 {
            b.end_stage(&x);
        }
        if i < 3 || (i == 3 && size == 64) {
            x = b.max_pool(&format!("pool{i}"), &x, 2, 2, 0);
            size /= 2;
        }
    }
    let x = b.pool_flatten("pool4", &x);
    let x = b.linear("classifier", &x, cin, spec.num_classes);
    Ok(b.finish(&x, spec.num_classes))
}
