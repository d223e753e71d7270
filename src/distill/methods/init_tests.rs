//! The methods' own modules start as PyTorch starts the reference's (distill::init): the
//! connectors of every kind, MMKD's weight networks and MGD's encoders and heads, checked on the
//! bounds and on BatchNorm's γ and β, through the methods' own builders.

use super::{build, Setup};
use crate::distill::init::default_bound;
use crate::host::HostRead;
use crate::recipe::schema::{ConnectorKind, Distill, FeaturePair, LossWeights};
use tch::{Device, Tensor};

fn setup(student: Vec<Vec<i64>>, teachers: Vec<Vec<Vec<i64>>>) -> Setup {
    let n = teachers.len();
    Setup {
        teachers: n,
        num_classes: 10,
        student_shapes: student,
        teacher_shapes: teachers,
        teacher_heads: (0..n).map(|_| None).collect(),
        device: Device::Cpu,
        batch_size: 8,
        epochs: 10,
        seed: 7,
    }
}

/// Every trainable or learned tensor of a built method, by name: its modules and its state
/// (optimizer moments left out).
fn tensors(cfg: &Distill, s: &Setup) -> Vec<(String, Tensor)> {
    let m = build(cfg, s).unwrap();
    let mut all: Vec<(String, Tensor)> = m.modules().map(|vs| vs.variables().into_iter().collect()).unwrap_or_default();
    all.extend(m.state().into_iter().filter(|(n, _)| !n.contains("_adam.")));
    all.sort_by(|a, b| a.0.cmp(&b.0));
    all
}

/// Checks PyTorch's rules on every module of `all` and returns how many modules of each
/// kind (linear or conv, batch norm) it saw.
fn check(all: &[(String, Tensor)]) -> (usize, usize) {
    let names: Vec<&str> = all.iter().map(|(n, _)| n.as_str()).collect();
    let (mut dense, mut norms) = (0, 0);
    for (name, t) in all {
        let Some(module) = name.strip_suffix(".weight") else { continue };
        if names.contains(&format!("{module}.running_mean").as_str()) {
            assert_eq!(t.min().read_f64(), 1.0, "{name}: BatchNorm γ must be 1");
            assert_eq!(t.max().read_f64(), 1.0, "{name}: BatchNorm γ must be 1");
            let b = &all.iter().find(|(n, _)| *n == format!("{module}.bias")).unwrap().1;
            assert_eq!(b.abs().max().read_f64(), 0.0, "{module}.bias: BatchNorm β must be 0");
            norms += 1;
            continue;
        }
        let bound = default_bound(&t.size());
        let largest = t.abs().max().read_f64();
        assert!(largest <= bound, "{name}: largest |w| {largest} above PyTorch's bound {bound} (shape {:?})", t.size());
        if t.numel() >= 200 {
            assert!(largest > 0.9 * bound, "{name}: largest |w| {largest} does not fill U(±{bound})");
        }
        if let Some((_, b)) = all.iter().find(|(n, _)| *n == format!("{module}.bias")) {
            assert!(b.abs().max().read_f64() <= bound, "{module}.bias above PyTorch's bound {bound}");
        }
        dense += 1;
    }
    (dense, norms)
}

fn cfg(method: &str, feat: Option<f64>, pairs: Option<Vec<FeaturePair>>) -> Distill {
    Distill { method: method.into(), loss_weights: LossWeights { ce: 1.0, kd: 1.0, feat }, features: pairs, ..Default::default() }
}

#[test]
fn connectors_of_every_kind_start_as_pytorch_starts_them() {
    // ConvReg down (stride-2 conv) for teacher 0, up (transposed conv) for teacher 1.
    let s = setup(vec![vec![1, 16, 16, 16]], vec![vec![vec![1, 32, 8, 8]], vec![vec![1, 24, 32, 32]]]);
    let (dense, norms) = check(&tensors(&cfg("fitnet_mkd", None, None), &s));
    assert_eq!((dense, norms), (2, 2));
    let embed3 = vec![FeaturePair { student: "last_stage".into(), teacher: "last_stage".into(), connector: Some(ConnectorKind::Embed3) }];
    let (dense, norms) = check(&tensors(&cfg("de_mkd", None, Some(embed3)), &s));
    assert_eq!((dense, norms), (6, 6));
}

#[test]
fn mmkd_weight_networks_and_mgd_heads_start_as_pytorch_starts_them() {
    let s = setup(vec![vec![1, 64, 8, 8]], vec![vec![vec![1, 32, 4, 4]], vec![vec![1, 128, 2, 2]]]);
    // Two weight networks of two Linear layers each, and one Embed per teacher.
    assert_eq!(check(&tensors(&cfg("mmkd", None, None), &s)), (6, 2));
    let pooled = setup(vec![vec![1, 64]], vec![vec![vec![1, 100]], vec![vec![1, 48]]]);
    // Per teacher: 2 student encoders and 2 branches (encoder + decoder) of 2 Linear layers.
    assert_eq!(check(&tensors(&cfg("mgd", None, None), &pooled)), (24, 0));
}

#[test]
fn a_seed_fixes_the_modules() {
    let s = setup(vec![vec![1, 64, 8, 8]], vec![vec![vec![1, 32, 4, 4]], vec![vec![1, 128, 2, 2]]]);
    let draw = |seed| tensors(&cfg("mmkd", None, None), &Setup { seed, ..setup(s.student_shapes.clone(), s.teacher_shapes.clone()) });
    let (a, b, other) = (draw(7), draw(7), draw(8));
    for ((n, a), (_, b)) in a.iter().zip(&b) {
        assert!(a.equal(b), "{n} differs between two builds from one seed");
    }
    assert!(a.iter().zip(&other).any(|((_, x), (_, y))| !x.equal(y)), "another seed gives the same modules");
}
