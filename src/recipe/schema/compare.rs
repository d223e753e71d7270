//! `compare`: the methods `compress compare` trains side by side, and the seeds.

use super::distill::Distill;
use serde::{Deserialize, Serialize};

/// `compress compare`: every method trains the same student (same initial weights per seed) on
/// the same batches; teachers run once per batch for all of them.
#[derive(Clone, Debug, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Compare {
    pub seeds: Vec<u64>,
    /// Each a complete `distill` section; `label` names it in the results (default: the method).
    pub methods: Vec<CompareMethod>,
}

#[derive(Clone, Debug, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CompareMethod {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub label: Option<String>,
    pub distill: Distill,
}

impl CompareMethod {
    pub fn label(&self) -> String {
        self.label.clone().unwrap_or_else(|| self.distill.method.clone())
    }
}
