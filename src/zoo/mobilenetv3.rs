//! MobileNetV3-Small and -Large as torchvision builds them (`mobilenet_v3_small/large`, Howard et
//! al. 2019): a stride-2 Hardswish stem, inverted residual blocks with optional squeeze-and-excite
//! (ReLU then Hardsigmoid) and ReLU or Hardswish activations, a 1×1 conv to 6× the last block's
//! channels, global pooling and a two-layer classifier (Linear → Hardswish → Dropout → Linear).
//! BatchNorm uses eps 0.001 and momentum 0.01. Parameter names and counts equal torchvision's
//! (`features.4.block.2.fc1.weight`, `classifier.3.bias`).

use super::mobilenetv2_imagenet::make_divisible;
use super::ArchSpec;
use crate::graph::builder::{ConvSpec, GraphBuilder};
use crate::graph::Graph;
use tch::Device;

#[derive(Clone, Copy, PartialEq)]
enum Act {
    Relu,
    HardSwish,
}

/// One block: (input, kernel, expanded, output channels, squeeze-excite, activation, stride).
type Bneck = (i64, i64, i64, i64, bool, Act, i64);

use Act::{HardSwish as HS, Relu as RE};

const LARGE: [Bneck; 15] = [
    (16, 3, 16, 16, false, RE, 1),
    (16, 3, 64, 24, false, RE, 2),
    (24, 3, 72, 24, false, RE, 1),
    (24, 5, 72, 40, true, RE, 2),
    (40, 5, 120, 40, true, RE, 1),
    (40, 5, 120, 40, true, RE, 1),
    (40, 3, 240, 80, false, HS, 2),
    (80, 3, 200, 80, false, HS, 1),
    (80, 3, 184, 80, false, HS, 1),
    (80, 3, 184, 80, false, HS, 1),
    (80, 3, 480, 112, true, HS, 1),
    (112, 3, 672, 112, true, HS, 1),
    (112, 5, 672, 160, true, HS, 2),
    (160, 5, 960, 160, true, HS, 1),
    (160, 5, 960, 160, true, HS, 1),
];

const SMALL: [Bneck; 11] = [
    (16, 3, 16, 16, true, RE, 2),
    (16, 3, 72, 24, false, RE, 2),
    (24, 3, 88, 24, false, RE, 1),
    (24, 5, 96, 40, true, HS, 2),
    (40, 5, 240, 40, true, HS, 1),
    (40, 5, 240, 40, true, HS, 1),
    (40, 5, 120, 48, true, HS, 1),
    (48, 5, 144, 48, true, HS, 1),
    (48, 5, 288, 96, true, HS, 2),
    (96, 5, 576, 96, true, HS, 1),
    (96, 5, 576, 96, true, HS, 1),
];

const BN_EPS: f32 = 0.001;
const BN_MOMENTUM: f32 = 0.01;

pub fn build(arch: &str, spec: &ArchSpec, device: Device) -> anyhow::Result<Graph> {
    let (blocks, last_channel): (&[Bneck], f64) = if arch == "mobilenetv3_large" { (&LARGE, 1280.0) } else { (&SMALL, 1024.0) };
    let adjust = |c: i64| make_divisible(c as f64 * spec.width, 8);
    let mut b = GraphBuilder::new(arch, 13, 3, spec.image_size, device);
    let x = b.input();
    let stem = adjust(16);
    let mut x = conv_bn_act(&mut b, "features.0", &x, ConvSpec::new(3, stem, 3, 2), Some(HS));
    for (i, &(cin, k, expanded, cout, se, act, stride)) in blocks.iter().enumerate() {
        if stride == 2 && i > 0 {
            b.end_stage(&x);
        }
        let (cin, expanded, cout) = (adjust(cin), adjust(expanded), adjust(cout));
        let p = format!("features.{}", i + 1);
        let mut y = x.clone();
        let mut j = 0;
        if expanded != cin {
            y = conv_bn_act(&mut b, &format!("{p}.block.{j}"), &y, ConvSpec::new(cin, expanded, 1, 1), Some(act));
            j += 1;
        }
        y = conv_bn_act(&mut b, &format!("{p}.block.{j}"), &y, ConvSpec::new(expanded, expanded, k, stride).groups(expanded), Some(act));
        j += 1;
        if se {
            y = squeeze_excite(&mut b, &format!("{p}.block.{j}"), &y, expanded);
            j += 1;
        }
        y = conv_bn_act(&mut b, &format!("{p}.block.{j}"), &y, ConvSpec::new(expanded, cout, 1, 1), None);
        if stride == 1 && cin == cout {
            y = b.add(&format!("{p}.add"), &y, &x);
        }
        x = y;
    }
    let last_in = adjust(blocks[blocks.len() - 1].3);
    let last_out = 6 * last_in;
    let x = conv_bn_act(&mut b, &format!("features.{}", blocks.len() + 1), &x, ConvSpec::new(last_in, last_out, 1, 1), Some(HS));
    b.end_stage(&x);
    let hidden = make_divisible(last_channel * spec.width, 8);
    let x = b.pool_flatten("avgpool", &x);
    let x = b.linear("classifier.0", &x, last_out, hidden);
    let x = b.hard_swish("classifier.1", &x);
    // classifier.2 is Dropout, the identity at inference.
    let x = b.linear("classifier.3", &x, hidden, spec.num_classes);
    Ok(b.finish(&x, spec.num_classes))
}

/// torchvision's `Conv2dNormActivation` with MobileNetV3's BatchNorm settings.
fn conv_bn_act(b: &mut GraphBuilder, p: &str, x: &str, spec: ConvSpec, act: Option<Act>) -> String {
    let y = b.conv(&format!("{p}.0"), x, spec);
    let y = b.batch_norm_with(&format!("{p}.1"), &y, spec.cout, BN_EPS, BN_MOMENTUM);
    match act {
        Some(Act::Relu) => b.relu(&format!("{p}.2"), &y),
        Some(Act::HardSwish) => b.hard_swish(&format!("{p}.2"), &y),
        None => y,
    }
}

/// Squeeze-and-excite: pooled → 1×1 conv (fc1) → ReLU → 1×1 conv (fc2) → Hardsigmoid, scaling
/// the input channel-wise.
fn squeeze_excite(b: &mut GraphBuilder, p: &str, x: &str, c: i64) -> String {
    let squeeze = make_divisible((c / 4) as f64, 8);
    let s = b.global_avg_pool(&format!("{p}.avgpool"), x);
    let s = b.conv(&format!("{p}.fc1"), &s, ConvSpec::new(c, squeeze, 1, 1).bias());
    let s = b.relu(&format!("{p}.relu"), &s);
    let s = b.conv(&format!("{p}.fc2"), &s, ConvSpec::new(squeeze, c, 1, 1).bias());
    let s = b.hard_sigmoid(&format!("{p}.scale"), &s);
    b.mul(&format!("{p}.mul"), x, &s)
}
