//! Image transforms as torchvision users know them, on decoded RGB8 images: the training
//! crop (`random_resized_crop` or CIFAR's `pad_crop`) with a horizontal flip, and the
//! evaluation `resize {shorter}` + `center_crop`.
//!
//! A transform first decides a sample's [`View`] (which box of the source image, mirrored or
//! not), then renders that view at each size a model asks for. Training renders every size from
//! the source image, so a teacher at 224 and a student at 128 see the same region, each at full
//! detail. Evaluation renders the first size exactly as torchvision's
//! `Resize(shorter)` → `CenterCrop(size)` does and gives any other size that crop resized.

pub mod geometry;
pub mod resample;

use crate::data::rng::Rng;
use anyhow::Result;
use geometry::{CropBox, RandomResizedCrop};

/// The training-time crop.
#[derive(Clone, Debug, PartialEq)]
pub enum TrainCrop {
    /// torchvision's `RandomResizedCrop`: a random box, resized to the model's size.
    RandomResized(RandomResizedCrop),
    /// CIFAR's `RandomCrop(size, padding=p)`: the image shifted by up to `p` pixels into a zero
    /// border; the image must already have the model's size unless it is resized after.
    PadCrop { padding: i64 },
    /// The whole image.
    None,
}

/// What a training sample goes through: the crop, then a mirror with probability ½.
#[derive(Clone, Debug, PartialEq)]
pub struct TrainTransform {
    pub crop: TrainCrop,
    pub horizontal_flip: bool,
}

/// The evaluation transform: optionally resize the shorter side, then optionally centre-crop.
/// Neither step (the default) renders the whole image resized to each model's size.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct EvalTransform {
    pub resize_shorter: Option<i64>,
    pub center_crop: Option<i64>,
}

/// One sample's decision: the region of the source image and whether it is mirrored.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct View {
    pub crop: CropBox,
    pub flip: bool,
}

impl TrainTransform {
    /// Draws the view of an `h × w` image. The draws happen in torchvision's order (crop, then
    /// flip) and only for enabled steps, so switching one off leaves the other's stream alone.
    pub fn draw(&self, h: i64, w: i64, rng: &mut Rng) -> View {
        let crop = match &self.crop {
            TrainCrop::RandomResized(rrc) => rrc.draw(h, w, rng),
            TrainCrop::PadCrop { padding } => geometry::pad_crop(h, w, *padding, rng),
            TrainCrop::None => CropBox::full(h, w),
        };
        let flip = self.horizontal_flip && rng.below(2) == 1;
        View { crop, flip }
    }

    /// The JPEG reduction ([`geometry::reduction`]) at which `view` of an `h × w` image still
    /// has every one of `sizes` worth of pixels. A view reaching outside the image (padding)
    /// takes 1.
    pub fn reduction(&self, (h, w): (i64, i64), view: View, sizes: &[(i64, i64)]) -> i64 {
        if !view.crop.inside(h, w) {
            return 1;
        }
        geometry::reduction((view.crop.height, view.crop.width), largest(sizes))
    }

    /// Renders `view` of `src` (`h × w` RGB8) at `size` (`height, width`) into `dst`.
    pub fn render(&self, src: &[u8], hw: (i64, i64), view: View, size: (i64, i64), dst: &mut [u8]) -> Result<()> {
        resample::resized_crop_into(src, hw, view.crop, size, view.flip, dst)
    }
}

impl EvalTransform {
    /// The `(height, width)` this transform gives an `h × w` image when no model size applies:
    /// the centre crop's size, else the resized size, else the image's own.
    pub fn natural_size(&self, h: i64, w: i64) -> (i64, i64) {
        match (self.resize_shorter, self.center_crop) {
            (_, Some(c)) => (c, c),
            (Some(s), None) => geometry::resize_shorter(h, w, s),
            (None, None) => (h, w),
        }
    }

    /// The JPEG reduction at which an `h × w` image still has the pixels this transform's first
    /// step resizes to (the whole image at each of `sizes` when no step is configured). A centre
    /// crop without a resize cuts source pixels and takes 1.
    pub fn reduction(&self, (h, w): (i64, i64), sizes: &[(i64, i64)]) -> i64 {
        match (self.resize_shorter, self.center_crop) {
            (Some(s), _) => geometry::reduction((h, w), geometry::resize_shorter(h, w, s)),
            (None, Some(_)) => 1,
            (None, None) => geometry::reduction((h, w), largest(sizes)),
        }
    }

    /// Renders `src` (`h × w` RGB8) at each of `sizes` into the matching `dst` buffers.
    ///
    /// The first size gets torchvision's two steps exactly (resize the whole image, then cut the
    /// centre); every other size is that first image resized. With neither step configured,
    /// each size is the whole image resized.
    pub fn render(&self, src: &[u8], hw: (i64, i64), sizes: &[(i64, i64)], dst: &mut [&mut [u8]]) -> Result<()> {
        self.render_reduced(src, hw, hw, sizes, dst)
    }

    /// [`EvalTransform::render`] of an image of size `full` given as `src`, the same image
    /// decoded smaller (`hw`, at the [`EvalTransform::reduction`] for `full`): the sizes are
    /// those of `full`, the pixels come from `src`.
    pub fn render_reduced(&self, src: &[u8], (h, w): (i64, i64), full: (i64, i64), sizes: &[(i64, i64)], dst: &mut [&mut [u8]]) -> Result<()> {
        anyhow::ensure!(sizes.len() == dst.len() && !sizes.is_empty(), "{} sizes for {} buffers", sizes.len(), dst.len());
        let first = sizes[0];
        let (rh, rw) = match self.resize_shorter {
            Some(s) => geometry::resize_shorter(full.0, full.1, s),
            None => full,
        };
        match self.center_crop {
            None if self.resize_shorter.is_none() => {
                for (size, out) in sizes.iter().zip(dst.iter_mut()) {
                    resample::resized_crop_into(src, (h, w), CropBox::full(h, w), *size, false, out)?;
                }
                return Ok(());
            }
            None => {
                anyhow::ensure!(first == (rh, rw), "resize gives {rh}×{rw}, not the requested {first:?}; add a center_crop");
                resample::resized_crop_into(src, (h, w), CropBox::full(h, w), first, false, dst[0])?;
            }
            Some(c) => {
                anyhow::ensure!(first == (c, c), "center_crop gives {c}×{c}, not the requested {first:?}");
                anyhow::ensure!(self.resize_shorter.is_some() || (h, w) == full, "a centre crop without a resize needs the image at full size");
                let mut resized = vec![0u8; (rh * rw * 3) as usize];
                resample::resized_crop_into(src, (h, w), CropBox::full(h, w), (rh, rw), false, &mut resized)?;
                resample::resized_crop_into(&resized, (rh, rw), geometry::center_crop(rh, rw, c, c), (c, c), false, dst[0])?;
            }
        }
        let (head, rest) = dst.split_at_mut(1);
        for (size, out) in sizes[1..].iter().zip(rest.iter_mut()) {
            resample::resized_crop_into(head[0], first, CropBox::full(first.0, first.1), *size, false, out)?;
        }
        Ok(())
    }
}

/// The largest height and width among `sizes`.
fn largest(sizes: &[(i64, i64)]) -> (i64, i64) {
    sizes.iter().fold((1, 1), |(h, w), &(sh, sw)| (h.max(sh), w.max(sw)))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ramp(h: i64, w: i64) -> Vec<u8> {
        (0..h * w).flat_map(|i| [(i % w * 255 / (w - 1)) as u8, (i / w * 255 / (h - 1)) as u8, 90]).collect()
    }

    #[test]
    fn pad_crop_draws_as_the_cifar_augmentation_did() {
        // Same order as the earlier in-memory augmentation: row offset, column offset, coin.
        let t = TrainTransform { crop: TrainCrop::PadCrop { padding: 4 }, horizontal_flip: true };
        let mut a = Rng::new(5);
        let mut b = Rng::new(5);
        for _ in 0..20 {
            let v = t.draw(32, 32, &mut a);
            let (oy, ox) = (b.below(9) as i64, b.below(9) as i64);
            let flip = b.below(2) == 1;
            assert_eq!(v, View { crop: CropBox { top: oy - 4, left: ox - 4, height: 32, width: 32 }, flip });
        }
    }

    #[test]
    fn every_size_sees_the_same_region() {
        // A horizontal ramp: the mean red of the rendered view depends on where the box is, not
        // on the size it is rendered at.
        let (h, w) = (60, 90);
        let src = ramp(h, w);
        let t = TrainTransform { crop: TrainCrop::RandomResized(RandomResizedCrop::default()), horizontal_flip: false };
        let view = View { crop: CropBox { top: 10, left: 50, height: 30, width: 30 }, flip: false };
        let mean_red = |s: i64| {
            let mut out = vec![0u8; (s * s * 3) as usize];
            t.render(&src, (h, w), view, (s, s), &mut out).unwrap();
            out.chunks(3).map(|p| p[0] as f64).sum::<f64>() / (s * s) as f64
        };
        let (small, large) = (mean_red(8), mean_red(64));
        assert!((small - large).abs() < 2.0, "{small} vs {large}");
        assert!(small > 150.0, "the box is on the right, where red is high: {small}");
    }

    #[test]
    fn eval_renders_the_first_size_exactly_and_others_from_it() {
        let (h, w) = (50, 70);
        let src = ramp(h, w);
        let t = EvalTransform { resize_shorter: Some(40), center_crop: Some(32) };
        assert_eq!(t.natural_size(h, w), (32, 32));
        let (mut a, mut b) = (vec![0u8; 32 * 32 * 3], vec![0u8; 8 * 8 * 3]);
        t.render(&src, (h, w), &[(32, 32), (8, 8)], &mut [&mut a, &mut b]).unwrap();
        // The two steps by hand: 50×70 → 40×56, then the centre 32×32 at (4, 12).
        let mut resized = vec![0u8; 40 * 56 * 3];
        resample::resized_crop_into(&src, (h, w), CropBox::full(h, w), (40, 56), false, &mut resized).unwrap();
        let mut crop = vec![0u8; 32 * 32 * 3];
        resample::resized_crop_into(&resized, (40, 56), CropBox { top: 4, left: 12, height: 32, width: 32 }, (32, 32), false, &mut crop).unwrap();
        assert_eq!(a, crop);
        let mut small = vec![0u8; 8 * 8 * 3];
        resample::resized_crop_into(&crop, (32, 32), CropBox::full(32, 32), (8, 8), false, &mut small).unwrap();
        assert_eq!(b, small);
        // A request that does not match the configured crop is an error, not a silent resize.
        assert!(t.render(&src, (h, w), &[(16, 16)], &mut [&mut vec![0u8; 16 * 16 * 3]]).is_err());
    }
}
