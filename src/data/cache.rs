//! On-disk cache of decoded image sets, so a second run skips JPEG/PNG decoding.
//!
//! The key hashes the folder's canonical path and every file's relative path, size and mtime,
//! so editing, adding or removing any image gives a new key (old entries are simply unused).
//! File layout, little endian: magic, format version, N, H, W, class-names JSON length and
//! bytes, N·H·W·3 pixel bytes, N int64 labels, then a 64-bit checksum of pixels and labels.
//! A file that fails any check reads as a miss: the cache can only cost a re-decode.

use super::ImageSet;
use anyhow::{Context, Result};
use sha2::{Digest, Sha256};
use std::io::Write;
use std::path::{Path, PathBuf};
use tch::{Kind, Tensor};

const MAGIC: &[u8; 8] = b"CMPIMGS\0";
/// Bumped whenever the layout or the decoding changes, so stale entries are never read.
pub const FORMAT_VERSION: u32 = 1;
/// Bytes before the class-names JSON: magic, version, N, H, W, JSON length.
const FIXED_HEADER: usize = 8 + 4 + 8 * 4;

/// Where decoded image sets are cached: `COMPRESS_CACHE_DIR`, else the user's cache folder.
pub fn default_dir() -> Option<PathBuf> {
    if let Some(d) = std::env::var_os("COMPRESS_CACHE_DIR") {
        return Some(PathBuf::from(d));
    }
    let base = std::env::var_os("XDG_CACHE_HOME").map(PathBuf::from).or_else(|| std::env::var_os("HOME").map(|h| PathBuf::from(h).join(".cache")))?;
    Some(base.join("compress").join("datasets"))
}

/// Hex SHA-256 key of an image folder listing; `files` are paths inside `dir`.
pub fn cache_key(dir: &Path, files: &[PathBuf]) -> Result<String> {
    let canon = dir.canonicalize().with_context(|| format!("resolving {}", dir.display()))?;
    let mut h = Sha256::new();
    h.update(MAGIC);
    h.update(FORMAT_VERSION.to_le_bytes());
    // Length prefixes keep the concatenation unambiguous (no path can mimic a separator).
    let mut field = |bytes: &[u8]| {
        h.update((bytes.len() as u64).to_le_bytes());
        h.update(bytes);
    };
    field(canon.to_string_lossy().as_bytes());
    for f in files {
        let meta = std::fs::metadata(f).with_context(|| format!("reading metadata of {}", f.display()))?;
        let rel = f.strip_prefix(dir).unwrap_or(f);
        field(rel.to_string_lossy().as_bytes());
        field(&meta.len().to_le_bytes());
        let mtime = match meta.modified() {
            Ok(t) => match t.duration_since(std::time::UNIX_EPOCH) {
                Ok(d) => d.as_nanos() as i128,
                Err(e) => -(e.duration().as_nanos() as i128),
            },
            // Without mtimes only path and size can tell edits apart; still better than no cache.
            Err(_) => 0,
        };
        field(&mtime.to_le_bytes());
    }
    Ok(h.finalize().iter().map(|b| format!("{b:02x}")).collect())
}

/// Where the entry for `key` lives.
pub fn cache_file(cache_dir: &Path, key: &str) -> PathBuf {
    cache_dir.join(format!("{key}.bin"))
}

/// Fast 64-bit checksum (multiply–xorshift over 8-byte words). It only has to catch truncation
/// and bit rot, not adversaries, and must not add noticeably to reading 150 MB.
fn checksum(parts: &[&[u8]]) -> u64 {
    let mut h: u64 = 0x243F_6A88_85A3_08D3;
    for part in parts {
        let mut chunks = part.chunks_exact(8);
        for c in &mut chunks {
            let word = u64::from_le_bytes(c.try_into().expect("chunks_exact gives 8 bytes"));
            h = (h ^ word).wrapping_mul(0x9E37_79B9_7F4A_7C15);
            h ^= h >> 29;
        }
        let mut tail = [0u8; 8];
        tail[..chunks.remainder().len()].copy_from_slice(chunks.remainder());
        h = (h ^ u64::from_le_bytes(tail) ^ part.len() as u64).wrapping_mul(0xBF58_476D_1CE4_E5B9);
    }
    h ^ (h >> 31)
}

/// Reads an entry; `None` when it is missing, truncated, corrupt or of another version.
pub fn read(path: &Path) -> Option<ImageSet> {
    let bytes = std::fs::read(path).ok()?;
    let u64_at = |at: usize| -> Option<u64> { Some(u64::from_le_bytes(bytes.get(at..at + 8)?.try_into().ok()?)) };
    if bytes.get(..8)? != MAGIC || bytes.get(8..12)? != FORMAT_VERSION.to_le_bytes() {
        return None;
    }
    let (n, h, w, json_len) = (u64_at(12)?, u64_at(20)?, u64_at(28)?, u64_at(36)?);
    let json_end = FIXED_HEADER.checked_add(usize::try_from(json_len).ok()?)?;
    let names: Vec<String> = serde_json::from_slice(bytes.get(FIXED_HEADER..json_end)?).ok()?;
    // Checked arithmetic: a corrupt header must not overflow into a plausible-looking size.
    let n_us = usize::try_from(n).ok()?;
    let pix_len = n_us.checked_mul(usize::try_from(h).ok()?)?.checked_mul(usize::try_from(w).ok()?)?.checked_mul(3)?;
    let pix_end = json_end.checked_add(pix_len)?;
    let lab_end = pix_end.checked_add(n_us.checked_mul(8)?)?;
    if bytes.len() != lab_end.checked_add(8)? {
        return None;
    }
    let (pixels, labels_raw) = (&bytes[json_end..pix_end], &bytes[pix_end..lab_end]);
    if checksum(&[pixels, labels_raw]) != u64_at(lab_end)? {
        return None;
    }
    let labels: Vec<i64> = labels_raw.chunks_exact(8).map(|c| i64::from_le_bytes(c.try_into().unwrap())).collect();
    let images = Tensor::f_from_data_size(pixels, &[n as i64, h as i64, w as i64, 3], Kind::Uint8).ok()?;
    // `new` re-checks label range against the class list.
    ImageSet::new(images, Tensor::from_slice(&labels), names).ok()
}

/// Writes an entry atomically: a temporary file in the same folder, renamed into place, so a
/// concurrent reader or a crash mid-write never sees a partial file under the final name.
pub fn write(path: &Path, set: &ImageSet) -> Result<()> {
    let dir = path.parent().unwrap_or(Path::new("."));
    std::fs::create_dir_all(dir).with_context(|| format!("creating cache folder {}", dir.display()))?;
    let (n, (h, w)) = (set.len(), set.image_size());
    let numel = n * h as usize * w as usize * 3;
    let mut pixels = vec![0u8; numel];
    crate::host::bytes(&set.images.f_contiguous()?, &mut pixels).context("reading pixels")?;
    let labels = crate::host::vec::<i64>(&set.labels).context("reading labels")?;
    let labels_raw: Vec<u8> = labels.iter().flat_map(|l| l.to_le_bytes()).collect();
    let json = serde_json::to_vec(&set.class_names)?;

    // The pid keeps two processes filling the same entry from interleaving their writes.
    let tmp = dir.join(format!("{}.{}.tmp", path.file_name().map(|f| f.to_string_lossy().into_owned()).unwrap_or_default(), std::process::id()));
    let result = (|| -> Result<()> {
        let file = std::fs::File::create(&tmp).with_context(|| format!("creating {}", tmp.display()))?;
        let mut out = std::io::BufWriter::new(file);
        out.write_all(MAGIC)?;
        out.write_all(&FORMAT_VERSION.to_le_bytes())?;
        for v in [n as u64, h as u64, w as u64, json.len() as u64] {
            out.write_all(&v.to_le_bytes())?;
        }
        out.write_all(&json)?;
        out.write_all(&pixels)?;
        out.write_all(&labels_raw)?;
        out.write_all(&checksum(&[&pixels, &labels_raw]).to_le_bytes())?;
        // No fsync: after a crash a half-written entry fails the checksum and reads as a miss.
        out.flush()?;
        drop(out);
        std::fs::rename(&tmp, path).with_context(|| format!("renaming {} to {}", tmp.display(), path.display()))
    })();
    if result.is_err() {
        let _ = std::fs::remove_file(&tmp);
    }
    result.with_context(|| format!("writing image cache {}", path.display()))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sample() -> ImageSet {
        let images = Tensor::arange(5 * 4 * 3 * 3, (Kind::Int64, tch::Device::Cpu)).remainder(256).to_kind(Kind::Uint8).view([5, 4, 3, 3]);
        let labels = Tensor::from_slice(&[1i64, 0, 1, 1, 0]);
        ImageSet::new(images, labels, vec!["cat".into(), "dög".into()]).unwrap()
    }

    #[test]
    fn write_then_read_round_trips() {
        let dir = tempfile::tempdir().unwrap();
        let path = cache_file(dir.path(), "abc");
        let set = sample();
        write(&path, &set).unwrap();
        let back = read(&path).expect("fresh entry must read back");
        assert!(back.images.equal(&set.images));
        assert!(back.labels.equal(&set.labels));
        assert_eq!(back.class_names, set.class_names);
        // No temporary file is left behind.
        assert_eq!(std::fs::read_dir(dir.path()).unwrap().count(), 1);
    }

    #[test]
    fn truncated_or_flipped_entry_is_a_miss() {
        let dir = tempfile::tempdir().unwrap();
        let path = cache_file(dir.path(), "k");
        write(&path, &sample()).unwrap();
        let good = std::fs::read(&path).unwrap();
        std::fs::write(&path, &good[..good.len() - 9]).unwrap();
        assert!(read(&path).is_none());
        let mut bad = good.clone();
        let mid = bad.len() / 2;
        bad[mid] ^= 0x40;
        std::fs::write(&path, &bad).unwrap();
        assert!(read(&path).is_none());
        std::fs::write(&path, &good[..20]).unwrap();
        assert!(read(&path).is_none());
        assert!(read(&dir.path().join("missing.bin")).is_none());
    }

    #[test]
    fn key_changes_when_a_file_changes() {
        let dir = tempfile::tempdir().unwrap();
        let f = dir.path().join("a").join("x.png");
        std::fs::create_dir_all(f.parent().unwrap()).unwrap();
        std::fs::write(&f, b"12345").unwrap();
        let k1 = cache_key(dir.path(), std::slice::from_ref(&f)).unwrap();
        assert_eq!(k1, cache_key(dir.path(), std::slice::from_ref(&f)).unwrap());
        assert_eq!(k1.len(), 64);
        std::fs::write(&f, b"123456").unwrap();
        assert_ne!(k1, cache_key(dir.path(), std::slice::from_ref(&f)).unwrap());
    }
}
