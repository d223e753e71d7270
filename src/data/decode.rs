//! Decoding one image file of any size and colour type into RGB8, with the checks a folder of
//! other people's photos needs: format by content, a pixel limit read from the header before
//! anything is allocated, and truncated files refused rather than padded with grey.
//!
//! Colour rules (the same as PIL's `Image.convert("RGB")`, which torchvision's ImageFolder uses,
//! except where noted):
//! - grayscale: the value is copied to R, G and B;
//! - alpha (RGBA, gray+alpha, a PNG palette with transparency): the alpha is dropped, not
//!   composited over a background;
//! - palette PNG: looked up in its palette;
//! - CMYK JPEG (as Photoshop writes them, Adobe-inverted): `R = C·K/255` per channel, the
//!   rule PIL applies to such files;
//! - 16 bits per sample: `round(v · 255 / 65535)`. PIL takes the high byte for 16-bit RGB and
//!   clips 16-bit grayscale at 255 (which turns most of such an image white); we do not copy
//!   the clipping.
//!
//! Orientation: the EXIF orientation tag is ignored, as PIL (and so torchvision's ImageFolder)
//! ignores it unless asked; teachers trained with torchvision saw the stored pixel order.

use anyhow::Result;
use image::{DynamicImage, ImageDecoder, ImageFormat, ImageReader, RgbImage};
use std::io::Cursor;
use std::path::Path;

/// Largest image accepted by default, in pixels: PIL's decompression-bomb error threshold
/// (twice its `MAX_IMAGE_PIXELS` warning level of 89,478,485), so a file PIL loads we load.
pub const DEFAULT_MAX_PIXELS: u64 = 178_956_970;

/// What a file's header says, read without decoding the pixels.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Header {
    pub width: u32,
    pub height: u32,
    pub format: ImageFormat,
}

/// Reads `path` whole; images are small next to the memory a decode of them takes.
pub fn read_file(path: &Path) -> Result<Vec<u8>> {
    std::fs::read(path).map_err(|e| crate::bad_input!("cannot read image {}: {e}", path.display()))
}

fn reader<'a>(bytes: &'a [u8], path: &Path) -> Result<ImageReader<Cursor<&'a [u8]>>> {
    let reader = ImageReader::new(Cursor::new(bytes)).with_guessed_format().map_err(|e| crate::bad_input!("cannot read image {}: {e}", path.display()))?;
    match reader.format() {
        Some(ImageFormat::Jpeg | ImageFormat::Png) => Ok(reader),
        Some(other) => Err(crate::bad_input!("image {} is {other:?} by its content; only JPEG and PNG are read", path.display())),
        None => Err(crate::bad_input!("image {} is neither JPEG nor PNG by its content (its first bytes match no image format)", path.display())),
    }
}

/// Whether a JPEG stream ends with its end-of-image marker (trailing padding allowed). A file
/// cut short loses it; decoders pad the missing scan with grey, PIL reports "image file is
/// truncated", and so do we.
fn jpeg_is_complete(bytes: &[u8]) -> bool {
    let end = bytes.iter().rposition(|&b| b != 0 && !b.is_ascii_whitespace()).map_or(0, |i| i + 1);
    end >= 2 && bytes[end - 2..end] == [0xFF, 0xD9]
}

fn check_header(header: &Header, path: &Path, max_pixels: u64) -> Result<()> {
    let pixels = header.width as u64 * header.height as u64;
    if pixels == 0 {
        return Err(crate::bad_input!("image {} declares a size of {}x{} pixels", path.display(), header.width, header.height));
    }
    if pixels > max_pixels {
        return Err(crate::bad_input!(
            "image {} declares {}x{} = {pixels} pixels, more than the limit of {max_pixels} (data.max_image_pixels): \
             refused as a possible decompression bomb",
            path.display(),
            header.width,
            header.height
        ));
    }
    Ok(())
}

/// A reader for `bytes`, refusing a JPEG cut short before its headers are even parsed (a cut
/// inside the headers would otherwise read as some other corruption).
fn complete_reader<'a>(bytes: &'a [u8], path: &Path) -> Result<(ImageReader<Cursor<&'a [u8]>>, ImageFormat)> {
    let reader = reader(bytes, path)?;
    let format = reader.format().expect("reader() only returns readers with a known format");
    if format == ImageFormat::Jpeg && !jpeg_is_complete(bytes) {
        return Err(crate::bad_input!("image {} is truncated: the JPEG data has no end-of-image marker", path.display()));
    }
    Ok((reader, format))
}

/// The header of an image held in `bytes` (read from `path`, which errors name), checked
/// against the pixel limit and, for JPEG, for truncation. Cheap: no pixel is decoded.
pub fn probe(bytes: &[u8], path: &Path, max_pixels: u64) -> Result<Header> {
    let (reader, format) = complete_reader(bytes, path)?;
    let decoder = reader.into_decoder().map_err(|e| crate::bad_input!("image {} is corrupt: {e}", path.display()))?;
    let (width, height) = decoder.dimensions();
    let header = Header { width, height, format };
    check_header(&header, path, max_pixels)?;
    Ok(header)
}

/// Files up to this size are probed from their whole content; larger ones from their first
/// bytes (where every header we read lies) and their last few (where a JPEG's end marker is).
const PROBE_HEAD: u64 = 1 << 20;
const PROBE_TAIL: u64 = 64;

/// [`probe`] of a file on disk, reading at most about a mebibyte of it.
pub fn probe_file(path: &Path, max_pixels: u64) -> Result<Header> {
    use std::io::{Read, Seek, SeekFrom};
    let cannot = |e: std::io::Error| crate::bad_input!("cannot read image {}: {e}", path.display());
    let mut file = std::fs::File::open(path).map_err(cannot)?;
    let len = file.metadata().map_err(cannot)?.len();
    if len <= PROBE_HEAD {
        return probe(&read_file(path)?, path, max_pixels);
    }
    let mut head = vec![0u8; PROBE_HEAD as usize];
    file.read_exact(&mut head).map_err(cannot)?;
    let mut tail = vec![0u8; PROBE_TAIL as usize];
    file.seek(SeekFrom::End(-(PROBE_TAIL as i64))).map_err(cannot)?;
    file.read_exact(&mut tail).map_err(cannot)?;
    let reader = reader(&head, path)?;
    let format = reader.format().expect("reader() only returns readers with a known format");
    if format == ImageFormat::Jpeg && !jpeg_is_complete(&tail) {
        return Err(crate::bad_input!("image {} is truncated: the JPEG data has no end-of-image marker", path.display()));
    }
    let decoder = reader.into_decoder().map_err(|e| crate::bad_input!("image {} is corrupt: {e}", path.display()))?;
    let (width, height) = decoder.dimensions();
    let header = Header { width, height, format };
    check_header(&header, path, max_pixels)?;
    Ok(header)
}

/// Decodes an image held in `bytes` into RGB8 by the rules in this module's documentation.
pub fn decode(bytes: &[u8], path: &Path, max_pixels: u64) -> Result<RgbImage> {
    let (mut reader, format) = complete_reader(bytes, path)?;
    // Our own limit is checked on the header below; the decoder's allocation cap only has to
    // admit what that limit lets through (at most 8 bytes per pixel, 16-bit RGBA).
    let mut limits = image::Limits::default();
    limits.max_alloc = Some(max_pixels.saturating_mul(8).saturating_add(1 << 26));
    reader.limits(limits);
    let decoder = reader.into_decoder().map_err(|e| crate::bad_input!("image {} is corrupt: {e}", path.display()))?;
    let (width, height) = decoder.dimensions();
    check_header(&Header { width, height, format }, path, max_pixels)?;
    let img = DynamicImage::from_decoder(decoder).map_err(|e| crate::bad_input!("image {} is corrupt: {e}", path.display()))?;
    Ok(to_rgb8(img))
}

/// Reads and decodes `path`.
pub fn decode_file(path: &Path, max_pixels: u64) -> Result<RgbImage> {
    decode(&read_file(path)?, path, max_pixels)
}

/// Decodes `bytes` at 1/`reduction` of its size (1, 2, 4 or 8) where the file allows it: a
/// JPEG's inverse DCT then computes only the low frequencies of each block, as libjpeg's
/// `scale_denom` and PIL's `Image.draft` do, which is several times cheaper than decoding every
/// pixel and resizing them away. The result is `ceil(h / reduction) × ceil(w / reduction)`.
///
/// Anything else comes back at full size, by [`decode`]'s rules: PNGs, a reduction of 1, the
/// JPEG kinds the reduced path does not take (CMYK, 12- or 16-bit, lossless), and a file the
/// reduced path cannot read (the full decoder then names it if it is really corrupt). Callers
/// tell the two apart by the size.
pub fn decode_reduced(bytes: &[u8], path: &Path, max_pixels: u64, reduction: u32) -> Result<RgbImage> {
    if reduction > 1 && bytes.starts_with(&[0xFF, 0xD8]) && jpeg_is_complete(bytes) {
        if let Some(img) = jpeg_reduced(bytes, path, max_pixels, reduction)? {
            return Ok(img);
        }
    }
    decode(bytes, path, max_pixels)
}

/// The reduced JPEG decode, or `None` when this file needs the full decoder.
fn jpeg_reduced(bytes: &[u8], path: &Path, max_pixels: u64, reduction: u32) -> Result<Option<RgbImage>> {
    use jpeg_decoder::{CodingProcess, Decoder, PixelFormat};
    anyhow::ensure!(matches!(reduction, 2 | 4 | 8), "a JPEG is decoded at 1/2, 1/4 or 1/8, not 1/{reduction}");
    let mut decoder = Decoder::new(bytes);
    let Some(info) = decoder.read_info().ok().and(decoder.info()) else { return Ok(None) };
    let (width, height) = (info.width as u32, info.height as u32);
    check_header(&Header { width, height, format: ImageFormat::Jpeg }, path, max_pixels)?;
    let gray = match (info.pixel_format, info.coding_process) {
        (_, CodingProcess::Lossless) => return Ok(None),
        (PixelFormat::RGB24, _) => false,
        (PixelFormat::L8, _) => true,
        (PixelFormat::L16 | PixelFormat::CMYK32, _) => return Ok(None),
    };
    let want = (width.div_ceil(reduction), height.div_ceil(reduction));
    // The decoder picks the smallest of its scales that reaches the requested size, which for
    // these sizes is exactly 1/reduction; anything else is left to the full decoder.
    match decoder.scale(want.0 as u16, want.1 as u16) {
        Ok((w, h)) if (w as u32, h as u32) == want => {}
        _ => return Ok(None),
    }
    let Ok(pixels) = decoder.decode() else { return Ok(None) };
    let n = (want.0 * want.1) as usize;
    let rgb = if gray {
        if pixels.len() != n {
            return Ok(None);
        }
        pixels.iter().flat_map(|&v| [v, v, v]).collect()
    } else {
        if pixels.len() != 3 * n {
            return Ok(None);
        }
        pixels
    };
    Ok(RgbImage::from_raw(want.0, want.1, rgb))
}

/// RGB8 by the module's rules. The image crate's own conversion implements each of them
/// (luma copied, alpha dropped, 16-bit rounded); an 8-bit RGB image is moved, not copied.
fn to_rgb8(img: DynamicImage) -> RgbImage {
    match img {
        DynamicImage::ImageRgb8(rgb) => rgb,
        other => other.to_rgb8(),
    }
}

#[cfg(test)]
#[path = "decode_tests.rs"]
mod tests;
