//! The cache folder as a whole: its entries (`<key>.bin` in-memory sets, `<key>.pixels` disk
//! caches, `<key>.logits` teacher outputs), a size limit kept by removing the least recently used entries
//! after each new one, and clearing it. Only files of those names are ever touched.

use anyhow::Result;
use std::path::{Path, PathBuf};
use std::time::SystemTime;

/// The default limit on the folder's size: 20 GiB. `COMPRESS_CACHE_MAX_BYTES` sets another
/// (`0` keeps nothing but the entry just written).
pub const DEFAULT_MAX_BYTES: u64 = 20 << 30;

/// The folder's size limit: `COMPRESS_CACHE_MAX_BYTES`, else [`DEFAULT_MAX_BYTES`]. A value
/// that is not a number is bad input naming the variable.
pub fn max_bytes() -> Result<u64> {
    match std::env::var("COMPRESS_CACHE_MAX_BYTES") {
        Ok(v) => v.trim().parse().map_err(|_| crate::bad_input!("COMPRESS_CACHE_MAX_BYTES must be a number of bytes, got {v:?}")),
        Err(_) => Ok(DEFAULT_MAX_BYTES),
    }
}

/// One cached set.
#[derive(Clone, Debug, PartialEq)]
pub struct Entry {
    pub path: PathBuf,
    pub bytes: u64,
    /// When it was last written or read (its modification time, refreshed on every use).
    pub used: SystemTime,
}

/// Whether `name` is a file this cache writes: an entry or an entry's temporary.
fn is_ours(name: &str) -> bool {
    let stem = name.split('.').next().unwrap_or("");
    let keyed = stem.len() == 64 && stem.bytes().all(|b| b.is_ascii_hexdigit());
    keyed && (name.ends_with(".bin") || name.ends_with(".pixels") || name.ends_with(".logits") || name.ends_with(".tmp"))
}

/// The entries in `dir`, least recently used first; temporaries are not entries.
pub fn entries(dir: &Path) -> Vec<Entry> {
    let Ok(read) = std::fs::read_dir(dir) else { return vec![] };
    let mut found: Vec<Entry> = read
        .flatten()
        .filter(|e| {
            let name = e.file_name().to_string_lossy().into_owned();
            is_ours(&name) && !name.ends_with(".tmp")
        })
        .filter_map(|e| {
            let meta = e.metadata().ok()?;
            meta.is_file().then(|| Entry { path: e.path(), bytes: meta.len(), used: meta.modified().unwrap_or(SystemTime::UNIX_EPOCH) })
        })
        .collect();
    found.sort_by(|a, b| a.used.cmp(&b.used).then_with(|| a.path.cmp(&b.path)));
    found
}

/// Marks `path` as just used, so the size limit removes it last.
pub fn touch(path: &Path) {
    if let Ok(f) = std::fs::File::options().append(true).open(path) {
        let _ = f.set_modified(SystemTime::now());
    }
}

/// Removes least recently used entries of `dir` until it holds at most `limit` bytes, never
/// `keep` (the entry just written or read). Returns the removed entries.
pub fn trim(dir: &Path, limit: u64, keep: &Path) -> Vec<Entry> {
    let all = entries(dir);
    let mut total: u64 = all.iter().map(|e| e.bytes).sum();
    let mut removed = Vec::new();
    for e in all {
        if total <= limit {
            break;
        }
        if e.path == keep {
            continue;
        }
        if std::fs::remove_file(&e.path).is_ok() {
            total -= e.bytes;
            removed.push(e);
        }
    }
    removed
}

/// After `path` was written or read: marks it used and keeps the folder within its limit,
/// saying on stderr what it removed. The cache is a speed-up, so nothing here fails a run.
pub fn after_use(path: &Path) {
    touch(path);
    let Some(dir) = path.parent() else { return };
    let limit = match max_bytes() {
        Ok(l) => l,
        Err(e) => {
            eprintln!("warning: {e:#}; the cache folder is not trimmed");
            return;
        }
    };
    let removed = trim(dir, limit, path);
    if !removed.is_empty() {
        let freed: u64 = removed.iter().map(|e| e.bytes).sum();
        eprintln!(
            "data: removed {} least recently used cache entries ({:.1} MiB) to keep {} within {} bytes",
            removed.len(),
            freed as f64 / 1048576.0,
            dir.display(),
            limit
        );
    }
}

/// Removes every entry and temporary of `dir`; returns how many files and bytes went.
pub fn clear(dir: &Path) -> Result<(usize, u64)> {
    let Ok(read) = std::fs::read_dir(dir) else { return Ok((0, 0)) };
    let (mut files, mut bytes) = (0, 0);
    for e in read.flatten() {
        if !is_ours(&e.file_name().to_string_lossy()) {
            continue;
        }
        let len = e.metadata().map(|m| m.len()).unwrap_or(0);
        std::fs::remove_file(e.path()).map_err(|err| crate::bad_input!("cannot remove {}: {err}", e.path().display()))?;
        files += 1;
        bytes += len;
    }
    Ok((files, bytes))
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    fn entry(dir: &Path, n: u8, ext: &str, bytes: usize, age_s: u64) -> PathBuf {
        let path = dir.join(format!("{}.{ext}", format!("{n:02x}").repeat(32)));
        std::fs::write(&path, vec![0u8; bytes]).unwrap();
        let f = std::fs::File::options().append(true).open(&path).unwrap();
        f.set_modified(SystemTime::now() - Duration::from_secs(age_s)).unwrap();
        path
    }

    #[test]
    fn the_least_recently_used_go_first_and_only_ours() {
        let t = tempfile::tempdir().unwrap();
        let old = entry(t.path(), 1, "bin", 100, 300);
        let mid = entry(t.path(), 2, "pixels", 100, 200);
        let new = entry(t.path(), 3, "bin", 100, 100);
        std::fs::write(t.path().join("notes.txt"), b"mine").unwrap();
        assert_eq!(entries(t.path()).iter().map(|e| e.path.clone()).collect::<Vec<_>>(), [old.clone(), mid.clone(), new.clone()]);
        // Using the oldest makes it the newest.
        touch(&old);
        let removed = trim(t.path(), 200, &new);
        assert_eq!(removed.iter().map(|e| e.path.clone()).collect::<Vec<_>>(), std::slice::from_ref(&mid));
        // The entry being kept survives even a limit of zero.
        let removed = trim(t.path(), 0, &new);
        assert_eq!(removed.len(), 1);
        assert!(new.exists() && !old.exists());
        entry(t.path(), 4, "bin.77.tmp", 10, 0);
        assert_eq!(clear(t.path()).unwrap(), (2, 110));
        assert_eq!(std::fs::read(t.path().join("notes.txt")).unwrap(), b"mine", "a file of the user's stays");
    }
}
