//! The `data` section resolved: the image source (folders or CIFAR files made absolute and
//! checked, or a valid synthetic spec), subsets, the training and evaluation transforms, the
//! loader settings, the student's input transform and the number of classes known before
//! loading.

use super::Checked;
use crate::data::cifar_binary::CifarVariant;
use crate::data::loader::Workers;
use crate::data::preprocess::{Layout, Preprocess};
use crate::data::synthetic::SyntheticSpec;
use crate::data::transform::geometry::RandomResizedCrop;
use crate::data::transform::{EvalTransform, TrainCrop, TrainTransform};
use crate::recipe::schema::{CacheMode, DataFormat, Recipe, Resident, DEFAULT_CROP_PADDING};
use std::path::{Path, PathBuf};

/// Finished batches each loader worker may hold ahead of the training step.
const BATCHES_AHEAD: usize = 2;
/// More loader threads than this is a typo, not a machine.
const MAX_WORKERS: usize = 256;

/// The image sides a recipe may ask for (the zoo refuses smaller images; decoded sets above
/// the largest would not fit in memory).
const MIN_IMAGE_SIZE: u32 = 8;
const MAX_IMAGE_SIZE: u32 = 2048;

/// Where the images come from.
pub enum DataSource {
    Synthetic(SyntheticSpec),
    ImageFolder {
        train: PathBuf,
        test: PathBuf,
    },
    /// CIFAR's binary files: each path is the extracted folder or one `.bin` file.
    CifarBinary {
        variant: CifarVariant,
        train: PathBuf,
        test: PathBuf,
    },
}

pub struct DataPlan {
    pub source: DataSource,
    /// As the recipe writes it (`image_folder`, `synthetic`), for the report.
    pub format: DataFormat,
    pub image_size: u32,
    pub train_subset: Option<usize>,
    pub test_subset: Option<usize>,
    pub train_transform: TrainTransform,
    pub eval_transform: EvalTransform,
    pub workers: Workers,
    pub cache: CacheMode,
    /// Whether the training set is held on the training device ([`crate::data::resident`]).
    pub resident: Resident,
    pub skip_bad: bool,
    pub max_image_pixels: u64,
    /// Decode JPEGs streamed from files at a reduced scale where the crop allows it.
    pub reduced_decode: bool,
    /// The student's own input transform (always NCHW).
    pub preprocess: Preprocess,
    /// Classes known before loading: the synthetic spec's, or the training set's class folders
    /// (None when the folder cannot be listed, which is reported).
    pub classes: Option<usize>,
}

impl DataPlan {
    /// The student's evaluation view, as its file's metadata records it.
    pub fn eval_view(&self) -> crate::export::metadata::EvalView {
        let s = self.image_size as i64;
        crate::export::metadata::EvalView { size: [s, s], resize_shorter: self.eval_transform.resize_shorter, center_crop: self.eval_transform.center_crop }
    }
}

/// Checks `recipe.data` (its folders made absolute against `base`) and returns it resolved, or
/// its problems.
pub fn resolve(recipe: &mut Recipe, base: &Path) -> Checked<DataPlan> {
    let mut problems = Vec::new();
    let source = source(recipe, base, &mut problems);
    let d = &recipe.data;
    if !(MIN_IMAGE_SIZE..=MAX_IMAGE_SIZE).contains(&d.image_size) {
        problems.push(format!("data.image_size must be in {MIN_IMAGE_SIZE}..={MAX_IMAGE_SIZE}, got {}", d.image_size));
    }
    let train_transform = train_transform(recipe, &mut problems);
    let eval_transform = eval_transform(recipe, &mut problems);
    let d = &recipe.data;
    let threads = d.workers.unwrap_or_else(|| std::thread::available_parallelism().map_or(1, |n| n.get()));
    if threads > MAX_WORKERS {
        problems.push(format!("data.workers must be at most {MAX_WORKERS}, got {threads}"));
    }
    if d.max_image_pixels == 0 {
        problems.push("data.max_image_pixels must be positive".into());
    }
    for (key, n) in [("data.train_subset", d.train_subset), ("data.test_subset", d.test_subset)] {
        if n == Some(0) {
            problems.push(format!("{key} must be positive (leave it out to use every image)"));
        }
    }
    let n = &d.normalize;
    let preprocess = Preprocess { layout: Layout::Nchw, scale: n.scale, mean: n.mean, std: n.std };
    if let Err(e) = preprocess.validate("data.normalize") {
        problems.push(format!("{e:#}"));
    }
    let Some(source) = source.filter(|_| problems.is_empty()) else { return Err(problems) };
    let classes = class_count(recipe);
    let d = &recipe.data;
    Ok(DataPlan {
        source,
        format: d.format,
        image_size: d.image_size,
        train_subset: d.train_subset,
        test_subset: d.test_subset,
        train_transform,
        eval_transform,
        workers: Workers { threads, ahead: BATCHES_AHEAD },
        cache: d.cache,
        resident: d.resident,
        skip_bad: d.skip_bad,
        max_image_pixels: d.max_image_pixels,
        reduced_decode: d.reduced_decode,
        preprocess,
        classes,
    })
}

/// `data.resident: always` on a set that cannot be cut on the device: the problems the plan
/// can see (the images' storage is known only once they are loaded).
pub fn check_resident(d: &DataPlan, teachers: &[crate::teacher::Teacher]) -> Vec<String> {
    if d.resident != Resident::Always {
        return vec![];
    }
    let s = d.image_size as i64;
    let mut problems = Vec::new();
    if let TrainCrop::RandomResized(_) = d.train_transform.crop {
        problems.push("data.resident: always cannot hold with data.augment.random_resized_crop, whose views are resampled on the CPU".into());
    }
    if let Some(t) = teachers.iter().find(|t| t.input_hw != (s, s)) {
        problems.push(format!(
            "data.resident: always needs every model to take the stored {s}x{s} images; teacher `{}` takes {}x{} (use auto or never)",
            t.name, t.input_hw.1, t.input_hw.0
        ));
    }
    problems
}

/// The training transform `data.augment` asks for: one crop (pad-and-crop by default), then
/// the flip.
fn train_transform(recipe: &Recipe, problems: &mut Vec<String>) -> TrainTransform {
    let d = &recipe.data;
    let a = &d.augment;
    let crop = match (a.random_crop_padding, &a.random_resized_crop) {
        (Some(_), Some(_)) => {
            problems.push("data.augment: random_crop_padding and random_resized_crop are two different crops; give one".into());
            TrainCrop::None
        }
        (None, Some(r)) => {
            let ok = |v: &[f64; 2]| v.iter().all(|x| x.is_finite() && *x > 0.0) && v[0] <= v[1];
            if !ok(&r.scale) || r.scale[1] > 1.0 {
                problems.push(format!("data.augment.random_resized_crop.scale must be [low, high] with 0 < low <= high <= 1, got {:?}", r.scale));
            }
            if !ok(&r.ratio) {
                problems.push(format!("data.augment.random_resized_crop.ratio must be [low, high] with 0 < low <= high, got {:?}", r.ratio));
            }
            TrainCrop::RandomResized(RandomResizedCrop { scale: r.scale, ratio: r.ratio })
        }
        (padding, None) => {
            let padding = padding.unwrap_or(DEFAULT_CROP_PADDING);
            if !(0..=d.image_size as i64).contains(&padding) {
                problems.push(format!("data.augment.random_crop_padding must be in 0..={}, got {padding}", d.image_size));
            }
            TrainCrop::PadCrop { padding }
        }
    };
    TrainTransform { crop, horizontal_flip: a.horizontal_flip }
}

/// The evaluation transform `data.eval` asks for; its crop must be the student's input size.
fn eval_transform(recipe: &Recipe, problems: &mut Vec<String>) -> EvalTransform {
    let d = &recipe.data;
    let e = &d.eval;
    match (e.resize_shorter, e.center_crop) {
        (Some(_), None) => {
            problems.push(format!("data.eval.resize_shorter needs a center_crop: the student takes {s}x{s} images (add center_crop: {s})", s = d.image_size))
        }
        (_, Some(c)) if c != d.image_size => {
            problems.push(format!("data.eval.center_crop must equal data.image_size ({}), the student's input, got {c}", d.image_size))
        }
        _ => {}
    }
    if let Some(r) = e.resize_shorter.filter(|r| !(1..=MAX_IMAGE_SIZE * 4).contains(r)) {
        problems.push(format!("data.eval.resize_shorter must be in 1..={}, got {r}", MAX_IMAGE_SIZE * 4));
    }
    EvalTransform { resize_shorter: e.resize_shorter.map(i64::from), center_crop: e.center_crop.map(i64::from) }
}

fn source(recipe: &mut Recipe, base: &Path, problems: &mut Vec<String>) -> Option<DataSource> {
    let data = &mut recipe.data;
    match data.format {
        DataFormat::Cifar10Binary | DataFormat::Cifar100Binary => {
            let variant = if data.format == DataFormat::Cifar10Binary { CifarVariant::Cifar10 } else { CifarVariant::Cifar100 };
            let needs = format!("required for format {:?} (the extracted folder or a .bin file)", data.format);
            let (train, test) = train_and_test(data, base, &needs, "", Path::exists, problems)?;
            Some(DataSource::CifarBinary { variant, train, test })
        }
        DataFormat::ImageFolder => {
            let (train, test) = train_and_test(data, base, "required for format image_folder", "folder ", Path::is_dir, problems)?;
            Some(DataSource::ImageFolder { train, test })
        }
        DataFormat::Synthetic => {
            let Some(s) = &data.synthetic else {
                problems.push("data.synthetic: required for format synthetic (train_size, test_size)".into());
                return None;
            };
            let spec =
                SyntheticSpec { seed: s.seed, num_classes: s.num_classes, train_size: s.train_size, test_size: s.test_size, image_size: data.image_size };
            match spec.validate("data.synthetic") {
                Ok(()) => Some(DataSource::Synthetic(spec)),
                Err(e) => {
                    problems.push(format!("{e:#}"));
                    None
                }
            }
        }
    }
}

/// `data.train` and `data.test` made absolute against `base` and checked with `fits` (`kind`
/// names what was expected in the message); each missing or unfit one is a problem.
fn train_and_test(
    data: &mut crate::recipe::schema::Data,
    base: &Path,
    needs: &str,
    kind: &str,
    fits: fn(&Path) -> bool,
    problems: &mut Vec<String>,
) -> Option<(PathBuf, PathBuf)> {
    let mut found = Vec::new();
    for (key, path) in [("data.train", &mut data.train), ("data.test", &mut data.test)] {
        match path {
            None => problems.push(format!("{key}: {needs}")),
            Some(p) => {
                *p = base.join(&*p);
                if fits(p) {
                    found.push(p.clone());
                } else {
                    problems.push(format!("{key}: {kind}{} does not exist", p.display()));
                }
            }
        }
    }
    let [train, test]: [PathBuf; 2] = found.try_into().ok()?;
    Some((train, test))
}

/// The number of classes the data will have, known before loading it: the synthetic spec's,
/// or the number of (not hidden) class folders of the training set. Read even when other data
/// keys have problems, so the student and teachers are checked against it too.
pub fn class_count(recipe: &Recipe) -> Option<usize> {
    match recipe.data.format {
        DataFormat::Synthetic => recipe.data.synthetic.as_ref().map(|s| s.num_classes),
        DataFormat::Cifar10Binary => Some(10),
        DataFormat::Cifar100Binary => Some(100),
        DataFormat::ImageFolder => {
            let entries = std::fs::read_dir(recipe.data.train.as_ref()?).ok()?;
            Some(entries.flatten().filter(|e| e.path().is_dir() && !e.file_name().to_string_lossy().starts_with('.')).count())
        }
    }
}
