//! `compress data DIR`: checks an image folder as a run would (every header read, bad files
//! named), describes it, and with `--throughput` measures how fast the loader feeds it.

use crate::data::decode::DEFAULT_MAX_PIXELS;
use crate::data::feed::Feed;
use crate::data::files::{self, ScanRules};
use crate::data::loader::{Schedule, Source, Workers};
use crate::data::rng::Rng;
use crate::data::transform::geometry::RandomResizedCrop;
use crate::data::transform::{EvalTransform, TrainCrop, TrainTransform};
use clap::Args;
use std::path::PathBuf;
use std::time::Instant;

#[derive(Args, Debug)]
pub struct DataArgs {
    /// ImageFolder with one sub-folder per class.
    pub dir: PathBuf,
    /// Leave out bad files (and list them) instead of stopping at the first.
    #[arg(long)]
    pub skip_bad: bool,
    /// Refuse images whose header declares more pixels.
    #[arg(long, default_value_t = DEFAULT_MAX_PIXELS)]
    pub max_image_pixels: u64,
    /// Also time one pass of training batches (decode, random resized crop, flip).
    #[arg(long)]
    pub throughput: bool,
    /// Decode every pixel of each JPEG, as torchvision does, rather than at the reduced scale
    /// the crop allows (`data.reduced_decode: false`).
    #[arg(long)]
    pub full_decode: bool,
    /// Output side of the timed crops.
    #[arg(long, default_value_t = 224)]
    pub size: u32,
    /// Loader threads (default: the core count).
    #[arg(long)]
    pub workers: Option<usize>,
    #[arg(long, default_value_t = 64)]
    pub batch: usize,
    /// Time at most this many images (default: all).
    #[arg(long)]
    pub images: Option<usize>,
    #[arg(long)]
    pub json: bool,
}

pub fn run(a: &DataArgs) -> anyhow::Result<i32> {
    let threads = a.workers.unwrap_or_else(|| std::thread::available_parallelism().map_or(1, |n| n.get()));
    let started = Instant::now();
    let list = files::scan(&a.dir, ScanRules { max_pixels: a.max_image_pixels, skip_bad: a.skip_bad, threads: threads.max(1) })?;
    let scan_seconds = started.elapsed().as_secs_f64();
    let mut per_class = vec![0usize; list.class_names.len()];
    for &l in &list.labels {
        per_class[l as usize] += 1;
    }
    let pixels: Vec<u64> = list.sizes.iter().map(|&(h, w)| h as u64 * w as u64).collect();
    let (small, large) = (list.sizes[argmin(&pixels)], list.sizes[argmax(&pixels)]);
    let mut summary = serde_json::json!({
        "folder": a.dir,
        "images": list.len(),
        "classes": list.class_names.iter().zip(&per_class).map(|(n, c)| serde_json::json!({"name": n, "images": c})).collect::<Vec<_>>(),
        "smallest": {"height": small.0, "width": small.1},
        "largest": {"height": large.0, "width": large.1},
        "one_size": list.common_size().is_some(),
        "skipped": list.skipped.iter().map(|(p, why)| serde_json::json!({"file": p, "reason": why})).collect::<Vec<_>>(),
        "scan_seconds": scan_seconds,
    });
    let one_size = list.common_size().is_some();
    if a.throughput {
        summary["throughput"] = throughput(a, list, threads)?;
    }
    if a.json {
        println!("{}", serde_json::to_string_pretty(&summary)?);
        return Ok(0);
    }
    println!("{}: {} images in {} classes, scanned in {:.1} s", a.dir.display(), summary["images"], per_class.len(), scan_seconds);
    let one = if one_size { ", all one size" } else { "" };
    println!("  sizes from {}x{} to {}x{} pixels (width x height){one}", small.1, small.0, large.1, large.0);
    for s in summary["skipped"].as_array().into_iter().flatten() {
        println!("  left out: {}", s["reason"].as_str().unwrap_or_default());
    }
    if let Some(t) = summary.get("throughput") {
        println!(
            "  loader: {} images at {}x{} in {:.2} s with {} threads{}: {:.0} images/s, {:.0} per thread",
            t["images"],
            a.size,
            a.size,
            t["seconds"].as_f64().unwrap_or(0.0),
            t["workers"],
            if a.full_decode { ", every pixel decoded" } else { "" },
            t["images_per_second"].as_f64().unwrap_or(0.0),
            t["images_per_second_per_thread"].as_f64().unwrap_or(0.0)
        );
    }
    Ok(0)
}

fn argmin(v: &[u64]) -> usize {
    v.iter().enumerate().min_by_key(|(_, x)| **x).map_or(0, |(i, _)| i)
}

fn argmax(v: &[u64]) -> usize {
    v.iter().enumerate().max_by_key(|(_, x)| **x).map_or(0, |(i, _)| i)
}

/// One shuffled pass of training batches (decode, torchvision's default random resized crop,
/// flip) through the loader, timed from the first request to the last batch.
fn throughput(a: &DataArgs, mut list: files::FileList, threads: usize) -> anyhow::Result<serde_json::Value> {
    list.reduced_decode = !a.full_decode;
    if a.size == 0 || a.batch == 0 {
        return Err(crate::bad_input!("--size and --batch must be positive"));
    }
    let n = a.images.unwrap_or(list.len()).min(list.len());
    let mut rng = Rng::new(0);
    let mut order: Vec<usize> = (0..list.len()).collect();
    rng.shuffle(&mut order);
    order.truncate(n);
    let batches: Vec<Vec<usize>> = order.chunks(a.batch).map(|c| c.to_vec()).collect();
    let seeds = batches.iter().map(|_| rng.next_u64()).collect();
    let feed = Feed {
        source: Source::Files(list),
        train: TrainTransform { crop: TrainCrop::RandomResized(RandomResizedCrop::default()), horizontal_flip: true },
        eval: EvalTransform::default(),
        workers: Workers { threads, ahead: 2 },
        skip_bad: a.skip_bad,
        resident: None,
    };
    let s = a.size as i64;
    let started = Instant::now();
    let images = feed.train_batches(&Schedule { batches, seeds }, &[(s, s)], |stream| {
        let mut images = 0;
        for b in stream {
            images += b?.labels.size()[0];
        }
        Ok(images)
    })?;
    let seconds = started.elapsed().as_secs_f64();
    let rate = images as f64 / seconds.max(1e-9);
    Ok(serde_json::json!({
        "images": images,
        "size": a.size,
        "batch": a.batch,
        "workers": threads,
        "reduced_decode": !a.full_decode,
        "seconds": seconds,
        "images_per_second": rate,
        "images_per_second_per_thread": rate / threads.max(1) as f64,
    }))
}
