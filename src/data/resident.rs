//! `data.resident`: the uint8 training set held on the training device, every batch cut from it
//! there. The step uploads one `[b, 4]` int64 tensor (sample, top, left, mirror) instead of the
//! batch's pixels, and the crop and flip run as one gather on the device.
//!
//! The views are drawn on the host by the same code and from the same per-sample seeds as the
//! loader's workers ([`TrainTransform::draw`]), and a view of the image's own size is a pure cut
//! (zeros outside the image), so the batches are bit-identical to the loader's: the test runs
//! this code on the CPU against the worker path. A view that needs resampling (a random resized
//! crop, or a model whose input differs from the stored size) is not a cut, and libtorch's
//! uint8 antialiased resize exists on the CPU only, so such a set stays with the loader.

use super::loader::{Batch, Source};
use super::rng::Rng;
use super::transform::{TrainCrop, TrainTransform};
use super::ImageSet;
use anyhow::{Context, Result};
use tch::{Device, Kind, Tensor};

/// The training set on a device, with what cutting a batch needs.
pub struct ResidentSet {
    /// `[N, H, W, 3]` uint8 on the device.
    images: Tensor,
    /// `[N]` int64 on the device.
    labels: Tensor,
    hw: (i64, i64),
    transform: TrainTransform,
    /// `0..H` and `0..W` as int64 on the device, built once.
    rows: Tensor,
    cols: Tensor,
}

impl std::fmt::Debug for ResidentSet {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ResidentSet").field("images", &self.images.size()).field("device", &self.images.device()).finish()
    }
}

/// Why `source` under `transform` cannot be cut on the device for models taking `sizes`, or
/// None when it can.
pub fn why_not(source: &Source, transform: &TrainTransform, sizes: &[(i64, i64)]) -> Option<String> {
    let Source::Memory(set) = source else {
        return Some("the training images are not held in memory (they differ in size, or data.cache says otherwise)".into());
    };
    if let TrainCrop::RandomResized(_) = transform.crop {
        return Some("random_resized_crop resamples every view, which libtorch does bit for bit on the CPU only".into());
    }
    let (h, w) = set.image_size();
    if let Some(&(mh, mw)) = sizes.iter().find(|&&s| s != (h, w)) {
        return Some(format!("a model takes {mh}x{mw} images while the set holds {w}x{h}: its views need resampling"));
    }
    None
}

impl ResidentSet {
    /// `set` copied to `device` once, to be cut under `transform`.
    pub fn upload(set: &ImageSet, transform: &TrainTransform, device: Device) -> Result<ResidentSet> {
        let (h, w) = set.image_size();
        let images = set.images.f_to_device(device).with_context(|| format!("copying the training set ({} bytes) to {device:?}", set.images.numel()))?;
        let labels = set.labels.f_to_device(device)?;
        let rows = Tensor::f_arange(h, (Kind::Int64, device))?;
        let cols = Tensor::f_arange(w, (Kind::Int64, device))?;
        Ok(ResidentSet { images, labels, hw: (h, w), transform: transform.clone(), rows, cols })
    }

    pub fn device(&self) -> Device {
        self.images.device()
    }

    /// Bytes the pixels take on the device.
    pub fn bytes(&self) -> u64 {
        self.images.numel() as u64
    }

    /// The batch of samples `indices` under the views drawn from `seed` (sample `j` from
    /// `seed + j`, as the loader draws), its one view and its labels on the device.
    pub fn batch(&self, indices: &[usize], seed: u64) -> Result<Batch> {
        let (h, w) = self.hw;
        let b = indices.len() as i64;
        let mut params = Vec::with_capacity(indices.len() * 4);
        for (j, &i) in indices.iter().enumerate() {
            let view = self.transform.draw(h, w, &mut Rng::new(seed.wrapping_add(j as u64)));
            debug_assert_eq!((view.crop.height, view.crop.width), (h, w), "why_not admits cuts of the image's own size only");
            params.extend([i as i64, view.crop.top, view.crop.left, view.flip as i64]);
        }
        let p = crate::host::upload(&Tensor::f_from_slice(&params)?.f_view([b, 4])?, self.device())?;
        let (n, top, left, flip) = (p.select(1, 0), p.select(1, 1), p.select(1, 2), p.select(1, 3));
        // Output column x shows box column W-1-x when mirrored, as the loader's copy does.
        let mirrored = self.cols.f_neg()?.f_add_scalar(w - 1)?;
        let box_cols = mirrored.unsqueeze(0).f_where_self(&flip.unsqueeze(1).f_ne(0)?, &self.cols.unsqueeze(0))?;
        let rows = top.unsqueeze(1).f_add(&self.rows.unsqueeze(0))?; // [b, H]
        let cols = left.unsqueeze(1).f_add(&box_cols)?; // [b, W]
        let inside = |t: &Tensor, len: i64| -> Result<Tensor> { Ok(t.f_ge(0)?.f_logical_and(&t.f_lt(len)?)?) };
        let valid = inside(&rows, h)?.unsqueeze(2).f_logical_and(&inside(&cols, w)?.unsqueeze(1))?; // [b, H, W]
        let gathered =
            self.images.f_index(&[Some(n.view([b, 1, 1])), Some(rows.f_clamp(0, h - 1)?.view([b, h, 1])), Some(cols.f_clamp(0, w - 1)?.view([b, 1, w]))])?; // [b, H, W, 3]
        let view = gathered.f_mul(&valid.unsqueeze(3).f_to_kind(Kind::Uint8)?)?;
        let labels = self.labels.f_index_select(0, &n)?;
        Ok(Batch { views: vec![view], labels, skipped: vec![] })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::data::loader::{stream, Render, Schedule, Workers};
    use crate::host::HostRead;

    fn set(n: i64, h: i64, w: i64) -> ImageSet {
        let images = Tensor::arange(n * h * w * 3, (Kind::Int64, Device::Cpu)).f_remainder(251).unwrap().to_kind(Kind::Uint8).view([n, h, w, 3]);
        let labels = Tensor::arange(n, (Kind::Int64, Device::Cpu)).remainder(3);
        ImageSet::new(images, labels, vec!["a".into(), "b".into(), "c".into()]).unwrap()
    }

    fn schedule(n: usize, batches: usize, b: usize) -> Schedule {
        let mut rng = Rng::new(11);
        let batches: Vec<Vec<usize>> = (0..batches).map(|_| (0..b).map(|_| rng.below(n as u64) as usize).collect()).collect();
        let seeds = batches.iter().map(|_| rng.next_u64()).collect();
        Schedule { batches, seeds }
    }

    /// The loader's batches and the resident set's, for one transform.
    fn both(transform: TrainTransform, h: i64, w: i64) -> (Vec<Batch>, Vec<Batch>) {
        let data = set(40, h, w);
        let resident = ResidentSet::upload(&data, &transform, Device::Cpu).unwrap();
        let sched = schedule(40, 6, 9);
        let source = Source::Memory(data);
        let workers = Workers { threads: 2, ahead: 1 };
        let render = Render::Train(transform);
        let loaded = stream(&source, &sched, &render, &[(h, w)], workers, false, |s| s.collect::<Result<Vec<_>>>()).unwrap();
        let cut = sched.batches.iter().zip(&sched.seeds).map(|(i, &s)| resident.batch(i, s).unwrap()).collect();
        (loaded, cut)
    }

    #[test]
    fn cuts_are_bit_identical_to_the_loaders() {
        for (crop, flip) in [(TrainCrop::PadCrop { padding: 4 }, true), (TrainCrop::PadCrop { padding: 9 }, false), (TrainCrop::None, true)] {
            // A non-square image catches a swapped height and width.
            let (loaded, cut) = both(TrainTransform { crop: crop.clone(), horizontal_flip: flip }, 7, 10);
            for (a, b) in loaded.iter().zip(&cut) {
                assert!(a.views[0].equal(&b.views[0]), "{crop:?} flip {flip}");
                assert!(a.labels.equal(&b.labels));
            }
        }
    }

    #[test]
    fn views_really_move_and_mirror() {
        // Padding larger than the image puts some views entirely outside: all zeros, as the
        // loader gives; and mirrored samples must occur.
        let (_, cut) = both(TrainTransform { crop: TrainCrop::PadCrop { padding: 4 }, horizontal_flip: true }, 6, 6);
        let zeros: i64 = cut.iter().map(|b| b.views[0].eq(0).sum(Kind::Int64).read_i64()).sum();
        assert!(zeros > 0, "padding shows as zeros");
    }

    #[test]
    fn sets_that_need_resampling_stay_with_the_loader() {
        let src = Source::Memory(set(4, 8, 8));
        let pad = TrainTransform { crop: TrainCrop::PadCrop { padding: 2 }, horizontal_flip: true };
        assert!(why_not(&src, &pad, &[(8, 8)]).is_none());
        assert!(why_not(&src, &pad, &[(8, 8), (16, 16)]).unwrap().contains("16x16"));
        let rrc = TrainTransform { crop: TrainCrop::RandomResized(Default::default()), horizontal_flip: true };
        assert!(why_not(&src, &rrc, &[(8, 8)]).unwrap().contains("random_resized_crop"));
    }
}
