//! `data`: where the images come from (an image folder, CIFAR's binary files or synthetic), the
//! student's input size, subsets, the training and evaluation transforms, how images are loaded
//! (workers, memory or streamed, bad files, the pixel limit) and the student's normalization.

use serde::{Deserialize, Serialize};
use std::path::PathBuf;

#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum DataFormat {
    ImageFolder,
    Synthetic,
    /// The official CIFAR-10 binary batches (`cifar-10-batches-bin/`).
    Cifar10Binary,
    /// The official CIFAR-100 binary files (`cifar-100-binary/`), fine labels.
    Cifar100Binary,
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
    /// How test images (and calibration images) become the student's input.
    #[serde(default)]
    pub eval: EvalTransform,
    /// Threads decoding and transforming images ahead of the step (default: the core count;
    /// 0 decodes in the training thread).
    pub workers: Option<usize>,
    /// Hold the decoded set in memory (`memory`), decode it once into a file and read that
    /// (`disk`), decode from the files every epoch (`none`), or decide by size (`auto`).
    #[serde(default)]
    pub cache: CacheMode,
    /// Keep the uint8 training set on the training device and cut every batch there
    /// (`always`), never (`never`), or on CUDA when the set qualifies and fits (`auto`).
    #[serde(default)]
    pub resident: Resident,
    /// Leave out images that cannot be decoded (counted in the report) instead of failing.
    #[serde(default)]
    pub skip_bad: bool,
    /// Images whose header declares more pixels are refused (decompression bombs).
    #[serde(default = "default_max_image_pixels")]
    pub max_image_pixels: u64,
    /// Decode a JPEG at 1/2, 1/4 or 1/8 of its size when the crop is still at least the model's
    /// size at that scale (PIL's draft mode); `false` decodes every pixel, as torchvision's
    /// ImageFolder does.
    #[serde(default = "default_true")]
    pub reduced_decode: bool,
    /// The student's input normalization.
    pub normalize: Normalize,
}

fn default_true() -> bool {
    true
}

fn default_max_image_pixels() -> u64 {
    crate::data::decode::DEFAULT_MAX_PIXELS
}

#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum CacheMode {
    #[default]
    Auto,
    Memory,
    Disk,
    None,
}

/// Where the training set's pixels live while training ([`Data::resident`]).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Resident {
    #[default]
    Auto,
    Always,
    Never,
}

/// The evaluation transform: resize the shorter side, then cut the centre. Neither (the
/// default) resizes the whole image to `data.image_size`.
#[derive(Clone, Debug, Default, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct EvalTransform {
    pub resize_shorter: Option<u32>,
    pub center_crop: Option<u32>,
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

/// The training transform: a crop (CIFAR's pad-and-crop, the default with 4 pixels, or
/// torchvision's random resized crop), then a horizontal flip.
#[derive(Clone, Debug, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct Augment {
    pub random_crop_padding: Option<i64>,
    pub random_resized_crop: Option<RandomResizedCrop>,
    pub horizontal_flip: bool,
}

impl Default for Augment {
    fn default() -> Self {
        Augment { random_crop_padding: None, random_resized_crop: None, horizontal_flip: true }
    }
}

/// The pad-and-crop padding when no crop is named.
pub const DEFAULT_CROP_PADDING: i64 = 4;

/// torchvision's `RandomResizedCrop` ranges: area fraction and aspect ratio (width / height).
#[derive(Clone, Debug, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct RandomResizedCrop {
    pub scale: [f64; 2],
    pub ratio: [f64; 2],
}

impl Default for RandomResizedCrop {
    fn default() -> Self {
        // torchvision's defaults, kept in one place: the transform's own.
        let d = crate::data::transform::geometry::RandomResizedCrop::default();
        RandomResizedCrop { scale: d.scale, ratio: d.ratio }
    }
}

#[derive(Clone, Debug, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Normalize {
    #[serde(default = "default_scale", deserialize_with = "super::number_or_fraction")]
    pub scale: f64,
    pub mean: [f64; 3],
    pub std: [f64; 3],
}

pub(super) fn default_scale() -> f64 {
    1.0 / 255.0
}
