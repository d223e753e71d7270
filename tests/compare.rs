//! `compress compare`: methods trained side by side on shared batches and teacher outputs give
//! exactly what each gives when trained alone with the same seed, the comparison reports every
//! method under every seed, in tch and ONNX Runtime, and a comparison killed mid-seed and
//! continued with `--resume` ends with the figures of an uninterrupted one.

mod common;
use common::*;
use serde_json::Value;
use std::time::{Duration, Instant};

const TEACHERS: &str = "[{name: t1, onnx: t1.onnx, input: {layout: nchw}}, {name: t2, onnx: t2.onnx, input: {layout: nchw}}]";

#[test]
fn lockstep_methods_equal_their_standalone_runs() {
    let _serial = one_training_at_a_time();
    let dir = tempfile::tempdir().unwrap();
    write_resnet8_teacher(&dir.path().join("t1.onnx"), 1);
    write_resnet8_teacher(&dir.path().join("t2.onnx"), 2);
    let compare = "compare:\n  seeds: [3, 4]\n  methods:\n    - {distill: {method: none}}\n    - {label: kd_t2, distill: {method: kd, teachers: [t2]}}\n    - {distill: {method: ca_mkd}}\n";
    let recipe = tiny_recipe(TEACHERS, "none").replace("train: {epochs: 1", "train: {epochs: 2") + compare;
    std::fs::write(dir.path().join("r.yaml"), &recipe).unwrap();
    let r = run_in(dir.path(), &["compare", "--recipe", "r.yaml", "--out", "cmp"]);
    assert_eq!(r.code, 0, "{}", r.stderr);
    let c: Value = serde_json::from_slice(&std::fs::read(dir.path().join("cmp/comparison.json")).unwrap()).unwrap();
    let methods = c["methods"].as_array().unwrap();
    assert_eq!(methods.len(), 3);
    assert_eq!(methods[1]["teachers"], serde_json::json!(["t2"]));
    for m in methods {
        let seeds = m["seeds"].as_array().unwrap();
        assert_eq!(seeds.len(), 2, "{m}");
        for s in seeds {
            assert!((s["final_top1_tch"].as_f64().unwrap() - s["final_top1_ort"].as_f64().unwrap()).abs() <= 0.01, "{s}");
            assert!(s["best_top1_tch"].as_f64().unwrap() >= s["final_top1_tch"].as_f64().unwrap(), "{s}");
        }
    }
    assert!(c["teachers"].as_array().unwrap().len() == 2 && c["ensemble_vote_top1"].is_number());
    let md = std::fs::read_to_string(dir.path().join("cmp/comparison.md")).unwrap();
    assert!(md.contains("| kd_t2 | t2 |"));
    // The accuracy-per-method chart, embedded.
    assert!(md.contains("](methods.png)"), "{md}");
    assert_eq!(image::image_dimensions(dir.path().join("cmp/methods.png")).unwrap(), (900, 520));

    // The same methods alone, seed 3: identical epochs.
    for (i, distill) in [(1, "{method: kd, teachers: [t2]}"), (2, "{method: ca_mkd}")] {
        let alone =
            tiny_recipe(TEACHERS, "none").replace("train: {epochs: 1", "train: {epochs: 2").replace("distill: {method: none}", &format!("distill: {distill}"));
        std::fs::write(dir.path().join(format!("a{i}.yaml")), alone).unwrap();
        let out = format!("alone{i}");
        let r = run_in(dir.path(), &["--recipe", &format!("a{i}.yaml"), "--out", &out]);
        assert_eq!(r.code, 0, "{}", r.stderr);
        let report: Value = serde_json::from_slice(&std::fs::read(dir.path().join(&out).join("report.json")).unwrap()).unwrap();
        assert_eq!(epochs_without_time(&report["training"]["epochs"]), epochs_without_time(&methods[i]["seeds"][0]["epochs"]), "{distill}");
    }

    let again = run_in(dir.path(), &["compare", "--recipe", "r.yaml", "--out", "cmp"]);
    assert_eq!(again.code, 2, "a finished comparison is not replaced without --overwrite: {}", again.stderr);
}

#[test]
fn a_recipe_without_a_compare_section_is_refused() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("r.yaml"), tiny_recipe("[]", "none")).unwrap();
    let r = run_in(dir.path(), &["compare", "--recipe", "r.yaml"]);
    assert_eq!(r.code, 2, "{}", r.stderr);
    assert!(r.stderr.contains("compare"), "{}", r.stderr);
}

/// Per method and seed, everything but the timings: best and final top-1 in tch and ONNX
/// Runtime (the best one from the best epoch's student, which the checkpoints carry) and the
/// epochs.
fn figures(c: &Value) -> Vec<Value> {
    let mut out = Vec::new();
    for m in c["methods"].as_array().unwrap() {
        for s in m["seeds"].as_array().unwrap() {
            let mut s = s.clone();
            s["epochs"] = Value::Array(epochs_without_time(&s["epochs"]));
            s.as_object_mut().unwrap().remove("seconds_per_epoch");
            out.push(serde_json::json!({"label": m["label"], "seed": s}));
        }
    }
    out
}

#[test]
fn a_killed_comparison_resumes_to_the_same_result() {
    let _serial = one_training_at_a_time();
    let dir = tempfile::tempdir().unwrap();
    write_resnet8_teacher(&dir.path().join("t1.onnx"), 1);
    write_resnet8_teacher(&dir.path().join("t2.onnx"), 2);
    let compare = "compare:\n  seeds: [3, 4]\n  methods:\n    - {distill: {method: aver}}\n    - {distill: {method: ca_mkd}}\n";
    let recipe = tiny_recipe(TEACHERS, "none").replace("train_size: 256", "train_size: 512").replace("train: {epochs: 1", "train: {epochs: 3") + compare;
    std::fs::write(dir.path().join("r.yaml"), &recipe).unwrap();
    let full = run_in(dir.path(), &["compare", "--recipe", "r.yaml", "--out", "full"]);
    assert_eq!(full.code, 0, "{}", full.stderr);
    assert!(!dir.path().join("full/checkpoints").exists(), "a finished comparison keeps no checkpoints");

    // Killed in seed 4 (the second) after its first epoch's checkpoints.
    let mut child =
        bin().args(["compare", "--recipe", "r.yaml", "--out", "killed"]).current_dir(dir.path()).stderr(std::process::Stdio::null()).spawn().unwrap();
    let marker = dir.path().join("killed/checkpoints/seed-4/01-seed_4_ca_mkd/last.json");
    let started = Instant::now();
    while !marker.exists() {
        assert!(started.elapsed() < Duration::from_secs(300), "no checkpoint of seed 4 appeared");
        assert!(child.try_wait().unwrap().is_none(), "the comparison ended before it could be killed");
        std::thread::sleep(Duration::from_millis(10));
    }
    child.kill().unwrap();
    child.wait().unwrap();
    assert!(!dir.path().join("killed/comparison.json").exists(), "the kill must land before the comparison finished");
    assert!(dir.path().join("killed/seeds/seed-3.json").exists());

    // The same interruption with one method's checkpoint torn away, as a kill between two
    // methods' saves leaves it: that seed starts over, the finished one is kept.
    copy_dir(&dir.path().join("killed"), &dir.path().join("torn"));
    std::fs::remove_file(dir.path().join("torn/checkpoints/seed-4/00-seed_4_aver/last.json")).unwrap();
    let torn = run_in(dir.path(), &["compare", "--recipe", "r.yaml", "--out", "torn", "--resume"]);
    assert_eq!(torn.code, 0, "{}", torn.stderr);
    assert!(torn.stderr.contains("starts over") && !torn.stderr.contains("resuming after epoch"), "{}", torn.stderr);

    let again = run_in(dir.path(), &["compare", "--recipe", "r.yaml", "--out", "killed"]);
    assert_eq!(again.code, 2, "an interrupted comparison is not silently restarted: {}", again.stderr);
    assert!(again.stderr.contains("--resume"), "{}", again.stderr);
    let both = run_in(dir.path(), &["compare", "--recipe", "r.yaml", "--out", "killed", "--resume", "--overwrite"]);
    assert_eq!(both.code, 2, "{}", both.stderr);

    let resumed = run_in(dir.path(), &["compare", "--recipe", "r.yaml", "--out", "killed", "--resume"]);
    assert_eq!(resumed.code, 0, "{}", resumed.stderr);
    assert!(resumed.stderr.contains("seed 3 finished earlier") && resumed.stderr.contains("resuming after epoch"), "{}", resumed.stderr);
    let read = |out: &str| -> Value { serde_json::from_slice(&std::fs::read(dir.path().join(out).join("comparison.json")).unwrap()).unwrap() };
    assert_eq!(figures(&read("full")), figures(&read("killed")));
    assert_eq!(figures(&read("full")), figures(&read("torn")));

    // Starting over removes the tool's files only: a file of the user's in `seeds/` stays.
    std::fs::write(dir.path().join("torn/seeds/notes.txt"), "mine").unwrap();
    std::fs::remove_file(dir.path().join("torn/comparison.json")).unwrap();
    let over = run_in(dir.path(), &["compare", "--recipe", "r.yaml", "--out", "torn", "--overwrite"]);
    assert_eq!(over.code, 0, "{}", over.stderr);
    assert_eq!(std::fs::read_to_string(dir.path().join("torn/seeds/notes.txt")).unwrap(), "mine");
    assert_eq!(figures(&read("full")), figures(&read("torn")));
    let finished = run_in(dir.path(), &["compare", "--recipe", "r.yaml", "--out", "killed", "--resume"]);
    assert_eq!(finished.code, 2, "a finished comparison has nothing to resume: {}", finished.stderr);
}

fn copy_dir(from: &std::path::Path, to: &std::path::Path) {
    std::fs::create_dir_all(to).unwrap();
    for entry in std::fs::read_dir(from).unwrap().flatten() {
        let target = to.join(entry.file_name());
        if entry.path().is_dir() {
            copy_dir(&entry.path(), &target);
        } else {
            std::fs::copy(entry.path(), target).unwrap();
        }
    }
}
