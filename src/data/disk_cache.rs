//! `cache: disk`: an image folder decoded once into one file of raw RGB8 pixels (every image at
//! its own size), then read back sample by sample while training, so later epochs and runs
//! skip decoding at the price of disk space (width × height × 3 bytes per image).
//!
//! Layout, little endian: magic, format version, N, then per image its byte offset, height and
//! width (0 × 0: left out as bad when the file was built), a checksum of that index, then the
//! pixels. The file is written under a temporary name and renamed into place, so a reader never
//! sees a half-written one; one that fails its checks is rebuilt.

use super::files::FileList;
use anyhow::{Context, Result};
use std::io::{BufWriter, Read, Write};
use std::os::unix::fs::FileExt;
use std::path::{Path, PathBuf};
use std::sync::mpsc::sync_channel;

const MAGIC: &[u8; 8] = b"CMPDISK\0";
const VERSION: u32 = 1;
/// Magic, version, N.
const HEADER: u64 = 8 + 4 + 8;
/// Offset, height, width.
const ENTRY: u64 = 8 + 4 + 4;

/// Where one image lies in the file.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
struct Entry {
    offset: u64,
    height: u32,
    width: u32,
}

/// A decoded folder on disk, read by any number of threads at once.
pub struct DiskSet {
    file: std::fs::File,
    entries: Vec<Entry>,
    files: Vec<PathBuf>,
    pub path: PathBuf,
}

impl DiskSet {
    pub fn len(&self) -> usize {
        self.entries.len()
    }

    pub fn is_empty(&self) -> bool {
        self.entries.is_empty()
    }

    /// The images at `indices`, in that order (a subset of the same file).
    pub fn subset(&self, indices: &[usize]) -> Result<DiskSet> {
        Ok(DiskSet {
            file: self.file.try_clone().with_context(|| format!("opening {} again", self.path.display()))?,
            entries: indices.iter().map(|&i| self.entries[i]).collect(),
            files: indices.iter().map(|&i| self.files[i].clone()).collect(),
            path: self.path.clone(),
        })
    }

    /// Image `i` as RGB8 pixels and its `(height, width)`. An image left out as bad when the
    /// file was built is a bad-input error naming it, as decoding it again would be.
    pub fn read(&self, i: usize) -> Result<(Vec<u8>, (i64, i64))> {
        let e = self.entries[i];
        if e.height == 0 {
            return Err(crate::bad_input!("image {} could not be decoded when the disk cache was built (data.skip_bad)", self.files[i].display()));
        }
        let mut buf = vec![0u8; e.height as usize * e.width as usize * 3];
        self.file.read_exact_at(&mut buf, e.offset).with_context(|| format!("reading image {i} from the disk cache {}", self.path.display()))?;
        Ok((buf, (e.height as i64, e.width as i64)))
    }

    /// The cache of `list` (the files of `dir`) in `cache_dir`: opened when a valid one exists,
    /// else built by decoding every file on `threads` threads. Bad files stop the build with an
    /// error naming them, unless `skip_bad` records them as left out.
    pub fn open_or_build(list: &FileList, dir: &Path, cache_dir: &Path, threads: usize, skip_bad: bool) -> Result<DiskSet> {
        let key = super::cache::cache_key(dir, &list.files)?;
        let path = cache_dir.join(format!("{key}.pixels"));
        if let Some(set) = open(&path, list) {
            super::cache_dir::after_use(&path);
            return Ok(set);
        }
        build(&path, list, threads, skip_bad)?;
        let set = open(&path, list).ok_or_else(|| anyhow::anyhow!("the disk cache {} did not read back after it was written", path.display()))?;
        super::cache_dir::after_use(&path);
        Ok(set)
    }
}

/// The index checksum: FNV-1a over the index bytes (it guards against a file from another
/// build; the pixels are guarded by the atomic rename).
fn checksum(bytes: &[u8]) -> u64 {
    bytes.iter().fold(0xcbf2_9ce4_8422_2325u64, |h, &b| (h ^ b as u64).wrapping_mul(0x0100_0000_01b3))
}

/// Offsets of each image's pixels, from the sizes the headers declared.
fn layout(list: &FileList) -> (Vec<Entry>, u64) {
    let mut at = HEADER + ENTRY * list.len() as u64 + 8;
    let entries = list
        .sizes
        .iter()
        .map(|&(h, w)| {
            let e = Entry { offset: at, height: h, width: w };
            at += h as u64 * w as u64 * 3;
            e
        })
        .collect();
    (entries, at)
}

fn index_bytes(entries: &[Entry]) -> Vec<u8> {
    let mut out = Vec::with_capacity(entries.len() * ENTRY as usize);
    for e in entries {
        out.extend(e.offset.to_le_bytes());
        out.extend(e.height.to_le_bytes());
        out.extend(e.width.to_le_bytes());
    }
    out
}

/// The cache at `path` if it is whole and describes `list`'s images; None otherwise.
fn open(path: &Path, list: &FileList) -> Option<DiskSet> {
    let mut file = std::fs::File::open(path).ok()?;
    let mut header = [0u8; HEADER as usize];
    file.read_exact(&mut header).ok()?;
    if &header[..8] != MAGIC || header[8..12] != VERSION.to_le_bytes() || u64::from_le_bytes(header[12..20].try_into().ok()?) != list.len() as u64 {
        return None;
    }
    let mut index = vec![0u8; (ENTRY * list.len() as u64) as usize];
    file.read_exact(&mut index).ok()?;
    let mut sum = [0u8; 8];
    file.read_exact(&mut sum).ok()?;
    if checksum(&index) != u64::from_le_bytes(sum) {
        return None;
    }
    let (expected, end) = layout(list);
    let entries: Vec<Entry> = index
        .chunks_exact(ENTRY as usize)
        .map(|c| Entry {
            offset: u64::from_le_bytes(c[..8].try_into().expect("8 bytes")),
            height: u32::from_le_bytes(c[8..12].try_into().expect("4 bytes")),
            width: u32::from_le_bytes(c[12..16].try_into().expect("4 bytes")),
        })
        .collect();
    // Each entry is the planned one, or the same place marked as left out.
    let fits = entries.iter().zip(&expected).all(|(e, x)| e.offset == x.offset && ((e.height, e.width) == (x.height, x.width) || e.height == 0));
    if !fits || file.metadata().ok()?.len() != end {
        return None;
    }
    Some(DiskSet { file, entries, files: list.files.clone(), path: path.to_path_buf() })
}

/// Decodes every file of `list` on `threads` threads and writes the cache file at `path`.
fn build(path: &Path, list: &FileList, threads: usize, skip_bad: bool) -> Result<()> {
    let dir = path.parent().unwrap_or(Path::new("."));
    std::fs::create_dir_all(dir).with_context(|| format!("creating cache folder {}", dir.display()))?;
    let tmp = dir.join(format!("{}.{}.tmp", path.file_name().map(|f| f.to_string_lossy().into_owned()).unwrap_or_default(), std::process::id()));
    let result =
        write(&tmp, list, threads, skip_bad).and_then(|()| std::fs::rename(&tmp, path).with_context(|| format!("renaming {} into place", tmp.display())));
    if result.is_err() {
        let _ = std::fs::remove_file(&tmp);
    }
    result.with_context(|| format!("building the disk cache {}", path.display()))
}

fn write(tmp: &Path, list: &FileList, threads: usize, skip_bad: bool) -> Result<()> {
    let (mut entries, _) = layout(list);
    let file = std::fs::File::create(tmp).with_context(|| format!("creating {}", tmp.display()))?;
    let mut out = BufWriter::with_capacity(1 << 20, file);
    // The index is written again at the end, once the left-out images are known.
    out.write_all(MAGIC)?;
    out.write_all(&VERSION.to_le_bytes())?;
    out.write_all(&(list.len() as u64).to_le_bytes())?;
    out.write_all(&vec![0u8; (ENTRY * list.len() as u64 + 8) as usize])?;
    let threads = threads.clamp(1, list.len().max(1));
    std::thread::scope(|scope| -> Result<()> {
        let mut queues = Vec::with_capacity(threads);
        for t in 0..threads {
            let (tx, rx) = sync_channel::<Result<Vec<u8>>>(4);
            queues.push(rx);
            scope.spawn(move || {
                for i in (t..list.len()).step_by(threads) {
                    let img = super::decode::decode_file(&list.files[i], list.max_pixels).and_then(|img| {
                        let (h, w) = list.sizes[i];
                        anyhow::ensure!(img.dimensions() == (w, h), "image {} changed while it was read", list.files[i].display());
                        Ok(img.into_raw())
                    });
                    let failed = img.is_err() && !skip_bad;
                    if tx.send(img).is_err() || failed {
                        return;
                    }
                }
            });
        }
        for (i, entry) in entries.iter_mut().enumerate() {
            match queues[i % threads].recv().unwrap_or_else(|_| Err(anyhow::anyhow!("a decoding thread stopped"))) {
                Ok(pixels) => out.write_all(&pixels)?,
                Err(e) if skip_bad && crate::error::is_bad_input(&e) => {
                    // Keep the planned offsets: the space stays, zeroed, and the entry says so.
                    out.write_all(&vec![0u8; entry.height as usize * entry.width as usize * 3])?;
                    entry.height = 0;
                    entry.width = 0;
                }
                Err(e) => return Err(e),
            }
        }
        Ok(())
    })?;
    let mut file = out.into_inner().map_err(|e| e.into_error())?;
    let index = index_bytes(&entries);
    file.write_all_at(&index, HEADER)?;
    file.write_all_at(&checksum(&index).to_le_bytes(), HEADER + index.len() as u64)?;
    file.flush()?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::data::files::{scan, ScanRules};

    fn folder(n: usize) -> tempfile::TempDir {
        let t = tempfile::tempdir().unwrap();
        for i in 0..n {
            let p = t.path().join(format!("c{}/{i}.png", i % 2));
            std::fs::create_dir_all(p.parent().unwrap()).unwrap();
            image::RgbImage::from_fn(5 + i as u32, 3 + (i % 4) as u32, |x, y| image::Rgb([i as u8, x as u8, y as u8])).save(&p).unwrap();
        }
        t
    }

    fn rules(skip_bad: bool) -> ScanRules {
        ScanRules { max_pixels: crate::data::decode::DEFAULT_MAX_PIXELS, skip_bad, threads: 2 }
    }

    #[test]
    fn built_once_then_read_back_exactly() {
        let t = folder(9);
        let cache = tempfile::tempdir().unwrap();
        let list = scan(t.path(), rules(false)).unwrap();
        let set = DiskSet::open_or_build(&list, t.path(), cache.path(), 3, false).unwrap();
        assert_eq!(set.len(), 9);
        for i in 0..9 {
            let (px, (h, w)) = set.read(i).unwrap();
            let img = crate::data::decode::decode_file(&list.files[i], list.max_pixels).unwrap();
            assert_eq!((h, w), (img.height() as i64, img.width() as i64));
            assert_eq!(px, img.into_raw(), "image {i}");
        }
        // A second open reuses the file: the same inode (a rebuild renames a new file into
        // place), only its modification time refreshed as the cache's last use.
        use std::os::unix::fs::MetadataExt;
        let before = std::fs::metadata(&set.path).unwrap();
        let again = DiskSet::open_or_build(&list, t.path(), cache.path(), 1, false).unwrap();
        let after = std::fs::metadata(&again.path).unwrap();
        assert_eq!(after.ino(), before.ino());
        assert!(after.modified().unwrap() >= before.modified().unwrap());
        assert_eq!(std::fs::read_dir(cache.path()).unwrap().count(), 1, "no temporary file is left");
    }

    #[test]
    fn a_damaged_cache_is_rebuilt() {
        let t = folder(4);
        let cache = tempfile::tempdir().unwrap();
        let list = scan(t.path(), rules(false)).unwrap();
        let path = DiskSet::open_or_build(&list, t.path(), cache.path(), 2, false).unwrap().path.clone();
        let bytes = std::fs::read(&path).unwrap();
        std::fs::write(&path, &bytes[..bytes.len() - 5]).unwrap();
        let set = DiskSet::open_or_build(&list, t.path(), cache.path(), 2, false).unwrap();
        assert_eq!(std::fs::read(&set.path).unwrap(), bytes);
        let mut flipped = bytes.clone();
        flipped[HEADER as usize + 3] ^= 1;
        std::fs::write(&path, &flipped).unwrap();
        assert_eq!(std::fs::read(&DiskSet::open_or_build(&list, t.path(), cache.path(), 2, false).unwrap().path).unwrap(), bytes);
    }

    #[test]
    fn a_file_that_fails_to_decode_is_named_or_kept_out() {
        let t = folder(6);
        let cache = tempfile::tempdir().unwrap();
        let list = scan(t.path(), rules(false)).unwrap();
        // Damage one file after the scan, keeping its header: only decoding finds it.
        let bad = list.files[3].clone();
        let bytes = std::fs::read(&bad).unwrap();
        std::fs::write(&bad, &bytes[..bytes.len() - 20]).unwrap();
        let err = DiskSet::open_or_build(&list, t.path(), cache.path(), 2, false).err().unwrap();
        assert!(crate::error::is_bad_input(&err) && format!("{err:#}").contains(&*bad.file_name().unwrap().to_string_lossy()), "{err:#}");
        assert_eq!(std::fs::read_dir(cache.path()).unwrap().count(), 0, "a failed build leaves nothing");
        let set = DiskSet::open_or_build(&list, t.path(), cache.path(), 2, true).unwrap();
        assert!(set.read(2).is_ok());
        let err = set.read(3).unwrap_err();
        assert!(crate::error::is_bad_input(&err) && format!("{err:#}").contains("could not be decoded"));
    }
}
