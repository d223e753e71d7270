//! A data set ready to be fed to models: its [`Source`], its training and evaluation
//! transforms and its loader settings; and the test set rendered once at each model's size.

use super::loader::{self, Render, Schedule, Source, Stream, Workers};
use super::resident::ResidentSet;
use super::transform::{EvalTransform, TrainTransform};
use super::ImageSet;
use anyhow::Result;
use tch::Tensor;

/// A training (or test) set with everything needed to turn it into batches.
pub struct Feed {
    pub source: Source,
    pub train: TrainTransform,
    pub eval: EvalTransform,
    pub workers: Workers,
    /// Leave out (and count) samples that fail to decode.
    pub skip_bad: bool,
    /// The training set held on the training device, when `data.resident` put it there.
    pub resident: Option<ResidentSet>,
}

impl Feed {
    pub fn len(&self) -> usize {
        self.source.len()
    }

    pub fn is_empty(&self) -> bool {
        self.source.is_empty()
    }

    pub fn class_names(&self) -> &[String] {
        self.source.class_names()
    }

    /// Runs `consume` over training batches: `schedule`'s samples under the training transform,
    /// rendered at each of `sizes`.
    /// With a resident set that serves `sizes`, the batches are cut on its device.
    pub fn train_batches<R>(&self, schedule: &Schedule, sizes: &[(i64, i64)], consume: impl FnOnce(&mut Stream) -> Result<R>) -> Result<R> {
        if let Some(set) = self.resident.as_ref().filter(|_| super::resident::why_not(&self.source, &self.train, sizes).is_none()) {
            anyhow::ensure!(schedule.seeds.len() == schedule.batches.len(), "a training schedule needs one seed per batch");
            return loader::stream_cut(schedule.batches.len(), &|k| set.batch(&schedule.batches[k], schedule.seeds[k]), consume);
        }
        loader::stream(&self.source, schedule, &Render::Train(self.train.clone()), sizes, self.workers, self.skip_bad, consume)
    }

    /// Runs `consume` over evaluation batches of `batches` (sample indices) at each of `sizes`.
    pub fn eval_batches<R>(&self, batches: Vec<Vec<usize>>, sizes: &[(i64, i64)], consume: impl FnOnce(&mut Stream) -> Result<R>) -> Result<R> {
        let schedule = Schedule { batches, seeds: vec![] };
        loader::stream(&self.source, &schedule, &Render::Eval(self.eval.clone()), sizes, self.workers, self.skip_bad, consume)
    }

    /// The whole set under the evaluation transform, held in memory at each of `sizes` (the
    /// first is the student's). Samples that fail to decode are counted when skipped.
    pub fn render_test(&self, sizes: &[(i64, i64)]) -> Result<TestSet> {
        const CHUNK: usize = 256;
        let n = self.len();
        let batches: Vec<Vec<usize>> = (0..n).collect::<Vec<_>>().chunks(CHUNK).map(|c| c.to_vec()).collect();
        let (views, labels, skipped) = self.eval_batches(batches, sizes, |stream| {
            let mut views: Vec<Vec<Tensor>> = sizes.iter().map(|_| Vec::new()).collect();
            let (mut labels, mut skipped) = (Vec::new(), 0usize);
            for batch in stream {
                let batch = batch?;
                for (acc, v) in views.iter_mut().zip(batch.views) {
                    acc.push(v);
                }
                labels.push(batch.labels);
                skipped += batch.skipped.len();
            }
            Ok((views, labels, skipped))
        })?;
        let labels = if labels.is_empty() { Tensor::zeros([0], (tch::Kind::Int64, tch::Device::Cpu)) } else { Tensor::cat(&labels, 0) };
        let mut sets = Vec::with_capacity(sizes.len());
        for (&(h, w), parts) in sizes.iter().zip(views) {
            let images = if parts.is_empty() { Tensor::zeros([0, h, w, 3], (tch::Kind::Uint8, tch::Device::Cpu)) } else { Tensor::cat(&parts, 0) };
            sets.push(ImageSet::new(images, labels.shallow_clone(), self.class_names().to_vec())?);
        }
        Ok(TestSet { sizes: sizes.to_vec(), sets, skipped })
    }
}

/// The test set under the evaluation transform, at every size a model needs.
pub struct TestSet {
    /// `(height, width)` of each set; the first is the student's.
    pub sizes: Vec<(i64, i64)>,
    pub sets: Vec<ImageSet>,
    /// Test images left out because they failed to decode (`skip_bad`).
    pub skipped: usize,
}

impl TestSet {
    /// The set at the student's size.
    pub fn student(&self) -> &ImageSet {
        &self.sets[0]
    }

    /// The set at `size`; a size that was not rendered is a bug in the caller's size list.
    pub fn at(&self, size: (i64, i64)) -> Result<&ImageSet> {
        let k =
            self.sizes.iter().position(|&s| s == size).ok_or_else(|| anyhow::anyhow!("the test set was not rendered at {size:?} (sizes {:?})", self.sizes))?;
        Ok(&self.sets[k])
    }

    pub fn len(&self) -> usize {
        self.student().len()
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    pub fn class_names(&self) -> &[String] {
        &self.student().class_names
    }
}

/// The distinct sizes of `first` followed by `others`, in order of first appearance.
pub fn distinct_sizes(first: (i64, i64), others: impl IntoIterator<Item = (i64, i64)>) -> Vec<(i64, i64)> {
    let mut sizes = vec![first];
    for s in others {
        if !sizes.contains(&s) {
            sizes.push(s);
        }
    }
    sizes
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::data::transform::TrainCrop;
    use tch::Kind;

    fn feed(n: i64) -> Feed {
        let images = Tensor::arange(n * 8 * 8 * 3, (Kind::Int64, tch::Device::Cpu)).remainder(253).to_kind(Kind::Uint8).view([n, 8, 8, 3]);
        let labels = Tensor::arange(n, (Kind::Int64, tch::Device::Cpu)).remainder(2);
        let set = ImageSet::new(images, labels, vec!["a".into(), "b".into()]).unwrap();
        Feed {
            source: Source::Memory(set),
            train: TrainTransform { crop: TrainCrop::PadCrop { padding: 1 }, horizontal_flip: true },
            eval: EvalTransform::default(),
            workers: Workers { threads: 2, ahead: 1 },
            skip_bad: false,
            resident: None,
        }
    }

    #[test]
    fn test_set_is_rendered_at_every_size_in_order() {
        let f = feed(300);
        let t = f.render_test(&[(8, 8), (4, 4)]).unwrap();
        assert_eq!(t.len(), 300);
        assert_eq!(t.at((4, 4)).unwrap().image_size(), (4, 4));
        assert!(t.at((5, 5)).is_err());
        let Source::Memory(set) = &f.source else { unreachable!() };
        assert!(t.student().images.equal(&set.images), "the identity eval transform keeps the images");
        assert!(t.student().labels.equal(&set.labels));
    }

    #[test]
    fn distinct_sizes_keep_the_first_and_drop_repeats() {
        assert_eq!(distinct_sizes((8, 8), [(4, 4), (8, 8), (4, 4), (2, 2)]), vec![(8, 8), (4, 4), (2, 2)]);
    }
}
