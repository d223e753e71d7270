//! Vanilla KD (Hinton et al. 2015; methods.md §2.1), one teacher:
//! L = γ·CE + α·(1/B)·Σ_i T²·KL(p^T(z_t) ‖ p^T(z_s)).

use super::{ce_term, BatchOutputs, LossTerm, Method, Setup};
use crate::distill::losses::kd_per_sample;
use crate::recipe::schema::Distill;
use tch::{Kind, Tensor};

pub struct Kd {
    ce: f64,
    kd: f64,
    temperature: f64,
}

pub fn build(cfg: &Distill, _: &Setup) -> anyhow::Result<Box<dyn Method>> {
    Ok(Box::new(Kd { ce: cfg.loss_weights.ce, kd: cfg.loss_weights.kd, temperature: cfg.temperature }))
}

impl Method for Kd {
    fn losses(&self, batch: &BatchOutputs) -> anyhow::Result<Vec<LossTerm>> {
        let kd = kd_per_sample(batch.student, &batch.teachers[0], self.temperature).mean(Kind::Float);
        Ok(vec![ce_term(self.ce, batch), LossTerm { name: "kd", value: kd * self.kd }])
    }

    fn teacher_weights(&self, _: &BatchOutputs) -> anyhow::Result<Option<Tensor>> {
        Ok(None)
    }
}
