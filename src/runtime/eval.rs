//! Evaluation of an ONNX file with ONNX Runtime over an image set: the logits for every image.

use super::OrtModel;
use crate::data::feed::Feed;
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
        let x = pre.f_apply(&set.images.narrow(0, start, len), Device::Cpu)?;
        let outs = model.run(&x)?;
        let first = outs.into_iter().next().ok_or_else(|| anyhow::anyhow!("the model has no outputs"))?;
        parts.push(first);
        progress.inc(len as u64, "");
        start += len;
    }
    progress.finish();
    Ok(Tensor::cat(&parts, 0))
}

/// What [`feed_logits`] measured: the first output per image, the labels, the images left out.
pub struct FeedLogits {
    pub logits: Tensor,
    pub labels: Tensor,
    pub skipped: usize,
}

/// Runs `model` over every image of `feed` under its evaluation transform at `size`, in
/// batches of `batch` streamed by the loader (nothing held but the outputs).
pub fn feed_logits(model: &mut OrtModel, feed: &Feed, size: (i64, i64), pre: &Preprocess, batch: usize, label: &str) -> anyhow::Result<FeedLogits> {
    let n = feed.len();
    let batches: Vec<Vec<usize>> = (0..n).collect::<Vec<_>>().chunks(batch.max(1)).map(|c| c.to_vec()).collect();
    let mut progress = Progress::new(label, n as u64);
    let (mut parts, mut labels, mut skipped) = (Vec::new(), Vec::new(), 0);
    feed.eval_batches(batches, &[size], |stream| {
        for b in stream {
            let b = b?;
            skipped += b.skipped.len();
            let count = b.labels.size()[0];
            if count > 0 {
                let x = pre.f_apply(&b.views[0], Device::Cpu)?;
                let first = model.run(&x)?.into_iter().next().ok_or_else(|| anyhow::anyhow!("the model has no outputs"))?;
                parts.push(first.flatten(1, -1));
                labels.push(b.labels);
            }
            progress.inc((count as usize + b.skipped.len()) as u64, "");
        }
        Ok(())
    })?;
    progress.finish();
    anyhow::ensure!(!parts.is_empty(), "no image could be evaluated");
    Ok(FeedLogits { logits: Tensor::cat(&parts, 0), labels: Tensor::cat(&labels, 0), skipped })
}
