//! Accuracy and fidelity figures on logits: top-k accuracy, top-1 agreement between two models,
//! and the max relative difference used by `inspect --verify` (‖a − b‖∞ / ‖b‖∞).

use crate::host::HostRead;
use tch::{Kind, Tensor};

/// Fraction of rows whose label is among the `k` largest logits.
pub fn top_k(logits: &Tensor, labels: &Tensor, k: i64) -> f64 {
    let k = k.min(logits.size()[1]);
    let (_, idx) = logits.topk(k, 1, true, true);
    let hit = idx.eq_tensor(&labels.unsqueeze(1)).any_dim(1, false);
    hit.to_kind(Kind::Double).mean(Kind::Double).read_f64()
}

/// Fraction of rows where both models predict the same class.
pub fn agreement(a: &Tensor, b: &Tensor) -> f64 {
    a.argmax(1, false).eq_tensor(&b.argmax(1, false)).to_kind(Kind::Double).mean(Kind::Double).read_f64()
}

pub fn max_abs_diff(ours: &Tensor, reference: &Tensor) -> f64 {
    (ours.to_kind(Kind::Double) - reference.to_kind(Kind::Double)).abs().max().read_f64()
}

/// The mean of |ours − reference| over every element: where `max_abs_diff` finds the worst
/// value, this says how far a model sits from its reference on average (a bf16 teacher's
/// logits from ONNX Runtime's fp32 ones).
pub fn mean_abs_diff(ours: &Tensor, reference: &Tensor) -> f64 {
    (ours.to_kind(Kind::Double) - reference.to_kind(Kind::Double)).abs().mean(Kind::Double).read_f64()
}

/// ‖ours − reference‖∞ / ‖reference‖∞ (0 when both are zero).
pub fn max_rel_diff(ours: &Tensor, reference: &Tensor) -> f64 {
    let denom = reference.to_kind(Kind::Double).abs().max().read_f64();
    let num = max_abs_diff(ours, reference);
    if denom == 0.0 {
        num
    } else {
        num / denom
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn accuracy_and_agreement_on_known_values() {
        let logits = Tensor::from_slice(&[0.1f32, 0.9, 0.8, 0.2, 0.3, 0.7]).reshape([3, 2]);
        let labels = Tensor::from_slice(&[1i64, 1, 1]);
        assert!((top_k(&logits, &labels, 1) - 2.0 / 3.0).abs() < 1e-12);
        assert_eq!(top_k(&logits, &labels, 2), 1.0);
        let other = Tensor::from_slice(&[0.9f32, 0.1, 0.8, 0.2, 0.3, 0.7]).reshape([3, 2]);
        assert!((agreement(&logits, &other) - 2.0 / 3.0).abs() < 1e-12);
        let r = Tensor::from_slice(&[2.0f32, -4.0]);
        let o = Tensor::from_slice(&[2.5f32, -4.0]);
        assert!((max_rel_diff(&o, &r) - 0.125).abs() < 1e-12);
        let o = Tensor::from_slice(&[2.5f32, -5.5]);
        assert!((mean_abs_diff(&o, &r) - 1.0).abs() < 1e-12 && (max_abs_diff(&o, &r) - 1.5).abs() < 1e-12);
    }
}
