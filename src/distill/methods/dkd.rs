//! DKD, decoupled KD (Zhao et al. 2022; methods.md §2.3), one teacher:
//! L = γ·CE + min(epoch / warmup, 1)·α_kd·(α·TCKD + β·NCKD), TCKD and NCKD batch means of the
//! per-sample parts (`losses::dkd_per_sample`). The warm-up is given in epochs or as a share of
//! the run (default: the papers' 20 of 240 epochs, so a short run keeps the method's shape).

use super::{ce_term, BatchOutputs, LossTerm, Method, Setup};
use crate::distill::losses::dkd_per_sample;
use crate::recipe::schema::{Distill, DkdOptions};
use tch::{Kind, Tensor};

pub struct Dkd {
    ce: f64,
    kd: f64,
    temperature: f64,
    o: DkdOptions,
    /// The warm-up's length in epochs.
    warmup: f64,
}

/// The papers' warm-up, 20 of 240 epochs, as a share of the run.
pub const PAPERS_WARMUP_SHARE: f64 = 20.0 / 240.0;

/// DKD's weights are finite and not negative; its warm-up is given one way.
pub fn check(cfg: &Distill, _: usize) -> Vec<String> {
    let o = cfg.dkd.clone().unwrap_or_default();
    let mut problems: Vec<String> =
        [super::number("distill.dkd.alpha", o.alpha, 0.0, true), super::number("distill.dkd.beta", o.beta, 0.0, true)].into_iter().flatten().collect();
    problems.extend(check_warmup("distill.dkd", o.warmup_epochs, o.warmup_share));
    problems
}

/// A warm-up is given in epochs or as a share of the run in [0, 1], not both.
pub fn check_warmup(section: &str, epochs: Option<usize>, share: Option<f64>) -> Vec<String> {
    let mut problems = Vec::new();
    if epochs.is_some() && share.is_some() {
        problems.push(format!("{section}: give warmup_epochs or warmup_share, not both"));
    }
    if let Some(s) = share {
        if !(s.is_finite() && (0.0..=1.0).contains(&s)) {
            problems.push(format!("{section}.warmup_share: must be a share of the run between 0 and 1, got {s}"));
        }
    }
    problems
}

/// The warm-up's length in epochs of a run of `run_epochs`.
pub fn warmup_length(epochs: Option<usize>, share: Option<f64>, run_epochs: usize) -> f64 {
    match (epochs, share) {
        (Some(e), _) => e as f64,
        (None, Some(s)) => s * run_epochs as f64,
        (None, None) => PAPERS_WARMUP_SHARE * run_epochs as f64,
    }
}

pub fn build(cfg: &Distill, setup: &Setup) -> anyhow::Result<Box<dyn Method>> {
    let o = cfg.dkd.clone().unwrap_or_default();
    let warmup = warmup_length(o.warmup_epochs, o.warmup_share, setup.epochs);
    Ok(Box::new(Dkd { ce: cfg.loss_weights.ce, kd: cfg.loss_weights.kd, temperature: cfg.temperature, o, warmup }))
}

/// The linear warm-up factor min(progress / length, 1), progress in epochs at the end of the
/// step (`BatchOutputs::progress`): at the end of epoch e it is the reference's min(e / length,
/// 1), and it rises step by step in between.
pub fn warmup(progress: f64, length: f64) -> f64 {
    if length <= 0.0 {
        1.0
    } else {
        (progress / length).min(1.0)
    }
}

impl Method for Dkd {
    fn losses(&self, batch: &BatchOutputs) -> anyhow::Result<Vec<LossTerm>> {
        let (tckd, nckd) = dkd_per_sample(batch.student, &batch.teachers[0], batch.labels, self.temperature);
        let ramp = warmup(batch.progress, self.warmup) * self.kd;
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
        assert_eq!(super::warmup(1.0, 20.0), 0.05);
        assert_eq!(super::warmup(10.0, 20.0), 0.5);
        assert_eq!(super::warmup(25.0, 20.0), 1.0);
        assert_eq!(super::warmup(1.0, 0.0), 1.0);
    }

    #[test]
    fn a_warmup_share_keeps_the_papers_shape_on_a_short_run() {
        // The default is the papers' 20 of 240 epochs: 20 epochs on their protocol, 1.25 of 15.
        assert_eq!(super::warmup_length(None, None, 240), 20.0);
        assert_eq!(super::warmup_length(None, None, 15), 1.25);
        assert_eq!(super::warmup(1.0, super::warmup_length(None, None, 15)), 0.8);
        // A warm-up shorter than an epoch (the default on a 10-epoch run: 0.83 epochs) still
        // ramps step by step within the first epoch.
        let short = super::warmup_length(None, None, 10);
        assert!((super::warmup(0.25, short) - 0.3).abs() < 1e-12);
        assert_eq!(super::warmup(0.9, short), 1.0);
        assert_eq!(super::warmup_length(Some(5), None, 15), 5.0);
        assert_eq!(super::warmup_length(None, Some(0.5), 10), 5.0);
        assert_eq!(super::check_warmup("distill.dkd", Some(2), Some(0.1)), ["distill.dkd: give warmup_epochs or warmup_share, not both"]);
        assert_eq!(super::check_warmup("distill.dkd", None, Some(1.5)).len(), 1);
    }
}
