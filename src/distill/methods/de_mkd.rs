//! DE-MKD, decoupled multi-teacher KD with entropy weights (Cheng et al. 2024; methods.md §4.3).
//! No code or full text is public: this is the reconstruction of methods.md, every inferred
//! choice a `distill.de_mkd` option.
//! - Per teacher and sample, DKD's TCKD and NCKD (T = distill.temperature).
//! - Teacher weights from the entropy of its prediction at `entropy_temperature`: `full` uses one
//!   entropy for both parts, `decoupled` the binary target entropy for TCKD and the non-target
//!   entropy for NCKD. `softmax_neg` maps entropies to softmax_k(−H/τ), `ebkd` to
//!   (1 − H/ΣH)/(K − 1); `invert_nc` gives NCKD softmax_k(+H/τ) (with `ebkd`, H/ΣH) instead.
//! - L_DE = (1/B)·Σ_i Σ_k [α·w^TC_k(i)·TCKD_k(i) + β·w^NC_k(i)·NCKD_k(i)], ramped in linearly
//!   over `warmup_epochs` as DKD is.
//! - Feature level (from epoch 2, CA-MKD's protocol): L_feat = (1/B)·Σ_i Σ_k w_k(i)·MSE_k(i) with
//!   the full-entropy weights, Embed connectors on the last feature maps by default.
//!
//! L = γ·CE + α_kd·L_DE + β_feat·L_feat. The weights are constants.

use super::dkd::warmup;
use super::features::FeatureLevel;
use super::{ce_term, feature_weight, stack_teachers, BatchOutputs, LossTerm, Method, Setup};
use crate::distill::losses::{dkd_per_sample, entropy, mse_per_sample, non_target_entropy, target_entropy};
use crate::recipe::schema::{DeMkdOptions, Distill, EntropyMap, EntropySource};
use tch::{nn, Kind, Tensor};

pub struct DeMkd {
    ce: f64,
    kd: f64,
    feat: f64,
    temperature: f64,
    o: DeMkdOptions,
    features: Option<FeatureLevel>,
}

/// DE-MKD's weights are finite and not negative, its temperatures positive.
pub fn check(cfg: &Distill, _: usize) -> Vec<String> {
    let o = cfg.de_mkd.clone().unwrap_or_default();
    [
        super::number("distill.de_mkd.alpha", o.alpha, 0.0, true),
        super::number("distill.de_mkd.beta", o.beta, 0.0, true),
        super::number("distill.de_mkd.tau", o.tau, 0.0, false),
        super::number("distill.de_mkd.entropy_temperature", o.entropy_temperature, 0.0, false),
    ]
    .into_iter()
    .flatten()
    .collect()
}

pub fn build(cfg: &Distill, setup: &Setup) -> anyhow::Result<Box<dyn Method>> {
    Ok(Box::new(DeMkd {
        ce: cfg.loss_weights.ce,
        kd: cfg.loss_weights.kd,
        feat: feature_weight(cfg),
        temperature: cfg.temperature,
        o: cfg.de_mkd.clone().unwrap_or_default(),
        features: FeatureLevel::new(cfg, setup)?,
    }))
}

/// Entropies [K, B] mapped to weights [K, B] that sum to 1 over teachers; `invert` favours the
/// higher entropy.
pub fn map_entropy(h: &Tensor, map: EntropyMap, tau: f64, invert: bool) -> Tensor {
    let k = h.size()[0];
    match (map, invert) {
        (EntropyMap::SoftmaxNeg, false) => (-h / tau).softmax(0, Kind::Float),
        (EntropyMap::SoftmaxNeg, true) => (h / tau).softmax(0, Kind::Float),
        (EntropyMap::Ebkd, _) if k == 1 => h.ones_like(),
        (EntropyMap::Ebkd, false) => (1.0 - h / h.sum_dim_intlist(0, true, Kind::Float)) / (k - 1) as f64,
        (EntropyMap::Ebkd, true) => h / h.sum_dim_intlist(0, true, Kind::Float),
    }
}

/// The (TC, NC) weights [K, B] each, under the options.
pub fn part_weights(teachers: &[Tensor], labels: &Tensor, o: &DeMkdOptions) -> (Tensor, Tensor) {
    let t = o.entropy_temperature;
    let stack = |f: &dyn Fn(&Tensor) -> Tensor| Tensor::stack(&teachers.iter().map(f).collect::<Vec<_>>(), 0);
    let (h_tc, h_nc) = match o.entropy_source {
        EntropySource::Full => {
            let h = stack(&|z| entropy(z, t));
            (h.shallow_clone(), h)
        }
        EntropySource::Decoupled => (stack(&|z| target_entropy(z, labels, t)), stack(&|z| non_target_entropy(z, labels, t))),
    };
    (map_entropy(&h_tc, o.entropy_map, o.tau, false), map_entropy(&h_nc, o.entropy_map, o.tau, o.invert_nc))
}

/// L_DE (without the warm-up), a scalar.
pub fn de_loss(student: &Tensor, teachers: &[Tensor], labels: &Tensor, temperature: f64, o: &DeMkdOptions) -> Tensor {
    let (w_tc, w_nc) = part_weights(teachers, labels, o);
    let parts: Vec<(Tensor, Tensor)> = teachers.iter().map(|z| dkd_per_sample(student, z, labels, temperature)).collect();
    let tckd = Tensor::stack(&parts.iter().map(|p| p.0.shallow_clone()).collect::<Vec<_>>(), 0);
    let nckd = Tensor::stack(&parts.iter().map(|p| p.1.shallow_clone()).collect::<Vec<_>>(), 0);
    let b = student.size()[0] as f64;
    (w_tc * tckd * o.alpha + w_nc * nckd * o.beta).sum(Kind::Float) / b
}

impl DeMkd {
    fn feature_weights(&self, batch: &BatchOutputs) -> Tensor {
        let h = stack_teachers(batch, |z| entropy(z, self.o.entropy_temperature));
        map_entropy(&h, self.o.entropy_map, self.o.tau, false)
    }
}

impl Method for DeMkd {
    fn losses(&self, batch: &BatchOutputs) -> anyhow::Result<Vec<LossTerm>> {
        let ramp = warmup(batch.epoch, self.o.warmup_epochs) * self.kd;
        let de = de_loss(batch.student, batch.teachers, batch.labels, self.temperature, &self.o);
        let mut terms = vec![ce_term(self.ce, batch), LossTerm { name: "kd", value: de * ramp }];
        if let Some(features) = &self.features {
            let mut sum = Tensor::zeros([], (Kind::Float, batch.student.device()));
            if batch.epoch > 1 {
                let w = self.feature_weights(batch);
                for pair in features.project(batch) {
                    let mse = Tensor::stack(&pair.iter().map(|p| mse_per_sample(&p.student, &p.teacher)).collect::<Vec<_>>(), 0);
                    sum += (&w * mse).sum(Kind::Float) / batch.student.size()[0] as f64;
                }
            }
            terms.push(LossTerm { name: "feat", value: sum * self.feat });
        }
        Ok(terms)
    }

    fn teacher_weights(&self, batch: &BatchOutputs) -> anyhow::Result<Option<Tensor>> {
        Ok(Some(self.feature_weights(batch)))
    }

    fn modules(&self) -> Option<&nn::VarStore> {
        self.features.as_ref().map(|f| &f.vs)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::distill::golden::case;

    fn options(source: EntropySource, map: EntropyMap, invert_nc: bool) -> DeMkdOptions {
        DeMkdOptions { entropy_source: source, entropy_map: map, invert_nc, ..Default::default() }
    }

    #[test]
    fn parts_entropies_weights_and_losses_match_pytorch() {
        let c = case("de_mkd");
        let (s, ts, y, t) = (c.input("student"), c.per_teacher("teachers"), c.labels("labels"), c.param("T"));
        let tckd = Tensor::stack(&ts.iter().map(|z| dkd_per_sample(&s, z, &y, t).0).collect::<Vec<_>>(), 0);
        c.check("tckd", &tckd, 1e-5);
        let ent = |f: &dyn Fn(&Tensor) -> Tensor| Tensor::stack(&ts.iter().map(f).collect::<Vec<_>>(), 0);
        c.check("entropy_full", &ent(&|z| entropy(z, 1.0)), 1e-5);
        c.check("entropy_tc", &ent(&|z| target_entropy(z, &y, 1.0)), 1e-5);
        c.check("entropy_nc", &ent(&|z| non_target_entropy(z, &y, 1.0)), 1e-5);
        let (w_tc, w_nc) = part_weights(&ts, &y, &options(EntropySource::Decoupled, EntropyMap::SoftmaxNeg, false));
        c.check("w_tc_decoupled_softmax_neg", &w_tc, 1e-5);
        c.check("w_nc_decoupled_softmax_neg", &w_nc, 1e-5);
        let (w, _) = part_weights(&ts, &y, &options(EntropySource::Full, EntropyMap::Ebkd, false));
        c.check("w_full_ebkd", &w, 1e-5);
        let (_, w_nc) = part_weights(&ts, &y, &options(EntropySource::Full, EntropyMap::SoftmaxNeg, true));
        c.check("w_nc_full_softmax_neg_invert", &w_nc, 1e-5);
        for (name, source, map, invert) in [
            ("loss_full_softmax_neg", EntropySource::Full, EntropyMap::SoftmaxNeg, false),
            ("loss_decoupled_softmax_neg", EntropySource::Decoupled, EntropyMap::SoftmaxNeg, false),
            ("loss_full_ebkd", EntropySource::Full, EntropyMap::Ebkd, false),
            ("loss_full_softmax_neg_invert_nc", EntropySource::Full, EntropyMap::SoftmaxNeg, true),
            ("loss_decoupled_softmax_neg_invert_nc", EntropySource::Decoupled, EntropyMap::SoftmaxNeg, true),
        ] {
            c.check(name, &de_loss(&s, &ts, &y, t, &options(source, map, invert)), 1e-5);
        }
    }
}
