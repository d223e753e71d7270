//! A run killed with SIGKILL mid-training and continued with `--resume` ends with the same
//! per-epoch metrics and the same exported model as an uninterrupted run with the same seed.

mod common;
use common::*;
use std::time::{Duration, Instant};

fn recipe() -> String {
    tiny_recipe("[]", "none")
        .replace("train_size: 256", "train_size: 2048")
        .replace("train: {epochs: 1, batch_size: 32, threads: 2}", "train: {epochs: 3, batch_size: 32, threads: 2}")
}

fn report(dir: &std::path::Path, out: &str) -> serde_json::Value {
    serde_json::from_slice(&std::fs::read(dir.join(out).join("report.json")).unwrap()).unwrap()
}

/// The per-epoch figures without wall times.
fn figures(r: &serde_json::Value) -> Vec<serde_json::Value> {
    r["training"]["epochs"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| {
            let mut e = e.clone();
            e.as_object_mut().unwrap().remove("seconds");
            e
        })
        .collect()
}

#[test]
fn killed_run_resumes_to_the_same_result() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("r.yaml"), recipe()).unwrap();
    let full = run_in(dir.path(), &["--recipe", "r.yaml", "--out", "full"]);
    assert_eq!(full.code, 0, "{}", full.stderr);

    let mut child = bin()
        .args(["--recipe", "r.yaml", "--out", "killed"])
        .current_dir(dir.path())
        .stderr(std::process::Stdio::null())
        .spawn()
        .unwrap();
    let marker = dir.path().join("killed/checkpoints/distill/last.json");
    let started = Instant::now();
    while !marker.exists() {
        assert!(started.elapsed() < Duration::from_secs(120), "no checkpoint appeared");
        assert!(child.try_wait().unwrap().is_none(), "the run ended before it could be killed");
        std::thread::sleep(Duration::from_millis(10));
    }
    child.kill().unwrap(); // SIGKILL: no chance to clean up
    child.wait().unwrap();
    assert!(!dir.path().join("killed/report.json").exists(), "the kill must land before the run finished");
    let meta: serde_json::Value = serde_json::from_slice(&std::fs::read(&marker).unwrap()).unwrap();
    assert!(meta["epoch"].as_u64().unwrap() < 3, "{meta}");

    let again = run_in(dir.path(), &["--recipe", "r.yaml", "--out", "killed"]);
    assert_eq!(again.code, 2, "an interrupted run is not silently restarted: {}", again.stderr);
    assert!(again.stderr.contains("--resume"), "{}", again.stderr);

    let resumed = run_in(dir.path(), &["--recipe", "r.yaml", "--out", "killed", "--resume"]);
    assert_eq!(resumed.code, 0, "{}", resumed.stderr);
    assert!(resumed.stderr.contains("resuming after epoch"), "{}", resumed.stderr);
    let (a, b) = (report(dir.path(), "full"), report(dir.path(), "killed"));
    assert_eq!(figures(&a), figures(&b));
    let (fa, fb) = (&a["exported"][0]["sha256"], &b["exported"][0]["sha256"]);
    assert_eq!(fa, fb, "the exported models differ");
}

#[test]
fn resume_refuses_a_changed_recipe() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("r.yaml"), recipe().replace("epochs: 3", "epochs: 1")).unwrap();
    let first = run_in(dir.path(), &["--recipe", "r.yaml", "--out", "o"]);
    assert_eq!(first.code, 0, "{}", first.stderr);
    // Make it look interrupted: drop the report, keep the checkpoints.
    std::fs::remove_file(dir.path().join("o/report.json")).unwrap();
    let r = run_in(dir.path(), &["--recipe", "r.yaml", "--out", "o", "--resume", "--set", "train.optimizer.sgd.lr=0.2"]);
    assert_eq!(r.code, 2, "{}", r.stderr);
    assert!(r.stderr.contains("recipe changed"), "{}", r.stderr);
}
