//! Our image transforms and JPEG decoding against torchvision's and PIL's output on real photos
//! (tests/fixtures/transforms, written by `scripts/golden-transforms`).
//!
//! The acceptance bound is a mean absolute difference of at most 0.5 grey level per image;
//! each case prints its mean and maximum so the figures can be quoted.

use compress::data::decode::{decode_file, DEFAULT_MAX_PIXELS};
use compress::data::transform::geometry::{center_crop, resize_shorter, CropBox, RandomResizedCrop};
use compress::data::transform::{resample, EvalTransform};
use serde_json::Value;
use std::path::{Path, PathBuf};

fn dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/transforms")
}

fn manifest() -> Value {
    serde_json::from_str(&std::fs::read_to_string(dir().join("manifest.json")).unwrap()).unwrap()
}

/// `(pixels, (height, width))` of a fixture image.
fn load(name: &str) -> (Vec<u8>, (i64, i64)) {
    let img = decode_file(&dir().join(name), DEFAULT_MAX_PIXELS).unwrap();
    let hw = (img.height() as i64, img.width() as i64);
    (img.into_raw(), hw)
}

/// Mean and maximum absolute difference, in grey levels.
fn diff(a: &[u8], b: &[u8]) -> (f64, u8) {
    assert_eq!(a.len(), b.len());
    let sum: u64 = a.iter().zip(b).map(|(x, y)| x.abs_diff(*y) as u64).sum();
    let max = a.iter().zip(b).map(|(x, y)| x.abs_diff(*y)).max().unwrap_or(0);
    (sum as f64 / a.len() as f64, max)
}

fn i(v: &Value) -> i64 {
    v.as_i64().unwrap()
}

#[test]
fn resized_crops_match_torchvision() {
    let m = manifest();
    let mut seen = 0;
    for case in m["cases"].as_array().unwrap().iter().filter(|c| c["op"] == "resized_crop") {
        let (src, hw) = load(case["source"].as_str().unwrap());
        let b = &case["box"];
        let crop = CropBox { top: i(&b[0]), left: i(&b[1]), height: i(&b[2]), width: i(&b[3]) };
        let size = i(&case["size"]);
        let mut ours = vec![0u8; (size * size * 3) as usize];
        resample::resized_crop_into(&src, hw, crop, (size, size), case["flip"].as_bool().unwrap(), &mut ours).unwrap();
        let (want, want_hw) = load(case["expected"].as_str().unwrap());
        assert_eq!(want_hw, (size, size));
        let (mean, max) = diff(&ours, &want);
        println!("{}: vs torchvision mean {mean:.4}, max {max}", case["expected"]);
        assert!(mean <= 0.5, "{}: mean abs diff {mean} > 0.5 (max {max})", case["expected"]);
        if let Some(pil) = case["pil"].as_str() {
            let (pil_px, _) = load(pil);
            let (mean, max) = diff(&ours, &pil_px);
            println!("{pil}: vs PIL (classic ImageFolder path) mean {mean:.4}, max {max}");
            assert!(mean <= 1.0, "{pil}: PIL's resampling is the same algorithm; mean {mean}");
        }
        seen += 1;
    }
    assert!(seen >= 8, "{seen} cases");
}

#[test]
fn evaluation_transform_matches_torchvision() {
    let m = manifest();
    let mut seen = 0;
    for case in m["cases"].as_array().unwrap().iter().filter(|c| c["op"] == "eval") {
        let (src, hw) = load(case["source"].as_str().unwrap());
        let crop = i(&case["center_crop"]);
        let t = EvalTransform { resize_shorter: Some(i(&case["resize_shorter"])), center_crop: Some(crop) };
        let mut ours = vec![0u8; (crop * crop * 3) as usize];
        t.render(&src, hw, &[(crop, crop)], &mut [&mut ours]).unwrap();
        let (want, _) = load(case["expected"].as_str().unwrap());
        let (mean, max) = diff(&ours, &want);
        println!("{}: vs torchvision mean {mean:.4}, max {max}", case["expected"]);
        assert!(mean <= 0.5, "{}: mean abs diff {mean} > 0.5 (max {max})", case["expected"]);
        seen += 1;
    }
    assert_eq!(seen, 3);
}

#[test]
fn box_arithmetic_matches_torchvision() {
    for g in manifest()["geometry"].as_array().unwrap() {
        let (h, w) = (i(&g["h"]), i(&g["w"]));
        let r = &g["resize_shorter_256"];
        assert_eq!(resize_shorter(h, w, 256), (i(&r[0]), i(&r[1])), "Resize(256) of {h}×{w}");
        for b in g["center_crop"].as_array().unwrap() {
            if b.is_null() {
                continue;
            }
            let (ch, cw) = (i(&b[2]), i(&b[3]));
            let got = center_crop(h, w, ch, cw);
            assert_eq!((got.top, got.left, got.height, got.width), (i(&b[0]), i(&b[1]), ch, cw), "CenterCrop({ch}, {cw}) of {h}×{w}");
        }
        let f = &g["rrc_fallback"];
        let got = RandomResizedCrop::default().fallback(h, w);
        assert_eq!((got.top, got.left, got.height, got.width), (i(&f[0]), i(&f[1]), i(&f[2]), i(&f[3])), "RandomResizedCrop fallback of {h}×{w}");
    }
}

#[test]
fn jpeg_decoding_matches_pil() {
    for d in manifest()["decoding"].as_array().unwrap() {
        let (ours, hw) = load(d["jpeg"].as_str().unwrap());
        let (pil, pil_hw) = load(d["pil_decoded"].as_str().unwrap());
        assert_eq!(hw, pil_hw);
        let (mean, max) = diff(&ours, &pil);
        println!("{}: our decode vs PIL's mean {mean:.4}, max {max}", d["jpeg"]);
        // Decoders may differ by rounding in the IDCT and chroma upsampling, never by more.
        assert!(mean <= 0.5, "{}: mean abs diff {mean} vs PIL (max {max})", d["jpeg"]);
    }
}
