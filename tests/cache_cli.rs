//! The decoded-image cache folder: kept within its size limit by removing the least recently
//! used entries, listed by `compress cache`, emptied by `compress cache --clear`, and never a
//! file of the user's touched.

mod common;
use common::*;
use std::path::Path;

fn folder(root: &Path, seed: u8) {
    for class in ["a", "b"] {
        std::fs::create_dir_all(root.join(class)).unwrap();
        for i in 0..4u8 {
            let img = image::RgbImage::from_fn(40, 30, |x, y| image::Rgb([x as u8 ^ seed, y as u8 * i, seed.wrapping_mul(i)]));
            img.save_with_format(root.join(class).join(format!("{i}.png")), image::ImageFormat::Png).unwrap();
        }
    }
}

const RECIPE: &str = "version: 1\nname: c\ndevice: cpu\ndata:\n  format: image_folder\n  train: TRAIN\n  test: TEST\n  cache: disk\n  workers: 1\n  normalize: {mean: [0.5, 0.5, 0.5], std: [0.25, 0.25, 0.25]}\nteachers: []\nstudent: {arch: resnet8, width: 0.25}\ntrain: {epochs: 1, batch_size: 4, threads: 1}\n";

#[test]
fn the_cache_folder_stays_within_its_limit_and_can_be_cleared() {
    let _serial = one_training_at_a_time();
    let t = tempfile::tempdir().unwrap();
    let cache = t.path().join("cache");
    std::fs::create_dir_all(&cache).unwrap();
    std::fs::write(cache.join("README.txt"), b"a file of the user's").unwrap();
    for k in 0..3u8 {
        folder(&t.path().join(format!("d{k}")), k * 40);
    }
    let run = |train: &str, test: &str, out: &str, limit: &str| {
        std::fs::write(t.path().join("r.yaml"), RECIPE.replace("TRAIN", train).replace("TEST", test)).unwrap();
        let o = bin()
            .args(["--recipe", "r.yaml", "--out", out])
            .current_dir(t.path())
            .env("COMPRESS_CACHE_DIR", &cache)
            .env("COMPRESS_CACHE_MAX_BYTES", limit)
            .output()
            .unwrap();
        let stderr = String::from_utf8_lossy(&o.stderr).into_owned();
        assert!(matches!(o.status.code(), Some(0 | 1)), "{stderr}");
        stderr
    };
    let pixels = |dir: &Path| std::fs::read_dir(dir).unwrap().filter(|e| e.as_ref().unwrap().file_name().to_string_lossy().ends_with(".pixels")).count();
    // Each folder decodes to 8 × 40 × 30 × 3 = 28,800 bytes plus an index.
    run("d0", "d1", "o1", "100000");
    assert_eq!(pixels(&cache), 2, "one entry per folder");
    // A third folder over a limit of about two entries: the least recently used one goes.
    let stderr = run("d2", "d1", "o2", "70000");
    assert!(stderr.contains("removed 1 least recently used cache entries"), "{stderr}");
    assert_eq!(pixels(&cache), 2);
    let listed = bin().args(["cache", "--json"]).env("COMPRESS_CACHE_DIR", &cache).output().unwrap();
    assert_eq!(listed.status.code(), Some(0));
    let v: serde_json::Value = serde_json::from_slice(&listed.stdout).unwrap();
    assert_eq!(v["entries"].as_array().unwrap().len(), 2);
    assert_eq!(v["max_bytes"], 20u64 << 30, "the default limit");
    let cleared = bin().args(["cache", "--clear"]).env("COMPRESS_CACHE_DIR", &cache).output().unwrap();
    assert_eq!(cleared.status.code(), Some(0));
    assert!(String::from_utf8_lossy(&cleared.stdout).contains("removed 2 files"));
    assert_eq!(pixels(&cache), 0);
    assert_eq!(std::fs::read(cache.join("README.txt")).unwrap(), b"a file of the user's");
    // A limit that is not a number is named.
    let bad = bin().args(["cache"]).env("COMPRESS_CACHE_DIR", &cache).env("COMPRESS_CACHE_MAX_BYTES", "20G").output().unwrap();
    assert_eq!(bad.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&bad.stderr).contains("COMPRESS_CACHE_MAX_BYTES must be a number of bytes, got \"20G\""));
}
