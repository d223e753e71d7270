//! The `student` section resolved: a known architecture or an ONNX file that loads, runs and
//! fits the data, its architecture spec, and the shapes of the taps the methods read from it.

use super::Checked;
use crate::recipe::schema::{Recipe, Student as StudentSpec};
use crate::zoo::ArchSpec;
use std::path::Path;
use tch::Device;

pub struct StudentPlan {
    /// Where its graph comes from (the ONNX path made absolute).
    pub source: StudentSpec,
    pub arch: ArchSpec,
    /// How reports and logs name it.
    pub label: String,
    /// Every tap some method reads, with its shape for one image.
    taps: Vec<(String, Vec<i64>)>,
}

impl StudentPlan {
    /// The shapes of `wanted` taps, in that order.
    pub fn tap_shapes(&self, wanted: &[String]) -> Vec<Vec<i64>> {
        wanted.iter().map(|w| self.taps.iter().find(|(n, _)| n == w).map(|(_, s)| s.clone()).unwrap_or_default()).collect()
    }

    /// Builds the student's graph on `device` (initialised from the RNG as it stands).
    pub fn build(&self, device: Device) -> anyhow::Result<crate::graph::Graph> {
        crate::student::source::build(&self.source, &self.arch, device)
    }
}

/// Checks the student (built once on the CPU, or on `device` for an ONNX file) against the
/// data's `classes` (10 when unknown, which is reported elsewhere) and the taps the methods
/// read (`wanted`).
pub fn resolve(recipe: &mut Recipe, base: &Path, device: Device, classes: Option<usize>, wanted: &[String]) -> Checked<StudentPlan> {
    if let Some(path) = recipe.student.onnx.as_mut() {
        *path = base.join(&*path);
    }
    let s = &recipe.student;
    let image_size = recipe.data.image_size as i64;
    let (arch, build_on) = match (&s.arch, &s.onnx) {
        (Some(name), None) => {
            if !crate::zoo::names().contains(&name.as_str()) {
                return Err(vec![format!("student.arch: unknown architecture `{name}` (known: {})", crate::zoo::names().join(", "))]);
            }
            if !(s.width > 0.0 && s.width <= 16.0) {
                return Err(vec![format!("student.width: must be a positive number up to 16, got {}", s.width)]);
            }
            (ArchSpec { num_classes: classes.unwrap_or(10) as i64, width: s.width, image_size }, Device::Cpu)
        }
        (None, Some(path)) => {
            if !path.is_file() {
                return Err(vec![format!("student.onnx: file {} does not exist", path.display())]);
            }
            // Without a class count the data's own problem is reported.
            let Some(classes) = classes else { return Err(vec![]) };
            (ArchSpec { num_classes: classes as i64, width: 1.0, image_size }, device)
        }
        _ => {
            return Err(vec!["student: give exactly one of `arch` and `onnx`".into()]);
        }
    };
    // A zoo student that no method taps needs no trial build.
    let built = if wanted.is_empty() && s.onnx.is_none() {
        Ok(vec![])
    } else {
        crate::student::source::build(s, &arch, build_on).and_then(|g| if wanted.is_empty() { Ok(vec![]) } else { crate::student::resolve_taps(&g, wanted) })
    };
    match built {
        Ok(taps) => Ok(StudentPlan { source: s.clone(), arch, label: s.label(), taps: taps.into_iter().map(|t| (t.alias, t.shape)).collect() }),
        Err(e) => Err(vec![format!("student: {e:#}")]),
    }
}
