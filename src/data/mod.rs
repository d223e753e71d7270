//! Images for the models: the in-memory [`ImageSet`], decoding any JPEG/PNG, image folders,
//! CIFAR's binary files and synthetic sets, the caches, torchvision's transforms, the batch
//! loader with its worker threads, and per-model preprocessing.
//!
//! Images stay uint8 NHWC on the CPU until a batch is handed to a model: that is 4× smaller
//! than float and lets each model apply its own [`preprocess::Preprocess`] on its own device.

pub mod batches;
pub mod cache;
pub mod cache_dir;
pub mod cifar_binary;
pub mod decode;
pub mod disk_cache;
pub mod feed;
pub mod files;
pub mod image_folder;
pub mod loader;
pub mod preprocess;
pub mod resident;
pub mod rng;
pub mod synthetic;
pub mod transform;

use crate::host::HostRead;
use anyhow::{bail, Context, Result};
use tch::{Kind, Tensor};

/// Seed of [`ImageSet::take`]; fixed so that "the first n" means the same images every run.
const TAKE_SEED: u64 = 0x7A6B_E5D1_0C4F_3B29;

/// The positions of a random subset of `n` out of `len` items drawn from `seed` (all of them
/// when `n >= len`), in increasing order: the same call gives the same subset every run.
pub fn seeded_subset(len: usize, n: usize, seed: u64) -> Vec<usize> {
    let mut idx: Vec<usize> = (0..len).collect();
    if n < len {
        rng::Rng::new(seed).shuffle(&mut idx);
        idx.truncate(n);
        idx.sort_unstable();
    }
    idx
}

/// A labelled image set held in memory as one uint8 tensor.
pub struct ImageSet {
    /// `[N, H, W, 3]` uint8, CPU, contiguous (NHWC, RGB).
    pub images: Tensor,
    /// `[N]` int64, CPU, each in `0..class_names.len()`.
    pub labels: Tensor,
    pub class_names: Vec<String>,
}

impl std::fmt::Debug for ImageSet {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ImageSet").field("images", &self.images.size()).field("classes", &self.class_names.len()).finish()
    }
}

impl ImageSet {
    /// Checks the invariants documented on the fields and makes both tensors CPU-contiguous.
    pub fn new(images: Tensor, labels: Tensor, class_names: Vec<String>) -> Result<ImageSet> {
        let size = images.size();
        if size.len() != 4 || size[3] != 3 || images.kind() != Kind::Uint8 {
            bail!("images must be [N, H, W, 3] uint8, got {:?} {:?}", size, images.kind());
        }
        if labels.size() != [size[0]] || labels.kind() != Kind::Int64 {
            bail!("labels must be [{}] int64, got {:?} {:?}", size[0], labels.size(), labels.kind());
        }
        let images = images.f_to_device(tch::Device::Cpu)?.f_contiguous()?;
        let labels = labels.f_to_device(tch::Device::Cpu)?.f_contiguous()?;
        if size[0] > 0 {
            let lo = labels.f_min()?.read_i64();
            let hi = labels.f_max()?.read_i64();
            if lo < 0 || hi >= class_names.len() as i64 {
                bail!("labels span {lo}..={hi} but there are {} classes", class_names.len());
            }
        }
        Ok(ImageSet { images, labels, class_names })
    }

    pub fn len(&self) -> usize {
        self.images.size()[0] as usize
    }

    /// The pixel bytes, `N·H·W·3` in NHWC order, without a copy (the loader's workers read
    /// samples from it). Panics when `images` was replaced by a tensor that breaks the invariant.
    pub fn pixels(&self) -> &[u8] {
        let t = &self.images;
        assert!(t.kind() == Kind::Uint8 && t.device() == tch::Device::Cpu && t.is_contiguous(), "ImageSet images must be contiguous CPU uint8");
        let n = t.numel();
        if n == 0 {
            return &[];
        }
        // SAFETY: a contiguous CPU uint8 tensor holds `n` initialised bytes at `data_ptr`; the set
        // owns the tensor and nothing writes to it while `&self` is borrowed, so the storage
        // outlives the slice unchanged.
        unsafe { std::slice::from_raw_parts(t.data_ptr() as *const u8, n) }
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// `(height, width)` of every image.
    pub fn image_size(&self) -> (i64, i64) {
        let s = self.images.size();
        (s[1], s[2])
    }

    pub fn num_classes(&self) -> usize {
        self.class_names.len()
    }

    /// A random subset of `n` images (all of them when `n >= len`), chosen with a fixed seed so
    /// the same call gives the same subset every run; kept in the original order.
    pub fn take(&self, n: usize) -> ImageSet {
        self.take_seeded(n, TAKE_SEED)
    }

    /// Like [`ImageSet::take`] with an explicit seed.
    pub fn take_seeded(&self, n: usize, seed: u64) -> ImageSet {
        let idx: Vec<i64> = seeded_subset(self.len(), n, seed).into_iter().map(|i| i as i64).collect();
        self.subset(&idx)
    }

    /// The images at `indices`, in that order (repeats allowed).
    ///
    /// Indices come from this crate's own batching code, never from the user, so an index out
    /// of `0..len` is a bug and panics with the offending value.
    pub fn subset(&self, indices: &[i64]) -> ImageSet {
        let len = self.len() as i64;
        if let Some(bad) = indices.iter().find(|&&i| i < 0 || i >= len) {
            panic!("ImageSet::subset: index {bad} out of range for {len} images");
        }
        let idx = Tensor::from_slice(indices);
        ImageSet { images: self.images.index_select(0, &idx).contiguous(), labels: self.labels.index_select(0, &idx), class_names: self.class_names.clone() }
    }

    /// Number of images per class, indexed by class.
    pub fn class_counts(&self) -> Result<Vec<usize>> {
        let labels = crate::host::vec::<i64>(&self.labels).context("reading labels")?;
        let mut counts = vec![0usize; self.num_classes()];
        for l in labels {
            // `new` guarantees the range; stray values are skipped rather than trusted.
            if let Some(c) = counts.get_mut(l as usize) {
                *c += 1;
            }
        }
        Ok(counts)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn toy(n: i64) -> ImageSet {
        // Image i is filled with the value i so a subset can be traced back to its source.
        let images = Tensor::arange(n, (Kind::Uint8, tch::Device::Cpu)).view([n, 1, 1, 1]).expand([n, 2, 3, 3], false).contiguous();
        let labels = Tensor::arange(n, (Kind::Int64, tch::Device::Cpu)).remainder(3);
        ImageSet::new(images, labels, vec!["a".into(), "b".into(), "c".into()]).unwrap()
    }

    #[test]
    fn accessors_report_shape() {
        let s = toy(10);
        assert_eq!(s.len(), 10);
        assert!(!s.is_empty());
        assert_eq!(s.image_size(), (2, 3));
        assert_eq!(s.num_classes(), 3);
        assert_eq!(s.class_counts().unwrap(), vec![4, 3, 3]);
    }

    #[test]
    fn subset_follows_indices() {
        let s = toy(10).subset(&[7, 2, 7]);
        let firsts: Vec<u8> = crate::host::vec(&s.images.select(1, 0).select(1, 0).select(1, 0)).unwrap();
        assert_eq!(firsts, vec![7, 2, 7]);
        assert_eq!(crate::host::vec::<i64>(&s.labels).unwrap(), vec![1, 2, 1]);
    }

    #[test]
    fn take_is_seeded_sorted_and_distinct() {
        let s = toy(50);
        let a = crate::host::vec::<i64>(&s.take(10).labels).unwrap();
        let b = crate::host::vec::<i64>(&s.take(10).labels).unwrap();
        assert_eq!(a, b);
        let ids: Vec<u8> = crate::host::vec(&s.take(10).images.select(1, 0).select(1, 0).select(1, 0)).unwrap();
        assert!(ids.windows(2).all(|w| w[0] < w[1]), "{ids:?}");
        assert_ne!(ids, (0..10).collect::<Vec<u8>>(), "take must not just be a prefix");
        assert_eq!(s.take(80).len(), 50);
    }

    #[test]
    fn new_rejects_out_of_range_labels() {
        let images = Tensor::zeros([2, 1, 1, 3], (Kind::Uint8, tch::Device::Cpu));
        let labels = Tensor::from_slice(&[0i64, 5]);
        assert!(ImageSet::new(images, labels, vec!["x".into()]).is_err());
    }
}
