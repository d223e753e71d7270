//! MobileNetV2 as torchvision builds it (`mobilenet_v2`, Sandler et al. 2018): a stride-2 stem,
//! inverted residual blocks with ReLU6, channel counts rounded to multiples of 8 after the width
//! multiplier, a 1280-channel head and a dropout + linear classifier. Parameter names and counts
//! equal torchvision's (`features.2.conv.1.0.weight`, `classifier.1.weight`).

use super::ArchSpec;
use crate::graph::builder::{ConvSpec, GraphBuilder};
use crate::graph::Graph;
use tch::Device;

/// (expansion t, channels c, repeats n, first stride s), ImageNet strides.
const SETTINGS: [(i64, i64, i64, i64); 7] = [(1, 16, 1, 1), (6, 24, 2, 2), (6, 32, 3, 2), (6, 64, 4, 2), (6, 96, 3, 1), (6, 160, 3, 2), (6, 320, 1, 1)];

/// torchvision's `_make_divisible(v, 8)`: round to the nearest multiple of 8, never more than
/// 10% below `v`.
pub fn make_divisible(v: f64, divisor: i64) -> i64 {
    let d = divisor as f64;
    let mut new = ((v + d / 2.0) / d).floor() as i64 * divisor;
    new = new.max(divisor);
    if (new as f64) < 0.9 * v {
        new += divisor;
    }
    new
}

/// Conv → BN → ReLU6 named like torchvision's `Conv2dNormActivation` (`{p}.0`, `{p}.1`, `{p}.2`).
fn conv_bn_relu6(b: &mut GraphBuilder, p: &str, x: &str, spec: ConvSpec) -> String {
    let y = b.conv(&format!("{p}.0"), x, spec);
    let y = b.batch_norm(&format!("{p}.1"), &y, spec.cout);
    b.relu6(&format!("{p}.2"), &y)
}

pub fn build(arch: &str, spec: &ArchSpec, device: Device) -> anyhow::Result<Graph> {
    let w = spec.width;
    let mut b = GraphBuilder::new(arch, 13, 3, spec.image_size, device);
    let x = b.input();
    let mut cin = make_divisible(32.0 * w, 8);
    let mut x = conv_bn_relu6(&mut b, "features.0", &x, ConvSpec::new(3, cin, 3, 2));
    let mut index = 1;
    for (t, c, n, s) in SETTINGS {
        let cout = make_divisible(c as f64 * w, 8);
        for i in 0..n {
            let stride = if i == 0 { s } else { 1 };
            if stride == 2 && index > 1 {
                b.end_stage(&x);
            }
            x = inverted_residual(&mut b, &format!("features.{index}"), &x, cin, cout, stride, t);
            cin = cout;
            index += 1;
        }
    }
    let head = make_divisible(1280.0 * w.max(1.0), 8);
    let x = conv_bn_relu6(&mut b, &format!("features.{index}"), &x, ConvSpec::new(cin, head, 1, 1));
    b.end_stage(&x);
    let x = b.pool_flatten("pool", &x);
    // Dropout is the identity at inference; the linear layer keeps torchvision's index.
    let x = b.linear("classifier.1", &x, head, spec.num_classes);
    Ok(b.finish(&x, spec.num_classes))
}

fn inverted_residual(b: &mut GraphBuilder, p: &str, x: &str, cin: i64, cout: i64, stride: i64, t: i64) -> String {
    let hidden = cin * t;
    let mut y = x.to_string();
    let mut k = 0;
    if t != 1 {
        y = conv_bn_relu6(b, &format!("{p}.conv.{k}"), &y, ConvSpec::new(cin, hidden, 1, 1));
        k += 1;
    }
    y = conv_bn_relu6(b, &format!("{p}.conv.{k}"), &y, ConvSpec::new(hidden, hidden, 3, stride).groups(hidden));
    y = b.conv(&format!("{p}.conv.{}", k + 1), &y, ConvSpec::new(hidden, cout, 1, 1));
    y = b.batch_norm(&format!("{p}.conv.{}", k + 2), &y, cout);
    if stride == 1 && cin == cout {
        y = b.add(&format!("{p}.add"), &y, x);
    }
    y
}

#[cfg(test)]
mod tests {
    #[test]
    fn make_divisible_matches_torchvision() {
        // Values from torchvision's _make_divisible.
        assert_eq!(super::make_divisible(32.0 * 0.5, 8), 16);
        assert_eq!(super::make_divisible(24.0 * 0.75, 8), 24);
        assert_eq!(super::make_divisible(16.0 * 0.35, 8), 8);
        assert_eq!(super::make_divisible(96.0 * 1.4, 8), 136);
    }
}
