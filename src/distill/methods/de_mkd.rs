//! DE-MKD, decoupled multi-teacher KD with entropy weights (Cheng et al. 2024; methods.md §4.3).
//! No code or full text is public: this is the reconstruction of methods.md, every inferred
//! choice a `distill.de_mkd` option.
//! - Per teacher and sample, DKD's TCKD and NCKD (T = distill.temperature).
//! - Teacher weights from the entropy of its prediction at `entropy_temperature`: `full` uses one
//!   entropy for both parts, `decoupled` the binary target entropy for TCKD and the non-target
//!   entropy for NCKD. `softmax_neg` maps entropies to softmax_k(−H/τ), `ebkd` to
//!   (1 − H/ΣH)/(K − 1); `invert_nc` gives NCKD softmax_k(+H/τ) (with `ebkd`, H/ΣH) instead.
//! - L_DE = (1/B)·Σ_i Σ_k [α·w^TC_k(i)·TCKD_k(i) + β·w^NC_k(i)·NCKD_k(i)], ramped in linearly
//!   over the warm-up as DKD is (`warmup_epochs`, or `warmup_share` of the run; default the
//!   papers' 20 of 240 epochs).
//! - Feature level (from epoch 2, CA-MKD's protocol): L_feat = (1/(B·K))·Σ_i Σ_k w_k(i)·MSE_k(i)
//!   with the full-entropy weights, normalised as CA-MKD's (whose β = 50 it borrows) and ramped
//!   with the logit term; Embed connectors on the last feature maps by default.
//!   `feature_normalization: batch` divides by B only and `feature_warmup: false` runs it at
//!   full strength from epoch 2 (this tool's first reconstruction).
//!
//! L = γ·CE + α_kd·L_DE + β_feat·L_feat. The weights are constants.

use super::dkd::{warmup, warmup_length};
use super::features::FeatureLevel;
use super::{ce_term, feature_weight, stack_teachers, BatchOutputs, LossTerm, Method, MethodFigures, Setup};
use crate::distill::losses::{dkd_per_sample, entropy, mse_per_sample, non_target_entropy, target_entropy};
use crate::distill::stats::FigureTrack;
use crate::recipe::schema::{DeMkdOptions, Distill, EntropyMap, EntropySource, FeatureNormalization};
use std::cell::RefCell;
use tch::{nn, Kind, Tensor};

pub struct DeMkd {
    ce: f64,
    kd: f64,
    feat: f64,
    temperature: f64,
    o: DeMkdOptions,
    /// The warm-up's length in epochs.
    warmup: f64,
    features: Option<FeatureLevel>,
    figures: RefCell<FigureTrack>,
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
    .chain(super::dkd::check_warmup("distill.de_mkd", o.warmup_epochs, o.warmup_share))
    .collect()
}

pub fn build(cfg: &Distill, setup: &Setup) -> anyhow::Result<Box<dyn Method>> {
    let o = cfg.de_mkd.clone().unwrap_or_default();
    Ok(Box::new(DeMkd {
        ce: cfg.loss_weights.ce,
        kd: cfg.loss_weights.kd,
        feat: feature_weight(cfg),
        temperature: cfg.temperature,
        warmup: warmup_length(o.warmup_epochs, o.warmup_share, setup.epochs),
        o,
        features: FeatureLevel::new(cfg, setup)?,
        figures: RefCell::new(FigureTrack::default()),
    }))
}

/// L_feat for one pair: Σ_i Σ_k w_k(i)·MSE_k(i) over B (or B·K), from weights and MSEs [K, B].
pub fn feature_loss(w: &Tensor, mse: &Tensor, normalization: FeatureNormalization) -> Tensor {
    let (k, b) = (mse.size()[0] as f64, mse.size()[1] as f64);
    let denominator = match normalization {
        FeatureNormalization::BatchTeachers => b * k,
        FeatureNormalization::Batch => b,
    };
    (w * mse).sum(Kind::Float) / denominator
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
        let ramp = warmup(batch.progress, self.warmup);
        let de = de_loss(batch.student, batch.teachers, batch.labels, self.temperature, &self.o);
        let mut terms = vec![ce_term(self.ce, batch), LossTerm { name: "kd", value: de * (ramp * self.kd) }];
        if let Some(features) = &self.features {
            let mut sum = Tensor::zeros([], (Kind::Float, batch.student.device()));
            if batch.epoch > 1 {
                let w = self.feature_weights(batch);
                for pair in features.project(batch) {
                    let mse = Tensor::stack(&pair.iter().map(|p| mse_per_sample(&p.student, &p.teacher)).collect::<Vec<_>>(), 0);
                    self.figures.borrow_mut().feature_batch(&w, &mse);
                    sum += feature_loss(&w, &mse, self.o.feature_normalization);
                }
            }
            let strength = if self.o.feature_warmup { ramp * self.feat } else { self.feat };
            terms.push(LossTerm { name: "feat", value: sum * strength });
        }
        Ok(terms)
    }

    fn teacher_weights(&self, batch: &BatchOutputs) -> anyhow::Result<Option<Tensor>> {
        Ok(Some(self.feature_weights(batch)))
    }

    fn modules(&self) -> Option<&nn::VarStore> {
        self.features.as_ref().map(|f| &f.vs)
    }

    fn take_figures(&self) -> MethodFigures {
        self.figures.borrow_mut().take()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::distill::golden::case;
    use crate::host::HostRead;

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

    #[test]
    fn the_feature_term_is_normalised_as_ca_mkds() {
        // Two teachers, three samples: Σ w·MSE = 0.5·2 + 0.5·4 + 1·6 + 0·9 + 0.25·1 + 0.75·3 = 11.5.
        let w = Tensor::from_slice(&[0.5f32, 1.0, 0.25, 0.5, 0.0, 0.75]).view([2, 3]);
        let mse = Tensor::from_slice(&[2.0f32, 6.0, 1.0, 4.0, 9.0, 3.0]).view([2, 3]);
        let got = |n| feature_loss(&w, &mse, n).read_f64();
        assert!((got(FeatureNormalization::BatchTeachers) - 11.5 / 6.0).abs() < 1e-6);
        assert!((got(FeatureNormalization::Batch) - 11.5 / 3.0).abs() < 1e-6);
    }
}
