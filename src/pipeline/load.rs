//! Loading the plan's data: the synthetic set generated or the image folders decoded (through
//! the decoded-image cache), checked against each other and the plan, and the seeded subsets.

use super::plan::{DataPlan, DataSource};
use crate::bad_input;
use crate::data::ImageSet;
use std::path::PathBuf;

/// The training and test sets of `data` (subsets drawn from `seed`).
pub fn data(data: &DataPlan, seed: u64) -> anyhow::Result<(ImageSet, ImageSet)> {
    let (train, test) = match &data.source {
        DataSource::Synthetic(spec) => crate::data::synthetic::generate(spec),
        DataSource::ImageFolder { train, test } => {
            let cache = crate::data::cache::default_dir();
            let load = |dir: &PathBuf| crate::data::image_folder::load_image_folder(dir, Some(data.image_size), cache.as_deref());
            (load(train)?, load(test)?)
        }
    };
    if train.class_names != test.class_names {
        return Err(bad_input!("data.train and data.test have different class folders: {:?} vs {:?}", train.class_names, test.class_names));
    }
    if data.classes.is_some_and(|c| c != train.num_classes()) {
        return Err(bad_input!(
            "data.train: {} classes were planned from its folders but {} hold images",
            data.classes.unwrap_or_default(),
            train.num_classes()
        ));
    }
    let train = match data.train_subset {
        Some(n) if n < train.len() => train.take_seeded(n, seed),
        _ => train,
    };
    let test = match data.test_subset {
        Some(n) if n < test.len() => test.take_seeded(n, seed ^ 0x5eed),
        _ => test,
    };
    eprintln!("data: {} train, {} test images, {} classes", train.len(), test.len(), train.num_classes());
    Ok((train, test))
}
