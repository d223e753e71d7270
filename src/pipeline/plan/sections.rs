//! The checks of the sections that need no file: `compare`, `train`, `export`, `validate` (gates
//! against what the run will have), and `quantize` against the student's layers.

use super::student::StudentPlan;
use crate::recipe::schema::{Quantize, Recipe};
use tch::Device;

/// Every problem of these sections, each naming its key.
pub fn check(recipe: &Recipe, student: Option<&StudentPlan>) -> Vec<String> {
    let mut problems = name(&recipe.name);
    problems.extend(compare(recipe));
    problems.extend(train(recipe));
    if let Some(q) = &recipe.quantize {
        problems.extend(quantize(q, student));
    }
    if !(13..=21).contains(&recipe.export.opset) {
        problems.push(format!("export.opset: {} is outside the supported 13..=21", recipe.export.opset));
    }
    problems.extend(gates(recipe));
    problems
}

/// The name becomes the output folder `out/<name>`: a plain folder name, never a path.
fn name(name: &str) -> Vec<String> {
    let plain = name.len() <= 100
        && name.chars().next().is_some_and(|c| c.is_ascii_alphanumeric())
        && name.chars().all(|c| c.is_ascii_alphanumeric() || matches!(c, '_' | '-' | '.'));
    if plain {
        return vec![];
    }
    vec![format!(
        "name: `{}` must be a plain folder name (letters, digits, `_`, `-`, `.`, starting with a letter or digit, at most 100 characters): the run writes to out/<name>",
        name.escape_debug()
    )]
}

fn compare(recipe: &Recipe) -> Vec<String> {
    let mut problems = Vec::new();
    let Some(c) = &recipe.compare else { return problems };
    if c.seeds.is_empty() || c.methods.is_empty() {
        problems.push("compare: give at least one seed and one method".into());
    }
    let mut labels: Vec<String> = c.methods.iter().map(|m| m.label()).collect();
    labels.sort();
    if let Some(w) = labels.windows(2).find(|w| w[0] == w[1]) {
        problems.push(format!("compare.methods: label `{}` is used twice (give each a distinct `label`)", w[0]));
    }
    problems
}

/// The most libtorch CPU threads a recipe may ask for.
const MAX_THREADS: usize = 1024;

fn train(recipe: &Recipe) -> Vec<String> {
    let mut problems = Vec::new();
    let t = &recipe.train;
    if t.batch_size == 0 {
        problems.push("train.batch_size must be positive".into());
    }
    if t.threads > MAX_THREADS {
        problems.push(format!("train.threads: at most {MAX_THREADS} (0 uses libtorch's default), got {}", t.threads));
    }
    if t.teacher_cache.top_k == Some(0) {
        problems.push("train.teacher_cache.top_k must be positive (leave it out to keep every logit up to 100 classes)".into());
    }
    let sgd = &t.optimizer.sgd;
    if !(sgd.lr > 0.0 && sgd.lr.is_finite()) {
        problems.push(format!("train.optimizer.sgd.lr must be a positive number, got {}", sgd.lr));
    }
    if !(0.0..1.0).contains(&sgd.momentum) {
        problems.push(format!("train.optimizer.sgd.momentum must be in [0, 1), got {}", sgd.momentum));
    }
    if !(sgd.weight_decay >= 0.0 && sgd.weight_decay.is_finite()) {
        problems.push(format!("train.optimizer.sgd.weight_decay must be a non-negative number, got {}", sgd.weight_decay));
    }
    if let Some(s) = &t.schedule.step {
        if !(s.gamma > 0.0 && s.gamma.is_finite()) {
            problems.push(format!("train.schedule.step.gamma must be a positive number, got {}", s.gamma));
        }
    }
    let w = &recipe.distill.loss_weights;
    for (key, v) in [("ce", Some(w.ce)), ("kd", Some(w.kd)), ("feat", w.feat)] {
        if let Some(v) = v.filter(|v| !(*v >= 0.0 && v.is_finite())) {
            problems.push(format!("distill.loss_weights.{key} must be a non-negative number, got {v}"));
        }
    }
    if t.epochs == 0 && recipe.quantize.is_none() {
        problems.push("train.epochs must be positive (0 is for quantizing a student as given, with a `quantize` section)".into());
    }
    if t.schedule.step.is_some() && t.schedule.cosine.is_some() {
        problems.push("train.schedule: give one of step or cosine".into());
    }
    problems
}

/// The `quantize` section against the student's layers (built on the CPU).
fn quantize(q: &Quantize, student: Option<&StudentPlan>) -> Vec<String> {
    // A student that does not build is reported by its own check.
    let Some(graph) = student.and_then(|s| s.build(Device::Cpu).ok()) else {
        return crate::quant::stage::check(q, None);
    };
    let mut problems = crate::quant::stage::check(q, Some(&crate::quant::stage::layer_names(&graph)));
    if problems.is_empty() {
        problems.extend(crate::quant::stage::check_layers(q, &graph));
    }
    problems
}

/// Gates whose spec is wrong, or whose reference the run will not have (they would fail after
/// all the training).
fn gates(recipe: &Recipe) -> Vec<String> {
    let mut problems = Vec::new();
    let baseline_run = recipe.train.baseline && recipe.distill.method != "none";
    for (i, g) in recipe.validate.gates.iter().enumerate() {
        if let Err(e) = crate::report::gates::check_spec(g) {
            problems.push(format!("validate.gates.{i}: {e}"));
        }
        if g.metric.starts_with("ort_format_") && !recipe.export.ort_format {
            problems.push(format!("validate.gates.{i}: `{}` needs export.ort_format: true", g.metric));
        }
        if recipe.quantize.is_none() {
            if g.metric.starts_with("quantized_") {
                problems.push(format!("validate.gates.{i}: `{}` needs a `quantize` section", g.metric));
            } else if g.max_drop_vs.as_deref() == Some("float_student") {
                problems.push(format!("validate.gates.{i}: max_drop_vs float_student needs a `quantize` section"));
            }
        }
        match g.max_drop_vs.as_deref() {
            Some("baseline") if !baseline_run => problems.push(format!(
                "validate.gates.{i}: max_drop_vs baseline needs train.baseline: true (and a distillation method), or the run has no baseline to compare with"
            )),
            Some(r @ ("best_teacher" | "teacher_ensemble")) if recipe.teachers.is_empty() => {
                problems.push(format!("validate.gates.{i}: max_drop_vs {r} needs teachers"))
            }
            _ => {}
        }
    }
    problems
}
