//! The `teachers` section resolved: each file made absolute and loaded on the device with its
//! own input transform and the taps and heads the methods that use it need, then checked
//! against the data's classes.

use super::methods::MethodUse;
use super::Checked;
use crate::data::preprocess::Preprocess;
use crate::error::{is_bad_input, is_operand_error};
use crate::recipe::schema::{Recipe, TeacherEntry};
use crate::teacher::{Teacher, TeacherSpec};
use std::path::Path;
use tch::Device;

/// Loads every teacher; None when any has a problem (all are reported). libtorch rejecting the
/// model's own computation (shapes, types: the error names the node) is the model's problem; a
/// failure that is not the user's (memory, the device) ends the plan.
pub fn load(recipe: &mut Recipe, base: &Path, device: Device, classes: Option<usize>, uses: &[MethodUse]) -> anyhow::Result<Checked<Vec<Teacher>>> {
    let mut problems = Vec::new();
    let image_size = recipe.data.image_size as i64;
    let mut teachers = Vec::new();
    for (i, t) in recipe.teachers.iter_mut().enumerate() {
        t.onnx = base.join(&t.onnx);
        let Some(spec) = spec(i, t, uses, &mut problems) else { continue };
        match Teacher::load(&spec, image_size, device) {
            Ok(teacher) => {
                problems.extend(check(i, &teacher, classes, uses));
                teachers.push(teacher)
            }
            Err(e) if is_bad_input(&e) || is_operand_error(&e) => problems.push(format!("teachers.{i} ({}): {e:#}", t.name)),
            Err(e) => return Err(e),
        }
    }
    Ok(if problems.is_empty() { Ok(teachers) } else { Err(problems) })
}

/// What teacher `i` is loaded with: its file and transform, and the taps and heads asked for by
/// the methods that use it.
fn spec(i: usize, t: &TeacherEntry, uses: &[MethodUse], problems: &mut Vec<String>) -> Option<TeacherSpec> {
    if !t.onnx.is_file() {
        problems.push(format!("teachers.{i}.onnx: file {} does not exist", t.onnx.display()));
        return None;
    }
    let preprocess = Preprocess { layout: t.input.layout.clone(), scale: t.input.scale, mean: t.input.mean, std: t.input.std };
    if let Err(e) = preprocess.validate(&format!("teachers.{i}.input")) {
        problems.push(format!("{e:#}"));
        return None;
    }
    if let Some(size) = t.input.size.filter(|s| !(1..=8192).contains(s)) {
        problems.push(format!("teachers.{i}.input.size must be in 1..=8192, got {size}"));
        return None;
    }
    let mut method_taps: Vec<String> = Vec::new();
    let mut head = false;
    for m in uses.iter().filter(|m| m.teachers.contains(&i)) {
        for tap in &m.needs.teacher_taps {
            if !method_taps.contains(tap) {
                method_taps.push(tap.clone());
            }
        }
        head |= m.needs.teacher_heads;
    }
    Some(TeacherSpec {
        name: t.name.clone(),
        path: t.onnx.clone(),
        preprocess,
        output: t.output,
        taps: t.taps.clone(),
        precision: t.precision,
        method_taps,
        head,
        size: t.input.size,
    })
}

/// A loaded teacher against the data's classes and the heads its methods need.
fn check(i: usize, teacher: &Teacher, classes: Option<usize>, uses: &[MethodUse]) -> Vec<String> {
    let mut problems = Vec::new();
    if let Some(classes) = classes {
        if teacher.num_classes != classes as i64 {
            problems.push(format!("teachers.{i} ({}): predicts {} classes, the data has {classes}", teacher.name, teacher.num_classes));
        }
    }
    for m in uses.iter().filter(|m| m.teachers.contains(&i) && m.needs.teacher_heads) {
        if teacher.head.is_none() {
            problems.push(format!(
                "teachers.{i} ({}): {} ({}) weights features through each teacher's linear classifier, and this model's output does not come from one (Gemm or MatMul+Add); set loss_weights.feat: 0 to distil logits only",
                teacher.name, m.key, m.distill.method
            ));
        }
    }
    problems
}
