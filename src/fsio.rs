//! File-system helpers every layer shares: atomic writes (nothing half-written ever looks
//! finished), bounded reads of regular files only (a FIFO, a device or a file larger than its
//! kind allows is refused by name before anything is read), and content hashes. No knowledge of
//! what the bytes are.

use crate::bad_input;
use sha2::{Digest, Sha256};
use std::io::{Read, Seek, SeekFrom};
use std::path::Path;

/// Opens `path` for reading when it is a regular file (after links), so a FIFO never blocks
/// and a device never streams; `what` names it in errors ("recipe", "model file").
fn open_regular(path: &Path, what: &str) -> anyhow::Result<(std::fs::File, u64)> {
    let meta = std::fs::metadata(path).map_err(|e| bad_input!("cannot read {what} {}: {e}", path.display()))?;
    if !meta.is_file() {
        return Err(bad_input!("{what} {} is not a regular file", path.display()));
    }
    let file = std::fs::File::open(path).map_err(|e| bad_input!("cannot read {what} {}: {e}", path.display()))?;
    Ok((file, meta.len()))
}

/// Reads a regular file of at most `limit` bytes.
pub fn read_regular(path: &Path, what: &str, limit: u64) -> anyhow::Result<Vec<u8>> {
    let (file, len) = open_regular(path, what)?;
    if len > limit {
        return Err(bad_input!("{what} {} has {len} bytes, more than the {limit} this tool reads for one", path.display()));
    }
    let mut bytes = Vec::with_capacity(len as usize);
    file.take(limit + 1).read_to_end(&mut bytes).map_err(|e| bad_input!("cannot read {what} {}: {e}", path.display()))?;
    if bytes.len() as u64 > limit {
        return Err(bad_input!("{what} {} grew past {limit} bytes while it was read", path.display()));
    }
    Ok(bytes)
}

/// Reads `length` bytes at `offset` of a regular file (the rest of it when `length` is None),
/// without reading anything else; the range must lie inside the file.
pub fn read_range(path: &Path, what: &str, offset: u64, length: Option<u64>) -> anyhow::Result<Vec<u8>> {
    let (mut file, len) = open_regular(path, what)?;
    let end = match length {
        Some(n) => offset.checked_add(n),
        None => Some(len),
    };
    let end = end.filter(|&e| offset <= e && e <= len).ok_or_else(|| {
        bad_input!(
            "{what} {}: range {offset}..{} is outside the file ({len} bytes)",
            path.display(),
            length.map_or("end".into(), |n| offset.saturating_add(n).to_string())
        )
    })?;
    file.seek(SeekFrom::Start(offset))?;
    let mut bytes = vec![0u8; (end - offset) as usize];
    file.read_exact(&mut bytes).map_err(|e| bad_input!("cannot read {what} {}: {e}", path.display()))?;
    Ok(bytes)
}

/// Writes `bytes` to `path` through a temporary file in the same folder and a rename.
pub fn write_atomic(path: &Path, bytes: &[u8]) -> anyhow::Result<()> {
    let dir = path.parent().unwrap_or(Path::new("."));
    std::fs::create_dir_all(dir)?;
    let tmp = dir.join(format!(".{}.tmp", path.file_name().and_then(|n| n.to_str()).unwrap_or("out")));
    let written = std::fs::write(&tmp, bytes)
        .map_err(|e| anyhow::anyhow!("writing {}: {e}", tmp.display()))
        .and_then(|()| std::fs::rename(&tmp, path).map_err(|e| anyhow::anyhow!("renaming {} to {}: {e}", tmp.display(), path.display())));
    if written.is_err() {
        // A full disk or a read-only folder leaves no temporary behind.
        let _ = std::fs::remove_file(&tmp);
    }
    written
}

/// Lower-case hexadecimal of `bytes`.
pub fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

/// The SHA-256 of `bytes`, in hexadecimal.
pub fn sha256_hex(bytes: &[u8]) -> String {
    hex(&Sha256::digest(bytes))
}

#[cfg(test)]
mod tests {
    #[test]
    fn sha256_of_the_empty_string() {
        assert_eq!(super::sha256_hex(b""), "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855");
    }

    #[test]
    fn write_atomic_leaves_no_temporary_file() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("sub/out.txt");
        super::write_atomic(&path, b"done").unwrap();
        assert_eq!(std::fs::read(&path).unwrap(), b"done");
        let names: Vec<_> = std::fs::read_dir(path.parent().unwrap()).unwrap().flatten().map(|e| e.file_name()).collect();
        assert_eq!(names, vec![std::ffi::OsString::from("out.txt")]);
    }

    #[test]
    fn only_regular_files_within_their_limit_are_read() {
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("f.bin");
        std::fs::write(&file, b"0123456789").unwrap();
        assert_eq!(super::read_regular(&file, "model file", 10).unwrap(), b"0123456789");
        let too_big = super::read_regular(&file, "recipe", 9).unwrap_err();
        assert!(crate::error::is_bad_input(&too_big) && too_big.to_string().contains("recipe"), "{too_big}");
        let folder = super::read_regular(dir.path(), "model file", 10).unwrap_err();
        assert!(folder.to_string().contains("not a regular file"), "{folder}");
        let device = super::read_regular(std::path::Path::new("/dev/zero"), "recipe", 1 << 20).unwrap_err();
        assert!(device.to_string().contains("not a regular file"), "{device}");
        assert_eq!(super::read_range(&file, "external data", 3, Some(4)).unwrap(), b"3456");
        assert_eq!(super::read_range(&file, "external data", 8, None).unwrap(), b"89");
        for (offset, len) in [(8, Some(3)), (11, None), (u64::MAX, Some(2))] {
            assert!(crate::error::is_bad_input(&super::read_range(&file, "external data", offset, len).unwrap_err()));
        }
    }
}
