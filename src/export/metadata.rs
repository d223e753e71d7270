//! The `metadata_props` keys the files we write carry, and the typed content of a trained
//! student's. (The graph-internal keys `compress.stages` and `compress.lsq_grad_scales` belong to
//! `graph::builder` and `quant::qdq`, which write them into the graph itself.)

use crate::data::preprocess::Preprocess;
use crate::data::transform::EvalTransform;
use serde::{Deserialize, Serialize};

pub const VERSION: &str = "compress.version";
pub const BATCH_NORM_FOLDED: &str = "compress.batch_norm_folded";
pub const RECIPE_SHA256: &str = "compress.recipe_sha256";
pub const PREPROCESS: &str = "compress.preprocess";
/// The view the student was evaluated on: its input size and the evaluation transform.
pub const EVAL_VIEW: &str = "compress.eval_view";
pub const CLASS_NAMES: &str = "compress.class_names";
pub const DISTILL_METHOD: &str = "compress.distill_method";
/// Per quantized layer: node name, weight bits, activation bits.
pub const QUANTIZATION: &str = "compress.quantization";
/// The zoo architecture of a file written by `compress zoo --export`.
pub const ZOO_ARCH: &str = "compress.zoo_arch";

/// What a trained student's file says about how it was made and how to feed it.
pub struct StudentMetadata {
    pub recipe_sha256: String,
    pub preprocess: Preprocess,
    pub eval_view: EvalView,
    pub class_names: Vec<String>,
    pub distill_method: String,
}

impl StudentMetadata {
    /// The entries, keys as above, values as JSON where they are structured.
    pub fn entries(&self) -> anyhow::Result<Vec<(&'static str, String)>> {
        Ok(vec![
            (RECIPE_SHA256, self.recipe_sha256.clone()),
            (PREPROCESS, serde_json::to_string(&self.preprocess)?),
            (EVAL_VIEW, serde_json::to_string(&self.eval_view)?),
            (CLASS_NAMES, serde_json::to_string(&self.class_names)?),
            (DISTILL_METHOD, self.distill_method.clone()),
        ])
    }
}

/// How an image becomes the student's input before [`Preprocess`]: torchvision's
/// `Resize(resize_shorter)` and `CenterCrop(center_crop)` when given, else the whole image
/// resized, to `size` (height, width).
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct EvalView {
    pub size: [i64; 2],
    pub resize_shorter: Option<i64>,
    pub center_crop: Option<i64>,
}

impl EvalView {
    pub fn transform(&self) -> EvalTransform {
        EvalTransform { resize_shorter: self.resize_shorter, center_crop: self.center_crop }
    }
}

/// What a model file's metadata says about feeding it, each entry `None` when absent.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct InputMetadata {
    pub preprocess: Option<Preprocess>,
    pub eval_view: Option<EvalView>,
}

impl InputMetadata {
    /// Parses the entries of `lookup` (a model's `metadata_props` by key); `file` names the model
    /// in errors. A present but unreadable entry is an error, not an absent one.
    pub fn parse(lookup: impl Fn(&str) -> Option<String>, file: &str) -> anyhow::Result<InputMetadata> {
        fn entry<T: serde::de::DeserializeOwned>(v: Option<String>, key: &str, file: &str) -> anyhow::Result<Option<T>> {
            v.map(|text| serde_json::from_str(&text).map_err(|e| crate::bad_input!("{file}: metadata entry {key} is not readable ({e}): {text}"))).transpose()
        }
        let preprocess: Option<Preprocess> = entry(lookup(PREPROCESS), PREPROCESS, file)?;
        if let Some(p) = &preprocess {
            p.validate(&format!("{file}: metadata entry {PREPROCESS}"))?;
        }
        let eval_view = entry(lookup(EVAL_VIEW), EVAL_VIEW, file)?;
        Ok(InputMetadata { preprocess, eval_view })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::data::preprocess::Layout;

    #[test]
    fn entries_round_trip() {
        let m = StudentMetadata {
            recipe_sha256: "ab".into(),
            preprocess: Preprocess { layout: Layout::Nchw, scale: 1.0 / 255.0, mean: [0.5; 3], std: [0.25; 3] },
            eval_view: EvalView { size: [112, 112], resize_shorter: Some(128), center_crop: Some(112) },
            class_names: vec!["a".into()],
            distill_method: "aver".into(),
        };
        let entries = m.entries().unwrap();
        let lookup = |k: &str| entries.iter().find(|(key, _)| *key == k).map(|(_, v)| v.clone());
        let read = InputMetadata::parse(lookup, "m.onnx").unwrap();
        assert_eq!(read.preprocess.as_ref(), Some(&m.preprocess));
        assert_eq!(read.eval_view.as_ref(), Some(&m.eval_view));
        assert_eq!(InputMetadata::parse(|_| None, "m.onnx").unwrap(), InputMetadata::default());
        let broken = InputMetadata::parse(|k: &str| (k == EVAL_VIEW).then(|| "{\"size\": 3}".to_string()), "m.onnx").unwrap_err();
        assert!(format!("{broken:#}").contains("m.onnx: metadata entry compress.eval_view is not readable"), "{broken:#}");
    }
}
