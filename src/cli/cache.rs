//! `compress cache [--clear] [--json]`: the cache folder (decoded image sets, teacher outputs):
//! where it is, what it holds, its size limit; `--clear` empties it.

use crate::data::cache::default_dir;
use crate::data::cache_dir;
use clap::Args;

#[derive(Args, Debug)]
pub struct CacheArgs {
    /// Remove every entry (only the files the cache writes).
    #[arg(long)]
    pub clear: bool,
    #[arg(long)]
    pub json: bool,
}

pub fn run(a: &CacheArgs) -> anyhow::Result<i32> {
    let dir = default_dir().ok_or_else(|| crate::bad_input!("no cache folder: set COMPRESS_CACHE_DIR (no HOME or XDG_CACHE_HOME is set)"))?;
    let limit = cache_dir::max_bytes()?;
    if a.clear {
        let (files, bytes) = cache_dir::clear(&dir)?;
        println!("{}: removed {files} files, {:.1} MiB", dir.display(), bytes as f64 / 1048576.0);
        return Ok(0);
    }
    let entries = cache_dir::entries(&dir);
    let total: u64 = entries.iter().map(|e| e.bytes).sum();
    if a.json {
        let list: Vec<_> = entries
            .iter()
            .map(|e| {
                let used = e.used.duration_since(std::time::UNIX_EPOCH).map_or(0, |d| d.as_secs());
                serde_json::json!({"file": e.path, "bytes": e.bytes, "last_used_unix": used})
            })
            .collect();
        println!("{}", serde_json::to_string_pretty(&serde_json::json!({"folder": dir, "bytes": total, "max_bytes": limit, "entries": list}))?);
        return Ok(0);
    }
    println!(
        "{}: {} entries (decoded image sets, teacher outputs), {:.1} MiB of at most {:.1} MiB (COMPRESS_CACHE_MAX_BYTES); least recently used removed first",
        dir.display(),
        entries.len(),
        total as f64 / 1048576.0,
        limit as f64 / 1048576.0
    );
    for e in entries.iter().rev() {
        println!("  {} {:.1} MiB", e.path.file_name().map(|n| n.to_string_lossy().into_owned()).unwrap_or_default(), e.bytes as f64 / 1048576.0);
    }
    Ok(0)
}
