//! Loading the plan's data: the synthetic set generated, CIFAR's binary files read, or the image
//! folders scanned (every header read, bad files named or skipped) and then either decoded into
//! memory (through the decoded-image cache) or left on disk to be decoded batch by batch; then
//! checked against each other and the plan, and the seeded subsets taken.

use super::plan::{DataPlan, DataSource};
use crate::bad_input;
use crate::data::cifar_binary::{self, Split};
use crate::data::disk_cache::DiskSet;
use crate::data::feed::Feed;
use crate::data::files::{self, FileList, ScanRules};
use crate::data::loader::Source;
use crate::recipe::schema::{CacheMode, Resident};
use std::path::Path;

/// Decoded image folders up to this many bytes are held in memory under `cache: auto`.
pub const AUTO_MEMORY_BYTES: u64 = 4 << 30;

/// The training and test sets of `data` (subsets drawn from `seed`), ready to be fed.
pub fn data(data: &DataPlan, seed: u64) -> anyhow::Result<(Feed, Feed)> {
    let (train, test) = match &data.source {
        DataSource::Synthetic(spec) => {
            let (train, test) = crate::data::synthetic::generate(spec);
            (Source::Memory(train), Source::Memory(test))
        }
        DataSource::CifarBinary { variant, train, test } => {
            (Source::Memory(cifar_binary::load(train, *variant, Split::Train)?), Source::Memory(cifar_binary::load(test, *variant, Split::Test)?))
        }
        // Folders are cut to their subsets before anything is decoded.
        DataSource::ImageFolder { train, test } => (
            folder(train, "data.train", data, data.train_subset.map(|n| (n, seed)))?,
            folder(test, "data.test", data, data.test_subset.map(|n| (n, seed ^ 0x5eed)))?,
        ),
    };
    if train.class_names() != test.class_names() {
        return Err(bad_input!("data.train and data.test have different classes: {:?} vs {:?}", train.class_names(), test.class_names()));
    }
    let classes = train.class_names().len();
    if data.classes.is_some_and(|c| c != classes) {
        return Err(bad_input!("data.train: {} classes were planned from its folders but {classes} hold images", data.classes.unwrap_or_default()));
    }
    let train = match data.train_subset {
        Some(n) => train.take_seeded(n, seed)?,
        None => train,
    };
    let test = match data.test_subset {
        Some(n) => test.take_seeded(n, seed ^ 0x5eed)?,
        None => test,
    };
    let how = |s: &Source| source_kind(s);
    eprintln!(
        "data: {} train ({}), {} test ({}) images, {classes} classes, {} loader threads",
        train.len(),
        how(&train),
        test.len(),
        how(&test),
        data.workers.threads
    );
    let feed = |source| Feed {
        source,
        train: data.train_transform.clone(),
        eval: data.eval_transform.clone(),
        workers: data.workers,
        skip_bad: data.skip_bad,
        resident: None,
    };
    Ok((feed(train), feed(test)))
}

/// Under `data.resident: auto`, training sets up to this many bytes are held on a CUDA device.
pub const AUTO_RESIDENT_BYTES: u64 = 4 << 30;

/// Holds the training set on `device` when `data.resident` asks for it (`auto`: on CUDA, when
/// the set can be cut there for models taking `sizes` and fits in [`AUTO_RESIDENT_BYTES`]).
pub fn place(data: &DataPlan, train: &mut Feed, device: tch::Device, sizes: &[(i64, i64)]) -> anyhow::Result<()> {
    let why_not = crate::data::resident::why_not(&train.source, &train.train, sizes);
    let Source::Memory(set) = &train.source else {
        if data.resident == Resident::Always {
            return Err(bad_input!("data.resident: always: {}", why_not.unwrap_or_default()));
        }
        return Ok(());
    };
    let bytes = set.images.numel() as u64;
    let wanted = match data.resident {
        Resident::Never => false,
        Resident::Always => match why_not {
            Some(reason) => return Err(bad_input!("data.resident: always: {reason}")),
            None => true,
        },
        Resident::Auto => device.is_cuda() && why_not.is_none() && bytes <= AUTO_RESIDENT_BYTES,
    };
    if wanted {
        train.resident = Some(crate::data::resident::ResidentSet::upload(set, &train.train, device)?);
        eprintln!("data: the training set ({:.1} MB) is held on {} and cut there", bytes as f64 / 1e6, crate::device::name(device));
    }
    Ok(())
}

/// How a source's images are held, for messages and the report.
pub fn source_kind(s: &Source) -> &'static str {
    match s {
        Source::Memory(_) => "in memory",
        Source::Files(_) => "decoded per batch",
        Source::Disk(..) => "read from the disk cache",
    }
}

/// An image folder as a source: scanned and cut to its seeded subset (`(n, seed)`), then held
/// in memory or in the disk cache when `data.cache` says so (under `auto`: in memory when all
/// images share one size and the decoded set is small), else streamed from the files.
fn folder(dir: &Path, key: &str, data: &DataPlan, subset: Option<(usize, u64)>) -> anyhow::Result<Source> {
    let list = scan_folder(dir, key, data, subset)?;
    let in_memory = match data.cache {
        CacheMode::None => false,
        CacheMode::Disk => {
            let cache = crate::data::cache::default_dir()
                .ok_or_else(|| bad_input!("{key}: data.cache: disk needs a cache folder: set COMPRESS_CACHE_DIR (no HOME or XDG_CACHE_HOME is set)"))?;
            let set = DiskSet::open_or_build(&list, dir, &cache, data.workers.threads.max(1), data.skip_bad)?;
            eprintln!("data: {key}: decoded images in {}", set.path.display());
            return Ok(Source::Disk(set, list));
        }
        CacheMode::Memory => {
            if list.common_size().is_none() {
                return Err(mixed_sizes(&list, key));
            }
            true
        }
        CacheMode::Auto => list.common_size().is_some_and(|(h, w)| list.len() as u64 * h as u64 * w as u64 * 3 <= AUTO_MEMORY_BYTES),
    };
    if !in_memory {
        return Ok(Source::Files(list));
    }
    let cache = crate::data::cache::default_dir();
    let set = crate::data::image_folder::decode_files(dir, list.class_names.clone(), &list.files, &list.labels, None, cache.as_deref(), list.max_pixels)?;
    Ok(Source::Memory(set))
}

/// An image folder's file list: every header read (bad files named, or left out and counted),
/// cut to its seeded subset.
fn scan_folder(dir: &Path, key: &str, data: &DataPlan, subset: Option<(usize, u64)>) -> anyhow::Result<FileList> {
    let rules = ScanRules { max_pixels: data.max_image_pixels, skip_bad: data.skip_bad, threads: data.workers.threads.max(1) };
    let mut list = files::scan(dir, rules)?;
    list.reduced_decode = data.reduced_decode;
    if let Some((n, seed)) = subset.filter(|(n, _)| *n < list.len()) {
        list = list.subset(&crate::data::seeded_subset(list.len(), n, seed));
    }
    if !list.skipped.is_empty() {
        eprintln!("data: {key}: {} bad files left out (data.skip_bad), the first: {}", list.skipped.len(), list.skipped[0].1);
    }
    Ok(list)
}

/// What `--dry-run` checks of image folders without decoding them: every header (bad files,
/// the pixel limit), the classes of train and test, one size under `cache: memory`; and what it
/// says about them: how many images, their smallest and largest sizes, how many are smaller
/// than the largest model input (and so upscaled).
pub fn check_folders(data: &DataPlan, seed: u64, largest_input: i64) -> anyhow::Result<()> {
    let DataSource::ImageFolder { train, test } = &data.source else { return Ok(()) };
    let lists = [
        ("data.train", scan_folder(train, "data.train", data, data.train_subset.map(|n| (n, seed)))?),
        ("data.test", scan_folder(test, "data.test", data, data.test_subset.map(|n| (n, seed ^ 0x5eed)))?),
    ];
    if lists[0].1.class_names != lists[1].1.class_names {
        return Err(bad_input!("data.train and data.test have different classes: {:?} vs {:?}", lists[0].1.class_names, lists[1].1.class_names));
    }
    for (key, list) in &lists {
        if list.is_empty() {
            return Err(bad_input!("{key}: no image left to use"));
        }
        if data.cache == CacheMode::Memory && list.common_size().is_none() {
            return Err(mixed_sizes(list, key));
        }
        let pixels = |&(h, w): &(u32, u32)| h as u64 * w as u64;
        let small = list.sizes.iter().min_by_key(|s| pixels(s)).copied().unwrap_or_default();
        let large = list.sizes.iter().max_by_key(|s| pixels(s)).copied().unwrap_or_default();
        let upscaled = list.sizes.iter().filter(|(h, w)| (*h.min(w) as i64) < largest_input).count();
        let note =
            if upscaled > 0 { format!("; {upscaled} have a side under the largest model input {largest_input} and are upscaled") } else { String::new() };
        eprintln!(
            "data: {key}: {} images in {} classes, {}x{} to {}x{} pixels (width x height){note}",
            list.len(),
            list.class_names.len(),
            small.1,
            small.0,
            large.1,
            large.0
        );
    }
    Ok(())
}

/// `cache: memory` on a folder of several image sizes: the two first sizes that differ.
fn mixed_sizes(list: &FileList, key: &str) -> anyhow::Error {
    let first = list.sizes[0];
    let other = list.sizes.iter().position(|&s| s != first).unwrap_or(0);
    bad_input!(
        "{key}: data.cache: memory holds one decoded tensor, so every image must have one size, but {} is {}x{} and {} is {}x{} \
         (use cache: none or auto to decode per batch)",
        list.files[0].display(),
        first.1,
        first.0,
        list.files[other].display(),
        list.sizes[other].1,
        list.sizes[other].0
    )
}
