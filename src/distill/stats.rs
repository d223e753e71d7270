//! Running per-epoch statistics a training reports beside its losses: the spread of teacher
//! weights (mean, standard deviation, how often each teacher is the largest, how often one
//! teacher takes more than 0.9 of the weight) and a method's own figures (MMKD's and DE-MKD's
//! feature weights and per-teacher feature losses, MMKD's meta-gradient norms). Sums stay on the
//! training device and are read back once per epoch.

use crate::host::HostRead;
use std::collections::BTreeMap;
use tch::{Kind, Tensor};

/// A sample whose largest teacher weight is above this is counted as peaked (close to one-hot).
pub const PEAKED: f64 = 0.9;

/// Per teacher: mean weight, standard deviation, share of samples where it was the largest;
/// and the share of samples where one teacher took more than `PEAKED`.
#[derive(Clone, Debug, PartialEq)]
pub struct WeightSummary {
    pub mean: Vec<f64>,
    pub std: Vec<f64>,
    pub top_share: Vec<f64>,
    pub peaked: f64,
}

fn accumulate(slot: &mut Option<Tensor>, v: Tensor) {
    *slot = Some(match slot.take() {
        Some(s) => s + v,
        None => v,
    });
}

fn to_vec(t: &Tensor) -> Vec<f64> {
    crate::host::vec::<f64>(&t.to_device(tch::Device::Cpu)).unwrap_or_default()
}

/// Running sums of the weights a rule gave its teachers.
#[derive(Default)]
pub struct WeightStats {
    sum: Option<Tensor>,
    sum_sq: Option<Tensor>,
    top: Option<Tensor>,
    peaked: Option<Tensor>,
    count: i64,
}

impl WeightStats {
    /// `w` is [K, B] (per sample) or [K] (per batch).
    pub fn add(&mut self, w: &Tensor) {
        let _guard = tch::no_grad_guard();
        let w = w.detach().to_kind(Kind::Double);
        let w = if w.dim() == 1 { w.unsqueeze(1) } else { w };
        let k = w.size()[0];
        let top = w.argmax(0, false).one_hot(k).to_kind(Kind::Double).sum_dim_intlist(0, false, Kind::Double);
        let peaked = w.amax(0, false).gt(PEAKED).to_kind(Kind::Double).sum(Kind::Double);
        accumulate(&mut self.sum, w.sum_dim_intlist(1, false, Kind::Double));
        accumulate(&mut self.sum_sq, w.square().sum_dim_intlist(1, false, Kind::Double));
        accumulate(&mut self.top, top);
        accumulate(&mut self.peaked, peaked);
        self.count += w.size()[1];
    }

    /// The summary of everything added (None when nothing was).
    pub fn finish(self) -> Option<WeightSummary> {
        let (Some(sum), Some(sum_sq), Some(top), Some(peaked)) = (self.sum, self.sum_sq, self.top, self.peaked) else { return None };
        let n = self.count as f64;
        let mean = &sum / n;
        let std = (&sum_sq / n - mean.square()).clamp_min(0.0).sqrt();
        Some(WeightSummary { mean: to_vec(&mean), std: to_vec(&std), top_share: to_vec(&(&top / n)), peaked: peaked.read_f64() / n })
    }
}

/// What a method reports for an epoch beyond its losses and logit-level teacher weights.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct MethodFigures {
    /// The feature-level teacher weights.
    pub feature_weights: Option<WeightSummary>,
    /// Per teacher, the mean of its unweighted feature loss over the epoch's batches.
    pub feature_losses: Option<Vec<f64>>,
    /// Named scalars, each the mean of its values over the epoch (MMKD's meta-gradient norms).
    pub scalars: BTreeMap<String, f64>,
}

/// Running sums of a method's own figures, kept by the method and taken at each epoch's end.
#[derive(Default)]
pub struct FigureTrack {
    weights: WeightStats,
    loss_sum: Option<Tensor>,
    batches: i64,
    scalars: BTreeMap<&'static str, (Tensor, i64)>,
}

impl FigureTrack {
    /// One batch's feature-level weights `w` ([K, B] or [K]) and per-teacher losses [K, B].
    pub fn feature_batch(&mut self, w: &Tensor, losses: &Tensor) {
        let _guard = tch::no_grad_guard();
        self.weights.add(w);
        accumulate(&mut self.loss_sum, losses.detach().to_kind(Kind::Double).mean_dim(1, false, Kind::Double));
        self.batches += 1;
    }

    /// One value of a named scalar (a 0-d tensor, read back only at the epoch's end).
    pub fn scalar(&mut self, name: &'static str, v: &Tensor) {
        let v = v.detach().to_kind(Kind::Double);
        let slot = self.scalars.entry(name).or_insert_with(|| (v.zeros_like(), 0));
        slot.0 = &slot.0 + v;
        slot.1 += 1;
    }

    /// The epoch's figures; the track starts over.
    pub fn take(&mut self) -> MethodFigures {
        let t = std::mem::take(self);
        let batches = t.batches.max(1) as f64;
        MethodFigures {
            feature_weights: t.weights.finish(),
            feature_losses: t.loss_sum.map(|s| to_vec(&(s / batches))),
            scalars: t.scalars.into_iter().map(|(k, (sum, n))| (k.to_string(), sum.read_f64() / n.max(1) as f64)).collect(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn weight_summary_of_two_batches() {
        let mut s = WeightStats::default();
        // Sample 1 puts 0.95 on teacher 0 (peaked), sample 2 splits evenly, sample 3 (per
        // batch) gives teacher 1 0.8.
        s.add(&Tensor::from_slice(&[0.95f64, 0.5, 0.05, 0.5]).view([2, 2]));
        s.add(&Tensor::from_slice(&[0.2f64, 0.8]));
        let w = s.finish().unwrap();
        let close = |a: &[f64], b: &[f64]| a.iter().zip(b).all(|(x, y)| (x - y).abs() < 1e-12);
        assert!(close(&w.mean, &[0.55, 0.45]), "{w:?}");
        // Ties go to the first teacher, as argmax does.
        assert!(close(&w.top_share, &[2.0 / 3.0, 1.0 / 3.0]), "{w:?}");
        assert!((w.peaked - 1.0 / 3.0).abs() < 1e-12, "{w:?}");
        let var0 = (0.95f64.powi(2) + 0.25 + 0.04) / 3.0 - 0.55f64.powi(2);
        assert!((w.std[0] - var0.sqrt()).abs() < 1e-12, "{w:?}");
        assert!(WeightStats::default().finish().is_none());
    }

    #[test]
    fn figure_track_means_and_resets() {
        let mut f = FigureTrack::default();
        let w = Tensor::from_slice(&[1.0f64, 0.0]).view([2, 1]);
        f.feature_batch(&w, &Tensor::from_slice(&[2.0f64, 4.0, 6.0, 8.0]).view([2, 2]));
        f.feature_batch(&w, &Tensor::from_slice(&[4.0f64, 4.0, 8.0, 8.0]).view([2, 2]));
        f.scalar("g", &Tensor::from(1.0f64));
        f.scalar("g", &Tensor::from(3.0f64));
        let got = f.take();
        assert_eq!(got.feature_losses, Some(vec![3.5, 7.5]));
        assert_eq!(got.scalars["g"], 2.0);
        assert_eq!(got.feature_weights.unwrap().peaked, 1.0);
        assert_eq!(f.take(), MethodFigures::default());
    }
}
