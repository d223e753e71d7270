//! Loading an ImageFolder tree (`dir/<class>/<image>`) into an in-memory [`ImageSet`], decoding
//! on two threads and going through the on-disk [`cache`](super::cache) when one is given.

use super::{cache, ImageSet};
use anyhow::{Context, Result};
use std::path::{Path, PathBuf};
use tch::{Kind, Tensor};

/// Extensions we decode (compared case-insensitively); anything else in a class folder, such as
/// a README or a `.DS_Store`, is ignored rather than rejected.
const EXTENSIONS: [&str; 3] = ["jpg", "jpeg", "png"];

/// Threads used for decoding: the machines this runs on have two cores.
const DECODE_THREADS: usize = 2;

/// Sorted names of the entries of `dir` accepted by `keep`, read as a user-supplied folder.
fn sorted_entries(dir: &Path, keep: impl Fn(&Path) -> bool) -> Result<Vec<PathBuf>> {
    let rd = std::fs::read_dir(dir).map_err(|e| crate::bad_input!("cannot read folder {}: {e}", dir.display()))?;
    let mut out = vec![];
    for entry in rd {
        let path = entry.map_err(|e| crate::bad_input!("cannot list folder {}: {e}", dir.display()))?.path();
        if keep(&path) {
            out.push(path);
        }
    }
    // Sorting by file name (not full path) is the ImageFolder convention for class indices.
    out.sort_by(|a, b| a.file_name().cmp(&b.file_name()));
    Ok(out)
}

fn is_image(p: &Path) -> bool {
    p.is_file() && p.extension().and_then(|e| e.to_str()).is_some_and(|e| EXTENSIONS.iter().any(|x| x.eq_ignore_ascii_case(e)))
}

/// Class names (sorted sub-folder names, hidden ones skipped) and per-file labels.
pub(super) fn list(dir: &Path) -> Result<(Vec<String>, Vec<PathBuf>, Vec<i64>)> {
    if !dir.is_dir() {
        return Err(crate::bad_input!("image folder {} does not exist or is not a folder", dir.display()));
    }
    let hidden = |p: &Path| p.file_name().and_then(|n| n.to_str()).is_some_and(|n| n.starts_with('.'));
    let class_dirs = sorted_entries(dir, |p| p.is_dir() && !hidden(p))?;
    if class_dirs.is_empty() {
        return Err(crate::bad_input!("image folder {} has no class sub-folders (expected {}/<class>/<image>)", dir.display(), dir.display()));
    }
    let (mut names, mut files, mut labels) = (vec![], vec![], vec![]);
    for (label, class_dir) in class_dirs.iter().enumerate() {
        let images = sorted_entries(class_dir, is_image)?;
        if images.is_empty() {
            return Err(crate::bad_input!("class folder {} contains no .jpg/.jpeg/.png images", class_dir.display()));
        }
        names.push(class_dir.file_name().unwrap_or_default().to_string_lossy().into_owned());
        labels.extend(std::iter::repeat_n(label as i64, images.len()));
        files.extend(images);
    }
    Ok((names, files, labels))
}

fn size_error(path: &Path, got: (u32, u32), want: (u32, u32), why: &str) -> anyhow::Error {
    crate::bad_input!("image {} is {}x{} but {why} {}x{} (images are not resized)", path.display(), got.0, got.1, want.0, want.1)
}

/// Decodes `files` (all `w × h`) into `out` (`files.len()·h·w·3` bytes), stopping at the first
/// failure so the error names the earliest bad file of this chunk.
fn decode_into(files: &[PathBuf], out: &mut [u8], (w, h): (u32, u32), why: &str, max_pixels: u64) -> Result<()> {
    let per = (w * h * 3) as usize;
    for (path, dst) in files.iter().zip(out.chunks_exact_mut(per)) {
        let img = super::decode::decode_file(path, max_pixels)?;
        if img.dimensions() != (w, h) {
            return Err(size_error(path, img.dimensions(), (w, h), why));
        }
        dst.copy_from_slice(img.as_raw());
    }
    Ok(())
}

/// Loads `dir/<class>/<file>.{jpg,jpeg,png}` into an [`ImageSet`].
///
/// Class index = position of the folder name in sorted order; files are sorted by name within
/// a class. With `image_size = Some(s)` every image must be `s × s`; in any case all images
/// must share one size. Sizes are never silently changed: a mismatch is a bad-input error
/// naming the file. With `cache_dir`, decoded sets are stored there and reused when no file
/// in `dir` changed.
pub fn load_image_folder(dir: &Path, image_size: Option<u32>, cache_dir: Option<&Path>) -> Result<ImageSet> {
    let (names, files, labels) = list(dir)?;
    decode_files(dir, names, &files, &labels, image_size, cache_dir, super::decode::DEFAULT_MAX_PIXELS)
}

/// Decodes `files` (inside `dir`, with their `labels` and the class `names`) into an
/// [`ImageSet`], by the rules and through the cache of [`load_image_folder`].
pub fn decode_files(
    dir: &Path,
    names: Vec<String>,
    files: &[PathBuf],
    labels: &[i64],
    image_size: Option<u32>,
    cache_dir: Option<&Path>,
    max_pixels: u64,
) -> Result<ImageSet> {
    if files.is_empty() {
        return Err(crate::bad_input!("image folder {} has no image to decode", dir.display()));
    }
    let want_why = image_size.map(|s| ((s, s), "the requested image size is"));

    let cache_path = match cache_dir {
        Some(cd) => Some(cache::cache_file(cd, &cache::cache_key(dir, files)?)),
        None => None,
    };
    if let Some(set) = cache_path.as_deref().and_then(cache::read) {
        // The key covers every file, so a hit with matching names and count is this folder.
        if set.class_names == names && set.len() == files.len() {
            let (h, w) = set.image_size();
            if let Some((want, why)) = want_why {
                if (w as u32, h as u32) != want {
                    // Every image has the cached size, so the first file is the first offender.
                    return Err(size_error(&files[0], (w as u32, h as u32), want, why));
                }
            }
            if let Some(path) = &cache_path {
                super::cache_dir::after_use(path);
            }
            return Ok(set);
        }
    }

    // The first image fixes the size all others must have (unless one was requested).
    let first = super::decode::decode_file(&files[0], max_pixels)?;
    let (want, why) = want_why.unwrap_or((first.dimensions(), "the first image"));
    let (w, h) = want;
    let per = (w * h * 3) as usize;
    let mut pixels = vec![0u8; files.len() * per];
    let split = files.len().div_ceil(DECODE_THREADS);
    let results: Vec<Result<()>> = std::thread::scope(|s| {
        let handles: Vec<_> =
            files.chunks(split).zip(pixels.chunks_mut(split * per)).map(|(fs, out)| s.spawn(move || decode_into(fs, out, (w, h), why, max_pixels))).collect();
        handles.into_iter().map(|hd| hd.join().unwrap_or_else(|_| Err(anyhow::anyhow!("image decoding thread panicked")))).collect()
    });
    // Chunks are in file order, so the first error found is the first offending file.
    for r in results {
        r.with_context(|| format!("loading image folder {}", dir.display()))?;
    }

    let images = Tensor::f_from_data_size(&pixels, &[files.len() as i64, h as i64, w as i64, 3], Kind::Uint8)?;
    drop(pixels);
    let set = ImageSet::new(images, Tensor::from_slice(labels), names)?;
    if let Some(path) = &cache_path {
        // The cache is only a speed-up: failing to write it must not fail the run.
        match cache::write(path, &set) {
            Ok(()) => super::cache_dir::after_use(path),
            Err(e) => eprintln!("warning: {e:#}"),
        }
    }
    Ok(set)
}

#[cfg(test)]
#[path = "image_folder_tests.rs"]
mod tests;
