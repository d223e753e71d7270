//! EBKD, entropy-based weighting (methods.md §3.3): per sample and teacher, the entropy of the
//! teacher's prediction at T = 1, w_k(i) = 1 − H_k(i) / Σ_j H_j(i) (the weights sum to K − 1),
//! and L_div = Σ_{i,k} w_k(i)·KL_k(i) / (B·K). The weights are constants.

use super::{ce_term, stack_teachers, BatchOutputs, LossTerm, Method, Setup};
use crate::distill::losses::{entropy, kd_per_sample};
use crate::recipe::schema::Distill;
use tch::{Kind, Tensor};

pub struct Ebkd {
    ce: f64,
    kd: f64,
    temperature: f64,
}

/// EBKD weighs teachers against each other: with one teacher its weight would be 0.
pub fn check(_: &Distill, teachers: usize) -> Vec<String> {
    if teachers == 1 {
        return vec!["distill.method: ebkd weighs teachers against each other (1 − H_k/ΣH); with one teacher its weight is 0, use kd".into()];
    }
    Vec::new()
}

pub fn build(cfg: &Distill, _: &Setup) -> anyhow::Result<Box<dyn Method>> {
    Ok(Box::new(Ebkd { ce: cfg.loss_weights.ce, kd: cfg.loss_weights.kd, temperature: cfg.temperature }))
}

/// EBKD weights [K, B] from teacher logits (each [B, C]).
pub fn entropy_weights(teachers: &[Tensor]) -> Tensor {
    let h = Tensor::stack(&teachers.iter().map(|z| entropy(z, 1.0)).collect::<Vec<_>>(), 0);
    1.0 - &h / h.sum_dim_intlist(0, true, Kind::Float)
}

impl Method for Ebkd {
    fn losses(&self, batch: &BatchOutputs) -> anyhow::Result<Vec<LossTerm>> {
        let w = entropy_weights(batch.teachers);
        let kl = stack_teachers(batch, |z| kd_per_sample(batch.student, z, self.temperature));
        let (k, b) = (kl.size()[0], kl.size()[1]);
        let kd = (w * kl).sum(Kind::Float) / (k * b) as f64;
        Ok(vec![ce_term(self.ce, batch), LossTerm { name: "kd", value: kd * self.kd }])
    }

    fn teacher_weights(&self, batch: &BatchOutputs) -> anyhow::Result<Option<Tensor>> {
        Ok(Some(entropy_weights(batch.teachers)))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::distill::golden::case;
    use crate::distill::losses::golden::{assert_close, student, teachers, values, T};
    use crate::host::HostRead;

    #[test]
    fn weights_match_methods_md_and_pytorch() {
        let w = entropy_weights(&teachers());
        assert_close(&values(&w), &[0.795477, 0.71387, 0.55809, 0.490712, 0.646433, 0.795418], 1e-5);
        let kl = Tensor::stack(&teachers().iter().map(|z| kd_per_sample(&student(), z, T)).collect::<Vec<_>>(), 0);
        let loss = (&w * &kl).sum(Kind::Float).read_f64() / 6.0;
        assert!((loss - 0.256271).abs() < 1e-5, "EBKD loss of methods.md §6.7: {loss}");
        let c = case("ebkd");
        let ts = c.per_teacher("teachers");
        c.check("weights", &entropy_weights(&ts), 1e-5);
        let kl = Tensor::stack(&ts.iter().map(|z| kd_per_sample(&c.input("student"), z, c.param("T"))).collect::<Vec<_>>(), 0);
        let loss = (entropy_weights(&ts) * &kl).sum(Kind::Float) / (kl.size()[0] * kl.size()[1]) as f64;
        c.check("loss", &loss, 1e-5);
    }
}
