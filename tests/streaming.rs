//! Folders of photo-sized images of mixed sizes, streamed: a run's memory does not grow with
//! the data set, its result does not depend on the number of loader threads, and a bad image
//! stops it before training with the file named (or is left out and counted with `skip_bad`).

mod common;

use common::{one_training_at_a_time, run_in};
use serde_json::Value;
use std::path::Path;

/// `per_class` JPEGs in each of two classes, sides from 160 to 320 px, photo-like (smooth
/// gradients plus per-image texture) so they decode at a realistic cost.
fn photo_folder(root: &Path, per_class: usize, seed: u32) {
    for class in ["cats", "dogs"] {
        std::fs::create_dir_all(root.join(class)).unwrap();
        for i in 0..per_class {
            let k = seed as usize * 7919 + i * 31 + class.len();
            let (w, h) = (160 + (k * 37) % 161, 160 + (k * 53) % 161);
            let bias = if class == "cats" { 60u32 } else { 180 };
            let img = image::RgbImage::from_fn(w as u32, h as u32, |x, y| {
                let t = ((x * 3 + y * 5 + k as u32) % 64) as u8;
                image::Rgb([(bias + x % 50) as u8, ((y * 255) / h as u32) as u8 ^ t, t.wrapping_mul(3)])
            });
            img.save_with_format(root.join(class).join(format!("{i:05}.jpg")), image::ImageFormat::Jpeg).unwrap();
        }
    }
}

fn recipe(train: &str, test: &str, extra_data: &str, epochs: usize) -> String {
    format!(
        r#"version: 1
name: stream
seed: 5
device: cpu
data:
  format: image_folder
  train: {train}
  test: {test}
  image_size: 32
  augment: {{random_resized_crop: {{}}, horizontal_flip: true}}
  eval: {{resize_shorter: 36, center_crop: 32}}
  cache: none
  {extra_data}
  normalize: {{mean: [0.5, 0.5, 0.5], std: [0.25, 0.25, 0.25]}}
teachers: []
student: {{arch: resnet8, width: 0.5}}
distill: {{method: none}}
train: {{epochs: {epochs}, batch_size: 16, threads: 2}}
validate:
  gates:
    - {{metric: top1_agreement_tch_vs_ort, min: 0.9}}
"#
    )
}

fn report(dir: &Path, out: &str) -> Value {
    serde_json::from_slice(&std::fs::read(dir.join(out).join("report.json")).unwrap()).unwrap()
}

/// Runs the binary in `dir` and returns its exit code, its stderr and its own peak resident
/// set in bytes (from `wait4`, so other processes of this test binary do not count).
// The child is reaped by `wait4`, which clippy does not recognise as a wait.
#[allow(clippy::zombie_processes)]
fn run_measured(dir: &Path, args: &[&str]) -> (i32, String, u64) {
    let err_path = dir.join(format!("stderr-{}.txt", args.join("_").replace('/', "_")));
    let child = common::bin()
        .args(args)
        .current_dir(dir)
        .stdout(std::process::Stdio::null())
        .stderr(std::fs::File::create(&err_path).unwrap())
        .spawn()
        .expect("the binary runs");
    let (mut status, mut usage): (libc::c_int, libc::rusage) = (0, unsafe { std::mem::zeroed() });
    // SAFETY: wait4 on our own child's pid writes its status and one rusage struct.
    let pid = unsafe { libc::wait4(child.id() as libc::pid_t, &mut status, 0, &mut usage) };
    assert_eq!(pid, child.id() as libc::pid_t);
    let code = if libc::WIFEXITED(status) { libc::WEXITSTATUS(status) } else { -1 };
    (code, std::fs::read_to_string(err_path).unwrap(), usage.ru_maxrss as u64 * 1024)
}

#[test]
fn memory_is_bounded_by_the_queue_not_by_the_data_set() {
    let _serial = one_training_at_a_time();
    let dir = tempfile::tempdir().unwrap();
    photo_folder(&dir.path().join("small"), 20, 1);
    photo_folder(&dir.path().join("large"), 600, 2);
    photo_folder(&dir.path().join("test"), 8, 3);
    // The large set decodes to about 1,200 × 240 × 240 × 3 bytes ≈ 210 MB.
    let decoded: u64 = walk_sizes(&dir.path().join("large"));
    assert!(decoded > 150_000_000, "{decoded}");

    std::fs::write(dir.path().join("small.yaml"), recipe("small", "test", "workers: 2", 1)).unwrap();
    let (code, stderr, small_peak) = run_measured(dir.path(), &["--recipe", "small.yaml", "--out", "s"]);
    assert!(code == 0 || code == 1, "{stderr}");
    std::fs::write(dir.path().join("large.yaml"), recipe("large", "test", "workers: 2", 1)).unwrap();
    let (code, stderr, large_peak) = run_measured(dir.path(), &["--recipe", "large.yaml", "--out", "l"]);
    assert!(code == 0 || code == 1, "{stderr}");
    let growth = large_peak.saturating_sub(small_peak);
    let bound = decoded / 10;
    eprintln!(
        "peak RSS: {} MB with 40 images, {} MB with 1,200 ({} MB decoded); growth {} MB, bound {} MB",
        small_peak >> 20,
        large_peak >> 20,
        decoded >> 20,
        growth >> 20,
        bound >> 20
    );
    assert!(growth < bound, "streaming 30× more images grew the peak by {growth} bytes (bound {bound})");
    let rep = report(dir.path(), "l");
    assert_eq!(rep["data"]["loader"]["train"], "decoded per batch");
    assert!(rep["training"]["epochs"][0]["data_wait_seconds"].as_f64().unwrap() >= 0.0);
}

/// Bytes the images under `root` take decoded as RGB8.
fn walk_sizes(root: &Path) -> u64 {
    let mut total = 0;
    for class in std::fs::read_dir(root).unwrap() {
        for f in std::fs::read_dir(class.unwrap().path()).unwrap() {
            let (w, h) = image::image_dimensions(f.unwrap().path()).unwrap();
            total += w as u64 * h as u64 * 3;
        }
    }
    total
}

#[test]
fn the_result_does_not_depend_on_the_loader_threads() {
    let _serial = one_training_at_a_time();
    let dir = tempfile::tempdir().unwrap();
    photo_folder(&dir.path().join("train"), 24, 4);
    photo_folder(&dir.path().join("test"), 6, 5);
    let mut epochs = Vec::new();
    for workers in [0, 1, 3] {
        std::fs::write(dir.path().join("r.yaml"), recipe("train", "test", &format!("workers: {workers}"), 2)).unwrap();
        let out = format!("w{workers}");
        let r = run_in(dir.path(), &["--recipe", "r.yaml", "--out", &out]);
        assert!(r.code == 0 || r.code == 1, "{}", r.stderr);
        epochs.push(common::epochs_without_time(&report(dir.path(), &out)["training"]["epochs"]));
    }
    assert_eq!(epochs[0], epochs[1], "1 worker vs decoding in the training thread");
    assert_eq!(epochs[0], epochs[2], "3 workers vs decoding in the training thread");

    // The disk cache holds full decodes: its reference is a streamed run that decodes every
    // pixel too. (Reduced decoding changes the pixels slightly, so it must change the result.)
    std::fs::write(dir.path().join("f.yaml"), recipe("train", "test", "workers: 2\n  reduced_decode: false", 2)).unwrap();
    let r = run_in(dir.path(), &["--recipe", "f.yaml", "--out", "full"]);
    assert!(r.code == 0 || r.code == 1, "{}", r.stderr);
    let full = common::epochs_without_time(&report(dir.path(), "full")["training"]["epochs"]);
    assert_ne!(full, epochs[0], "reduced decoding was used by default");
    assert_eq!(report(dir.path(), "full")["data"]["loader"]["reduced_decode"], false);

    // Decoded once into the disk cache, then read back: the same batches again, built on the
    // first run and reused on the second.
    let cache = dir.path().join("cache");
    for (k, out) in ["d1", "d2"].iter().enumerate() {
        let r = recipe("train", "test", "workers: 2", 2).replace("cache: none", "cache: disk");
        std::fs::write(dir.path().join("d.yaml"), r).unwrap();
        let o = common::bin().args(["--recipe", "d.yaml", "--out", out]).current_dir(dir.path()).env("COMPRESS_CACHE_DIR", &cache).output().unwrap();
        let stderr = String::from_utf8_lossy(&o.stderr);
        assert!(matches!(o.status.code(), Some(0 | 1)), "{stderr}");
        let rep = report(dir.path(), out);
        assert_eq!(rep["data"]["loader"]["train"], "read from the disk cache");
        assert_eq!(common::epochs_without_time(&rep["training"]["epochs"]), full, "disk cache, run {}", k + 1);
    }
    let files: Vec<_> = std::fs::read_dir(&cache).unwrap().map(|e| e.unwrap().file_name().to_string_lossy().into_owned()).collect();
    assert_eq!(files.iter().filter(|f| f.ends_with(".pixels")).count(), 2, "one file per folder (train, test), reused: {files:?}");

    // `cache: memory` needs one image size; this folder has many.
    std::fs::write(dir.path().join("m.yaml"), recipe("train", "test", "workers: 2", 1).replace("cache: none", "cache: memory")).unwrap();
    let r = run_in(dir.path(), &["--recipe", "m.yaml", "--out", "m"]);
    assert_eq!(r.code, 2, "{}", r.stderr);
    assert!(r.stderr.contains("data.cache: memory") && r.stderr.contains("cache: none"), "{}", r.stderr);
}

#[test]
fn bad_images_stop_the_run_by_name_or_are_counted() {
    let _serial = one_training_at_a_time();
    let dir = tempfile::tempdir().unwrap();
    photo_folder(&dir.path().join("train"), 16, 6);
    photo_folder(&dir.path().join("test"), 4, 7);
    let good = std::fs::read(dir.path().join("train/cats/00003.jpg")).unwrap();
    let cases: [(&str, Vec<u8>, &str); 3] = [
        ("cut.jpg", good[..good.len() / 2].to_vec(), "truncated"),
        ("notes.jpg", b"plain text saved with the wrong extension".to_vec(), "neither JPEG nor PNG"),
        ("bomb.jpg", bomb(&good), "decompression bomb"),
    ];
    for (name, bytes, why) in &cases {
        let bad = dir.path().join("train/dogs").join(name);
        std::fs::write(&bad, bytes).unwrap();
        std::fs::write(dir.path().join("r.yaml"), recipe("train", "test", "workers: 2", 1)).unwrap();
        let r = run_in(dir.path(), &["--recipe", "r.yaml", "--out", "o"]);
        assert_eq!(r.code, 2, "{name}: {}", r.stderr);
        assert!(r.stderr.contains(name) && r.stderr.contains(why), "{name}: {}", r.stderr);
        assert!(!r.stderr.contains("libtorch") && !r.stderr.contains("panicked"), "{}", r.stderr);
        assert!(!dir.path().join("o/report.json").exists());
        std::fs::remove_file(&bad).unwrap();
    }
    // All three at once, skipped: the run finishes and the report counts them.
    for (name, bytes, _) in &cases {
        std::fs::write(dir.path().join("train/dogs").join(name), bytes).unwrap();
    }
    std::fs::write(dir.path().join("r.yaml"), recipe("train", "test", "workers: 2\n  skip_bad: true", 1)).unwrap();
    let r = run_in(dir.path(), &["--recipe", "r.yaml", "--out", "skip"]);
    assert!(r.code == 0 || r.code == 1, "{}", r.stderr);
    assert!(r.stderr.contains("3 bad files left out"), "{}", r.stderr);
    assert_eq!(report(dir.path(), "skip")["data"]["loader"]["train_images_skipped_at_scan"], 3);
}

/// A real JPEG whose frame header declares 40,000 × 40,000 pixels.
fn bomb(jpeg: &[u8]) -> Vec<u8> {
    let mut b = jpeg.to_vec();
    let sof = b.windows(2).position(|p| p == [0xFF, 0xC0]).expect("baseline frame header");
    b[sof + 5..sof + 7].copy_from_slice(&40_000u16.to_be_bytes());
    b[sof + 7..sof + 9].copy_from_slice(&40_000u16.to_be_bytes());
    b
}

#[test]
fn cifar10_binary_files_are_read_as_downloaded() {
    let _serial = one_training_at_a_time();
    let dir = tempfile::tempdir().unwrap();
    let root = dir.path().join("cifar-10-batches-bin");
    std::fs::create_dir_all(&root).unwrap();
    // 40 records per batch file: label byte, then the red, green and blue planes of 32×32.
    let record = |label: u8, k: usize| -> Vec<u8> {
        let mut r = vec![label];
        for c in 0..3usize {
            r.extend((0..1024usize).map(|p| ((p % 32) * 4 + c * 60 + (label as usize) * 17 + k) as u8));
        }
        r
    };
    for (name, n) in [
        ("data_batch_1.bin", 40),
        ("data_batch_2.bin", 40),
        ("data_batch_3.bin", 40),
        ("data_batch_4.bin", 40),
        ("data_batch_5.bin", 40),
        ("test_batch.bin", 30),
    ] {
        let bytes: Vec<u8> = (0..n).flat_map(|k| record((k % 10) as u8, k)).collect();
        std::fs::write(root.join(name), bytes).unwrap();
    }
    let names = ["airplane", "automobile", "bird", "cat", "deer", "dog", "frog", "horse", "ship", "truck"];
    std::fs::write(root.join("batches.meta.txt"), names.join("\n") + "\n\n").unwrap();
    let r = recipe("cifar-10-batches-bin", "cifar-10-batches-bin", "workers: 1", 1)
        .replace("format: image_folder", "format: cifar10_binary")
        .replace("augment: {random_resized_crop: {}, horizontal_flip: true}", "augment: {random_crop_padding: 4}")
        .replace("eval: {resize_shorter: 36, center_crop: 32}", "eval: {}");
    std::fs::write(dir.path().join("c.yaml"), r).unwrap();
    let run = run_in(dir.path(), &["--recipe", "c.yaml", "--out", "c"]);
    assert!(run.code == 0 || run.code == 1, "{}", run.stderr);
    let rep = report(dir.path(), "c");
    assert_eq!(rep["data"]["train_images"], 200);
    assert_eq!(rep["data"]["test_images"], 30);
    assert_eq!(rep["data"]["classes"][9], "truck");
    // A file of the wrong length is named.
    std::fs::write(root.join("data_batch_3.bin"), vec![0u8; 3072]).unwrap();
    let bad = run_in(dir.path(), &["--recipe", "c.yaml", "--out", "c2"]);
    assert_eq!(bad.code, 2, "{}", bad.stderr);
    assert!(bad.stderr.contains("data_batch_3.bin"), "{}", bad.stderr);
}

#[test]
fn each_teacher_sees_the_view_at_its_own_size() {
    let _serial = one_training_at_a_time();
    let dir = tempfile::tempdir().unwrap();
    photo_folder(&dir.path().join("train"), 16, 8);
    photo_folder(&dir.path().join("test"), 4, 9);
    // Two-class teachers whose ONNX inputs declare fixed 16×16 and 48×48 images.
    for (name, seed, size) in [("t1.onnx", 1, 16), ("t2.onnx", 2, 48)] {
        tch::manual_seed(seed);
        let spec = compress::zoo::ArchSpec { num_classes: 2, width: 0.5, image_size: size };
        let graph = compress::zoo::build("resnet8", &spec, tch::Device::Cpu).unwrap();
        compress::onnx::model_file::write(&graph.to_model(13).unwrap(), &dir.path().join(name)).unwrap();
    }
    // t1 names its size, t2 takes the one its file declares.
    let teachers = "[{name: t1, onnx: t1.onnx, input: {size: 16}}, {name: t2, onnx: t2.onnx, input: {}}]";
    let r = recipe("train", "test", "workers: 2", 1)
        .replace("image_size: 32", "image_size: 40")
        .replace("eval: {resize_shorter: 36, center_crop: 32}", "eval: {resize_shorter: 44, center_crop: 40}")
        .replace("teachers: []", &format!("teachers: {teachers}"))
        .replace("distill: {method: none}", "distill: {method: aver}");
    std::fs::write(dir.path().join("r.yaml"), &r).unwrap();
    let run = run_in(dir.path(), &["--recipe", "r.yaml", "--out", "o"]);
    assert!(run.code == 0 || run.code == 1, "{}", run.stderr);
    let rep = report(dir.path(), "o");
    assert_eq!(rep["data"]["loader"]["sizes"], serde_json::json!([[40, 40], [16, 16], [48, 48]]));
    assert_eq!(rep["teachers"].as_array().unwrap().len(), 2);
    // ONNX Runtime ran each teacher on its own view and agrees with our import of it.
    for t in rep["teachers"].as_array().unwrap() {
        assert!(t["top1_agreement_tch_vs_ort"].as_f64().unwrap() > 0.99, "{t}");
    }
    // A size that contradicts the file's fixed input is refused at plan time.
    std::fs::write(dir.path().join("bad.yaml"), r.replace("input: {size: 16}", "input: {size: 24}")).unwrap();
    let bad = run_in(dir.path(), &["--recipe", "bad.yaml", "--out", "bad", "--dry-run"]);
    assert_eq!(bad.code, 2, "{}", bad.stderr);
    assert!(bad.stderr.contains("teachers[0]") && bad.stderr.contains("input.size is 24") && bad.stderr.contains("16x16"), "{}", bad.stderr);
}

#[test]
fn compress_data_checks_a_folder_and_times_the_loader() {
    let dir = tempfile::tempdir().unwrap();
    photo_folder(&dir.path().join("photos"), 10, 11);
    let good = std::fs::read(dir.path().join("photos/cats/00001.jpg")).unwrap();
    std::fs::write(dir.path().join("photos/dogs/cut.jpg"), &good[..good.len() / 2]).unwrap();
    let r = run_in(dir.path(), &["data", "photos"]);
    assert_eq!(r.code, 2, "{}", r.stderr);
    assert!(r.stderr.contains("cut.jpg") && r.stderr.contains("truncated"), "{}", r.stderr);
    let r = run_in(dir.path(), &["data", "photos", "--skip-bad", "--throughput", "--size", "48", "--workers", "2", "--batch", "4", "--json"]);
    assert_eq!(r.code, 0, "{}", r.stderr);
    let v: Value = serde_json::from_str(&r.stdout).unwrap();
    assert_eq!(v["images"], 20);
    assert_eq!(v["skipped"].as_array().unwrap().len(), 1);
    assert_eq!(v["throughput"]["images"], 20);
    assert!(v["throughput"]["images_per_second"].as_f64().unwrap() > 0.0);
    assert_eq!(v["one_size"], false);
}
