//! Where a transform cuts an image and what size it makes it: the box arithmetic of
//! torchvision's `Resize(int)`, `CenterCrop`, `RandomResizedCrop` and pad-and-crop, with
//! Python's rounding, so the same input size gives the same box as torchvision.
//!
//! Only the random draws differ from torchvision: they come from the crate's [`Rng`], so a run
//! is reproducible from its seed alone.

use crate::data::rng::Rng;

/// A region of an image in pixels; it may reach outside the image (a centre crop larger than
/// the image, a padded crop), where the pixels are zero.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct CropBox {
    pub top: i64,
    pub left: i64,
    pub height: i64,
    pub width: i64,
}

impl CropBox {
    /// The whole of an `h × w` image.
    pub fn full(h: i64, w: i64) -> CropBox {
        CropBox { top: 0, left: 0, height: h, width: w }
    }

    /// Whether the box lies inside an `h × w` image.
    pub fn inside(&self, h: i64, w: i64) -> bool {
        self.top >= 0 && self.left >= 0 && self.top + self.height <= h && self.left + self.width <= w
    }
}

/// Python's `round()`: halves go to the even neighbour (`round(2.5) == 2`), as in every box
/// formula torchvision writes with `int(round(x))`.
pub fn round_half_even(x: f64) -> i64 {
    x.round_ties_even() as i64
}

/// `(h, w)` after torchvision's `Resize(shorter)`: the shorter side becomes `shorter`, the
/// longer one `int(shorter · long / short)` (truncated, as torchvision does).
pub fn resize_shorter(h: i64, w: i64, shorter: i64) -> (i64, i64) {
    let (short, long) = if w <= h { (w, h) } else { (h, w) };
    let new_long = (shorter as f64 * long as f64 / short as f64) as i64;
    if w <= h {
        (new_long, shorter)
    } else {
        (shorter, new_long)
    }
}

/// torchvision's `CenterCrop((ch, cw))` of an `h × w` image. A crop larger than the image
/// reaches outside it (torchvision pads with zeros first; the box says the same thing).
pub fn center_crop(h: i64, w: i64, ch: i64, cw: i64) -> CropBox {
    if ch > h || cw > w {
        // torchvision pads to at least the crop size, split as (d // 2, (d + 1) // 2), then
        // crops the padded image at its centre.
        let (pad_top, pad_left) = (if ch > h { (ch - h) / 2 } else { 0 }, if cw > w { (cw - w) / 2 } else { 0 });
        let (ph, pw) = (h.max(ch), w.max(cw));
        let inner = center_crop(ph, pw, ch, cw);
        return CropBox { top: inner.top - pad_top, left: inner.left - pad_left, ..inner };
    }
    let top = round_half_even((h - ch) as f64 / 2.0);
    let left = round_half_even((w - cw) as f64 / 2.0);
    CropBox { top, left, height: ch, width: cw }
}

/// Settings of `random_resized_crop`: the area fraction and aspect-ratio ranges a crop is drawn
/// from (torchvision's defaults are `[0.08, 1]` and `[3/4, 4/3]`).
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct RandomResizedCrop {
    pub scale: [f64; 2],
    pub ratio: [f64; 2],
}

impl Default for RandomResizedCrop {
    fn default() -> Self {
        RandomResizedCrop { scale: [0.08, 1.0], ratio: [3.0 / 4.0, 4.0 / 3.0] }
    }
}

impl RandomResizedCrop {
    /// The crop of an `h × w` image, by torchvision's `RandomResizedCrop.get_params`: up to ten
    /// tries of an area fraction uniform in `scale` and a log-uniform aspect ratio in `ratio`;
    /// when none fits, the largest centred crop whose ratio lies in `ratio`.
    pub fn draw(&self, h: i64, w: i64, rng: &mut Rng) -> CropBox {
        let area = (h * w) as f64;
        let (log_lo, log_hi) = (self.ratio[0].ln(), self.ratio[1].ln());
        for _ in 0..10 {
            let target_area = area * rng.range(self.scale[0], self.scale[1]);
            let aspect = rng.range(log_lo, log_hi).exp();
            let cw = round_half_even((target_area * aspect).sqrt());
            let ch = round_half_even((target_area / aspect).sqrt());
            if 0 < cw && cw <= w && 0 < ch && ch <= h {
                let top = rng.below((h - ch + 1) as u64) as i64;
                let left = rng.below((w - cw + 1) as u64) as i64;
                return CropBox { top, left, height: ch, width: cw };
            }
        }
        self.fallback(h, w)
    }

    /// The centred crop torchvision takes when ten draws all failed.
    pub fn fallback(&self, h: i64, w: i64) -> CropBox {
        let in_ratio = w as f64 / h as f64;
        let (lo, hi) = (self.ratio[0].min(self.ratio[1]), self.ratio[0].max(self.ratio[1]));
        let (ch, cw) = if in_ratio < lo {
            (round_half_even(w as f64 / lo), w)
        } else if in_ratio > hi {
            (h, round_half_even(h as f64 * hi))
        } else {
            (h, w)
        };
        CropBox { top: (h - ch) / 2, left: (w - cw) / 2, height: ch, width: cw }
    }
}

/// The CIFAR pad-and-crop as a box: offsets in `0..=2p` of an image padded by `p` on every
/// side, i.e. a box of the image's own size shifted by up to `p` pixels, reaching into the
/// zero padding. Draws nothing when `p == 0`.
pub fn pad_crop(h: i64, w: i64, p: i64, rng: &mut Rng) -> CropBox {
    if p <= 0 {
        return CropBox::full(h, w);
    }
    let span = (2 * p + 1) as u64;
    let oy = rng.below(span) as i64;
    let ox = rng.below(span) as i64;
    CropBox { top: oy - p, left: ox - p, height: h, width: w }
}

/// The largest reduction `d` of 8, 4, 2 and 1 at which a `region` (height, width) of an image
/// decoded at 1/d is still at least `target` in both sides: the rule of PIL's `Image.draft`
/// (the decoded image never smaller than asked), applied to the region a transform cuts.
pub fn reduction((rh, rw): (i64, i64), (th, tw): (i64, i64)) -> i64 {
    [8, 4, 2].into_iter().find(|d| rh >= d * th && rw >= d * tw).unwrap_or(1)
}

/// The size of an `h × w` JPEG decoded at 1/d: each side rounded up, as libjpeg does.
pub fn reduced_size(h: i64, w: i64, d: i64) -> (i64, i64) {
    ((h + d - 1) / d, (w + d - 1) / d)
}

impl CropBox {
    /// This box of an `h × w` image, on that image decoded at 1/d ([`reduced_size`]): both
    /// edges divided by `d` and rounded to the nearest pixel (moving them by at most d/2 source
    /// pixels), an edge at the image's border kept at the border, and at least one pixel.
    pub fn reduced(&self, d: i64, (h, w): (i64, i64)) -> CropBox {
        let (rh, rw) = reduced_size(h, w, d);
        let edge = |x: i64, full: i64, limit: i64| if x >= full { limit } else { round_half_even(x as f64 / d as f64).clamp(0, limit) };
        let (top, left) = (edge(self.top, h, rh - 1), edge(self.left, w, rw - 1));
        let bottom = edge(self.top + self.height, h, rh).max(top + 1);
        let right = edge(self.left + self.width, w, rw).max(left + 1);
        CropBox { top, left, height: bottom - top, width: right - left }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reduction_keeps_the_region_at_least_the_target() {
        // A 2000×3000 photo into 224: 1/8 leaves 250×375.
        assert_eq!(reduction((2000, 3000), (224, 224)), 8);
        // 1000×1000: 1/8 would leave 125 < 224, 1/4 leaves 250.
        assert_eq!(reduction((1000, 1000), (224, 224)), 4);
        // Both sides must hold: 1000 high but 447 wide is not twice 224.
        assert_eq!(reduction((1000, 447), (224, 224)), 1);
        assert_eq!(reduction((448, 448), (224, 224)), 2);
        assert_eq!(reduction((32, 32), (32, 32)), 1);
        assert_eq!(reduced_size(375, 500, 8), (47, 63));
        assert_eq!(reduced_size(376, 500, 4), (94, 125));
    }

    #[test]
    fn reduced_box_divides_its_edges() {
        let b = CropBox { top: 100, left: 50, height: 900, width: 1003 };
        // Edges 100..1000 and 50..1053 over 4: 25..250 and 12.5→12..263.25→263.
        assert_eq!(b.reduced(4, (2000, 2000)), CropBox { top: 25, left: 12, height: 225, width: 251 });
        // The whole image is the whole reduced image, though 500 / 8 = 62.5 rounds to 62.
        assert_eq!(CropBox::full(375, 500).reduced(8, (375, 500)), CropBox::full(47, 63));
        // A box thinner than d keeps one pixel.
        let thin = CropBox { top: 8, left: 8, height: 3, width: 3 };
        assert_eq!(thin.reduced(8, (80, 80)), CropBox { top: 1, left: 1, height: 1, width: 1 });
    }

    #[test]
    fn python_rounding() {
        assert_eq!([0.5, 1.5, 2.5, -0.5, 2.4999, 2.5001].map(round_half_even), [0, 2, 2, 0, 2, 3]);
    }

    #[test]
    fn resize_shorter_truncates_the_long_side() {
        // 500×375 → 256 × int(256·500/375 = 341.33) = 341; a square stays square.
        assert_eq!(resize_shorter(375, 500, 256), (256, 341));
        assert_eq!(resize_shorter(500, 375, 256), (341, 256));
        assert_eq!(resize_shorter(32, 32, 36), (36, 36));
        // 333×200 → 256: 256·333/200 = 426.24 → 426.
        assert_eq!(resize_shorter(200, 333, 256), (256, 426));
    }

    #[test]
    fn center_crop_rounds_half_to_even() {
        // (341 - 224) / 2 = 58.5 → 58 (Python), not 59.
        assert_eq!(center_crop(256, 341, 224, 224), CropBox { top: 16, left: 58, height: 224, width: 224 });
        // (343 - 224) / 2 = 59.5 → 60.
        assert_eq!(center_crop(256, 343, 224, 224).left, 60);
        assert!(center_crop(256, 341, 224, 224).inside(256, 341));
    }

    #[test]
    fn center_crop_larger_than_the_image_reaches_outside_it() {
        // 20 high into 25: torchvision pads 2 on top, 3 below, then crops at the centre.
        let b = center_crop(20, 30, 25, 10);
        assert_eq!((b.top, b.height), (-2, 25));
        assert_eq!((b.left, b.width), (10, 10));
        assert!(!b.inside(20, 30));
    }

    #[test]
    fn random_resized_crop_stays_inside_and_covers_its_ranges() {
        let rrc = RandomResizedCrop::default();
        let mut rng = Rng::new(3);
        let (h, w) = (300i64, 400i64);
        let (mut min_frac, mut max_frac, mut min_ratio, mut max_ratio) = (1.0f64, 0.0f64, 9.0f64, 0.0f64);
        for _ in 0..2000 {
            let b = rrc.draw(h, w, &mut rng);
            assert!(b.inside(h, w) && b.height > 0 && b.width > 0, "{b:?}");
            let frac = (b.height * b.width) as f64 / (h * w) as f64;
            let ratio = b.width as f64 / b.height as f64;
            min_frac = min_frac.min(frac);
            max_frac = max_frac.max(frac);
            min_ratio = min_ratio.min(ratio);
            max_ratio = max_ratio.max(ratio);
        }
        // Rounding to whole pixels moves the extremes a little past the nominal ranges.
        assert!(min_frac < 0.1 && max_frac > 0.9, "{min_frac} {max_frac}");
        assert!((0.7..0.8).contains(&min_ratio) && (1.3..1.38).contains(&max_ratio), "{min_ratio} {max_ratio}");
    }

    #[test]
    fn random_resized_crop_is_seeded() {
        let rrc = RandomResizedCrop::default();
        let a: Vec<CropBox> = (0..5).scan(Rng::new(8), |r, _| Some(rrc.draw(100, 90, r))).collect();
        let b: Vec<CropBox> = (0..5).scan(Rng::new(8), |r, _| Some(rrc.draw(100, 90, r))).collect();
        assert_eq!(a, b);
        assert!(a.windows(2).any(|p| p[0] != p[1]));
    }

    #[test]
    fn fallback_is_the_largest_centred_crop_in_range() {
        let rrc = RandomResizedCrop::default();
        // 10 wide, 100 high: ratio 0.1 < 3/4, so the full width and round(10 / 0.75) = 13 rows.
        assert_eq!(rrc.fallback(100, 10), CropBox { top: 43, left: 0, height: 13, width: 10 });
        // 100 wide, 10 high: round(10 · 4/3) = 13 columns.
        assert_eq!(rrc.fallback(10, 100), CropBox { top: 0, left: 43, height: 10, width: 13 });
        assert_eq!(rrc.fallback(30, 30), CropBox::full(30, 30));
        // A scale range no crop can meet (more than the whole image) always falls back.
        let never = RandomResizedCrop { scale: [1.5, 2.0], ..rrc };
        assert_eq!(never.draw(100, 10, &mut Rng::new(1)), rrc.fallback(100, 10));
    }

    #[test]
    fn pad_crop_shifts_by_at_most_the_padding() {
        let mut rng = Rng::new(2);
        let boxes: Vec<CropBox> = (0..200).map(|_| pad_crop(32, 32, 4, &mut rng)).collect();
        assert!(boxes.iter().all(|b| (-4..=4).contains(&b.top) && (-4..=4).contains(&b.left) && b.height == 32 && b.width == 32));
        assert!(boxes.iter().any(|b| b.top == -4) && boxes.iter().any(|b| b.left == 4));
        let before = rng.clone();
        assert_eq!(pad_crop(32, 32, 0, &mut rng), CropBox::full(32, 32));
        assert_eq!(rng, before, "no padding draws nothing");
    }
}
