//! CA-MKD's logit level (methods.md §3.5): per-sample teacher weights from each teacher's
//! cross-entropy on the label, w_k(i) = (1 − softmax_k(CE_·(i))_k) / (K − 1), and
//! L_div = Σ_{i,k} w_k(i)·KL_k(i) / (B·K) (the reference's extra 1/K is kept on purpose).
//! The weights are constants: teacher outputs carry no gradient.

use super::{ce_term, BatchOutputs, LossTerm, Method};
use crate::distill::losses::{ce_per_sample, kd_per_sample};
use tch::{Kind, Tensor};

pub struct CaMkd {
    pub ce: f64,
    pub kd: f64,
    pub temperature: f64,
}

/// Confidence weights [K, B] from teacher logits (each [B, C]) and labels [B]. With one
/// teacher the weight is 1.
pub fn confidence_weights(teachers: &[Tensor], labels: &Tensor) -> Tensor {
    let k = teachers.len() as i64;
    let ce = Tensor::stack(&teachers.iter().map(|z| ce_per_sample(z, labels)).collect::<Vec<_>>(), 0);
    if k == 1 {
        return ce.ones_like();
    }
    (1.0 - ce.softmax(0, Kind::Float)) / (k - 1) as f64
}

/// The unweighted CA-MKD logit term (scalar).
pub fn ca_mkd_kd(student: &Tensor, teachers: &[Tensor], labels: &Tensor, t: f64) -> Tensor {
    let w = confidence_weights(teachers, labels);
    let kl = Tensor::stack(&teachers.iter().map(|z| kd_per_sample(student, z, t)).collect::<Vec<_>>(), 0);
    let (k, b) = (kl.size()[0], kl.size()[1]);
    (w * kl).sum(Kind::Float) / (k * b) as f64
}

impl Method for CaMkd {
    fn name(&self) -> &'static str {
        "ca_mkd"
    }

    fn losses(&self, batch: &BatchOutputs) -> anyhow::Result<Vec<LossTerm>> {
        let kd = ca_mkd_kd(batch.student, batch.teachers, batch.labels, self.temperature);
        Ok(vec![ce_term(self.ce, batch), LossTerm { name: "kd", value: kd * self.kd }])
    }

    fn teacher_weights(&self, batch: &BatchOutputs) -> Option<Tensor> {
        Some(confidence_weights(batch.teachers, batch.labels).mean_dim(1, false, Kind::Float))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::distill::losses::golden::*;

    #[test]
    fn weights_and_loss_match_methods_md_golden_values() {
        let w = confidence_weights(&teachers(), &labels());
        assert_close(&values(&w), &[0.451412, 0.402057, 0.410583, 0.186718, 0.138004, 0.411224], 1e-5);
        let sums = values(&w.sum_dim_intlist(0, false, Kind::Float));
        assert_close(&sums, &[1.0, 1.0], 1e-6);
        let loss = ca_mkd_kd(&student(), &teachers(), &labels(), T).double_value(&[]);
        assert!((loss - 0.126397).abs() < 1e-5, "{loss}");
    }
}
