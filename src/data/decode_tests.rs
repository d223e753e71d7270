//! Tests of the image decoder on files the tests write: every colour type the module documents,
//! orientation, truncation, corruption and the pixel limit.

use super::*;
use crate::error::is_bad_input;
use image::{ImageEncoder, Rgb};

const P: &str = "class/img.file";

fn path() -> &'static Path {
    Path::new(P)
}

fn png_of(img: &DynamicImage) -> Vec<u8> {
    let mut out = Cursor::new(vec![]);
    img.write_to(&mut out, ImageFormat::Png).unwrap();
    out.into_inner()
}

fn jpeg_of(img: &RgbImage, quality: u8) -> Vec<u8> {
    let mut out = vec![];
    image::codecs::jpeg::JpegEncoder::new_with_quality(&mut out, quality)
        .write_image(img.as_raw(), img.width(), img.height(), image::ExtendedColorType::Rgb8)
        .unwrap();
    out
}

fn decoded(bytes: &[u8]) -> RgbImage {
    decode(bytes, path(), DEFAULT_MAX_PIXELS).unwrap()
}

fn assert_bad_input_naming_file(err: anyhow::Error, what: &str) {
    assert!(is_bad_input(&err), "{err:#}");
    let text = format!("{err:#}");
    assert!(text.contains(P), "error must name the file: {text}");
    assert!(text.contains(what), "error must say {what:?}: {text}");
}

#[test]
fn gray_is_copied_to_all_channels() {
    let gray = image::GrayImage::from_fn(5, 3, |x, y| image::Luma([(x * 40 + y) as u8]));
    let rgb = decoded(&png_of(&DynamicImage::ImageLuma8(gray.clone())));
    assert_eq!(rgb.dimensions(), (5, 3));
    for (x, y, p) in rgb.enumerate_pixels() {
        let v = gray.get_pixel(x, y)[0];
        assert_eq!(p.0, [v, v, v]);
    }
}

#[test]
fn alpha_is_dropped_not_composited() {
    let rgba = image::RgbaImage::from_fn(4, 4, |x, y| image::Rgba([10 * x as u8, 20 * y as u8, 200, (x * 60) as u8]));
    let rgb = decoded(&png_of(&DynamicImage::ImageRgba8(rgba.clone())));
    for (x, y, p) in rgb.enumerate_pixels() {
        let q = rgba.get_pixel(x, y).0;
        assert_eq!(p.0, [q[0], q[1], q[2]], "pixel {x},{y} with alpha {}", q[3]);
    }
    let la = image::GrayAlphaImage::from_fn(3, 2, |x, _| image::LumaA([70 + x as u8, 0]));
    let rgb = decoded(&png_of(&DynamicImage::ImageLumaA8(la)));
    assert_eq!(rgb.get_pixel(2, 1).0, [72, 72, 72]);
}

#[test]
fn sixteen_bit_samples_are_rounded_not_clipped() {
    // 0x1234 = 4660 → 4660·255/65535 = 18.13 → 18; 0x8080 → 128.5… → 128; 0xFFFF → 255.
    let gray = image::ImageBuffer::<image::Luma<u16>, _>::from_raw(3, 1, vec![0x1234u16, 0x8080, 0xFFFF]).unwrap();
    let rgb = decoded(&png_of(&DynamicImage::ImageLuma16(gray)));
    let row: Vec<u8> = rgb.pixels().map(|p| p[0]).collect();
    assert_eq!(row, [18, 128, 255], "PIL would clip all three to 255; we scale");
    let color = image::ImageBuffer::<image::Rgb<u16>, _>::from_raw(1, 1, vec![0x0101u16, 0x7FFF, 0xFF00]).unwrap();
    let rgb = decoded(&png_of(&DynamicImage::ImageRgb16(color)));
    assert_eq!(rgb.get_pixel(0, 0).0, [1, 127, 254]);
}

#[test]
fn palette_png_is_looked_up_and_its_transparency_dropped() {
    let mut bytes = vec![];
    {
        let mut enc = png::Encoder::new(&mut bytes, 2, 2);
        enc.set_color(png::ColorType::Indexed);
        enc.set_depth(png::BitDepth::Eight);
        enc.set_palette(vec![255, 0, 0, 0, 255, 0, 10, 20, 30]);
        enc.set_trns(vec![255, 0, 128]);
        let mut w = enc.write_header().unwrap();
        w.write_image_data(&[0, 1, 2, 1]).unwrap();
    }
    let rgb = decoded(&bytes);
    let px: Vec<[u8; 3]> = rgb.pixels().map(|p| p.0).collect();
    assert_eq!(px, vec![[255, 0, 0], [0, 255, 0], [10, 20, 30], [0, 255, 0]]);
}

#[test]
fn adobe_cmyk_jpeg_follows_pils_rule() {
    // C, M, Y, K = 0, 128, 255, 64 everywhere: R = (255-0)(255-64)/255 = 191,
    // G = (255-128)(191)/255 = 95.1, B = 0. JPEG at quality 100 on a flat image stays within 2.
    let (w, h) = (16u16, 16u16);
    let cmyk: Vec<u8> = std::iter::repeat_n([0u8, 128, 255, 64], w as usize * h as usize).flatten().collect();
    let mut bytes = vec![];
    jpeg_encoder::Encoder::new(&mut bytes, 100).encode(&cmyk, w, h, jpeg_encoder::ColorType::Cmyk).unwrap();
    let rgb = decoded(&bytes);
    assert_eq!(rgb.dimensions(), (16, 16));
    let p = rgb.get_pixel(8, 8).0;
    for (got, want) in p.iter().zip([191i32, 95, 0]) {
        assert!((*got as i32 - want).abs() <= 2, "{p:?} vs [191, 95, 0]");
    }
}

/// An APP1 Exif segment body holding one IFD entry: Orientation (0x0112) = `value`.
fn exif_orientation(value: u16) -> Vec<u8> {
    let mut e = b"Exif\0\0II*\0".to_vec();
    e.extend(8u32.to_le_bytes()); // IFD0 offset
    e.extend(1u16.to_le_bytes()); // one entry
    e.extend(0x0112u16.to_le_bytes());
    e.extend(3u16.to_le_bytes()); // SHORT
    e.extend(1u32.to_le_bytes());
    e.extend((value as u32).to_le_bytes());
    e.extend(0u32.to_le_bytes()); // no next IFD
    e
}

#[test]
fn exif_orientation_is_ignored_as_pil_does() {
    let (w, h) = (24u16, 8u16);
    let rgb: Vec<u8> = (0..w as usize * h as usize).flat_map(|i| [(i % 24 * 10) as u8, 0, 0]).collect();
    let mut bytes = vec![];
    let mut enc = jpeg_encoder::Encoder::new(&mut bytes, 95);
    enc.add_app_segment(1, &exif_orientation(6)).unwrap();
    enc.encode(&rgb, w, h, jpeg_encoder::ColorType::Rgb).unwrap();
    // Orientation 6 asks for a 90° turn; the stored 24×8 pixel grid must come back unchanged.
    let img = decoded(&bytes);
    assert_eq!(img.dimensions(), (24, 8));
    assert!(img.get_pixel(20, 4)[0] > img.get_pixel(2, 4)[0] + 100, "left-to-right ramp kept");
}

#[test]
fn truncated_jpeg_is_refused_by_name() {
    let img = RgbImage::from_fn(64, 48, |x, y| Rgb([(x * 4) as u8, (y * 5) as u8, 77]));
    let full = jpeg_of(&img, 90);
    assert_eq!(decoded(&full).dimensions(), (64, 48));
    for cut in [full.len() - 2, full.len() * 2 / 3, 200] {
        let err = decode(&full[..cut], path(), DEFAULT_MAX_PIXELS).unwrap_err();
        assert_bad_input_naming_file(err, "truncated");
        assert!(probe(&full[..cut], path(), DEFAULT_MAX_PIXELS).is_err(), "the header probe sees the truncation too");
    }
    // Padding after the end marker is not truncation.
    let mut padded = full.clone();
    padded.extend([0u8; 16]);
    assert_eq!(decoded(&padded).dimensions(), (64, 48));
}

#[test]
fn truncated_png_is_refused_by_name() {
    let img = RgbImage::from_fn(64, 64, |x, y| Rgb([(x * y) as u8, x as u8, y as u8]));
    let full = png_of(&DynamicImage::ImageRgb8(img));
    let err = decode(&full[..full.len() / 2], path(), DEFAULT_MAX_PIXELS).unwrap_err();
    assert_bad_input_naming_file(err, "corrupt");
}

#[test]
fn garbage_and_other_formats_are_refused_by_name() {
    assert_bad_input_naming_file(decode(b"just some text, not pixels", path(), DEFAULT_MAX_PIXELS).unwrap_err(), "neither JPEG nor PNG");
    let mut gif = Cursor::new(vec![]);
    DynamicImage::ImageRgb8(RgbImage::new(2, 2)).write_to(&mut gif, ImageFormat::Gif).ok();
    if !gif.get_ref().is_empty() {
        // Only when the gif encoder is compiled in; the check is about the refusal wording.
        assert_bad_input_naming_file(decode(gif.get_ref(), path(), DEFAULT_MAX_PIXELS).unwrap_err(), "only JPEG and PNG");
    }
    // A JPEG signature followed by noise.
    let mut noise = vec![0xFF, 0xD8, 0xFF, 0xE0];
    noise.extend((0..500u32).map(|i| (i.wrapping_mul(2654435761) >> 13) as u8));
    noise.extend([0xFF, 0xD9]);
    assert_bad_input_naming_file(decode(&noise, path(), DEFAULT_MAX_PIXELS).unwrap_err(), "corrupt");
}

/// A real JPEG whose frame header is edited to declare `w × h`: the data no longer matches, so
/// anything that decoded it before checking the header would fail differently (or allocate).
fn jpeg_declaring(w: u16, h: u16) -> Vec<u8> {
    let mut bytes = jpeg_of(&RgbImage::from_pixel(16, 16, Rgb([1, 2, 3])), 80);
    let sof = bytes.windows(2).position(|p| p == [0xFF, 0xC0]).expect("baseline frame header");
    // Marker, length (2), precision (1), then height and width, big endian.
    bytes[sof + 5..sof + 7].copy_from_slice(&h.to_be_bytes());
    bytes[sof + 7..sof + 9].copy_from_slice(&w.to_be_bytes());
    bytes
}

#[test]
fn decompression_bomb_is_refused_from_the_header() {
    let bomb = jpeg_declaring(60_000, 60_000);
    let err = probe(&bomb, path(), DEFAULT_MAX_PIXELS).unwrap_err();
    assert_bad_input_naming_file(err, "decompression bomb");
    let err = decode(&bomb, path(), DEFAULT_MAX_PIXELS).unwrap_err();
    assert_bad_input_naming_file(err, "3600000000 pixels");
    // The limit is a parameter: a 16×16 image against a limit of 255 pixels.
    let small = jpeg_of(&RgbImage::from_pixel(16, 16, Rgb([9, 9, 9])), 80);
    assert_eq!(probe(&small, path(), 256).unwrap(), Header { width: 16, height: 16, format: ImageFormat::Jpeg });
    assert_bad_input_naming_file(probe(&small, path(), 255).unwrap_err(), "limit of 255");
}

#[test]
fn probe_reads_the_header_only() {
    let img = RgbImage::from_pixel(40, 30, Rgb([5, 6, 7]));
    let png = png_of(&DynamicImage::ImageRgb8(img));
    assert_eq!(probe(&png, path(), DEFAULT_MAX_PIXELS).unwrap(), Header { width: 40, height: 30, format: ImageFormat::Png });
}

#[test]
fn missing_file_is_bad_input_naming_it() {
    let err = decode_file(Path::new("no/such/dir/img.file"), DEFAULT_MAX_PIXELS).unwrap_err();
    assert!(is_bad_input(&err));
    assert!(format!("{err:#}").contains("no/such/dir/img.file"));
}

/// A smooth 603×451 test photo: gradients with a soft pattern, odd sides so the reduced sizes
/// round up.
fn smooth_photo() -> RgbImage {
    RgbImage::from_fn(603, 451, |x, y| {
        let (fx, fy) = (x as f64, y as f64);
        let r = 128.0 + 100.0 * (fx / 40.0).sin() * (fy / 70.0).cos();
        Rgb([r as u8, (fx * 255.0 / 603.0) as u8, (fy * 255.0 / 451.0) as u8])
    })
}

/// The mean of each `d × d` block of `img` (the last partial blocks over what they hold).
fn block_means(img: &RgbImage, d: u32) -> RgbImage {
    let (w, h) = (img.width().div_ceil(d), img.height().div_ceil(d));
    RgbImage::from_fn(w, h, |bx, by| {
        let mut sum = [0u32; 3];
        let mut n = 0;
        for y in by * d..((by + 1) * d).min(img.height()) {
            for x in bx * d..((bx + 1) * d).min(img.width()) {
                let p = img.get_pixel(x, y).0;
                (0..3).for_each(|c| sum[c] += p[c] as u32);
                n += 1;
            }
        }
        Rgb(sum.map(|s| ((s + n / 2) / n) as u8))
    })
}

fn mean_abs_diff(a: &RgbImage, b: &RgbImage) -> f64 {
    assert_eq!(a.dimensions(), b.dimensions());
    a.as_raw().iter().zip(b.as_raw()).map(|(&x, &y)| (x as f64 - y as f64).abs()).sum::<f64>() / a.as_raw().len() as f64
}

#[test]
fn reduced_jpeg_is_the_block_average_of_the_full_decode() {
    let bytes = jpeg_of(&smooth_photo(), 90);
    let full = decoded(&bytes);
    for d in [2u32, 4, 8] {
        let small = decode_reduced(&bytes, path(), DEFAULT_MAX_PIXELS, d).unwrap();
        assert_eq!(small.dimensions(), (603u32.div_ceil(d), 451u32.div_ceil(d)), "1/{d}");
        // The low-frequency inverse DCT of a block is (nearly) the mean of its pixels.
        let diff = mean_abs_diff(&small, &block_means(&full, d));
        assert!(diff < 1.0, "1/{d}: mean difference {diff} from the block means");
    }
    // A reduction of 1 is the full decode, bit for bit.
    assert_eq!(decode_reduced(&bytes, path(), DEFAULT_MAX_PIXELS, 1).unwrap(), full);
}

#[test]
fn reduced_gray_jpeg_is_copied_to_all_channels() {
    let gray = image::GrayImage::from_fn(300, 200, |x, y| image::Luma([((x + 2 * y) % 256) as u8]));
    let mut bytes = vec![];
    image::codecs::jpeg::JpegEncoder::new_with_quality(&mut bytes, 90).write_image(gray.as_raw(), 300, 200, image::ExtendedColorType::L8).unwrap();
    let small = decode_reduced(&bytes, path(), DEFAULT_MAX_PIXELS, 4).unwrap();
    assert_eq!(small.dimensions(), (75, 50));
    assert!(small.pixels().all(|p| p[0] == p[1] && p[1] == p[2]));
}

#[test]
fn reduced_decode_keeps_every_check() {
    let bytes = jpeg_of(&smooth_photo(), 90);
    // The pixel limit applies to the file's own size, not the reduced one.
    assert_bad_input_naming_file(decode_reduced(&bytes, path(), 603 * 451 - 1, 8).unwrap_err(), "decompression bomb");
    // A truncated file is refused, not decoded small.
    let cut = &bytes[..bytes.len() / 2];
    assert_bad_input_naming_file(decode_reduced(cut, path(), DEFAULT_MAX_PIXELS, 4).unwrap_err(), "truncated");
    // A PNG has no reduced decode: it comes back whole.
    let png = png_of(&DynamicImage::ImageRgb8(smooth_photo()));
    assert_eq!(decode_reduced(&png, path(), DEFAULT_MAX_PIXELS, 4).unwrap().dimensions(), (603, 451));
    // Nor does a CMYK JPEG: it comes back whole, by the CMYK rule.
    let mut cmyk = vec![];
    let ink: Vec<u8> = std::iter::repeat_n([0u8, 128, 255, 64], 64 * 48).flatten().collect();
    jpeg_encoder::Encoder::new(&mut cmyk, 100).encode(&ink, 64, 48, jpeg_encoder::ColorType::Cmyk).unwrap();
    assert_eq!(decode_reduced(&cmyk, path(), DEFAULT_MAX_PIXELS, 2).unwrap(), decoded(&cmyk));
}
