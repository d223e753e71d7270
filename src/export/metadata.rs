//! The `metadata_props` keys the files we write carry, and the typed content of a trained
//! student's. (The graph-internal keys `compress.stages` and `compress.lsq_grad_scales` belong to
//! `graph::builder` and `quant::qdq`, which write them into the graph itself.)

use crate::data::preprocess::Preprocess;

pub const VERSION: &str = "compress.version";
pub const BATCH_NORM_FOLDED: &str = "compress.batch_norm_folded";
pub const RECIPE_SHA256: &str = "compress.recipe_sha256";
pub const PREPROCESS: &str = "compress.preprocess";
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
    pub class_names: Vec<String>,
    pub distill_method: String,
}

impl StudentMetadata {
    /// The entries, keys as above, values as JSON where they are structured.
    pub fn entries(&self) -> anyhow::Result<Vec<(&'static str, String)>> {
        Ok(vec![
            (RECIPE_SHA256, self.recipe_sha256.clone()),
            (PREPROCESS, serde_json::to_string(&self.preprocess)?),
            (CLASS_NAMES, serde_json::to_string(&self.class_names)?),
            (DISTILL_METHOD, self.distill_method.clone()),
        ])
    }
}
