//! ShuffleNet V2 for CIFAR (Ma et al. 2018; RepDistiller's `ShuffleV2`): a 1×1 stem to 24
//! channels at full resolution, three stages (116, 232, 464 channels at width 1; 48/96/192 at 0.5,
//! 176/352/704 at 1.5, 224/488/976 at 2, the reference's table) each made of a down-sampling unit
//! and 3, 7 and 3 channel-split units, a 1×1 conv to 1024 (2048 at width 2), global pooling and
//! `linear`. The stage taps are the three stage outputs, RepDistiller's f1 … f3.

use super::ArchSpec;
use crate::bad_input;
use crate::graph::builder::{ConvSpec, GraphBuilder};
use crate::graph::Graph;
use tch::Device;

const BLOCKS: [i64; 3] = [3, 7, 3];
const STEM: i64 = 24;

/// The reference's channel table, keyed by width.
fn channels(width: f64) -> Option<[i64; 4]> {
    const TABLE: [(f64, [i64; 4]); 4] = [(0.5, [48, 96, 192, 1024]), (1.0, [116, 232, 464, 1024]), (1.5, [176, 352, 704, 1024]), (2.0, [224, 488, 976, 2048])];
    TABLE.iter().find(|(w, _)| (w - width).abs() < 1e-9).map(|(_, c)| *c)
}

pub fn build(arch: &str, spec: &ArchSpec, device: Device) -> anyhow::Result<Graph> {
    let c = channels(spec.width).ok_or_else(|| bad_input!("{arch} exists at width 0.5, 1, 1.5 and 2, not {}", spec.width))?;
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
    for (s, &n) in BLOCKS.iter().enumerate() {
        let cout = c[s];
        size /= 2;
        x = down_block(&mut b, &format!("layer{}.0", s + 1), &x, cin, cout, size);
        for i in 1..=n {
            x = split_block(&mut b, &format!("layer{}.{i}", s + 1), &x, cout, size);
        }
        cin = cout;
        b.end_stage(&x);
    }
    let x = b.conv("conv2", &x, ConvSpec::new(cin, c[3], 1, 1));
    let x = b.batch_norm("bn2", &x, c[3]);
    let x = b.relu("relu2", &x);
    let x = b.pool_flatten("pool", &x);
    let x = b.linear("linear", &x, c[3], spec.num_classes);
    Ok(b.finish(&x, spec.num_classes))
}

/// Conv → BN, optionally followed by ReLU.
fn conv_bn(b: &mut GraphBuilder, p: &str, i: usize, x: &str, spec: ConvSpec, relu: bool) -> String {
    let y = b.conv(&format!("{p}.conv{i}"), x, spec);
    let y = b.batch_norm(&format!("{p}.bn{i}"), &y, spec.cout);
    if relu {
        b.relu(&format!("{p}.relu{i}"), &y)
    } else {
        y
    }
}

/// Keeps half the channels, transforms the other half (1×1, depthwise 3×3, 1×1), concatenates and
/// shuffles the two halves.
fn split_block(b: &mut GraphBuilder, p: &str, x: &str, c: i64, size: i64) -> String {
    let half = c / 2;
    let kept = b.channels(&format!("{p}.split.0"), x, 0, half);
    let rest = b.channels(&format!("{p}.split.1"), x, half, c);
    let y = conv_bn(b, p, 1, &rest, ConvSpec::new(c - half, c - half, 1, 1), true);
    let y = conv_bn(b, p, 2, &y, ConvSpec::new(c - half, c - half, 3, 1).groups(c - half), false);
    let y = conv_bn(b, p, 3, &y, ConvSpec::new(c - half, c - half, 1, 1), true);
    let y = b.concat(&format!("{p}.cat"), &[&kept, &y]);
    b.channel_shuffle(&format!("{p}.shuffle"), &y, 2, [c, size, size])
}

/// Two stride-2 branches of `cout / 2` channels each, concatenated and shuffled.
fn down_block(b: &mut GraphBuilder, p: &str, x: &str, cin: i64, cout: i64, size: i64) -> String {
    let mid = cout / 2;
    let left = conv_bn(b, p, 1, x, ConvSpec::new(cin, cin, 3, 2).groups(cin), false);
    let left = conv_bn(b, p, 2, &left, ConvSpec::new(cin, mid, 1, 1), true);
    let right = conv_bn(b, p, 3, x, ConvSpec::new(cin, mid, 1, 1), true);
    let right = conv_bn(b, p, 4, &right, ConvSpec::new(mid, mid, 3, 2).groups(mid), false);
    let right = conv_bn(b, p, 5, &right, ConvSpec::new(mid, mid, 1, 1), true);
    let y = b.concat(&format!("{p}.cat"), &[&left, &right]);
    b.channel_shuffle(&format!("{p}.shuffle"), &y, 2, [2 * mid, size, size])
}
