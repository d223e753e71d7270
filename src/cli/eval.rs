//! `compress eval MODEL.onnx --data DIR`: accuracy of any ONNX classifier in ONNX Runtime on an
//! ImageFolder, fed as the file's own metadata says (a student we exported) or as the flags say.

use super::model_input::InputArgs;
use clap::Args;
use std::path::PathBuf;

#[derive(Args, Debug)]
pub struct EvalArgs {
    pub model: PathBuf,
    /// ImageFolder with one sub-folder per class.
    #[arg(long)]
    pub data: PathBuf,
    #[arg(long, default_value_t = 64)]
    pub batch: usize,
    #[arg(long)]
    pub json: bool,
    #[command(flatten)]
    pub input: InputArgs,
}

pub fn run(a: &EvalArgs) -> anyhow::Result<i32> {
    if a.batch == 0 {
        return Err(crate::bad_input!("--batch must be positive"));
    }
    let m = super::validate::measure(&a.model, &a.data, &a.input, a.batch, None)?;
    if a.json {
        let v = serde_json::json!({
            "model": a.model, "images": m.images, "skipped": m.skipped, "top1": m.top1, "top5": m.top5,
            "input": {"preprocess": m.input.preprocess, "view": m.input.view, "from": m.input.origin},
        });
        println!("{}", serde_json::to_string_pretty(&v)?);
    } else {
        println!("{}: {} images, top-1 {:.2}%, top-5 {:.2}% (input from {})", a.model.display(), m.images, 100.0 * m.top1, 100.0 * m.top5, m.input.origin);
    }
    Ok(0)
}
