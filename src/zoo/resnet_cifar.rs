//! CIFAR-style ResNet (He et al. 2016, §4.2; the RepDistiller `resnet8…110` family): a 3×3 stem,
//! three stages of BasicBlocks with 16·w, 32·w, 64·w channels, depth = 6n + 2, 1×1 projection
//! shortcuts where the shape changes. The `x4` variants (`resnet8x4`, `resnet32x4`) have a
//! 32-channel stem and 64, 128, 256 channels.

use super::ArchSpec;
use crate::bad_input;
use crate::graph::builder::{ConvSpec, GraphBuilder};
use crate::graph::Graph;
use tch::Device;

pub fn build(arch: &str, spec: &ArchSpec, device: Device) -> anyhow::Result<Graph> {
    let name = arch.trim_start_matches("resnet");
    let (depth, stem, channels) = match name.strip_suffix("x4") {
        Some(depth) => (depth, 32.0, [64.0, 128.0, 256.0]),
        None => (name, 16.0, [16.0, 32.0, 64.0]),
    };
    let depth: i64 = depth.parse().map_err(|_| bad_input!("bad resnet name `{arch}`"))?;
    if (depth - 2) % 6 != 0 {
        return Err(bad_input!("CIFAR ResNet depth must be 6n+2, got {depth}"));
    }
    let n = (depth - 2) / 6;
    let scale = |c: f64| ((c * spec.width).round() as i64).max(1);
    let stem = scale(stem);
    let widths: Vec<i64> = channels.iter().map(|&c| scale(c)).collect();
    let mut b = GraphBuilder::new(arch, 13, 3, spec.image_size, device);
    let x = b.input();
    let x = b.conv("conv1", &x, ConvSpec::new(3, stem, 3, 1));
    let x = b.batch_norm("bn1", &x, stem);
    let x = b.relu("relu", &x);
    let blocks = vec![n; widths.len()];
    let (x, cin) = basic_stages(&mut b, &x, stem, &widths, &blocks);
    let x = b.pool_flatten("pool", &x);
    let x = b.linear("fc", &x, cin, spec.num_classes);
    Ok(b.finish(&x, spec.num_classes))
}

/// Stages `layer1…` of BasicBlocks (`blocks[s]` per stage, stride 2 at the start of every stage
/// after the first), each one's end recorded as a stage tap; returns the output value and its
/// channel count.
pub(super) fn basic_stages(b: &mut GraphBuilder, x: &str, mut cin: i64, widths: &[i64], blocks: &[i64]) -> (String, i64) {
    let mut x = x.to_string();
    for (stage, (&cout, &n)) in widths.iter().zip(blocks).enumerate() {
        for i in 0..n {
            let stride = if stage > 0 && i == 0 { 2 } else { 1 };
            x = basic_block(b, &format!("layer{}.{i}", stage + 1), &x, cin, cout, stride);
            cin = cout;
        }
        b.end_stage(&x);
    }
    (x, cin)
}

/// A BasicBlock with torchvision's parameter names (`{p}.conv1.weight`, `{p}.downsample.0`…).
pub(super) fn basic_block(b: &mut GraphBuilder, p: &str, x: &str, cin: i64, cout: i64, stride: i64) -> String {
    let y = b.conv(&format!("{p}.conv1"), x, ConvSpec::new(cin, cout, 3, stride));
    let y = b.batch_norm(&format!("{p}.bn1"), &y, cout);
    let y = b.relu(&format!("{p}.relu1"), &y);
    let y = b.conv(&format!("{p}.conv2"), &y, ConvSpec::new(cout, cout, 3, 1));
    let y = b.batch_norm(&format!("{p}.bn2"), &y, cout);
    let shortcut = if stride != 1 || cin != cout {
        let s = b.conv(&format!("{p}.downsample.0"), x, ConvSpec::new(cin, cout, 1, stride));
        b.batch_norm(&format!("{p}.downsample.1"), &s, cout)
    } else {
        x.to_string()
    };
    let y = b.add(&format!("{p}.add"), &y, &shortcut);
    b.relu(&format!("{p}.relu2"), &y)
}
