//! FitNets hint loss (Romero et al. 2015; methods.md §2.2, RepDistiller's single-stage variant),
//! one teacher: L = γ·CE + β·MSE(ConvReg(f_s), f_t) for each feature pair (default: the student's
//! and the teacher's `stage2`), the regressor trained jointly with the student.

use super::features::FeatureLevel;
use super::{ce_term, feature_weight, BatchOutputs, LossTerm, Method, Setup};
use crate::distill::losses::mse_per_sample;
use crate::recipe::schema::Distill;
use tch::{nn, Kind, Tensor};

pub struct FitNets {
    ce: f64,
    feat: f64,
    features: Option<FeatureLevel>,
}

pub fn build(cfg: &Distill, setup: &Setup) -> anyhow::Result<Box<dyn Method>> {
    Ok(Box::new(FitNets { ce: cfg.loss_weights.ce, feat: feature_weight(cfg), features: FeatureLevel::new(cfg, setup)? }))
}

impl Method for FitNets {
    fn losses(&self, batch: &BatchOutputs) -> anyhow::Result<Vec<LossTerm>> {
        let mut terms = vec![ce_term(self.ce, batch)];
        if let Some(features) = &self.features {
            let mut hint = Tensor::zeros([], (Kind::Float, batch.student.device()));
            for pair in features.project(batch) {
                hint += mse_per_sample(&pair[0].student, &pair[0].teacher).mean(Kind::Float);
            }
            terms.push(LossTerm { name: "feat", value: hint * self.feat });
        }
        Ok(terms)
    }

    fn teacher_weights(&self, _: &BatchOutputs) -> anyhow::Result<Option<Tensor>> {
        Ok(None)
    }

    fn modules(&self) -> Option<&nn::VarStore> {
        self.features.as_ref().map(|f| &f.vs)
    }
}
