//! `validate`: the gates the exported student must pass.

use serde::{Deserialize, Serialize};

#[derive(Clone, Debug, Default, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Validate {
    #[serde(default)]
    pub gates: Vec<Gate>,
}

/// One pass/fail rule on the final student: `min`, `max`, or a drop relative to a reference.
#[derive(Clone, Debug, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Gate {
    pub metric: String,
    pub min: Option<f64>,
    pub max: Option<f64>,
    /// `best_teacher`, `teacher_ensemble` or `baseline`.
    pub max_drop_vs: Option<String>,
    pub value: Option<f64>,
}
