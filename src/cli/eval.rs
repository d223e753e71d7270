//! `compress eval MODEL.onnx --data DIR`: accuracy of any ONNX classifier in ONNX Runtime on an
//! ImageFolder, with the model's own preprocessing given on the command line.

use crate::bad_input;
use crate::data::preprocess::{Layout, Preprocess};
use crate::metrics;
use crate::runtime::{self, OrtModel};
use clap::Args;
use std::path::PathBuf;

#[derive(Args, Debug)]
pub struct EvalArgs {
    pub model: PathBuf,
    /// ImageFolder with one sub-folder per class.
    #[arg(long)]
    pub data: PathBuf,
    #[arg(long, value_enum, default_value = "nchw")]
    pub layout: LayoutArg,
    /// Multiplier applied to uint8 pixels before mean/std.
    #[arg(long, default_value_t = 1.0 / 255.0)]
    pub scale: f64,
    #[arg(long, value_delimiter = ',', default_values_t = [0.0, 0.0, 0.0])]
    pub mean: Vec<f64>,
    #[arg(long, value_delimiter = ',', default_values_t = [1.0, 1.0, 1.0])]
    pub std: Vec<f64>,
    #[arg(long, default_value_t = 256)]
    pub batch: i64,
    #[arg(long)]
    pub json: bool,
}

#[derive(clap::ValueEnum, Clone, Debug)]
pub enum LayoutArg {
    Nchw,
    Nhwc,
}

fn triple(v: &[f64], name: &str) -> anyhow::Result<[f64; 3]> {
    v.try_into().map_err(|_| bad_input!("--{name} needs three comma-separated values, got {}", v.len()))
}

pub fn run(a: &EvalArgs) -> anyhow::Result<i32> {
    if !a.data.is_dir() {
        return Err(bad_input!("--data: folder {} does not exist", a.data.display()));
    }
    let layout = match a.layout {
        LayoutArg::Nchw => Layout::Nchw,
        LayoutArg::Nhwc => Layout::Nhwc,
    };
    let pre = Preprocess { layout, scale: a.scale, mean: triple(&a.mean, "mean")?, std: triple(&a.std, "std")? };
    let set = crate::data::image_folder::load_image_folder(&a.data, None, crate::data::cache::default_dir().as_deref())?;
    let mut model = OrtModel::load(&a.model, 2)?;
    let logits = runtime::eval::logits(&mut model, &set, &pre, a.batch, "eval")?.flatten(1, -1);
    let top1 = metrics::top_k(&logits, &set.labels, 1);
    let top5 = metrics::top_k(&logits, &set.labels, 5);
    if a.json {
        let v = serde_json::json!({"model": a.model, "images": set.len(), "top1": top1, "top5": top5});
        println!("{}", serde_json::to_string_pretty(&v)?);
    } else {
        println!("{}: {} images, top-1 {:.2}%, top-5 {:.2}%", a.model.display(), set.len(), 100.0 * top1, 100.0 * top5);
    }
    Ok(0)
}
