//! MobileNetV2 for small images (Sandler et al. 2018; the CIFAR variant of RepDistiller's
//! `mobile_half`): stride-1 3×3 stem, inverted residual blocks (expand 1×1, depthwise 3×3,
//! project 1×1, ReLU6), a 1×1 head to 1280 channels, global pooling and a linear classifier.
//! Channel counts are scaled by the width multiplier.

use super::ArchSpec;
use crate::graph::builder::{ConvSpec, GraphBuilder};
use crate::graph::Graph;
use tch::Device;

/// (expansion t, channels c, repeats n, first stride s), CIFAR strides.
const SETTINGS: [(i64, i64, i64, i64); 7] =
    [(1, 16, 1, 1), (6, 24, 2, 1), (6, 32, 3, 2), (6, 64, 4, 2), (6, 96, 3, 1), (6, 160, 3, 2), (6, 320, 1, 1)];

fn scaled(c: i64, width: f64) -> i64 {
    ((c as f64 * width).round() as i64).max(4)
}

pub fn build(arch: &str, spec: &ArchSpec, device: Device) -> anyhow::Result<Graph> {
    let w = spec.width;
    let mut b = GraphBuilder::new(arch, 13, 3, spec.image_size, device);
    let x = b.input();
    let stem = scaled(32, w);
    let x = b.conv("features.0.0", &x, ConvSpec::new(3, stem, 3, 1));
    let x = b.batch_norm("features.0.1", &x, stem);
    let mut x = b.relu6("features.0.2", &x);
    let mut cin = stem;
    let mut index = 1;
    for (t, c, n, s) in SETTINGS {
        let cout = scaled(c, w);
        for i in 0..n {
            let stride = if i == 0 { s } else { 1 };
            x = inverted_residual(&mut b, &format!("features.{index}"), &x, cin, cout, stride, t);
            cin = cout;
            index += 1;
        }
    }
    let head = if w > 1.0 { scaled(1280, w) } else { 1280 };
    let x = b.conv(&format!("features.{index}.0"), &x, ConvSpec::new(cin, head, 1, 1));
    let x = b.batch_norm(&format!("features.{index}.1"), &x, head);
    let x = b.relu6(&format!("features.{index}.2"), &x);
    let x = b.pool_flatten("pool", &x);
    let x = b.linear("classifier", &x, head, spec.num_classes);
    Ok(b.finish(&x, spec.num_classes))
}

fn inverted_residual(b: &mut GraphBuilder, p: &str, x: &str, cin: i64, cout: i64, stride: i64, t: i64) -> String {
    let hidden = cin * t;
    let mut y = x.to_string();
    if t != 1 {
        y = b.conv(&format!("{p}.expand.0"), &y, ConvSpec::new(cin, hidden, 1, 1));
        y = b.batch_norm(&format!("{p}.expand.1"), &y, hidden);
        y = b.relu6(&format!("{p}.expand.2"), &y);
    }
    y = b.conv(&format!("{p}.dw.0"), &y, ConvSpec::new(hidden, hidden, 3, stride).groups(hidden));
    y = b.batch_norm(&format!("{p}.dw.1"), &y, hidden);
    y = b.relu6(&format!("{p}.dw.2"), &y);
    y = b.conv(&format!("{p}.project.0"), &y, ConvSpec::new(hidden, cout, 1, 1));
    y = b.batch_norm(&format!("{p}.project.1"), &y, cout);
    if stride == 1 && cin == cout {
        y = b.add(&format!("{p}.add"), &y, x);
    }
    y
}
