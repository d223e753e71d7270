//! The `data` section resolved: the image source (folders made absolute and checked, or a valid
//! synthetic spec), subsets, augmentation, the student's input transform and the number of
//! classes known before loading.

use super::Checked;
use crate::data::augment::Augment;
use crate::data::preprocess::{Layout, Preprocess};
use crate::data::synthetic::SyntheticSpec;
use crate::recipe::schema::{DataFormat, Recipe};
use std::path::{Path, PathBuf};

/// The image sides a recipe may ask for (the zoo refuses smaller images; decoded sets above
/// the largest would not fit in memory).
const MIN_IMAGE_SIZE: u32 = 8;
const MAX_IMAGE_SIZE: u32 = 2048;

/// Where the images come from.
pub enum DataSource {
    Synthetic(SyntheticSpec),
    ImageFolder { train: PathBuf, test: PathBuf },
}

pub struct DataPlan {
    pub source: DataSource,
    /// As the recipe writes it (`image_folder`, `synthetic`), for the report.
    pub format: DataFormat,
    pub image_size: u32,
    pub train_subset: Option<usize>,
    pub test_subset: Option<usize>,
    pub augment: Augment,
    /// The student's own input transform (always NCHW).
    pub preprocess: Preprocess,
    /// Classes known before loading: the synthetic spec's, or the training set's class folders
    /// (None when the folder cannot be listed, which is reported).
    pub classes: Option<usize>,
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
    let padding = d.augment.random_crop_padding;
    if !(0..=d.image_size as i64).contains(&padding) {
        problems.push(format!("data.augment.random_crop_padding must be in 0..={}, got {padding}", d.image_size));
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
        augment: Augment { random_crop_padding: d.augment.random_crop_padding, horizontal_flip: d.augment.horizontal_flip },
        preprocess,
        classes,
    })
}

fn source(recipe: &mut Recipe, base: &Path, problems: &mut Vec<String>) -> Option<DataSource> {
    let data = &mut recipe.data;
    match data.format {
        DataFormat::ImageFolder => {
            let mut dirs = Vec::new();
            for (key, dir) in [("data.train", &mut data.train), ("data.test", &mut data.test)] {
                match dir {
                    None => problems.push(format!("{key}: required for format image_folder")),
                    Some(d) => {
                        *d = base.join(&*d);
                        if d.is_dir() {
                            dirs.push(d.clone());
                        } else {
                            problems.push(format!("{key}: folder {} does not exist", d.display()));
                        }
                    }
                }
            }
            let [train, test]: [PathBuf; 2] = dirs.try_into().ok()?;
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

/// The number of classes the data will have, known before loading it: the synthetic spec's,
/// or the number of (not hidden) class folders of the training set. Read even when other data
/// keys have problems, so the student and teachers are checked against it too.
pub fn class_count(recipe: &Recipe) -> Option<usize> {
    match recipe.data.format {
        DataFormat::Synthetic => recipe.data.synthetic.as_ref().map(|s| s.num_classes),
        DataFormat::ImageFolder => {
            let entries = std::fs::read_dir(recipe.data.train.as_ref()?).ok()?;
            Some(entries.flatten().filter(|e| e.path().is_dir() && !e.file_name().to_string_lossy().starts_with('.')).count())
        }
    }
}
