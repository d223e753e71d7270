//! FitNet-MKD (methods.md §3.2): AVER's logit term plus one ConvReg per teacher at the hint
//! point, L_kd = mean_k MSE(ConvReg_k(f_s), f_k), from epoch 2 (the multi-teacher loops drop the
//! feature term in the first epoch). The reference averages the hint losses through a fresh
//! tensor, which detaches them (its regressors never train); `fitnet_mkd.reproduce_detach_bug`
//! does the same, the default keeps them differentiable.

use super::aver::aver_kd;
use super::features::FeatureLevel;
use super::{ce_term, feature_weight, BatchOutputs, LossTerm, Method, Setup};
use crate::distill::losses::mse_per_sample;
use crate::recipe::schema::Distill;
use tch::{nn, Kind, Tensor};

pub struct FitnetMkd {
    ce: f64,
    kd: f64,
    feat: f64,
    temperature: f64,
    detach_bug: bool,
    features: Option<FeatureLevel>,
}

pub fn build(cfg: &Distill, setup: &Setup) -> anyhow::Result<Box<dyn Method>> {
    Ok(Box::new(FitnetMkd {
        ce: cfg.loss_weights.ce,
        kd: cfg.loss_weights.kd,
        feat: feature_weight(cfg),
        temperature: cfg.temperature,
        detach_bug: cfg.fitnet_mkd.as_ref().is_some_and(|o| o.reproduce_detach_bug),
        features: FeatureLevel::new(cfg, setup)?,
    }))
}

impl Method for FitnetMkd {
    fn losses(&self, batch: &BatchOutputs) -> anyhow::Result<Vec<LossTerm>> {
        let kd = aver_kd(batch.student, batch.teachers, self.temperature);
        let mut terms = vec![ce_term(self.ce, batch), LossTerm { name: "kd", value: kd * self.kd }];
        if let Some(features) = &self.features {
            let mut hint = Tensor::zeros([], (Kind::Float, batch.student.device()));
            if batch.epoch > 1 {
                for pair in features.project(batch) {
                    let per_teacher: Vec<Tensor> = pair.iter().map(|p| mse_per_sample(&p.student, &p.teacher).mean(Kind::Float)).collect();
                    hint += Tensor::stack(&per_teacher, 0).mean(Kind::Float);
                }
                if self.detach_bug {
                    hint = hint.detach();
                }
            }
            terms.push(LossTerm { name: "feat", value: hint * self.feat });
        }
        Ok(terms)
    }

    fn teacher_weights(&self, batch: &BatchOutputs) -> anyhow::Result<Option<Tensor>> {
        let k = batch.teachers.len() as i64;
        Ok(Some(Tensor::full([k], 1.0 / k as f64, (Kind::Float, batch.student.device()))))
    }

    fn modules(&self) -> Option<&nn::VarStore> {
        self.features.as_ref().map(|f| &f.vs)
    }
}
