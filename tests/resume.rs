//! A run killed with SIGKILL mid-training and continued with `--resume` ends with the same
//! per-epoch metrics and the same exported model as an uninterrupted run with the same seed.

mod common;
use common::*;
use std::time::{Duration, Instant};

fn recipe() -> String {
    with_epochs(tiny_recipe("[]", "none"), 2048, 3)
}

fn with_epochs(recipe: String, train_size: usize, epochs: usize) -> String {
    recipe
        .replace("train_size: 256", &format!("train_size: {train_size}"))
        .replace("train: {epochs: 1, batch_size: 32, threads: 2}", &format!("train: {{epochs: {epochs}, batch_size: 32, threads: 2}}"))
}

/// A CA-MKD recipe whose feature connectors (trained from epoch 2) must be restored too.
fn recipe_with_connectors(dir: &std::path::Path) -> String {
    for (i, seed) in [(1, 5), (2, 6)] {
        write_resnet8_teacher(&dir.join(format!("t{i}.onnx")), seed);
    }
    let teachers = "[{name: t1, onnx: t1.onnx, input: {layout: nchw}}, {name: t2, onnx: t2.onnx, input: {layout: nchw}}]";
    with_epochs(tiny_recipe(teachers, "ca_mkd"), 768, 3)
}

fn report(dir: &std::path::Path, out: &str) -> serde_json::Value {
    serde_json::from_slice(&std::fs::read(dir.join(out).join("report.json")).unwrap()).unwrap()
}

#[test]
fn killed_run_resumes_to_the_same_result() {
    let _serial = one_training_at_a_time();
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("r.yaml"), recipe()).unwrap();
    kill_and_resume(dir.path(), "distill", 1, 3);
}

/// Killed in the quantization-aware stage (after the float stage finished): the QAT student, its
/// learned steps and the method resume, and the QDQ file is the same.
#[test]
fn killed_qat_stage_resumes_to_the_same_result() {
    let _serial = one_training_at_a_time();
    let dir = tempfile::tempdir().unwrap();
    let recipe =
        with_epochs(tiny_recipe("[]", "none"), 1024, 1) + "quantize: {weights: 4, epochs: 3, calibration_images: 64, latency: {rounds: 1, batches: [1]}}\n";
    std::fs::write(dir.path().join("r.yaml"), recipe).unwrap();
    kill_and_resume(dir.path(), "qat", 1, 3);
}

/// The connectors and their optimizer state come back from the checkpoint: killed after the
/// epoch in which they first trained.
#[test]
fn killed_run_with_feature_connectors_resumes_to_the_same_result() {
    let _serial = one_training_at_a_time();
    let dir = tempfile::tempdir().unwrap();
    let recipe = recipe_with_connectors(dir.path());
    std::fs::write(dir.path().join("r.yaml"), recipe).unwrap();
    kill_and_resume(dir.path(), "distill", 2, 3);
}

/// Runs r.yaml in `dir` uninterrupted, then again killed once a checkpoint of epoch
/// `kill_after` (or later, but before the last of `epochs`) of training `stage` exists, resumes
/// it, and compares.
fn kill_and_resume(dir: &std::path::Path, stage: &str, kill_after: u64, epochs: u64) {
    let full = run_in(dir, &["--recipe", "r.yaml", "--out", "full"]);
    assert_eq!(full.code, 0, "{}", full.stderr);

    let mut child = bin().args(["--recipe", "r.yaml", "--out", "killed"]).current_dir(dir).stderr(std::process::Stdio::null()).spawn().unwrap();
    let marker = dir.join("killed/checkpoints").join(stage).join("last.json");
    let started = Instant::now();
    let epoch_of = |m: &std::path::Path| -> u64 {
        std::fs::read(m).ok().and_then(|b| serde_json::from_slice::<serde_json::Value>(&b).ok()).and_then(|v| v["epoch"].as_u64()).unwrap_or(0)
    };
    while epoch_of(&marker) < kill_after {
        assert!(started.elapsed() < Duration::from_secs(120), "no checkpoint appeared");
        assert!(child.try_wait().unwrap().is_none(), "the run ended before it could be killed");
        std::thread::sleep(Duration::from_millis(10));
    }
    child.kill().unwrap(); // SIGKILL: no chance to clean up
    child.wait().unwrap();
    assert!(!dir.join("killed/report.json").exists(), "the kill must land before the run finished");
    let meta: serde_json::Value = serde_json::from_slice(&std::fs::read(&marker).unwrap()).unwrap();
    assert!(meta["epoch"].as_u64().unwrap() < epochs, "{meta}");

    let again = run_in(dir, &["--recipe", "r.yaml", "--out", "killed"]);
    assert_eq!(again.code, 2, "an interrupted run is not silently restarted: {}", again.stderr);
    assert!(again.stderr.contains("--resume"), "{}", again.stderr);

    let resumed = run_in(dir, &["--recipe", "r.yaml", "--out", "killed", "--resume"]);
    assert_eq!(resumed.code, 0, "{}", resumed.stderr);
    assert!(resumed.stderr.contains("resuming after epoch"), "{}", resumed.stderr);
    let (a, b) = (report(dir, "full"), report(dir, "killed"));
    assert_eq!(epochs_without_time(&a["training"]["epochs"]), epochs_without_time(&b["training"]["epochs"]));
    if stage == "qat" {
        let (qa, qb) = (&a["quantization"]["training"]["epochs"], &b["quantization"]["training"]["epochs"]);
        assert_eq!(epochs_without_time(qa), epochs_without_time(qb));
    }
    for i in 0..a["exported"].as_array().unwrap().len() {
        let (fa, fb) = (&a["exported"][i]["sha256"], &b["exported"][i]["sha256"]);
        assert_eq!(fa, fb, "the exported models differ: {}", a["exported"][i]["path"]);
    }
}

#[test]
fn resume_refuses_a_changed_recipe() {
    let _serial = one_training_at_a_time();
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
