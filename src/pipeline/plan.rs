//! Plan resolution: the recipe parsed strictly, overrides applied, paths resolved against the
//! recipe's folder, the device chosen, teachers loaded and every op checked. All problems are
//! collected and reported together, before any training.

use crate::recipe::schema::{DataFormat, Distill, Recipe};
use crate::recipe::parse;
use crate::bad_input;
use crate::data::preprocess::{Layout, Preprocess};
use crate::distill::methods::Needs;
use crate::error::is_bad_input;
use crate::teacher::{Teacher, TeacherSpec};
use std::path::{Path, PathBuf};
use tch::Device;

pub struct Plan {
    pub recipe: Recipe,
    pub recipe_path: PathBuf,
    /// The recipe after overrides, as YAML (written to `recipe.resolved.yaml`).
    pub resolved_yaml: String,
    pub recipe_sha256: String,
    pub device: Device,
    pub teachers: Vec<Teacher>,
}

impl Plan {
    pub fn resolve(path: &Path, sets: &[String], device_override: Option<&str>) -> anyhow::Result<Plan> {
        let (mut recipe, resolved_yaml) = parse(path, sets)?;
        let base = path.parent().unwrap_or(Path::new(".")).to_path_buf();
        let mut problems: Vec<String> = Vec::new();
        if recipe.version != 1 {
            problems.push(format!("version: {} is not supported (this tool reads version 1)", recipe.version));
        }
        let device = match crate::device::resolve(device_override.unwrap_or(&recipe.device)) {
            Ok(d) => d,
            Err(e) => {
                problems.push(format!("device: {e}"));
                Device::Cpu
            }
        };
        check_data(&mut recipe, &base, &mut problems);
        let methods = method_uses(&recipe, &mut problems);
        let mut student_needs: Vec<String> = Vec::new();
        for m in &methods {
            for t in &m.needs.student_taps {
                if !student_needs.contains(t) {
                    student_needs.push(t.clone());
                }
            }
        }
        let student_taps = check_student(&mut recipe, &base, device, &student_needs, &mut problems);
        if let Some(c) = &recipe.compare {
            if c.seeds.is_empty() || c.methods.is_empty() {
                problems.push("compare: give at least one seed and one method".into());
            }
            let mut labels: Vec<String> = c.methods.iter().map(|m| m.label()).collect();
            labels.sort();
            if let Some(w) = labels.windows(2).find(|w| w[0] == w[1]) {
                problems.push(format!("compare.methods: label `{}` is used twice (give each a distinct `label`)", w[0]));
            }
        }
        if recipe.train.batch_size == 0 {
            problems.push("train.batch_size must be positive".into());
        }
        let lr = recipe.train.optimizer.sgd.lr;
        if !(lr > 0.0 && lr.is_finite()) {
            problems.push(format!("train.optimizer.sgd.lr must be a positive number, got {lr}"));
        }
        for (key, n) in [("data.train_subset", recipe.data.train_subset), ("data.test_subset", recipe.data.test_subset)] {
            if n == Some(0) {
                problems.push(format!("{key} must be positive (leave it out to use every image)"));
            }
        }
        if recipe.train.epochs == 0 && recipe.quantize.is_none() {
            problems.push("train.epochs must be positive (0 is for quantizing a student as given, with a `quantize` section)".into());
        }
        if let Some(q) = &recipe.quantize {
            problems.extend(check_quantize(&recipe, q));
        }
        if recipe.train.schedule.step.is_some() && recipe.train.schedule.cosine.is_some() {
            problems.push("train.schedule: give one of step or cosine".into());
        }
        if !(13..=21).contains(&recipe.export.opset) {
            problems.push(format!("export.opset: {} is outside the supported 13..=21", recipe.export.opset));
        }
        for (i, g) in recipe.validate.gates.iter().enumerate() {
            if let Err(e) = crate::report::gates::check_spec(g) {
                problems.push(format!("validate.gates.{i}: {e}"));
            }
            // References the run will not have would fail the gate after all the training.
            let baseline_run = recipe.train.baseline && recipe.distill.method != "none";
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
                Some("best_teacher" | "teacher_ensemble") if recipe.teachers.is_empty() => {
                    problems.push(format!("validate.gates.{i}: max_drop_vs {} needs teachers", g.max_drop_vs.as_deref().unwrap_or_default()))
                }
                _ => {}
            }
        }
        let classes = class_count(&recipe);
        let mut teachers = Vec::new();
        for (i, t) in recipe.teachers.iter_mut().enumerate() {
            t.onnx = base.join(&t.onnx);
            if !t.onnx.is_file() {
                problems.push(format!("teachers.{i}.onnx: file {} does not exist", t.onnx.display()));
                continue;
            }
            let pre = Preprocess { layout: t.input.layout.clone(), scale: t.input.scale, mean: t.input.mean, std: t.input.std };
            if let Err(e) = pre.validate(&format!("teachers.{i}.input")) {
                problems.push(format!("{e:#}"));
                continue;
            }
            // The taps and heads asked for by the methods that use this teacher.
            let mut method_taps: Vec<String> = Vec::new();
            let mut head = false;
            for m in methods.iter().filter(|m| m.teachers.contains(&i)) {
                for tap in &m.needs.teacher_taps {
                    if !method_taps.contains(tap) {
                        method_taps.push(tap.clone());
                    }
                }
                head |= m.needs.teacher_heads;
            }
            let spec = TeacherSpec {
                name: t.name.clone(),
                path: t.onnx.clone(),
                preprocess: pre,
                output: t.output,
                taps: t.taps.clone(),
                precision: t.precision,
                method_taps,
                head,
            };
            match Teacher::load(&spec, recipe.data.image_size as i64, device) {
                Ok(teacher) => {
                    if let Some(classes) = classes {
                        if teacher.num_classes != classes as i64 {
                            problems.push(format!("teachers.{i} ({}): predicts {} classes, the data has {classes}", t.name, teacher.num_classes));
                        }
                    }
                    for m in methods.iter().filter(|m| m.teachers.contains(&i) && m.needs.teacher_heads) {
                        if teacher.head.is_none() {
                            problems.push(format!(
                                "teachers.{i} ({}): {} ({}) weights features through each teacher's linear classifier, and this model's output does not come from one (Gemm or MatMul+Add); set loss_weights.feat: 0 to distil logits only",
                                t.name, m.key, m.method
                            ));
                        }
                    }
                    teachers.push(teacher)
                }
                Err(e) if is_bad_input(&e) => problems.push(format!("teachers.{i} ({}): {e:#}", t.name)),
                Err(e) => return Err(e),
            }
        }
        if problems.is_empty() {
            // Build each method once on the CPU: connectors check their feature maps here,
            // before any data is loaded.
            let student_taps = student_taps.unwrap_or_default();
            for m in &methods {
                let shapes = m.needs.student_taps.iter().map(|a| student_needs.iter().position(|x| x == a).map(|i| student_taps[i].clone()).unwrap_or_default()).collect();
                let chosen: Vec<&Teacher> = m.teachers.iter().map(|&i| &teachers[i]).collect();
                if let Err(e) = try_build_method(&recipe, m, &chosen, shapes, classes) {
                    problems.push(format!("{}: {e:#}", m.key));
                }
            }
        }
        if !problems.is_empty() {
            return Err(bad_input!("recipe {} has {} problem(s):\n  - {}", path.display(), problems.len(), problems.join("\n  - ")));
        }
        let recipe_sha256 = crate::fsio::sha256_hex(resolved_yaml.as_bytes());
        Ok(Plan { recipe, recipe_path: path.to_path_buf(), resolved_yaml, recipe_sha256, device, teachers })
    }

    /// The student's own input transform (always NCHW).
    pub fn student_preprocess(&self) -> Preprocess {
        let n = &self.recipe.data.normalize;
        Preprocess { layout: Layout::Nchw, scale: n.scale, mean: n.mean, std: n.std }
    }
}

/// The student: a known architecture, or an ONNX file that loads, runs and fits the data.
/// A distillation method the recipe uses (its `distill`, or one of `compare.methods`): where it
/// is in the recipe, what it needs, and which teachers (by index) it distils.
pub struct MethodUse {
    pub key: String,
    pub method: String,
    pub distill: Distill,
    pub needs: Needs,
    pub teachers: Vec<usize>,
}

/// Checks every distillation section of the recipe and says what each needs.
fn method_uses(recipe: &Recipe, problems: &mut Vec<String>) -> Vec<MethodUse> {
    let names: Vec<String> = recipe.teachers.iter().map(|t| t.name.clone()).collect();
    let mut sections = vec![("distill".to_string(), recipe.distill.clone())];
    if let Some(c) = &recipe.compare {
        sections.extend(c.methods.iter().enumerate().map(|(i, m)| (format!("compare.methods.{i}.distill"), m.distill.clone())));
    }
    let mut uses = Vec::new();
    for (key, d) in sections {
        let teachers = match d.teacher_indices(&names) {
            Ok(t) => t,
            Err(e) => {
                problems.push(format!("{key}.{e}"));
                continue;
            }
        };
        // Messages of `methods::check` name keys under `distill.`; re-anchor them at `key`.
        let found: Vec<String> = crate::distill::methods::check(&d, teachers.len()).into_iter().map(|p| p.replacen("distill", &key, 1)).collect();
        if d.method != "none" && teachers.is_empty() {
            problems.push(format!("{key}.method `{}` needs at least one entry in teachers", d.method));
        }
        if !found.is_empty() {
            problems.extend(found);
            continue;
        }
        match crate::distill::methods::needs(&d) {
            Ok(needs) => uses.push(MethodUse { key, method: d.method.clone(), distill: d, needs, teachers }),
            Err(e) => problems.push(format!("{key}: {e:#}")),
        }
    }
    uses
}

/// Builds one method against its teachers and the student's tap shapes.
fn try_build_method(recipe: &Recipe, m: &MethodUse, teachers: &[&Teacher], student_taps: Vec<Vec<i64>>, classes: Option<usize>) -> anyhow::Result<()> {
    let setup = crate::distill::methods::Setup::for_models(teachers, student_taps, &m.needs, classes.unwrap_or(0) as i64, Device::Cpu, recipe.train.batch_size as i64)?;
    crate::distill::methods::build(&m.distill, &setup).map(|_| ())
}

/// Checks the `quantize` section against the student's layers (built on the CPU).
fn check_quantize(recipe: &Recipe, q: &crate::recipe::schema::Quantize) -> Vec<String> {
    let classes = class_count(recipe).unwrap_or(10) as i64;
    let spec = crate::zoo::ArchSpec { num_classes: classes, width: recipe.student.width, image_size: recipe.data.image_size as i64 };
    let graph = match crate::student::source::build(&recipe.student, &spec, Device::Cpu) {
        Ok(g) => g,
        // The student's own problem is reported by check_student.
        Err(_) => return crate::quant::stage::check(q, None),
    };
    let mut problems = crate::quant::stage::check(q, Some(&crate::quant::stage::layer_names(&graph)));
    if problems.is_empty() {
        problems.extend(crate::quant::stage::check_layers(q, &graph));
    }
    problems
}

/// Checks the student and returns the shapes of the taps the method needs from it.
fn check_student(recipe: &mut Recipe, base: &Path, device: Device, taps: &[String], problems: &mut Vec<String>) -> Option<Vec<Vec<i64>>> {
    if let Some(path) = recipe.student.onnx.as_mut() {
        *path = base.join(&*path);
    }
    let s = &recipe.student;
    match (&s.arch, &s.onnx) {
        (Some(arch), None) => {
            if !crate::zoo::names().contains(&arch.as_str()) {
                problems.push(format!("student.arch: unknown architecture `{arch}` (known: {})", crate::zoo::names().join(", ")));
                return None;
            }
            if taps.is_empty() {
                return Some(vec![]);
            }
            let classes = class_count(recipe).unwrap_or(10) as i64;
            let spec = crate::zoo::ArchSpec { num_classes: classes, width: s.width, image_size: recipe.data.image_size as i64 };
            let result =
                crate::student::source::build(&recipe.student, &spec, Device::Cpu).and_then(|g| crate::student::resolve_taps(&g, taps));
            match result {
                Ok(t) => Some(t.into_iter().map(|t| t.shape).collect()),
                Err(e) => {
                    problems.push(format!("student: {e:#}"));
                    None
                }
            }
        }
        (None, Some(path)) => {
            if !path.is_file() {
                problems.push(format!("student.onnx: file {} does not exist", path.display()));
                return None;
            }
            let classes = class_count(recipe)?;
            let arch = crate::zoo::ArchSpec { num_classes: classes as i64, width: 1.0, image_size: recipe.data.image_size as i64 };
            let result = crate::student::source::build(&recipe.student, &arch, device).and_then(|g| {
                if taps.is_empty() {
                    Ok(vec![])
                } else {
                    crate::student::resolve_taps(&g, taps)
                }
            });
            match result {
                Ok(t) => Some(t.into_iter().map(|t| t.shape).collect()),
                Err(e) => {
                    problems.push(format!("student: {e:#}"));
                    None
                }
            }
        }
        _ => {
            problems.push("student: give exactly one of `arch` and `onnx`".into());
            None
        }
    }
}

/// The number of classes the data will have, known before loading it: the synthetic spec's,
/// or the number of class folders of the training set.
fn class_count(recipe: &Recipe) -> Option<usize> {
    match recipe.data.format {
        DataFormat::Synthetic => recipe.data.synthetic.as_ref().map(|s| s.num_classes),
        DataFormat::ImageFolder => {
            let dir = recipe.data.train.as_ref()?;
            let entries = std::fs::read_dir(dir).ok()?;
            Some(entries.flatten().filter(|e| e.path().is_dir() && !e.file_name().to_string_lossy().starts_with('.')).count())
        }
    }
}

fn check_data(recipe: &mut Recipe, base: &Path, problems: &mut Vec<String>) {
    let data = &mut recipe.data;
    match data.format {
        DataFormat::ImageFolder => {
            for (key, dir) in [("data.train", &mut data.train), ("data.test", &mut data.test)] {
                match dir {
                    None => problems.push(format!("{key}: required for format image_folder")),
                    Some(d) => {
                        *d = base.join(&*d);
                        if !d.is_dir() {
                            problems.push(format!("{key}: folder {} does not exist", d.display()));
                        }
                    }
                }
            }
        }
        DataFormat::Synthetic => match &data.synthetic {
            None => problems.push("data.synthetic: required for format synthetic (train_size, test_size)".into()),
            Some(s) => {
                let spec = crate::data::synthetic::SyntheticSpec {
                    seed: s.seed,
                    num_classes: s.num_classes,
                    train_size: s.train_size,
                    test_size: s.test_size,
                    image_size: data.image_size,
                };
                if let Err(e) = spec.validate("data.synthetic") {
                    problems.push(format!("{e:#}"));
                }
            }
        },
    }
    let n = &data.normalize;
    let student = Preprocess { layout: Layout::Nchw, scale: n.scale, mean: n.mean, std: n.std };
    if let Err(e) = student.validate("data.normalize") {
        problems.push(format!("{e:#}"));
    }
}
