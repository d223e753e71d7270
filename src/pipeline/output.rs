//! The output folder of a run or a comparison: what may be replaced, continued or must be
//! refused before any work, the manifest of the files the tool wrote there, and the files that
//! mark a run as finished.
//!
//! The manifest (`.compress-manifest.json`, the names the tool wrote in the folder) is what makes
//! a file the tool's: anything else there is the user's. A folder holding files of the user's is
//! refused unless `--overwrite`, and even then a file of the user's is never replaced or deleted.

use super::plan::Plan;
use super::quantize;
use super::RunOptions;
use crate::bad_input;
use crate::fsio::write_atomic;
use crate::report::{self, Report};
use std::collections::BTreeSet;
use std::path::Path;

pub const MANIFEST: &str = ".compress-manifest.json";
/// Held (an exclusive `flock`) by the run writing in the folder, released when it ends however
/// it ends; a second run into the same folder is refused while it is held.
pub const LOCK: &str = ".compress.lock";

/// The held lock of an output folder.
pub struct Lock(#[allow(dead_code)] std::fs::File);

/// Takes the folder's lock, or refuses when another run holds it.
pub fn lock(out: &Path) -> anyhow::Result<Lock> {
    use std::os::unix::io::AsRawFd;
    let path = out.join(LOCK);
    let file =
        std::fs::OpenOptions::new().create(true).truncate(false).write(true).open(&path).map_err(|e| bad_input!("cannot open {}: {e}", path.display()))?;
    // SAFETY: flock on a file descriptor this process owns; it is released when the file closes.
    if unsafe { libc::flock(file.as_raw_fd(), libc::LOCK_EX | libc::LOCK_NB) } != 0 {
        return Err(bad_input!("{} is in use by another compress run; wait for it to end or choose another --out", out.display()));
    }
    Ok(Lock(file))
}

/// Names the tool writes; a folder without a manifest that holds `report.json`, `checkpoints/`
/// or `comparison.json` was written by an earlier version, and these names in it are its own.
const KNOWN: &[&str] = &["student.onnx", "report.json", "report.md", "recipe.resolved.yaml", "checkpoints", "comparison.json", "comparison.md"];

/// What a run will write in its folder.
pub fn run_names(plan: &Plan) -> Vec<String> {
    let mut names: Vec<String> = ["student.onnx", "report.json", "report.md", "recipe.resolved.yaml", "checkpoints"].map(String::from).into();
    names.extend(plan.quantize.as_ref().map(quantize::file_name));
    names.extend(crate::report::charts::FILES.iter().map(|f| f.to_string()));
    if plan.export.ort_format {
        let ort: Vec<String> = names.iter().filter_map(|n| n.strip_suffix(".onnx").map(|stem| format!("{stem}.ort"))).collect();
        names.extend(ort);
    }
    names
}

/// Refuses to overwrite a finished run (its `report.json`) or an interrupted one (its
/// checkpoints) unless asked: `--overwrite` starts over, `--resume` continues. Then claims the
/// folder for `names` (see [`claim`]) and, unless this is a dry run, holds its lock.
pub fn prepare(out: &Path, opts: &RunOptions, names: &[String]) -> anyhow::Result<Option<Lock>> {
    let report = out.join("report.json");
    let checkpoints = out.join("checkpoints");
    if opts.resume && opts.overwrite {
        return Err(bad_input!("--resume and --overwrite exclude each other"));
    }
    if report.exists() && !opts.overwrite {
        let hint = if opts.resume { "it is finished, there is nothing to resume; " } else { "" };
        return Err(bad_input!("{} already holds a finished run; {hint}pass --overwrite to replace it or --out to choose another folder", out.display()));
    }
    if opts.resume && !checkpoints.exists() {
        return Err(bad_input!("--resume: {} holds no checkpoints to continue from", out.display()));
    }
    if checkpoints.exists() && !opts.resume && !opts.overwrite && !opts.dry_run {
        return Err(bad_input!("{} holds an interrupted run: pass --resume to continue it or --overwrite to start over", out.display()));
    }
    claim(out, names, opts.overwrite, !opts.dry_run)?;
    if opts.dry_run {
        return Ok(None);
    }
    let held = lock(out)?;
    if opts.overwrite {
        clear_previous_run(out)?;
    }
    Ok(Some(held))
}

/// Makes `out` the tool's folder for `names`: refuses when a file there that the tool did not
/// write has one of those names (it is never replaced), or when the folder holds any file of the
/// user's and `overwrite` is not given. With `write`, creates the folder and records `names` in
/// its manifest before anything is written.
pub fn claim(out: &Path, names: &[String], overwrite: bool, write: bool) -> anyhow::Result<()> {
    let owned = owned(out)?;
    let foreign = foreign(out, &owned);
    if let Some(clash) = foreign.iter().find(|f| names.contains(f)) {
        return Err(bad_input!(
            "{}: `{clash}` there was not written by compress, and compress never replaces it (even with --overwrite); move it or choose another --out",
            out.display()
        ));
    }
    if !foreign.is_empty() && !overwrite {
        let list: Vec<&str> = foreign.iter().map(String::as_str).take(5).collect();
        return Err(bad_input!(
            "{} holds files compress did not write ({}{}): choose a new or empty folder with --out, or pass --overwrite to write beside them",
            out.display(),
            list.join(", "),
            if foreign.len() > list.len() { ", …" } else { "" }
        ));
    }
    if write {
        std::fs::create_dir_all(out).map_err(|e| bad_input!("cannot create output folder {}: {e}", out.display()))?;
        let all: BTreeSet<&String> = owned.iter().chain(names).collect();
        write_atomic(&out.join(MANIFEST), serde_json::to_string_pretty(&all)?.as_bytes())?;
    }
    Ok(())
}

/// The names the tool wrote in `out`.
fn owned(out: &Path) -> anyhow::Result<BTreeSet<String>> {
    let manifest = out.join(MANIFEST);
    if manifest.is_file() {
        return serde_json::from_slice(&std::fs::read(&manifest)?)
            .map_err(|e| bad_input!("{} is unreadable ({e}); remove it or choose another --out", manifest.display()));
    }
    let legacy = ["report.json", "checkpoints", "comparison.json"].iter().any(|n| out.join(n).exists());
    let mut names = BTreeSet::new();
    if legacy {
        for entry in std::fs::read_dir(out)?.flatten() {
            let name = entry.file_name().to_string_lossy().into_owned();
            if KNOWN.contains(&name.as_str()) || quantize::is_quantized_file(&name) {
                names.insert(name);
            }
        }
    }
    Ok(names)
}

/// Entries of `out` the tool did not write (its own temporaries `.NAME.tmp` aside).
fn foreign(out: &Path, owned: &BTreeSet<String>) -> Vec<String> {
    let Ok(entries) = std::fs::read_dir(out) else { return vec![] };
    let mut found: Vec<String> = entries
        .flatten()
        .map(|e| e.file_name().to_string_lossy().into_owned())
        .filter(|n| n != MANIFEST && n != LOCK && !owned.contains(n))
        .filter(|n| !n.strip_prefix('.').and_then(|n| n.strip_suffix(".tmp")).is_some_and(|n| owned.contains(n) || n == MANIFEST))
        .collect();
    found.sort();
    found
}

/// Removes the previous run as a whole before this one writes anything: first `report.json`
/// (what marks a run finished), then every other file the tool wrote there (model files,
/// `report.md`, the resolved recipe, the checkpoints, their temporaries), so an overwrite that
/// is interrupted never leaves an old model beside new files. Only the tool's own files go: a
/// file of the user's, or a folder inside `checkpoints/` that still holds one, stays.
fn clear_previous_run(out: &Path) -> anyhow::Result<()> {
    let owned = owned(out)?;
    let remove = |name: &str| -> anyhow::Result<()> {
        for path in [out.join(name), out.join(format!(".{name}.tmp"))] {
            if path.is_file() {
                std::fs::remove_file(&path).map_err(|e| anyhow::anyhow!("cannot remove the previous run's {}: {e}", path.display()))?;
            }
        }
        Ok(())
    };
    remove("report.json")?;
    for name in owned.iter().filter(|n| *n != "report.json" && *n != "checkpoints") {
        remove(name)?;
    }
    if owned.contains("checkpoints") {
        remove_checkpoints(&out.join("checkpoints"))?;
    }
    Ok(())
}

/// Deletes checkpoint files (`last.json`, `state-*.safetensors`, their temporaries) in `dir`
/// and its subfolders, then every folder left empty.
pub(super) fn remove_checkpoints(dir: &Path) -> anyhow::Result<()> {
    let Ok(entries) = std::fs::read_dir(dir) else { return Ok(()) };
    for entry in entries.flatten() {
        let path = entry.path();
        let name = entry.file_name().to_string_lossy().into_owned();
        if path.is_dir() {
            remove_checkpoints(&path)?;
        } else if name == "last.json" || name.starts_with("state-") || (name.starts_with('.') && name.ends_with(".tmp")) {
            std::fs::remove_file(&path)?;
        }
    }
    let _ = std::fs::remove_dir(dir);
    Ok(())
}

/// The charts, the resolved recipe, `report.md`, then `report.json`, whose presence marks a
/// finished run.
pub fn write_report(out: &Path, plan: &Plan, report: &mut Report) -> anyhow::Result<()> {
    report.charts = crate::report::charts::draw(out, report);
    write_atomic(&out.join("recipe.resolved.yaml"), plan.resolved_yaml.as_bytes())?;
    write_atomic(&out.join("report.md"), report::markdown::render(report).as_bytes())?;
    write_atomic(&out.join("report.json"), serde_json::to_string_pretty(report)?.as_bytes())
}
