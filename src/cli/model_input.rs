//! How `eval` and `validate` feed a model file: the preprocessing and evaluation view its
//! metadata records (a student we exported), each field overridable by a flag, and for a file
//! without metadata the flags alone, with an error that names the missing ones.

use crate::bad_input;
use crate::data::decode::DEFAULT_MAX_PIXELS;
use crate::data::feed::Feed;
use crate::data::files::{self, ScanRules};
use crate::data::loader::{Source, Workers};
use crate::data::preprocess::{Layout, Preprocess};
use crate::data::transform::{TrainCrop, TrainTransform};
use crate::export::metadata::{EvalView, InputMetadata, CLASS_NAMES, EVAL_VIEW, PREPROCESS};
use crate::runtime::OrtModel;
use clap::Args;
use std::path::Path;

#[derive(Args, Debug, Clone, Default)]
pub struct InputArgs {
    /// Input layout (default: the file's metadata, else from its input shape).
    #[arg(long, value_enum)]
    pub layout: Option<LayoutArg>,
    /// Multiplier applied to uint8 pixels before mean/std, a number or a fraction such as 1/255
    /// (default: metadata, else 1/255).
    #[arg(long, value_parser = scale_arg)]
    pub scale: Option<f64>,
    /// Per-channel mean R,G,B after scaling (default: the file's metadata).
    #[arg(long, value_delimiter = ',', num_args = 1)]
    pub mean: Option<Vec<f64>>,
    /// Per-channel std R,G,B after scaling (default: the file's metadata).
    #[arg(long, value_delimiter = ',', num_args = 1)]
    pub std: Option<Vec<f64>>,
    /// Input side (default: the model's fixed input size, else the file's metadata).
    #[arg(long)]
    pub size: Option<i64>,
    /// Resize the shorter side to this before the centre crop (default: the file's metadata).
    #[arg(long)]
    pub resize_shorter: Option<i64>,
    /// Centre crop of this side (default: the file's metadata).
    #[arg(long)]
    pub center_crop: Option<i64>,
    /// Loader threads (default: the core count).
    #[arg(long)]
    pub workers: Option<usize>,
    /// Leave out images that cannot be read (and count them) instead of stopping.
    #[arg(long)]
    pub skip_bad: bool,
}

#[derive(clap::ValueEnum, Clone, Copy, Debug, PartialEq, Eq)]
pub enum LayoutArg {
    Nchw,
    Nhwc,
}

/// How a model is fed, and where that came from (for the output).
#[derive(Clone, Debug, PartialEq)]
pub struct ModelInput {
    pub preprocess: Preprocess,
    pub view: EvalView,
    /// "the file's metadata", "flags", or "the file's metadata and flags".
    pub origin: &'static str,
    /// The class names the file records, if it does.
    pub class_names: Option<Vec<String>>,
}

fn scale_arg(s: &str) -> Result<f64, String> {
    crate::recipe::schema::number_or_fraction_text(s).ok_or_else(|| format!("expected a number or a fraction such as 1/255, got {s:?}"))
}

fn triple(v: &[f64], name: &str) -> anyhow::Result<[f64; 3]> {
    v.try_into().map_err(|_| bad_input!("--{name} needs three comma-separated values (R,G,B), got {}", v.len()))
}

/// The model's fixed input height and width under `layout`, when its shape declares them.
fn fixed_hw(shape: &[i64], layout: &Layout) -> Option<(i64, i64)> {
    let (h, w) = match (shape.len(), layout) {
        (4, Layout::Nchw) => (shape[2], shape[3]),
        (4, Layout::Nhwc) => (shape[1], shape[2]),
        _ => return None,
    };
    (h > 0 && w > 0).then_some((h, w))
}

/// The layout a 4-D input shape implies: channels (3) second is NCHW, last is NHWC.
fn layout_of(shape: &[i64]) -> Option<Layout> {
    match shape {
        [_, 3, _, _] => Some(Layout::Nchw),
        [_, _, _, 3] => Some(Layout::Nhwc),
        _ => None,
    }
}

/// Resolves how to feed `model` (loaded from `path`): metadata first, flags over it.
pub fn resolve(path: &Path, model: &OrtModel, a: &InputArgs) -> anyhow::Result<ModelInput> {
    let file = path.display().to_string();
    let meta = InputMetadata::parse(|k| model.custom_metadata(k), &file)?;
    let shape = model.input_shape().unwrap_or_default();
    let flagged = a.layout.is_some()
        || a.scale.is_some()
        || a.mean.is_some()
        || a.std.is_some()
        || a.size.is_some()
        || a.resize_shorter.is_some()
        || a.center_crop.is_some();
    let mut pre = match meta.preprocess.clone() {
        Some(p) => p,
        None => {
            let missing: Vec<&str> =
                [("--mean R,G,B", a.mean.is_none()), ("--std R,G,B", a.std.is_none())].into_iter().filter(|(_, m)| *m).map(|(f, _)| f).collect();
            if !missing.is_empty() {
                return Err(bad_input!(
                    "{file} records no preprocessing (no {PREPROCESS} metadata: it was not exported by compress): give {} \
                     (and --scale if its inputs are not pixels/255, --layout nhwc for a channels-last model)",
                    missing.join(" and ")
                ));
            }
            Preprocess { layout: layout_of(&shape).unwrap_or(Layout::Nchw), scale: 1.0 / 255.0, mean: [0.0; 3], std: [1.0; 3] }
        }
    };
    if let Some(l) = a.layout {
        pre.layout = if l == LayoutArg::Nhwc { Layout::Nhwc } else { Layout::Nchw };
    }
    if let Some(s) = a.scale {
        pre.scale = s;
    }
    if let Some(m) = &a.mean {
        pre.mean = triple(m, "mean")?;
    }
    if let Some(s) = &a.std {
        pre.std = triple(s, "std")?;
    }
    pre.validate("the command line")?;
    if let Some(expected) = layout_of(&shape) {
        if expected != pre.layout {
            return Err(bad_input!(
                "{file} declares its input as {shape:?}, which is {expected:?}, but the layout is {:?}: use --layout {}",
                pre.layout,
                if expected == Layout::Nhwc { "nhwc" } else { "nchw" }
            ));
        }
    }
    let fixed = fixed_hw(&shape, &pre.layout);
    let recorded = meta.eval_view.as_ref();
    let size = match (a.size, fixed, recorded) {
        (Some(s), _, _) => (s, s),
        (None, Some(hw), _) => hw,
        (None, None, Some(v)) => (v.size[0], v.size[1]),
        (None, None, None) => return Err(bad_input!("{file} has no fixed input size and records no {EVAL_VIEW} metadata: give --size")),
    };
    if size.0 <= 0 || size.1 <= 0 {
        return Err(bad_input!("--size must be positive, got {}", size.0));
    }
    if let Some(hw) = fixed.filter(|hw| *hw != size) {
        return Err(bad_input!("{file} takes {}x{} inputs (height x width), not --size {}", hw.0, hw.1, size.0));
    }
    let view = EvalView {
        size: [size.0, size.1],
        resize_shorter: a.resize_shorter.or(recorded.and_then(|v| v.resize_shorter)),
        center_crop: a.center_crop.or(recorded.and_then(|v| v.center_crop)),
    };
    check_view(&view)?;
    let class_names = model.custom_metadata(CLASS_NAMES).and_then(|t| serde_json::from_str::<Vec<String>>(&t).ok());
    let from_meta = meta.preprocess.is_some() || recorded.is_some();
    let origin = match (from_meta, flagged) {
        (true, false) => "the file's metadata",
        (true, true) => "the file's metadata and flags",
        (false, _) => "flags",
    };
    Ok(ModelInput { preprocess: pre, view, origin, class_names })
}

/// The evaluation view must give the model's size: a centre crop of that side, or no crop and
/// no resize (the whole image resized).
fn check_view(v: &EvalView) -> anyhow::Result<()> {
    for (flag, value) in [("--resize-shorter", v.resize_shorter), ("--center-crop", v.center_crop)] {
        if value.is_some_and(|x| x <= 0) {
            return Err(bad_input!("{flag} must be positive"));
        }
    }
    match (v.resize_shorter, v.center_crop) {
        (_, Some(c)) if [c, c] != v.size => Err(bad_input!("--center-crop {c} does not give the model's {}x{} input", v.size[0], v.size[1])),
        (Some(_), None) => Err(bad_input!("--resize-shorter needs --center-crop: a resized photo has no fixed size")),
        _ => Ok(()),
    }
}

/// An image folder under `input`'s view, every header read first (bad files named).
pub fn folder_feed(dir: &Path, input: &ModelInput, a: &InputArgs) -> anyhow::Result<Feed> {
    if !dir.is_dir() {
        return Err(bad_input!("--data: folder {} does not exist", dir.display()));
    }
    let threads = a.workers.unwrap_or_else(|| std::thread::available_parallelism().map_or(1, |n| n.get()));
    let list = files::scan(dir, ScanRules { max_pixels: DEFAULT_MAX_PIXELS, skip_bad: a.skip_bad, threads: threads.max(1) })?;
    if list.is_empty() {
        return Err(bad_input!("--data: folder {} holds no images", dir.display()));
    }
    if let Some(names) = &input.class_names {
        if *names != list.class_names {
            return Err(bad_input!(
                "--data: the class folders of {} ({}) are not the classes the model was trained on ({}): labels would not match outputs",
                dir.display(),
                list.class_names.join(", "),
                names.join(", ")
            ));
        }
    }
    Ok(Feed {
        source: Source::Files(list),
        train: TrainTransform { crop: TrainCrop::None, horizontal_flip: false },
        eval: input.view.transform(),
        workers: Workers { threads, ahead: 2 },
        skip_bad: a.skip_bad,
        resident: None,
    })
}
