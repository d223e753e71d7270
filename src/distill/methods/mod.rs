//! Distillation methods, one file each behind one trait (mdistiller's layout). A method turns
//! the student's and the teachers' outputs for one batch into named loss terms; the trainer sums
//! and logs them by name.

mod aver;
mod ca_mkd;
mod labels_only;

use crate::bad_input;
use crate::recipe::schema::Distill;
use tch::Tensor;

/// Everything a method sees for one batch.
pub struct BatchOutputs<'a> {
    /// Student logits [B, C] (with grad).
    pub student: &'a Tensor,
    /// One [B, C] logit tensor per teacher (no grad).
    pub teachers: &'a [Tensor],
    /// Labels [B] int64.
    pub labels: &'a Tensor,
}

/// A named, already weighted term of the total loss.
pub struct LossTerm {
    pub name: &'static str,
    pub value: Tensor,
}

pub trait Method {
    fn name(&self) -> &'static str;
    /// Whether the method reads teacher outputs (a labels-only baseline does not).
    fn needs_teachers(&self) -> bool {
        true
    }
    /// Weighted loss terms for one batch; the trainer backpropagates their sum.
    fn losses(&self, batch: &BatchOutputs) -> anyhow::Result<Vec<LossTerm>>;
    /// The mean weight given to each teacher on this batch [K], for the report.
    fn teacher_weights(&self, batch: &BatchOutputs) -> Option<Tensor>;
}

/// The methods the recipe's `distill.method` accepts.
pub const NAMES: &[&str] = &["none", "aver", "ca_mkd"];

pub fn by_name(cfg: &Distill) -> anyhow::Result<Box<dyn Method>> {
    let w = &cfg.loss_weights;
    Ok(match cfg.method.as_str() {
        "none" => Box::new(labels_only::LabelsOnly { ce: w.ce }),
        "aver" => Box::new(aver::Aver { ce: w.ce, kd: w.kd, temperature: cfg.temperature }),
        "ca_mkd" => Box::new(ca_mkd::CaMkd { ce: w.ce, kd: w.kd, temperature: cfg.temperature }),
        other => return Err(bad_input!("unknown method `{other}` (known: {})", NAMES.join(", "))),
    })
}

/// γ·mean CE on the labels, the term every method shares.
pub(crate) fn ce_term(weight: f64, batch: &BatchOutputs) -> LossTerm {
    let ce = super::losses::ce_per_sample(batch.student, batch.labels).mean(tch::Kind::Float);
    LossTerm { name: "ce", value: ce * weight }
}
