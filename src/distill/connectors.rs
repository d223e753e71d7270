//! Connectors that map a student feature map onto a teacher's (methods.md §1.3), trained with
//! the student and never exported:
//! - `Embed`: conv1×1 (bias) → BN → ReLU; `Embed3` halves the channels through conv1×1 → BN → ReLU
//!   → conv3×3 → BN → ReLU → conv1×1 → BN → ReLU (CA-MKD / MMKD, `convs=True`, factor 2);
//! - `ConvReg` (FitNets, RepDistiller): a stride-2 3×3 conv when the student map is twice the
//!   teacher's size, a 4×4 stride-2 transposed conv when it is half, a (1+ΔH)×(1+ΔW) conv when it
//!   is at least as large, else a 3×3 conv (after bilinear upsampling when it is a quarter); each
//!   followed by BN and ReLU.
//!
//! The spatial alignment rules that go in front of `Embed` are here too.

use crate::bad_input;
pub use crate::recipe::schema::ConnectorKind;
use tch::nn::{self, Module, ModuleT};
use tch::Tensor;

enum Layer {
    Conv(nn::Conv2D),
    Transposed(nn::ConvTranspose2D),
    Norm(nn::BatchNorm),
    Relu,
    /// Bilinear resize to a square size.
    Upsample(i64),
}

pub struct Connector {
    layers: Vec<Layer>,
}

fn conv(p: &nn::Path, name: &str, cin: i64, cout: i64, k: [i64; 2], stride: i64, pad: i64) -> Layer {
    let cfg = nn::ConvConfigND { stride: [stride, stride], padding: [pad, pad], ..Default::default() };
    Layer::Conv(nn::conv(p / name, cin, cout, k, cfg))
}

fn norm(p: &nn::Path, name: &str, c: i64) -> Layer {
    Layer::Norm(nn::batch_norm2d(p / name, c, Default::default()))
}

impl Connector {
    /// A connector from a student map [s_C, s_H, s_W] to a teacher map [t_C, t_H, t_W], its
    /// parameters under `p`. `Embed` kinds expect the student map already aligned to the
    /// teacher's size (`align_ca_mkd`).
    pub fn new(p: &nn::Path, kind: ConnectorKind, student: &[i64], teacher: &[i64]) -> anyhow::Result<Connector> {
        let ([sc, sh, sw], [tc, th, tw]) = (chw(student)?, chw(teacher)?);
        let layers = match kind {
            ConnectorKind::Embed => vec![conv(p, "conv", sc, tc, [1, 1], 1, 0), norm(p, "bn", tc), Layer::Relu],
            ConnectorKind::Embed3 => {
                let mid = (sc / 2).max(1);
                vec![
                    conv(p, "conv1", sc, mid, [1, 1], 1, 0),
                    norm(p, "bn1", mid),
                    Layer::Relu,
                    conv(p, "conv2", mid, mid, [3, 3], 1, 1),
                    norm(p, "bn2", mid),
                    Layer::Relu,
                    conv(p, "conv3", mid, tc, [1, 1], 1, 0),
                    norm(p, "bn3", tc),
                    Layer::Relu,
                ]
            }
            ConnectorKind::ConvReg => {
                let mut layers = Vec::new();
                if sh == 2 * th {
                    layers.push(conv(p, "conv", sc, tc, [3, 3], 2, 1));
                } else if 2 * sh == th {
                    let cfg = nn::ConvTransposeConfig { stride: 2, padding: 1, ..Default::default() };
                    layers.push(Layer::Transposed(nn::conv_transpose2d(p / "conv", sc, tc, 4, cfg)));
                } else if sh >= th && sw >= tw {
                    layers.push(conv(p, "conv", sc, tc, [1 + sh - th, 1 + sw - tw], 1, 0));
                } else {
                    if 4 * sh == th {
                        layers.push(Layer::Upsample(th));
                    }
                    layers.push(conv(p, "conv", sc, tc, [3, 3], 1, 1));
                }
                layers.push(norm(p, "bn", tc));
                layers.push(Layer::Relu);
                layers
            }
        };
        Ok(Connector { layers })
    }

    pub fn forward(&self, x: &Tensor, train: bool) -> Tensor {
        let mut y = x.shallow_clone();
        for layer in &self.layers {
            y = match layer {
                Layer::Conv(c) => c.forward(&y),
                Layer::Transposed(c) => c.forward(&y),
                Layer::Norm(bn) => bn.forward_t(&y, train),
                Layer::Relu => y.relu(),
                Layer::Upsample(size) => y.upsample_bilinear2d([*size, *size], false, None, None),
            };
        }
        y
    }
}

/// [C, H, W] of a feature map's shape with or without its batch axis.
fn chw(shape: &[i64]) -> anyhow::Result<[i64; 3]> {
    match shape {
        [c, h, w] | [_, c, h, w] => Ok([*c, *h, *w]),
        other => Err(bad_input!("a feature connector needs a [C, H, W] feature map, got shape {other:?}")),
    }
}

/// CA-MKD's alignment: the student map average-pooled down to the teacher's size when it is at
/// least as large, bilinearly upsampled otherwise.
pub fn align_ca_mkd(student: &Tensor, teacher_hw: [i64; 2]) -> Tensor {
    let (sh, sw) = (student.size()[2], student.size()[3]);
    if [sh, sw] == teacher_hw {
        student.shallow_clone()
    } else if sh >= teacher_hw[0] {
        student.adaptive_avg_pool2d(teacher_hw)
    } else {
        student.upsample_bilinear2d(teacher_hw, false, None, None)
    }
}

/// MMKD's alignment: the larger of the two maps is average-pooled to the smaller one's size.
/// Returns (student, teacher).
pub fn align_mmkd(student: &Tensor, teacher: &Tensor) -> (Tensor, Tensor) {
    let (sh, th) = (student.size()[2], teacher.size()[2]);
    if sh > th {
        (student.adaptive_avg_pool2d([th, teacher.size()[3]]), teacher.shallow_clone())
    } else if th > sh {
        (student.shallow_clone(), teacher.adaptive_avg_pool2d([sh, student.size()[3]]))
    } else {
        (student.shallow_clone(), teacher.shallow_clone())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::distill::golden::case;
    use tch::Device;

    /// Builds the connector, loads the fixture's weights into it by name, runs one training-mode
    /// forward and compares the output and the BatchNorm running statistics with PyTorch's.
    fn check(case_name: &'static str, kind: ConnectorKind, weights: &[(&str, &str)], norms: &[(&str, &str)]) {
        let c = case(case_name);
        let x = c.input("x");
        let out = c.expected("out");
        let vs = nn::VarStore::new(Device::Cpu);
        let conn = Connector::new(&vs.root(), kind, &x.size(), &out.size()).unwrap();
        let vars = vs.variables();
        tch::no_grad(|| {
            for (ours, theirs) in weights {
                let mut v = vars.get(*ours).unwrap_or_else(|| panic!("no `{ours}` in {:?}", vars.keys())).shallow_clone();
                let src = c.input(theirs);
                assert_eq!(v.size(), src.size(), "{case_name}: {ours}");
                v.copy_(&src);
            }
        });
        c.check("out", &conn.forward(&x, true), 1e-5);
        for (ours, theirs) in norms {
            c.check(&format!("{theirs}_running_mean"), &vars[&format!("{ours}.running_mean")], 1e-5);
            c.check(&format!("{theirs}_running_var"), &vars[&format!("{ours}.running_var")], 1e-5);
        }
    }

    fn single(prefix: &str) -> Vec<(String, String)> {
        [("conv.weight", "conv_weight"), ("conv.bias", "conv_bias"), ("bn.weight", "bn_weight"), ("bn.bias", "bn_bias")]
            .iter()
            .map(|(a, b)| (a.to_string(), format!("{prefix}{b}")))
            .collect()
    }

    fn pairs(v: &[(String, String)]) -> Vec<(&str, &str)> {
        v.iter().map(|(a, b)| (a.as_str(), b.as_str())).collect()
    }

    #[test]
    fn embed_matches_pytorch() {
        check("embed", ConnectorKind::Embed, &pairs(&single("")), &[("bn", "bn")]);
    }

    #[test]
    fn embed_with_three_convs_matches_pytorch() {
        let mut w = Vec::new();
        for i in 1..=3 {
            for (a, b) in [("conv", "weight"), ("conv", "bias"), ("bn", "weight"), ("bn", "bias")] {
                w.push((format!("{a}{i}.{b}"), format!("{a}{i}_{b}")));
            }
        }
        check("embed_convs", ConnectorKind::Embed3, &pairs(&w), &[("bn1", "bn1"), ("bn2", "bn2"), ("bn3", "bn3")]);
    }

    #[test]
    fn conv_reg_matches_pytorch_in_all_four_spatial_cases() {
        for name in ["convreg_down2", "convreg_up2", "convreg_shrink", "convreg_same"] {
            check(name, ConnectorKind::ConvReg, &pairs(&single("")), &[("bn", "bn")]);
        }
    }

    #[test]
    fn alignment_rules() {
        let s = Tensor::randn([2, 3, 8, 8], (tch::Kind::Float, Device::Cpu));
        assert_eq!(align_ca_mkd(&s, [4, 4]).size(), [2, 3, 4, 4]);
        assert_eq!(align_ca_mkd(&s, [16, 16]).size(), [2, 3, 16, 16]);
        let t = Tensor::randn([2, 5, 4, 4], (tch::Kind::Float, Device::Cpu));
        let (a, b) = align_mmkd(&s, &t);
        assert_eq!((a.size(), b.size()), (vec![2, 3, 4, 4], vec![2, 5, 4, 4]));
        let (a, b) = align_mmkd(&t, &s);
        assert_eq!((a.size(), b.size()), (vec![2, 5, 4, 4], vec![2, 3, 4, 4]));
    }
}
