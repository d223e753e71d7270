//! Evaluation of an ONNX file with ONNX Runtime over an image set: the logits for every image.

use super::OrtModel;
use crate::data::preprocess::Preprocess;
use crate::data::ImageSet;
use crate::progress::Progress;
use tch::{Device, Tensor};

/// Runs `model` over `set` in batches and returns its first output for every image, [N, C].
pub fn logits(model: &mut OrtModel, set: &ImageSet, pre: &Preprocess, batch: i64, label: &str) -> anyhow::Result<Tensor> {
    let n = set.len() as i64;
    let mut parts = Vec::new();
    let mut progress = Progress::new(label, n as u64);
    let mut start = 0;
    while start < n {
        let len = batch.min(n - start);
        let x = pre.apply(&set.images.narrow(0, start, len), Device::Cpu);
        let outs = model.run(&x)?;
        let first = outs.into_iter().next().ok_or_else(|| anyhow::anyhow!("the model has no outputs"))?;
        parts.push(first);
        progress.inc(len as u64, "");
        start += len;
    }
    progress.finish();
    Ok(Tensor::cat(&parts, 0))
}
