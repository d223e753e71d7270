//! CA-MKD, confidence-aware multi-teacher KD (methods.md §3.5).
//! - Logit level: per-sample teacher weights from each teacher's cross-entropy on the label,
//!   w_k(i) = (1 − softmax_k(CE_·(i))_k) / (K − 1), and L_div = Σ_{i,k} w_k(i)·KL_k(i) / (B·K)
//!   (the reference's extra 1/K is kept on purpose). Constants: teacher outputs carry no grad.
//! - Feature level (from epoch 2): each student map, aligned and embedded per teacher (h_k), is
//!   compared with the teacher's map by per-sample MSE, weighted by v_k(i) computed like w but
//!   from the CE of *the teacher's own classifier* applied to GAP(h_k). The reference lets
//!   gradients flow through v (`ca_mkd.detach_feature_weights: false`).
//!
//! L = γ·CE + α·L_div + β·L_kd.

use super::features::FeatureLevel;
use super::{ce_term, feature_weight, BatchOutputs, LossTerm, Method, Setup};
use crate::bad_input;
use crate::distill::losses::{ce_per_sample, kd_per_sample, mse_per_sample};
use crate::recipe::schema::Distill;
use crate::teacher::Head;
use tch::{nn, Kind, Tensor};

pub struct CaMkd {
    ce: f64,
    kd: f64,
    feat: f64,
    temperature: f64,
    detach_feature_weights: bool,
    features: Option<FeatureLevel>,
    heads: Vec<Head>,
}

pub fn build(cfg: &Distill, setup: &Setup) -> anyhow::Result<Box<dyn Method>> {
    let features = FeatureLevel::new(cfg, setup)?;
    let mut heads = Vec::new();
    if let Some(f) = &features {
        for (k, head) in setup.teacher_heads.iter().enumerate() {
            let head = head.as_ref().ok_or_else(|| {
                bad_input!("distill.method ca_mkd: teacher {k} has no linear classifier head (Gemm or MatMul+Add) its feature weights can use; set distill.loss_weights.feat: 0 for the logit level only")
            })?;
            for (p, c) in f.teacher_channels(k).into_iter().enumerate() {
                if c != head.weight.size()[1] {
                    return Err(bad_input!(
                        "distill.features.{p}: ca_mkd passes the projected map through teacher {k}'s classifier, which reads {} features, but the teacher map has {c} channels: the feature level needs a classifier that is one linear layer on the pooled last map (pair `last_stage`), or set distill.loss_weights.feat: 0 to distil logits only",
                        head.weight.size()[1]
                    ));
                }
            }
            heads.push(Head { weight: head.weight.to_device(setup.device), bias: head.bias.to_device(setup.device) });
        }
    }
    Ok(Box::new(CaMkd {
        ce: cfg.loss_weights.ce,
        kd: cfg.loss_weights.kd,
        feat: feature_weight(cfg),
        temperature: cfg.temperature,
        detach_feature_weights: cfg.ca_mkd.as_ref().is_some_and(|o| o.detach_feature_weights),
        features,
        heads,
    }))
}

/// Confidence weights [K, B] from per-teacher cross-entropies [K, B]; 1 with one teacher.
fn confidence_from_ce(ce: &Tensor) -> Tensor {
    let k = ce.size()[0];
    if k == 1 {
        return ce.ones_like();
    }
    (1.0 - ce.softmax(0, Kind::Float)) / (k - 1) as f64
}

/// Confidence weights [K, B] from teacher logits (each [B, C]) and labels [B].
pub fn confidence_weights(teachers: &[Tensor], labels: &Tensor) -> Tensor {
    confidence_from_ce(&Tensor::stack(&teachers.iter().map(|z| ce_per_sample(z, labels)).collect::<Vec<_>>(), 0))
}

/// The unweighted CA-MKD logit term (scalar).
pub fn ca_mkd_kd(student: &Tensor, teachers: &[Tensor], labels: &Tensor, t: f64) -> Tensor {
    let w = confidence_weights(teachers, labels);
    let kl = Tensor::stack(&teachers.iter().map(|z| kd_per_sample(student, z, t)).collect::<Vec<_>>(), 0);
    let (k, b) = (kl.size()[0], kl.size()[1]);
    (w * kl).sum(Kind::Float) / (k * b) as f64
}

/// The unweighted feature term of one pair and its weights v [K, B]: `h` the projected student
/// maps and `f` the teacher maps, one per teacher, `heads` the teachers' classifiers.
pub fn feature_term(h: &[Tensor], f: &[Tensor], heads: &[Head], labels: &Tensor, detach_weights: bool) -> (Tensor, Tensor) {
    let u: Vec<Tensor> = h
        .iter()
        .zip(heads)
        .map(|(h, head)| {
            let pooled = h.mean_dim([2i64, 3].as_slice(), false, Kind::Float);
            let o = pooled.linear(&head.weight, Some(&head.bias));
            ce_per_sample(&o, labels)
        })
        .collect();
    let mut v = confidence_from_ce(&Tensor::stack(&u, 0));
    if detach_weights {
        v = v.detach();
    }
    let mse = Tensor::stack(&h.iter().zip(f).map(|(h, f)| mse_per_sample(h, f)).collect::<Vec<_>>(), 0);
    let (k, b) = (mse.size()[0], mse.size()[1]);
    ((&v * mse).sum(Kind::Float) / (k * b) as f64, v)
}

impl Method for CaMkd {
    fn losses(&self, batch: &BatchOutputs) -> anyhow::Result<Vec<LossTerm>> {
        let kd = ca_mkd_kd(batch.student, batch.teachers, batch.labels, self.temperature);
        let mut terms = vec![ce_term(self.ce, batch), LossTerm { name: "kd", value: kd * self.kd }];
        if let Some(features) = &self.features {
            // The reference drops the feature term in the first epoch (methods.md §3).
            let value = if batch.epoch <= 1 {
                Tensor::zeros([], (Kind::Float, batch.student.device()))
            } else {
                let mut sum = Tensor::zeros([], (Kind::Float, batch.student.device()));
                for pair in features.project(batch) {
                    let (h, f): (Vec<Tensor>, Vec<Tensor>) = pair.into_iter().map(|p| (p.student, p.teacher)).unzip();
                    sum += feature_term(&h, &f, &self.heads, batch.labels, self.detach_feature_weights).0;
                }
                sum * self.feat
            };
            terms.push(LossTerm { name: "feat", value });
        }
        Ok(terms)
    }

    fn teacher_weights(&self, batch: &BatchOutputs) -> anyhow::Result<Option<Tensor>> {
        Ok(Some(confidence_weights(batch.teachers, batch.labels)))
    }

    fn modules(&self) -> Option<&nn::VarStore> {
        self.features.as_ref().map(|f| &f.vs)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::distill::golden::case;
    use crate::distill::losses::golden::*;
    use crate::host::HostRead;

    #[test]
    fn weights_and_loss_match_methods_md_golden_values() {
        let w = confidence_weights(&teachers(), &labels());
        assert_close(&values(&w), &[0.451412, 0.402057, 0.410583, 0.186718, 0.138004, 0.411224], 1e-5);
        let sums = values(&w.sum_dim_intlist(0, false, Kind::Float));
        assert_close(&sums, &[1.0, 1.0], 1e-6);
        let loss = ca_mkd_kd(&student(), &teachers(), &labels(), T).read_f64();
        assert!((loss - 0.126397).abs() < 1e-5, "{loss}");
    }

    #[test]
    fn logit_level_matches_pytorch() {
        let c = case("ca_mkd_logits");
        let (ts, y) = (c.per_teacher("teachers"), c.labels("labels"));
        c.check("weights", &confidence_weights(&ts, &y), 1e-5);
        c.check("loss", &ca_mkd_kd(&c.input("student"), &ts, &y, c.param("T")), 1e-5);
    }

    /// The feature weights, the loss and its gradient with respect to the projected student maps,
    /// with live weights (the reference) and detached ones.
    #[test]
    fn feature_level_and_its_gradients_match_pytorch() {
        let c = case("ca_mkd_features");
        let f = c.per_teacher("f");
        let heads: Vec<Head> = c.per_teacher("fc_weight").into_iter().zip(c.per_teacher("fc_bias")).map(|(weight, bias)| Head { weight, bias }).collect();
        for (detach, grad_name) in [(false, "grad_h_live"), (true, "grad_h_detached")] {
            let h: Vec<Tensor> = c.per_teacher("h").into_iter().map(|t| t.set_requires_grad(true)).collect();
            let (loss, v) = feature_term(&h, &f, &heads, &c.labels("labels"), detach);
            c.check("v", &v, 1e-5);
            c.check("loss", &loss, 1e-5);
            loss.backward();
            let grads = Tensor::stack(&h.iter().map(|t| t.grad()).collect::<Vec<_>>(), 0);
            c.check(grad_name, &grads, 1e-5);
        }
    }
}
