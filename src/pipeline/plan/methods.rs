//! The distillation methods a recipe uses (its `distill`, then each of `compare.methods`):
//! checked by the method registry, with what each needs from the models and which teachers it
//! distils; and each built once on the CPU so connectors check their feature maps before any
//! data is loaded.

use super::student::StudentPlan;
use crate::distill::methods::{self, Needs, Setup};
use crate::recipe::schema::{Distill, Recipe};
use crate::teacher::Teacher;
use tch::Device;

/// A distillation method the recipe uses: where it is in the recipe, what it needs, and which
/// teachers (by index) it distils.
#[derive(Clone)]
pub struct MethodUse {
    /// The recipe key of its section (`distill`, `compare.methods.2.distill`).
    pub key: String,
    /// How results name it: the method, or the compare entry's `label`.
    pub label: String,
    pub distill: Distill,
    pub needs: Needs,
    /// The teachers it distils (indices into the plan's teachers).
    pub teachers: Vec<usize>,
}

impl MethodUse {
    /// The same section on labels only: the baseline a run trains beside its method.
    pub fn labels_only(&self) -> MethodUse {
        let distill = crate::recipe::schema::Distill { method: "none".into(), ..self.distill.clone() };
        MethodUse { key: self.key.clone(), label: "none".into(), distill, needs: Needs::default(), teachers: vec![] }
    }
}

/// Every method section that checks out (the run's `distill` first), and the problems of the
/// others.
pub fn resolve(recipe: &Recipe) -> (Vec<MethodUse>, Vec<String>) {
    let mut problems = Vec::new();
    let names: Vec<String> = recipe.teachers.iter().map(|t| t.name.clone()).collect();
    let mut sections = vec![("distill".to_string(), recipe.distill.method.clone(), recipe.distill.clone())];
    if let Some(c) = &recipe.compare {
        sections.extend(c.methods.iter().enumerate().map(|(i, m)| (format!("compare.methods.{i}.distill"), m.label(), m.distill.clone())));
    }
    let mut uses = Vec::new();
    for (key, label, d) in sections {
        let found = check(&key, &d, &names);
        if !found.is_empty() {
            problems.extend(found);
            continue;
        }
        let teachers = d.teacher_indices(&names).unwrap_or_default();
        match methods::needs(&d) {
            Ok(needs) => uses.push(MethodUse { key, label, distill: d, needs, teachers }),
            Err(e) => problems.push(format!("{key}: {e:#}")),
        }
    }
    (uses, problems)
}

/// The problems of one method section under `key`.
fn check(key: &str, d: &Distill, names: &[String]) -> Vec<String> {
    let teachers = match d.teacher_indices(names) {
        Ok(t) => t,
        Err(e) => return vec![format!("{key}.{e}")],
    };
    // Messages of `methods::check` name keys under `distill.`; re-anchor them at `key`.
    let mut found: Vec<String> = methods::check(d, teachers.len()).into_iter().map(|p| p.replacen("distill", key, 1)).collect();
    if d.method != "none" && teachers.is_empty() {
        found.insert(0, format!("{key}.method `{}` needs at least one entry in teachers", d.method));
    }
    found
}

/// The student taps any of `uses` reads, each once, in first-use order.
pub fn student_taps(uses: &[MethodUse]) -> Vec<String> {
    let mut wanted: Vec<String> = Vec::new();
    for t in uses.iter().flat_map(|m| &m.needs.student_taps) {
        if !wanted.contains(t) {
            wanted.push(t.clone());
        }
    }
    wanted
}

/// Builds each method against its teachers and the student's tap shapes, on the CPU.
pub fn try_build(uses: &[MethodUse], student: &StudentPlan, teachers: &[Teacher], batch_size: usize, epochs: usize) -> Vec<String> {
    let mut problems = Vec::new();
    for m in uses {
        let chosen: Vec<&Teacher> = m.teachers.iter().map(|&i| &teachers[i]).collect();
        let built =
            Setup::for_models(&chosen, student.tap_shapes(&m.needs.student_taps), &m.needs, student.arch.num_classes, Device::Cpu, batch_size as i64, epochs)
                .and_then(|setup| methods::build(&m.distill, &setup));
        if let Err(e) = built {
            problems.push(format!("{}: {e:#}", m.key));
        }
    }
    problems
}
