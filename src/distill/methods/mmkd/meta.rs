//! Pieces of meta-learned teacher weighting (MMKD, methods.md §4.1): the weight networks, the
//! Adam optimizer that trains them, and the hard buffer of misclassified training samples the
//! meta batches are drawn from.

use crate::data::rng::Rng;
use tch::nn::{self, Module};
use tch::{Kind, Tensor};

/// Linear(n → n/2) → ReLU → Linear(→ K) → softmax over the K teachers.
pub struct WeightNet {
    hidden: nn::Linear,
    out: nn::Linear,
}

impl WeightNet {
    pub fn new(p: &nn::Path, input: i64, teachers: i64) -> WeightNet {
        let mid = (input / 2).max(1);
        WeightNet { hidden: nn::linear(p / "0", input, mid, Default::default()), out: nn::linear(p / "2", mid, teachers, Default::default()) }
    }

    /// Weights [B, K] for inputs [B, n]; rows sum to 1.
    pub fn forward(&self, x: &Tensor) -> Tensor {
        self.out.forward(&self.hidden.forward(x).relu()).softmax(1, x.kind())
    }
}

/// Adam with PyTorch's semantics (weight decay added to the gradient), its moments kept as
/// tensors.
pub struct Adam {
    params: Vec<Tensor>,
    m: Vec<Tensor>,
    v: Vec<Tensor>,
    /// The step count, a tensor so checkpoints hold it with the moments.
    steps: Tensor,
    pub lr: f64,
    weight_decay: f64,
}

impl Adam {
    pub fn new(params: Vec<Tensor>, lr: f64, weight_decay: f64) -> Adam {
        let m = params.iter().map(|p| p.zeros_like().detach()).collect();
        let v = params.iter().map(|p| p.zeros_like().detach()).collect();
        Adam { params, m, v, steps: Tensor::zeros([], (Kind::Int64, tch::Device::Cpu)), lr, weight_decay }
    }

    /// One update from `grads` (one per parameter, in order); everything is updated in place.
    pub fn step(&mut self, grads: &[Tensor]) {
        let (b1, b2, eps) = (0.9f64, 0.999f64, 1e-8);
        let _guard = tch::no_grad_guard();
        let _ = self.steps.f_add_scalar_(1);
        // The count lives on the host (a checkpoint restores it there): no device read.
        let t = crate::host::host_ints(&self.steps).map_or(1, |v| v[0]) as i32;
        let (c1, c2) = (1.0 - b1.powi(t), 1.0 - b2.powi(t));
        for (((p, m), v), g) in self.params.iter_mut().zip(&mut self.m).zip(&mut self.v).zip(grads) {
            let g = g + &*p * self.weight_decay;
            let _ = m.f_mul_scalar_(b1).and_then(|mut m| m.f_add_(&(&g * (1.0 - b1))));
            let _ = v.f_mul_scalar_(b2).and_then(|mut v| v.f_add_(&(g.square() * (1.0 - b2))));
            let update = (&*m / c1) / ((&*v / c2).sqrt() + eps) * self.lr;
            let _ = p.f_sub_(&update);
        }
    }

    /// The moments and step count by name, for checkpoints (shallow handles: loading copies into
    /// them).
    pub fn state(&self, prefix: &str) -> Vec<(String, Tensor)> {
        let mut s = vec![(format!("{prefix}.steps"), self.steps.shallow_clone())];
        for (i, (m, v)) in self.m.iter().zip(&self.v).enumerate() {
            s.push((format!("{prefix}.m.{i}"), m.shallow_clone()));
            s.push((format!("{prefix}.v.{i}"), v.shallow_clone()));
        }
        s
    }
}

/// The student's inputs and the teachers' outputs for a set of samples, kept together.
pub struct Samples {
    /// Preprocessed student inputs [N, ...].
    pub x: Tensor,
    pub labels: Tensor,
    /// Per teacher, logits [N, C].
    pub teachers: Vec<Tensor>,
    /// Per teacher, its taps [N, ...].
    pub teacher_feats: Vec<Vec<Tensor>>,
}

impl Samples {
    fn select(&self, idx: &Tensor) -> Samples {
        Samples {
            x: self.x.index_select(0, idx),
            labels: self.labels.index_select(0, idx),
            teachers: self.teachers.iter().map(|t| t.index_select(0, idx)).collect(),
            teacher_feats: self.teacher_feats.iter().map(|f| f.iter().map(|t| t.index_select(0, idx)).collect()).collect(),
        }
    }

    fn len(&self) -> i64 {
        self.x.size()[0]
    }
}

/// MMKD's hard buffer: filled with the first training batches, then every batch's misclassified
/// samples overwrite random slots (chosen without replacement); meta batches are drawn from it
/// uniformly without replacement.
pub struct HardBuffer {
    capacity: i64,
    data: Option<Samples>,
    rng: Rng,
}

impl HardBuffer {
    pub fn new(capacity: i64, seed: u64) -> HardBuffer {
        HardBuffer { capacity, data: None, rng: Rng::new(seed) }
    }

    /// Samples held (the tests watch it fill).
    #[cfg(test)]
    pub fn len(&self) -> i64 {
        self.data.as_ref().map_or(0, Samples::len)
    }

    /// Offers a training batch: appended whole while the buffer fills, afterwards only the
    /// samples in `hard` (a bool mask [B]) replace random slots.
    pub fn offer(&mut self, batch: Samples, hard: &Tensor) {
        let _guard = tch::no_grad_guard();
        let batch = Samples {
            x: batch.x.detach(),
            labels: batch.labels.detach(),
            teachers: batch.teachers.iter().map(Tensor::detach).collect(),
            teacher_feats: batch.teacher_feats.iter().map(|f| f.iter().map(Tensor::detach).collect()).collect(),
        };
        let Some(data) = &mut self.data else {
            self.data = Some(batch);
            return;
        };
        if data.len() < self.capacity {
            let room = (self.capacity - data.len()).min(batch.len());
            let cat = |a: &Tensor, b: &Tensor| Tensor::cat(&[a.shallow_clone(), b.narrow(0, 0, room)], 0);
            data.x = cat(&data.x, &batch.x);
            data.labels = cat(&data.labels, &batch.labels);
            for (a, b) in data.teachers.iter_mut().zip(&batch.teachers) {
                *a = cat(a, b);
            }
            for (fa, fb) in data.teacher_feats.iter_mut().zip(&batch.teacher_feats) {
                for (a, b) in fa.iter_mut().zip(fb) {
                    *a = cat(a, b);
                }
            }
            return;
        }
        // Without reading the mask back: the batch's samples ordered hard first (ascending
        // within each kind, a stable sort), the j-th paired with the j-th shuffled slot, and
        // a slot overwritten only where its sample is hard.
        let mut slots: Vec<i64> = (0..data.len()).collect();
        self.rng.shuffle(&mut slots);
        let n = batch.len().min(slots.len() as i64);
        let device = data.x.device();
        let dst = crate::host::upload(&Tensor::from_slice(&slots[..n as usize]), device).expect("uploading the buffer slots");
        let src = hard.logical_not().to_kind(Kind::Uint8).argsort_stable(true, 0, false).narrow(0, 0, n);
        let take = hard.index_select(0, &src);
        let put = |a: &mut Tensor, b: &Tensor| {
            let new = b.index_select(0, &src);
            let old = a.index_select(0, &dst);
            let keep = take.view([-1i64].into_iter().chain(std::iter::repeat_n(1, new.dim() - 1)).collect::<Vec<i64>>().as_slice());
            let _ = a.index_copy_(0, &dst, &new.where_self(&keep, &old));
        };
        put(&mut data.x, &batch.x);
        put(&mut data.labels, &batch.labels);
        for (a, b) in data.teachers.iter_mut().zip(&batch.teachers) {
            put(a, b);
        }
        for (fa, fb) in data.teacher_feats.iter_mut().zip(&batch.teacher_feats) {
            for (a, b) in fa.iter_mut().zip(fb) {
                put(a, b);
            }
        }
    }

    /// `n` samples drawn uniformly without replacement (all of them when fewer are held).
    pub fn sample(&mut self, n: i64) -> Option<Samples> {
        let data = self.data.as_ref()?;
        let mut idx: Vec<i64> = (0..data.len()).collect();
        self.rng.shuffle(&mut idx);
        idx.truncate(n.min(data.len()) as usize);
        Some(data.select(&crate::host::upload(&Tensor::from_slice(&idx), data.x.device()).expect("uploading the sample indices")))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::host::HostRead;
    use tch::Device;

    fn samples(n: i64, start: f64) -> Samples {
        let x = Tensor::arange(n, (Kind::Float, Device::Cpu)) + start;
        Samples { x: x.unsqueeze(1), labels: Tensor::zeros([n], (Kind::Int64, Device::Cpu)), teachers: vec![x.unsqueeze(1)], teacher_feats: vec![vec![]] }
    }

    #[test]
    fn hard_buffer_fills_then_replaces_only_hard_samples() {
        let mut b = HardBuffer::new(8, 1);
        b.offer(samples(4, 0.0), &Tensor::zeros([4], (Kind::Bool, Device::Cpu)));
        b.offer(samples(4, 10.0), &Tensor::zeros([4], (Kind::Bool, Device::Cpu)));
        assert_eq!(b.len(), 8);
        let hard = Tensor::from_slice(&[true, false, false, true]);
        b.offer(samples(4, 100.0), &hard);
        let all = b.sample(8).unwrap();
        let xs: Vec<f64> = crate::host::vec(&all.x.flatten(0, -1).to_kind(Kind::Double)).unwrap();
        assert_eq!(xs.iter().filter(|&&v| v >= 100.0).count(), 2, "{xs:?}");
        assert!(xs.contains(&100.0) && xs.contains(&103.0), "{xs:?}");
        let meta = b.sample(4).unwrap();
        assert_eq!(meta.x.size(), [4, 1]);
        // teacher outputs travel with their samples
        assert_eq!((&meta.x - &meta.teachers[0]).abs().sum(Kind::Double).read_f64(), 0.0);
    }

    #[test]
    fn adam_matches_the_update_rule() {
        let p = Tensor::from_slice(&[1.0f64, -2.0]).set_requires_grad(true);
        let mut adam = Adam::new(vec![p.shallow_clone()], 0.1, 0.0);
        adam.step(&[Tensor::from_slice(&[0.5f64, -0.25])]);
        // The first step moves every coordinate by lr against the gradient's sign.
        let got: Vec<f64> = crate::host::vec(&p.detach()).unwrap();
        assert!((got[0] - 0.9).abs() < 1e-6 && (got[1] + 1.9).abs() < 1e-6, "{got:?}");
    }
}
