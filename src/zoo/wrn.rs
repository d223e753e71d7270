//! Wide ResNet for CIFAR (Zagoruyko & Komodakis 2016; RepDistiller's `wrn_16_1 … wrn_40_2`):
//! depth = 6n + 4, a 16-channel stem, three groups of pre-activation BasicBlocks with 16k, 32k and
//! 64k channels (k = widen factor, times the width multiplier), a final BN + ReLU, global pooling
//! and `fc`. Shortcuts are 1×1 convolutions of the activated input where the shape changes. The
//! stage taps are the three groups' raw residual sums, RepDistiller's f1 … f3.

use super::ArchSpec;
use crate::bad_input;
use crate::graph::builder::{ConvSpec, GraphBuilder};
use crate::graph::Graph;
use tch::Device;

/// Parses `wrn_{depth}_{widen}`.
fn depth_and_widen(arch: &str) -> Option<(i64, i64)> {
    let mut parts = arch.strip_prefix("wrn_")?.split('_');
    let depth = parts.next()?.parse().ok()?;
    let widen = parts.next()?.parse().ok()?;
    parts.next().is_none().then_some((depth, widen))
}

pub fn build(arch: &str, spec: &ArchSpec, device: Device) -> anyhow::Result<Graph> {
    let (depth, widen) = depth_and_widen(arch).ok_or_else(|| bad_input!("bad wide-resnet name `{arch}` (expected wrn_DEPTH_WIDEN)"))?;
    if (depth - 4) % 6 != 0 {
        return Err(bad_input!("WRN depth must be 6n+4, got {depth}"));
    }
    let n = (depth - 4) / 6;
    let scale = |c: i64| ((c as f64 * spec.width).round() as i64).max(1);
    let stem = scale(16);
    let widths = [scale(16 * widen), scale(32 * widen), scale(64 * widen)];
    let mut b = GraphBuilder::new(arch, 13, 3, spec.image_size, device);
    let x = b.input();
    let mut x = b.conv("conv1", &x, ConvSpec::new(3, stem, 3, 1));
    let mut cin = stem;
    for (g, &cout) in widths.iter().enumerate() {
        for i in 0..n {
            let stride = if g > 0 && i == 0 { 2 } else { 1 };
            x = preact_block(&mut b, &format!("block{}.layer.{i}", g + 1), &x, cin, cout, stride);
            cin = cout;
        }
        b.end_stage(&x);
    }
    let x = b.batch_norm("bn1", &x, cin);
    let x = b.relu("relu", &x);
    let x = b.pool_flatten("pool", &x);
    let x = b.linear("fc", &x, cin, spec.num_classes);
    Ok(b.finish(&x, spec.num_classes))
}

/// BN → ReLU → conv3×3 → BN → ReLU → conv3×3, plus the input (or its 1×1 projection, taken from
/// the activated input, when the shape changes).
fn preact_block(b: &mut GraphBuilder, p: &str, x: &str, cin: i64, cout: i64, stride: i64) -> String {
    let same = cin == cout && stride == 1;
    let a = b.batch_norm(&format!("{p}.bn1"), x, cin);
    let a = b.relu(&format!("{p}.relu1"), &a);
    let y = b.conv(&format!("{p}.conv1"), &a, ConvSpec::new(cin, cout, 3, stride));
    let y = b.batch_norm(&format!("{p}.bn2"), &y, cout);
    let y = b.relu(&format!("{p}.relu2"), &y);
    let y = b.conv(&format!("{p}.conv2"), &y, ConvSpec::new(cout, cout, 3, 1));
    let shortcut = if same { x.to_string() } else { b.conv(&format!("{p}.convShortcut"), &a, ConvSpec::new(cin, cout, 1, stride)) };
    b.add(&format!("{p}.add"), &y, &shortcut)
}
