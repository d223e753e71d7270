//! ShuffleNet V1 for CIFAR (Zhang et al. 2018; RepDistiller's `ShuffleV1`): a 1×1 stem to 24
//! channels at full resolution, three stages of 4, 8 and 4 grouped bottlenecks (3 groups, 240,
//! 480 and 960 output channels times the width multiplier) with a channel shuffle after the first
//! grouped 1×1 conv; a stage's first unit halves the resolution and concatenates an average-pooled
//! shortcut, the others add the identity.

use super::ArchSpec;
use crate::bad_input;
use crate::graph::builder::{ConvSpec, GraphBuilder};
use crate::graph::Graph;
use tch::Device;

const GROUPS: i64 = 3;
const STEM: i64 = 24;
const OUT_PLANES: [i64; 3] = [240, 480, 960];
const BLOCKS: [i64; 3] = [4, 8, 4];

pub fn build(arch: &str, spec: &ArchSpec, device: Device) -> anyhow::Result<Graph> {
    // Output channels must split into 4 (bottleneck) × 3 (groups), so widths round to 12.
    let out_planes: Vec<i64> = OUT_PLANES.iter().map(|&c| ((c as f64 * spec.width / 12.0).round() as i64).max(2) * 12).collect();
    if spec.image_size % 8 != 0 {
        return Err(bad_input!("{arch} halves the image three times; image size {} is not a multiple of 8", spec.image_size));
    }
    let mut b = GraphBuilder::new(arch, 13, 3, spec.image_size, device);
    let x = b.input();
    let x = b.conv("conv1", &x, ConvSpec::new(3, STEM, 1, 1));
    let x = b.batch_norm("bn1", &x, STEM);
    let mut x = b.relu("relu", &x);
    let mut cin = STEM;
    let mut size = spec.image_size;
    for (s, (&planes, &n)) in out_planes.iter().zip(&BLOCKS).enumerate() {
        for i in 0..n {
            let p = format!("layer{}.{i}", s + 1);
            if i == 0 {
                size /= 2;
                x = bottleneck(&mut b, &p, &x, Unit { cin, cout: planes - cin, stride: 2, size });
            } else {
                x = bottleneck(&mut b, &p, &x, Unit { cin, cout: planes, stride: 1, size });
            }
            cin = planes;
        }
        b.end_stage(&x);
    }
    let x = b.pool_flatten("pool", &x);
    let x = b.linear("linear", &x, cin, spec.num_classes);
    Ok(b.finish(&x, spec.num_classes))
}

/// One unit's channels, stride and output resolution.
struct Unit {
    cin: i64,
    cout: i64,
    stride: i64,
    size: i64,
}

fn bottleneck(b: &mut GraphBuilder, p: &str, x: &str, u: Unit) -> String {
    let mid = u.cout / 4;
    // The first unit after the 24-channel stem is not grouped (too few input channels).
    let g = if u.cin == STEM { 1 } else { GROUPS };
    let y = b.conv(&format!("{p}.conv1"), x, ConvSpec::new(u.cin, mid, 1, 1).groups(g));
    let y = b.batch_norm(&format!("{p}.bn1"), &y, mid);
    let mut y = b.relu(&format!("{p}.relu1"), &y);
    if g > 1 {
        let in_size = u.size * u.stride;
        y = b.channel_shuffle(&format!("{p}.shuffle1"), &y, g, [mid, in_size, in_size]);
    }
    let y = b.conv(&format!("{p}.conv2"), &y, ConvSpec::new(mid, mid, 3, u.stride).groups(mid));
    let y = b.batch_norm(&format!("{p}.bn2"), &y, mid);
    let y = b.relu(&format!("{p}.relu2"), &y);
    let y = b.conv(&format!("{p}.conv3"), &y, ConvSpec::new(mid, u.cout, 1, 1).groups(GROUPS));
    let y = b.batch_norm(&format!("{p}.bn3"), &y, u.cout);
    let joined = if u.stride == 2 {
        let shortcut = b.avg_pool(&format!("{p}.shortcut"), x, 3, 2, 1);
        b.concat(&format!("{p}.cat"), &[&y, &shortcut])
    } else {
        b.add(&format!("{p}.add"), &y, x)
    };
    b.relu(&format!("{p}.relu3"), &joined)
}
