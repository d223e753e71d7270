//! `data`: where the images come from (an image folder or synthetic), their size, subsets,
//! training augmentation and the student's input normalization.

use serde::{Deserialize, Serialize};
use std::path::PathBuf;

#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum DataFormat {
    ImageFolder,
    Synthetic,
}

#[derive(Clone, Debug, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Data {
    pub format: DataFormat,
    pub train: Option<PathBuf>,
    pub test: Option<PathBuf>,
    #[serde(default = "default_image_size")]
    pub image_size: u32,
    pub synthetic: Option<Synthetic>,
    /// Use a seeded random subset of this many training images.
    pub train_subset: Option<usize>,
    /// Use a seeded random subset of this many test images.
    pub test_subset: Option<usize>,
    #[serde(default)]
    pub augment: Augment,
    /// The student's input normalization.
    pub normalize: Normalize,
}

fn default_image_size() -> u32 {
    32
}

#[derive(Clone, Debug, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Synthetic {
    #[serde(default = "default_classes")]
    pub num_classes: usize,
    pub train_size: usize,
    pub test_size: usize,
    #[serde(default)]
    pub seed: u64,
}

fn default_classes() -> usize {
    10
}

#[derive(Clone, Debug, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct Augment {
    pub random_crop_padding: i64,
    pub horizontal_flip: bool,
}

impl Default for Augment {
    fn default() -> Self {
        Augment { random_crop_padding: 4, horizontal_flip: true }
    }
}

#[derive(Clone, Debug, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Normalize {
    #[serde(default = "default_scale")]
    pub scale: f64,
    pub mean: [f64; 3],
    pub std: [f64; 3],
}

pub(super) fn default_scale() -> f64 {
    1.0 / 255.0
}
