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

#[cfg(test)]
mod tests {
    use super::super::{build, BatchOutputs, Setup};
    use crate::host::HostRead;
    use crate::recipe::schema::{Distill, FitnetMkdOptions};
    use tch::{Device, Kind, Tensor};

    /// The gradient a method's total loss sends into the student's logits and hint map, on one
    /// fixed batch in epoch 2 (when the hint term is on); None where no gradient arrives.
    fn gradients(cfg: &Distill) -> (Tensor, Option<Tensor>) {
        let teachers = 2;
        let setup = Setup {
            teachers,
            num_classes: 10,
            student_shapes: vec![vec![1, 16, 8, 8]],
            teacher_shapes: vec![vec![vec![1, 8, 4, 4]]; teachers],
            teacher_heads: (0..teachers).map(|_| None).collect(),
            device: Device::Cpu,
            batch_size: 4,
            epochs: 4,
            seed: 3,
        };
        // Fixed values (not the global generator, which tests running beside this one share).
        let wave = |shape: &[i64], phase: f64, scale: f64| {
            let n: i64 = shape.iter().product();
            ((Tensor::arange(n, (Kind::Float, Device::Cpu)) * 0.7 + phase).sin() * scale).view(shape)
        };
        let student = wave(&[4, 10], 0.0, 2.0).set_requires_grad(true);
        let hint = wave(&[4, 16, 8, 8], 1.0, 1.0).set_requires_grad(true);
        let logits: Vec<Tensor> = (0..teachers).map(|k| wave(&[4, 10], 2.0 + k as f64, 3.0)).collect();
        let maps: Vec<Vec<Tensor>> = (0..teachers).map(|k| vec![wave(&[4, 8, 4, 4], 5.0 + k as f64, 1.0)]).collect();
        let labels = Tensor::from_slice(&[1i64, 4, 7, 9]);
        let method = build(cfg, &setup).unwrap();
        let feats = [hint.shallow_clone()];
        let batch = BatchOutputs {
            student: &student,
            student_feats: &feats,
            teachers: &logits,
            teacher_feats: &maps,
            labels: &labels,
            epoch: 2,
            progress: 2.0,
            dist: None,
        };
        let total = method.losses(&batch).unwrap().into_iter().map(|t| t.value).reduce(|a, b| a + b).unwrap();
        total.backward();
        let hint_grad = hint.grad();
        (student.grad(), hint_grad.defined().then_some(hint_grad))
    }

    fn fitnet_mkd(reproduce_detach_bug: bool) -> Distill {
        Distill { method: "fitnet_mkd".into(), fitnet_mkd: Some(FitnetMkdOptions { reproduce_detach_bug }), ..Default::default() }
    }

    /// With the reference's detach bug the hint loss sends no gradient, so the student learns
    /// exactly what AVER teaches; without it the hint term trains the student's map.
    #[test]
    fn the_reference_bug_makes_fitnet_mkd_equal_aver() {
        let (aver, _) = gradients(&Distill { method: "aver".into(), ..Default::default() });
        let (bug, bug_hint) = gradients(&fitnet_mkd(true));
        assert!(bug.equal(&aver), "logit gradients differ from AVER's");
        assert!(bug_hint.is_none_or(|g| g.abs().max().read_f64() == 0.0), "the detached hint loss reached the student's map");
        let (ours, ours_hint) = gradients(&fitnet_mkd(false));
        assert!(ours.equal(&aver), "the hint term must not change the logit gradients");
        let hint = ours_hint.expect("the hint loss trains the student's map");
        assert!(hint.abs().max().read_f64() > 0.0);
    }
}
