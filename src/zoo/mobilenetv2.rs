//! MobileNetV2 for CIFAR as RepDistiller builds it (`mobilenetv2_T_w`; `mobile_half` is width
//! 0.5), the student of the multi-teacher papers: a stride-2 3×3 stem, seven groups of inverted
//! residual blocks that always expand (1×1, ReLU), filter depthwise (3×3, ReLU) and project
//! linearly (1×1), a 1×1 head to 1280 channels (1280·w above width 1), global pooling and a
//! linear classifier. Channel counts are `int(c · w)` as in the reference; the names follow its
//! modules (`blocks.2.1.conv.3.weight`), so its checkpoints load by name.

use super::ArchSpec;
use crate::bad_input;
use crate::graph::builder::{ConvSpec, GraphBuilder};
use crate::graph::Graph;
use tch::Device;

/// (expansion t, channels c, repeats n, first stride s); the first group never expands (t = 1).
const SETTINGS: [(i64, i64, i64, i64); 7] = [(1, 16, 1, 1), (6, 24, 2, 1), (6, 32, 3, 2), (6, 64, 4, 2), (6, 96, 3, 1), (6, 160, 3, 2), (6, 320, 1, 1)];

/// The block groups whose output RepDistiller returns as a feature (f1 … f4): the stage taps.
const STAGE_ENDS: [usize; 4] = [1, 2, 4, 6];

fn scaled(c: i64, width: f64) -> anyhow::Result<i64> {
    let v = (c as f64 * width) as i64;
    if v < 1 {
        return Err(bad_input!("student.width {width} leaves a MobileNetV2 layer of {c} channels with none"));
    }
    Ok(v)
}

pub fn build(arch: &str, spec: &ArchSpec, device: Device) -> anyhow::Result<Graph> {
    let w = spec.width;
    let mut b = GraphBuilder::new(arch, 13, 3, spec.image_size, device);
    let x = b.input();
    let mut cin = scaled(32, w)?;
    let x = b.conv("conv1.0", &x, ConvSpec::new(3, cin, 3, 2));
    let x = b.batch_norm("conv1.1", &x, cin);
    let mut x = b.relu("conv1.2", &x);
    for (g, (t, c, n, s)) in SETTINGS.into_iter().enumerate() {
        let cout = scaled(c, w)?;
        for i in 0..n {
            let stride = if i == 0 { s } else { 1 };
            x = inverted_residual(&mut b, &format!("blocks.{g}.{i}"), &x, cin, cout, stride, t);
            cin = cout;
        }
        if STAGE_ENDS.contains(&g) {
            b.end_stage(&x);
        }
    }
    let head = if w > 1.0 { (1280.0 * w) as i64 } else { 1280 };
    let x = b.conv("conv2.0", &x, ConvSpec::new(cin, head, 1, 1));
    let x = b.batch_norm("conv2.1", &x, head);
    let x = b.relu("conv2.2", &x);
    let x = b.pool_flatten("avgpool", &x);
    let x = b.linear("classifier.0", &x, head, spec.num_classes);
    Ok(b.finish(&x, spec.num_classes))
}

fn inverted_residual(b: &mut GraphBuilder, p: &str, x: &str, cin: i64, cout: i64, stride: i64, t: i64) -> String {
    let hidden = cin * t;
    let y = b.conv(&format!("{p}.conv.0"), x, ConvSpec::new(cin, hidden, 1, 1));
    let y = b.batch_norm(&format!("{p}.conv.1"), &y, hidden);
    let y = b.relu(&format!("{p}.conv.2"), &y);
    let y = b.conv(&format!("{p}.conv.3"), &y, ConvSpec::new(hidden, hidden, 3, stride).groups(hidden));
    let y = b.batch_norm(&format!("{p}.conv.4"), &y, hidden);
    let y = b.relu(&format!("{p}.conv.5"), &y);
    let y = b.conv(&format!("{p}.conv.6"), &y, ConvSpec::new(hidden, cout, 1, 1));
    let y = b.batch_norm(&format!("{p}.conv.7"), &y, cout);
    if stride == 1 && cin == cout {
        b.add(&format!("{p}.add"), &y, x)
    } else {
        y
    }
}
