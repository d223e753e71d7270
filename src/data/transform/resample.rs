//! Cutting a box out of an RGB8 image, resizing it with antialiased bilinear interpolation and
//! mirroring it, straight into a batch buffer.
//!
//! The resize is libtorch's own `_upsample_bilinear2d_aa` on the uint8 image, the kernel
//! torchvision's v2 `resize` calls on uint8 tensors (PIL's fixed-point resampling algorithm),
//! so our pixels are torchvision's pixels rather than an approximation of them.

use super::geometry::CropBox;
use anyhow::{ensure, Context, Result};
use tch::{Kind, Tensor};

/// Writes the `out_h × out_w` RGB8 (HWC) image made from `src` (`h × w`, HWC) by cutting `b`
/// (zeros where it reaches outside `src`), resizing it and, with `flip`, mirroring it
/// left–right, into `dst` (exactly `out_h·out_w·3` bytes).
pub fn resized_crop_into(src: &[u8], (h, w): (i64, i64), b: CropBox, (out_h, out_w): (i64, i64), flip: bool, dst: &mut [u8]) -> Result<()> {
    ensure!(src.len() as i64 == h * w * 3, "source holds {} bytes, not {h}×{w}×3", src.len());
    ensure!(dst.len() as i64 == out_h * out_w * 3, "destination holds {} bytes, not {out_h}×{out_w}×3", dst.len());
    ensure!(b.height > 0 && b.width > 0 && out_h > 0 && out_w > 0, "empty crop {b:?} or output {out_h}×{out_w}");
    if (b.height, b.width) == (out_h, out_w) {
        // torchvision returns the crop unchanged when it already has the output size.
        copy_box_into(src, (h, w), b, flip, dst);
        return Ok(());
    }
    let image = Tensor::from_slice(src).view([h, w, 3]);
    let crop = cut(&image, (h, w), b)?;
    // [1, 3, H, W] over the HWC bytes: channels-last strides, the layout the uint8 kernel
    // works in without a copy.
    let nchw = crop.f_contiguous()?.f_permute([2, 0, 1])?.f_unsqueeze(0)?;
    let sized = nchw.f_internal_upsample_bilinear2d_aa([out_h, out_w], false, None, None).context("antialiased bilinear resize")?;
    let sized = sized.f_squeeze_dim(0)?.f_permute([1, 2, 0])?;
    let oriented = if flip { sized.f_flip([1])? } else { sized };
    let out = oriented.f_contiguous()?;
    debug_assert_eq!(out.kind(), Kind::Uint8);
    crate::host::bytes(&out, dst)?;
    Ok(())
}

/// Copies box `b` of `src` (`h × w`, HWC) into `dst` (`b.height × b.width`), mirrored with
/// `flip`, zero outside the image. Plain row copies: the CIFAR pad-and-crop path, where a
/// tensor op per sample would cost more than the copy.
fn copy_box_into(src: &[u8], (h, w): (i64, i64), b: CropBox, flip: bool, dst: &mut [u8]) {
    let (row_in, row_out) = ((w * 3) as usize, (b.width * 3) as usize);
    for (y, out_row) in dst.chunks_exact_mut(row_out).enumerate() {
        let sy = b.top + y as i64;
        if !(0..h).contains(&sy) {
            out_row.fill(0);
            continue;
        }
        let in_row = &src[sy as usize * row_in..][..row_in];
        for x in 0..b.width {
            // The mirror is applied after the cut: output column x shows box column W-1-x.
            let bx = if flip { b.width - 1 - x } else { x };
            let sx = b.left + bx;
            let t = x as usize * 3;
            if (0..w).contains(&sx) {
                let s = sx as usize * 3;
                out_row[t..t + 3].copy_from_slice(&in_row[s..s + 3]);
            } else {
                out_row[t..t + 3].fill(0);
            }
        }
    }
}

/// The `b` region of an `[h, w, 3]` image; the part outside the image is zero.
fn cut(image: &Tensor, (h, w): (i64, i64), b: CropBox) -> Result<Tensor> {
    if b.inside(h, w) {
        return Ok(image.f_narrow(0, b.top, b.height)?.f_narrow(1, b.left, b.width)?);
    }
    // Pad just enough on each side for the box to fit, then cut it from the padded image.
    let (pad_top, pad_left) = ((-b.top).max(0), (-b.left).max(0));
    let (pad_bottom, pad_right) = ((b.top + b.height - h).max(0), (b.left + b.width - w).max(0));
    let padded = image.f_constant_pad_nd([0, 0, pad_left, pad_right, pad_top, pad_bottom])?;
    // Pads larger than the image can leave the box partly beyond a side it does not touch;
    // the narrow arguments below stay valid because each pad covers its own overhang.
    Ok(padded.f_narrow(0, b.top + pad_top, b.height)?.f_narrow(1, b.left + pad_left, b.width)?)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// An `h × w` image whose every byte differs from its neighbours.
    fn image(h: i64, w: i64) -> Vec<u8> {
        (0..h * w * 3).map(|i| (i * 7 % 251) as u8).collect()
    }

    fn run(src: &[u8], hw: (i64, i64), b: CropBox, out: (i64, i64), flip: bool) -> Tensor {
        let mut dst = vec![0u8; (out.0 * out.1 * 3) as usize];
        resized_crop_into(src, hw, b, out, flip, &mut dst).unwrap();
        Tensor::from_slice(&dst).view([out.0, out.1, 3])
    }

    #[test]
    fn crop_of_the_output_size_is_a_plain_cut() {
        let src = image(6, 8);
        let whole = Tensor::from_slice(&src).view([6, 8, 3]);
        let b = CropBox { top: 1, left: 2, height: 4, width: 5 };
        let got = run(&src, (6, 8), b, (4, 5), false);
        assert!(got.equal(&whole.narrow(0, 1, 4).narrow(1, 2, 5)));
        let flipped = run(&src, (6, 8), b, (4, 5), true);
        assert!(flipped.equal(&whole.narrow(0, 1, 4).narrow(1, 2, 5).flip([1])));
    }

    #[test]
    fn outside_the_image_is_zero() {
        let src = vec![200u8; 4 * 4 * 3];
        let b = CropBox { top: -1, left: 2, height: 4, width: 4 };
        let got = run(&src, (4, 4), b, (4, 4), false);
        let v = crate::host::vec::<u8>(&got.flatten(0, -1)).unwrap();
        for y in 0..4 {
            for x in 0..4 {
                let want = if y == 0 || x >= 2 { 0 } else { 200 };
                assert_eq!(v[(y * 4 + x) * 3], want, "pixel {y},{x}");
            }
        }
    }

    #[test]
    fn flat_image_stays_flat_at_any_size() {
        let src: Vec<u8> = std::iter::repeat_n([10u8, 120, 250], 30 * 50).flatten().collect();
        for out in [(7, 9), (64, 100), (30, 50), (1, 1)] {
            let got = run(&src, (30, 50), CropBox { top: 3, left: 5, height: 20, width: 31 }, out, true);
            let v = crate::host::vec::<u8>(&got.flatten(0, -1)).unwrap();
            assert!(v.chunks(3).all(|p| p == [10, 120, 250]), "{out:?}");
        }
    }

    #[test]
    fn downscale_averages_like_a_box_filter_on_a_checkerboard() {
        // A 1-pixel black/white checkerboard shrunk 4×: antialiasing gives mid grey; plain
        // bilinear sampling would give a pattern of blacks and whites.
        let (h, w) = (64i64, 64i64);
        let src: Vec<u8> = (0..h * w).flat_map(|i| if (i / w + i % w) % 2 == 0 { [255u8; 3] } else { [0u8; 3] }).collect();
        let got = run(&src, (h, w), CropBox::full(h, w), (16, 16), false);
        let v = crate::host::vec::<u8>(&got.flatten(0, -1)).unwrap();
        assert!(v.iter().all(|&p| (120..=135).contains(&p)), "{:?}", &v[..12]);
    }

    #[test]
    fn wrong_buffer_sizes_are_errors() {
        let src = image(4, 4);
        let mut small = vec![0u8; 5];
        assert!(resized_crop_into(&src, (4, 4), CropBox::full(4, 4), (4, 4), false, &mut small).is_err());
        assert!(resized_crop_into(&src[..10], (4, 4), CropBox::full(4, 4), (4, 4), false, &mut [0u8; 48]).is_err());
    }
}
