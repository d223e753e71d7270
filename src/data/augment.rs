//! Training-time augmentation of uint8 NHWC batches: random crop with zero padding and random
//! horizontal flip, driven by the crate's own seeded [`Rng`].
//!
//! Done in plain loops on the CPU bytes: one pass per batch, no per-sample tensor ops (which
//! would cost more in dispatch than the copy itself) and no dependence on libtorch's RNG.

use super::rng::Rng;
use tch::{Device, Kind, Tensor};

/// Augmentation settings. Padding 0 and no flip is the identity.
#[derive(Clone, Debug, PartialEq)]
pub struct Augment {
    /// Zero padding added on each spatial side before cropping back to `H × W`.
    pub random_crop_padding: i64,
    /// Mirror left–right with probability 0.5, independently per sample.
    pub horizontal_flip: bool,
}

/// Per-sample decisions, drawn in a fixed order so a seed reproduces them.
#[derive(Clone, Copy, Debug, PartialEq)]
struct Draw {
    oy: i64,
    ox: i64,
    flip: bool,
}

fn draw(aug: &Augment, rng: &mut Rng) -> Draw {
    let p = aug.random_crop_padding.max(0);
    // Draws happen only for enabled transforms, so turning one off leaves the stream of the
    // other unchanged and the identity setting consumes nothing.
    let (oy, ox) = if p > 0 {
        let span = (2 * p + 1) as u64;
        (rng.below(span) as i64, rng.below(span) as i64)
    } else {
        (0, 0)
    };
    let flip = aug.horizontal_flip && rng.below(2) == 1;
    Draw { oy, ox, flip }
}

/// Augments a `[B, H, W, 3]` uint8 batch; returns a new CPU `[B, H, W, 3]` uint8 batch.
///
/// Each sample is zero-padded by `p` on every side, cropped to `H × W` at a random offset in
/// `0..=2p` (both axes), then mirrored with probability 0.5. The batch comes from
/// [`super::batches::gather`]; any other shape is a programming error and panics.
pub fn augment_batch(images: &Tensor, aug: &Augment, rng: &mut Rng) -> Tensor {
    let size = images.size();
    assert!(size.len() == 4 && size[3] == 3 && images.kind() == Kind::Uint8, "augment_batch expects [B, H, W, 3] uint8, got {size:?} {:?}", images.kind());
    let (b, h, w) = (size[0] as usize, size[1] as usize, size[2] as usize);
    let src = images.to_device(Device::Cpu).contiguous();
    let numel = b * h * w * 3;
    let mut input = vec![0u8; numel];
    src.copy_data_u8(&mut input, numel);
    let mut out = vec![0u8; numel];
    let p = aug.random_crop_padding.max(0);
    let (hi, wi) = (h as i64, w as i64);
    let row = w * 3;
    for n in 0..b {
        let d = draw(aug, rng);
        let base = n * h * row;
        for y in 0..hi {
            // Output row y reads source row y + oy - p; rows falling in the padding stay zero.
            let sy = y + d.oy - p;
            if sy < 0 || sy >= hi {
                continue;
            }
            let src_row = &input[base + sy as usize * row..][..row];
            let dst_row = &mut out[base + y as usize * row..][..row];
            for x in 0..wi {
                // Flip is applied after the crop: output column x shows crop column W-1-x.
                let cx = if d.flip { wi - 1 - x } else { x };
                let sx = cx + d.ox - p;
                if sx < 0 || sx >= wi {
                    continue;
                }
                let (s, t) = (sx as usize * 3, x as usize * 3);
                dst_row[t..t + 3].copy_from_slice(&src_row[s..s + 3]);
            }
        }
    }
    Tensor::from_slice(&out).view([b as i64, hi, wi, 3])
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Batch whose every byte differs from its neighbours, so any misplacement shows.
    fn batch(b: i64, h: i64, w: i64) -> Tensor {
        Tensor::arange(b * h * w * 3, (Kind::Int64, Device::Cpu)).remainder(251).to_kind(Kind::Uint8).view([b, h, w, 3])
    }

    #[test]
    fn no_padding_no_flip_is_identity_and_draws_nothing() {
        let x = batch(4, 5, 6);
        let mut rng = Rng::new(1);
        let aug = Augment { random_crop_padding: 0, horizontal_flip: false };
        let y = augment_batch(&x, &aug, &mut rng);
        assert!(y.equal(&x));
        assert_eq!(rng, Rng::new(1));
    }

    #[test]
    fn flipped_samples_equal_flip_of_width() {
        let x = batch(16, 4, 5);
        let aug = Augment { random_crop_padding: 0, horizontal_flip: true };
        let y = augment_batch(&x, &aug, &mut Rng::new(3));
        let flipped = x.flip([2]);
        let mut n_flip = 0;
        for i in 0..16 {
            let (yi, xi, fi) = (y.get(i), x.get(i), flipped.get(i));
            assert!(yi.equal(&xi) || yi.equal(&fi), "sample {i} is neither original nor flipped");
            n_flip += yi.equal(&fi) as usize;
        }
        // Probability 0.5 per sample: 16 samples all on one side would mean the coin is broken.
        assert!((1..16).contains(&n_flip), "{n_flip} of 16 flipped");
    }

    #[test]
    fn crop_matches_padded_window() {
        let x = batch(8, 6, 7);
        let p = 2;
        let aug = Augment { random_crop_padding: p, horizontal_flip: false };
        // Replay the draws with an identical generator to know each sample's offset.
        let mut replay = Rng::new(11);
        let y = augment_batch(&x, &aug, &mut Rng::new(11));
        let padded = x.constant_pad_nd([0, 0, p, p, p, p]);
        let mut offsets = vec![];
        for i in 0..8 {
            let d = draw(&aug, &mut replay);
            assert!((0..=2 * p).contains(&d.oy) && (0..=2 * p).contains(&d.ox));
            let window = padded.get(i).narrow(0, d.oy, 6).narrow(1, d.ox, 7);
            assert!(y.get(i).equal(&window), "sample {i} offset {d:?}");
            offsets.push((d.oy, d.ox));
        }
        assert!(offsets.iter().any(|&o| o != (p, p)), "all crops centred: offsets not random");
    }

    #[test]
    fn same_seed_same_batch() {
        let x = batch(6, 8, 8);
        let aug = Augment { random_crop_padding: 3, horizontal_flip: true };
        let a = augment_batch(&x, &aug, &mut Rng::new(5));
        let b = augment_batch(&x, &aug, &mut Rng::new(5));
        let c = augment_batch(&x, &aug, &mut Rng::new(6));
        assert!(a.equal(&b));
        assert!(!a.equal(&c));
    }
}
