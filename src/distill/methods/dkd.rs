//! DKD, decoupled KD (Zhao et al. 2022; methods.md §2.3), one teacher:
//! L = γ·CE + min(epoch / warmup, 1)·α_kd·(α·TCKD + β·NCKD), TCKD and NCKD batch means of the
//! per-sample parts (`losses::dkd_per_sample`).

use super::{ce_term, BatchOutputs, LossTerm, Method, Setup};
use crate::distill::losses::dkd_per_sample;
use crate::recipe::schema::{Distill, DkdOptions};
use tch::{Kind, Tensor};

pub struct Dkd {
    ce: f64,
    kd: f64,
    temperature: f64,
    o: DkdOptions,
}

/// DKD's weights are finite and not negative.
pub fn check(cfg: &Distill, _: usize) -> Vec<String> {
    let o = cfg.dkd.clone().unwrap_or_default();
    [super::number("distill.dkd.alpha", o.alpha, 0.0, true), super::number("distill.dkd.beta", o.beta, 0.0, true)].into_iter().flatten().collect()
}

pub fn build(cfg: &Distill, _: &Setup) -> anyhow::Result<Box<dyn Method>> {
    Ok(Box::new(Dkd { ce: cfg.loss_weights.ce, kd: cfg.loss_weights.kd, temperature: cfg.temperature, o: cfg.dkd.clone().unwrap_or_default() }))
}

/// The linear warm-up factor min(epoch / warmup, 1), epochs counted from 1.
pub fn warmup(epoch: usize, warmup_epochs: usize) -> f64 {
    if warmup_epochs == 0 {
        1.0
    } else {
        (epoch as f64 / warmup_epochs as f64).min(1.0)
    }
}

impl Method for Dkd {
    fn losses(&self, batch: &BatchOutputs) -> anyhow::Result<Vec<LossTerm>> {
        let (tckd, nckd) = dkd_per_sample(batch.student, &batch.teachers[0], batch.labels, self.temperature);
        let ramp = warmup(batch.epoch, self.o.warmup_epochs) * self.kd;
        Ok(vec![
            ce_term(self.ce, batch),
            LossTerm { name: "tckd", value: tckd.mean(Kind::Float) * (self.o.alpha * ramp) },
            LossTerm { name: "nckd", value: nckd.mean(Kind::Float) * (self.o.beta * ramp) },
        ])
    }

    fn teacher_weights(&self, _: &BatchOutputs) -> anyhow::Result<Option<Tensor>> {
        Ok(None)
    }
}

#[cfg(test)]
mod tests {
    #[test]
    fn warmup_ramps_linearly_from_epoch_one() {
        assert_eq!(super::warmup(1, 20), 0.05);
        assert_eq!(super::warmup(10, 20), 0.5);
        assert_eq!(super::warmup(25, 20), 1.0);
        assert_eq!(super::warmup(1, 0), 1.0);
    }
}
