//! `none`: the student trained on labels only, the no-teacher baseline of every comparison.

use super::{ce_term, BatchOutputs, LossTerm, Method, Setup};
use crate::recipe::schema::Distill;
use tch::Tensor;

pub struct LabelsOnly {
    pub ce: f64,
}

pub fn build(cfg: &Distill, _: &Setup) -> anyhow::Result<Box<dyn Method>> {
    Ok(Box::new(LabelsOnly { ce: cfg.loss_weights.ce }))
}

impl Method for LabelsOnly {
    fn needs_teachers(&self) -> bool {
        false
    }

    fn losses(&self, batch: &BatchOutputs) -> anyhow::Result<Vec<LossTerm>> {
        Ok(vec![ce_term(self.ce, batch)])
    }

    fn teacher_weights(&self, _: &BatchOutputs) -> anyhow::Result<Option<Tensor>> {
        Ok(None)
    }
}
