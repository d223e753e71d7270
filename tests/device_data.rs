//! Data for the device, through the binary: a training set held on the training device gives
//! the loader's batches bit for bit (the same code path as on CUDA, run on the CPU), and the
//! teacher-output cache is written once and read by every later training with the same key,
//! the QAT stage included, without changing a single figure.

mod common;
use common::*;
use serde_json::Value;
use std::path::Path;

/// A two-teacher KD recipe on the tiny synthetic set, two epochs.
fn recipe(dir: &Path) -> String {
    for (i, seed) in [(1, 5), (2, 6)] {
        write_resnet8_teacher(&dir.join(format!("t{i}.onnx")), seed);
    }
    let teachers = "[{name: t1, onnx: t1.onnx, input: {layout: nchw}}, {name: t2, onnx: t2.onnx, input: {layout: nchw}}]";
    tiny_recipe(teachers, "aver").replace("train: {epochs: 1,", "train: {epochs: 2,")
}

/// Runs the binary in `dir` with its cache folder at `cache`; returns the report.
fn run(dir: &Path, cache: &Path, out: &str, sets: &[&str]) -> Value {
    let mut args = vec!["--recipe", "r.yaml", "--out", out];
    for s in sets {
        args.extend(["--set", s]);
    }
    let o = bin().args(&args).current_dir(dir).env("COMPRESS_CACHE_DIR", cache).output().unwrap();
    let stderr = String::from_utf8_lossy(&o.stderr);
    assert_eq!(o.status.code(), Some(0), "{args:?}\n{stderr}");
    serde_json::from_slice(&std::fs::read(dir.join(out).join("report.json")).unwrap()).unwrap()
}

/// A temporary folder holding `r.yaml` (the [`recipe`], changed by `edit`), and its cache folder.
fn folder(edit: impl Fn(String) -> String) -> (tempfile::TempDir, std::path::PathBuf) {
    let dir = tempfile::tempdir().unwrap();
    let cache = dir.path().join("cache");
    std::fs::write(dir.path().join("r.yaml"), edit(recipe(dir.path()))).unwrap();
    (dir, cache)
}

fn epochs(report: &Value, stage: &str) -> Vec<Value> {
    let training = if stage == "qat" { &report["quantization"]["training"] } else { &report["training"] };
    epochs_without_time(&training["epochs"])
}

#[test]
fn a_resident_set_trains_exactly_as_the_loader() {
    let _serial = one_training_at_a_time();
    let (dir, cache) = folder(|r| r);
    let off = "train.teacher_cache.enabled=false";
    let loaded = run(dir.path(), &cache, "loaded", &["data.resident=never", off]);
    let resident = run(dir.path(), &cache, "resident", &["data.resident=always", off]);
    assert_eq!(loaded["data"]["loader"]["resident"], Value::Null);
    assert_eq!(resident["data"]["loader"]["resident"], "cpu");
    assert_eq!(epochs(&loaded, "distill"), epochs(&resident, "distill"), "the same batches give the same training");
    assert_eq!(resident["training"]["epochs"][1]["host_reads"], 0);
}

#[test]
fn resident_always_refuses_views_that_need_resampling() {
    let dir = tempfile::tempdir().unwrap();
    let text = recipe(dir.path()).replace("  image_size: 32\n", "  image_size: 32\n  augment: {random_resized_crop: {}}\n  resident: always\n");
    std::fs::write(dir.path().join("r.yaml"), text).unwrap();
    let r = run_in(dir.path(), &["--recipe", "r.yaml", "--out", "o"]);
    assert_eq!(r.code, 2, "{}", r.stderr);
    assert!(r.stderr.contains("data.resident") && r.stderr.contains("random_resized_crop"), "{}", r.stderr);
    assert!(r.stderr.contains("line"), "the key is placed in the recipe: {}", r.stderr);
    assert!(!dir.path().join("o").join("report.json").exists());
}

fn cache_of<'a>(report: &'a Value, stage: &str) -> &'a Value {
    if stage == "qat" {
        &report["quantization"]["training"]["teacher_cache"]
    } else {
        &report["training"]["teacher_cache"]
    }
}

#[test]
fn teacher_outputs_are_written_once_and_read_by_later_trainings() {
    let _serial = one_training_at_a_time();
    let (dir, cache) = folder(|r| r + "quantize: {epochs: 1, calibration_images: 64, latency: {rounds: 1, batches: [1]}}\n");
    let first = run(dir.path(), &cache, "first", &[]);
    let c = cache_of(&first, "distill");
    assert_eq!((c["misses"].as_u64(), c["hits"].as_u64()), (Some(2), Some(0)), "{c}");
    // 256 images, batch 32: 8 steps of 32 rows × 2 teachers × 10 f32 logits per epoch, a
    // 76-byte header, a row count per step and a checksum.
    let per_epoch = 8 * 32 * 2 * 10 * 4 + 76 + 8 * 4 + 8;
    assert_eq!(c["bytes_written"].as_u64(), Some(2 * per_epoch), "{c}");
    // The QAT stage draws its first epoch as the float stage did: read, not computed.
    let q = cache_of(&first, "qat");
    assert_eq!((q["hits"].as_u64(), q["misses"].as_u64()), (Some(1), Some(0)), "{q}");
    let entries = std::fs::read_dir(&cache).unwrap().flatten().filter(|e| e.path().extension().is_some_and(|x| x == "logits")).count();
    assert_eq!(entries, 2);

    // A re-run reads every epoch and trains exactly as the first; so does a run without the
    // cache, because every logit is kept.
    let again = run(dir.path(), &cache, "again", &[]);
    let c2 = cache_of(&again, "distill");
    assert_eq!((c2["hits"].as_u64(), c2["misses"].as_u64()), (Some(2), Some(0)), "{c2}");
    assert_eq!(c2["bytes_read"], c["bytes_written"]);
    let uncached = run(dir.path(), &cache, "uncached", &["train.teacher_cache.enabled=false"]);
    assert!(cache_of(&uncached, "distill")["off"].as_str().unwrap().contains("enabled is false"));
    for stage in ["distill", "qat"] {
        assert_eq!(epochs(&first, stage), epochs(&again, stage), "{stage}: a hit gives the same training");
        assert_eq!(epochs(&first, stage), epochs(&uncached, stage), "{stage}: the cache changes nothing");
    }

    // Another seed is another key.
    let seeded = run(dir.path(), &cache, "seeded", &["seed=4", "train.epochs=1"]);
    assert_eq!(cache_of(&seeded, "distill")["misses"], 1);
}

#[test]
fn top_k_logits_are_what_the_writer_and_the_reader_both_learn_from() {
    let _serial = one_training_at_a_time();
    let (dir, cache) = folder(|r| r);
    let k = "train.teacher_cache.top_k=3";
    let first = run(dir.path(), &cache, "first", &[k]);
    let again = run(dir.path(), &cache, "again", &[k]);
    let full = run(dir.path(), &cache, "full", &[]);
    let (c, c2) = (cache_of(&first, "distill"), cache_of(&again, "distill"));
    assert_eq!((c["top_k"].as_u64(), c["misses"].as_u64(), c2["hits"].as_u64()), (Some(3), Some(2), Some(2)));
    // 3 values, 3 classes and one rest value per image: 28 bytes instead of 40.
    assert!(c["bytes_written"].as_u64().unwrap() < cache_of(&full, "distill")["bytes_written"].as_u64().unwrap() * 3 / 4);
    assert_eq!(epochs(&first, "distill"), epochs(&again, "distill"));
    assert_ne!(epochs(&first, "distill"), epochs(&full, "distill"), "top-3 targets are not the full ones");
}

#[test]
fn a_method_that_learns_from_features_runs_its_teachers() {
    let _serial = one_training_at_a_time();
    let (dir, cache) = folder(|r| r.replace("method: aver", "method: ca_mkd"));
    let r = run(dir.path(), &cache, "o", &["train.epochs=1"]);
    let c = cache_of(&r, "distill");
    assert!(c["off"].as_str().unwrap().contains("features"), "{c}");
    assert_eq!(c["misses"], 0);
}

#[test]
fn a_cache_folder_that_cannot_be_written_leaves_the_teachers_to_run() {
    let _serial = one_training_at_a_time();
    let (dir, _) = folder(|r| r);
    // A file where the folder should be: no entry can be created under it.
    let blocked = dir.path().join("blocked");
    std::fs::write(&blocked, b"not a folder").unwrap();
    let r = run(dir.path(), &blocked, "o", &["train.epochs=1"]);
    let c = cache_of(&r, "distill");
    assert_eq!((c["hits"].as_u64(), c["misses"].as_u64()), (Some(0), Some(0)), "{c}");
    assert_eq!(std::fs::read(&blocked).unwrap(), b"not a folder");
}
