//! An image folder kept as a list of files, decoded batch by batch while training runs: the
//! listing, and the scan before training that reads every file's header so that a bad file is
//! named (or skipped and counted) before the first step rather than hours into a run.

use super::decode::{self, Header};
use anyhow::Result;
use std::path::{Path, PathBuf};

/// The files of an image folder, their labels and what the scan found.
#[derive(Clone, Debug)]
pub struct FileList {
    pub files: Vec<PathBuf>,
    pub labels: Vec<i64>,
    pub class_names: Vec<String>,
    /// `(height, width)` of each file as its header declares it.
    pub sizes: Vec<(u32, u32)>,
    /// Files left out by the scan (`skip_bad`), each with the reason.
    pub skipped: Vec<(PathBuf, String)>,
    /// The pixel limit the scan applied; decoding applies it again.
    pub max_pixels: u64,
    /// Decode a JPEG no larger than the transform needs (1/2, 1/4 or 1/8 in the inverse DCT,
    /// as PIL's draft mode), rather than whole and resized (what torchvision's ImageFolder
    /// does). On unless `data.reduced_decode: false`.
    pub reduced_decode: bool,
}

/// How the scan treats files it cannot use.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct ScanRules {
    pub max_pixels: u64,
    /// Leave bad files out (and count them) instead of failing.
    pub skip_bad: bool,
    /// Threads reading headers.
    pub threads: usize,
}

impl FileList {
    pub fn len(&self) -> usize {
        self.files.len()
    }

    pub fn is_empty(&self) -> bool {
        self.files.is_empty()
    }

    /// `Some((h, w))` when every file has that one size.
    pub fn common_size(&self) -> Option<(u32, u32)> {
        let first = *self.sizes.first()?;
        self.sizes.iter().all(|&s| s == first).then_some(first)
    }

    /// The files at `indices` (sorted, distinct), in that order: a subset.
    pub fn subset(&self, indices: &[usize]) -> FileList {
        FileList {
            files: indices.iter().map(|&i| self.files[i].clone()).collect(),
            labels: indices.iter().map(|&i| self.labels[i]).collect(),
            class_names: self.class_names.clone(),
            sizes: indices.iter().map(|&i| self.sizes[i]).collect(),
            skipped: self.skipped.clone(),
            max_pixels: self.max_pixels,
            reduced_decode: self.reduced_decode,
        }
    }
}

/// Lists `dir/<class>/<image>` (the ImageFolder rules of [`super::image_folder`]) and reads every
/// file's header: format by content, the pixel limit, JPEG truncation. The first bad file is a
/// bad-input error naming it, unless `rules.skip_bad` leaves it out (listed in `skipped`).
pub fn scan(dir: &Path, rules: ScanRules) -> Result<FileList> {
    let (class_names, files, labels) = super::image_folder::list(dir)?;
    let threads = rules.threads.max(1).min(files.len().max(1));
    let chunk = files.len().div_ceil(threads).max(1);
    let headers: Vec<Result<Header>> = std::thread::scope(|s| {
        let handles: Vec<_> =
            files.chunks(chunk).map(|part| s.spawn(move || part.iter().map(|f| decode::probe_file(f, rules.max_pixels)).collect::<Vec<_>>())).collect();
        handles.into_iter().flat_map(|h| h.join().unwrap_or_else(|_| vec![Err(anyhow::anyhow!("image header thread panicked"))])).collect()
    });
    let mut list = FileList { files: vec![], labels: vec![], class_names, sizes: vec![], skipped: vec![], max_pixels: rules.max_pixels, reduced_decode: true };
    for ((file, label), header) in files.into_iter().zip(labels).zip(headers) {
        match header {
            Ok(h) => {
                list.files.push(file);
                list.labels.push(label);
                list.sizes.push((h.height, h.width));
            }
            Err(e) if rules.skip_bad && crate::error::is_bad_input(&e) => list.skipped.push((file, format!("{e:#}"))),
            Err(e) => return Err(e.context(format!("scanning image folder {} (data.skip_bad: true leaves bad files out)", dir.display()))),
        }
    }
    if list.is_empty() {
        return Err(crate::bad_input!("image folder {} has no usable image: all {} files were bad", dir.display(), list.skipped.len()));
    }
    Ok(list)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::error::is_bad_input;

    fn jpeg(path: &Path, w: u32, h: u32) -> Vec<u8> {
        std::fs::create_dir_all(path.parent().unwrap()).unwrap();
        let img = image::RgbImage::from_fn(w, h, |x, y| image::Rgb([x as u8, y as u8, 7]));
        img.save_with_format(path, image::ImageFormat::Jpeg).unwrap();
        std::fs::read(path).unwrap()
    }

    fn rules(skip_bad: bool) -> ScanRules {
        ScanRules { max_pixels: decode::DEFAULT_MAX_PIXELS, skip_bad, threads: 2 }
    }

    #[test]
    fn scan_reads_sizes_and_labels() {
        let t = tempfile::tempdir().unwrap();
        jpeg(&t.path().join("b/1.jpg"), 30, 20);
        jpeg(&t.path().join("a/1.jpg"), 50, 40);
        jpeg(&t.path().join("a/2.jpg"), 50, 40);
        let list = scan(t.path(), rules(false)).unwrap();
        assert_eq!(list.class_names, ["a", "b"]);
        assert_eq!(list.labels, [0, 0, 1]);
        assert_eq!(list.sizes, [(40, 50), (40, 50), (20, 30)]);
        assert_eq!(list.common_size(), None);
        assert_eq!(list.subset(&[0, 1]).common_size(), Some((40, 50)));
    }

    #[test]
    fn bad_files_are_named_or_skipped_and_counted() {
        let t = tempfile::tempdir().unwrap();
        let good = jpeg(&t.path().join("a/good.jpg"), 16, 16);
        std::fs::write(t.path().join("a/cut.jpg"), &good[..good.len() / 2]).unwrap();
        std::fs::write(t.path().join("a/text.png"), b"not an image").unwrap();
        let err = scan(t.path(), rules(false)).unwrap_err();
        assert!(is_bad_input(&err), "{err:#}");
        assert!(format!("{err:#}").contains("cut.jpg"), "the first bad file in order is named: {err:#}");
        let list = scan(t.path(), rules(true)).unwrap();
        assert_eq!(list.files.len(), 1);
        let skipped: Vec<String> = list.skipped.iter().map(|(p, _)| p.file_name().unwrap().to_string_lossy().into_owned()).collect();
        assert_eq!(skipped, ["cut.jpg", "text.png"]);
        assert!(list.skipped[0].1.contains("truncated"));
    }

    #[test]
    fn a_large_truncated_file_is_caught_from_its_tail() {
        // Larger than the whole-file probe: the header comes from the head, the cut from the tail.
        let t = tempfile::tempdir().unwrap();
        let img = image::RgbImage::from_fn(2000, 1500, |x, y| image::Rgb([((x * 7) ^ (y * 13)) as u8, (x * y) as u8, (x + y) as u8]));
        let path = t.path().join("a/big.jpg");
        std::fs::create_dir_all(path.parent().unwrap()).unwrap();
        img.save_with_format(&path, image::ImageFormat::Jpeg).unwrap();
        let bytes = std::fs::read(&path).unwrap();
        assert!(bytes.len() as u64 > PROBE_SIZE_FOR_TEST, "{} bytes", bytes.len());
        assert_eq!(scan(t.path(), rules(false)).unwrap().sizes, [(1500, 2000)]);
        std::fs::write(&path, &bytes[..bytes.len() - 100]).unwrap();
        assert!(format!("{:#}", scan(t.path(), rules(false)).unwrap_err()).contains("truncated"));
    }

    const PROBE_SIZE_FOR_TEST: u64 = 1 << 20;

    #[test]
    fn all_bad_is_an_error_even_when_skipping() {
        let t = tempfile::tempdir().unwrap();
        std::fs::create_dir_all(t.path().join("a")).unwrap();
        std::fs::write(t.path().join("a/x.jpg"), b"nope").unwrap();
        let err = scan(t.path(), rules(true)).unwrap_err();
        assert!(is_bad_input(&err) && format!("{err:#}").contains("no usable image"));
    }
}
