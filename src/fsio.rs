//! File-system helpers every layer shares: atomic writes (nothing half-written ever looks
//! finished) and content hashes. No knowledge of what the bytes are.

use sha2::{Digest, Sha256};
use std::path::Path;

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
}
