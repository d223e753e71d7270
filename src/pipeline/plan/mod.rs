//! Plan resolution: the recipe parsed strictly, overrides applied, paths resolved against the
//! recipe's folder, the device chosen, teachers loaded and every op checked. Each section's check
//! returns its problems, each naming its key; all are reported together, before any training.
//! What comes out is typed and ready: the stages take their part of the plan and derive nothing.

mod data;
mod methods;
mod sections;
mod student;
mod teachers;

pub use data::{DataPlan, DataSource};
pub use methods::MethodUse;
pub use student::StudentPlan;

use crate::bad_input;
use crate::recipe::schema::{Compare, Export, Gate, Quantize, Recipe, Train};
use crate::teacher::Teacher;
use std::path::{Path, PathBuf};
use tch::Device;

/// A section resolved, or its problems (each naming its key).
pub type Checked<T> = Result<T, Vec<String>>;

/// The recipe resolved: what every stage needs, checked and typed.
pub struct Plan {
    /// The recipe's `name` (the default output folder).
    pub name: String,
    /// The recipe after overrides, as YAML (written to `recipe.resolved.yaml`).
    pub resolved_yaml: String,
    pub recipe_sha256: String,
    pub device: Device,
    pub seed: u64,
    /// libtorch CPU threads (0: libtorch's default).
    pub threads: usize,
    pub data: DataPlan,
    pub student: StudentPlan,
    pub teachers: Vec<Teacher>,
    /// The run's method (`distill`).
    pub method: MethodUse,
    /// The methods of `compare`, in order, with its seeds.
    pub compare: Option<(Compare, Vec<MethodUse>)>,
    pub train: Train,
    /// Whether the run also trains the labels-only baseline (`train.baseline` with a method).
    pub baseline: bool,
    pub export: Export,
    pub gates: Vec<Gate>,
    pub quantize: Option<Quantize>,
    /// The data-parallel launch this process is part of (torchrun's environment), if any.
    pub world: Option<crate::dist::Launch>,
}

impl Plan {
    pub fn resolve(path: &Path, sets: &[String], device_override: Option<&str>) -> anyhow::Result<Plan> {
        let (mut recipe, resolved_yaml) = crate::recipe::parse(path, sets)?;
        let base = path.parent().unwrap_or(Path::new(".")).to_path_buf();
        let mut problems = check_version(&recipe);
        let world = crate::dist::Launch::from_env()?;
        let device = resolve_device(&recipe, device_override, &mut problems);
        let spec = device_override.unwrap_or(&recipe.device);
        let device = match &world {
            Some(w) if !spec.trim().starts_with("cuda:") => data_parallel_device(device, w, &mut problems),
            _ => device,
        };
        if let Some(w) = &world {
            problems.extend(check_data_parallel(&recipe, w));
        }
        let data = data::resolve(&mut recipe, &base);
        let (uses, method_problems) = methods::resolve(&recipe);
        let classes = data::class_count(&recipe);
        let student = student::resolve(&mut recipe, &base, device, classes, &methods::student_taps(&uses));
        let section_problems = sections::check(&recipe, student.as_ref().ok());
        let teachers = teachers::load(&mut recipe, &base, device, classes, &uses)?;
        for found in
            [data.as_ref().err(), Some(&method_problems), student.as_ref().err(), Some(&section_problems), teachers.as_ref().err()].into_iter().flatten()
        {
            problems.extend(found.iter().cloned());
        }
        if let (Ok(d), Ok(all)) = (&data, &teachers) {
            problems.extend(data::check_resident(d, all));
        }
        if problems.is_empty() {
            if let (Ok(s), Ok(all)) = (&student, &teachers) {
                let local_batch = recipe.train.batch_size / world.as_ref().map_or(1, |w| w.world_size);
                problems.extend(methods::try_build(&uses, s, all, local_batch.max(1), recipe.train.epochs));
            }
        }
        match (data, student, teachers) {
            (Ok(data), Ok(student), Ok(teachers)) if problems.is_empty() => {
                Ok(Plan { world, ..assemble(recipe, resolved_yaml, device, data, student, teachers, uses) })
            }
            _ => {
                let placed = crate::recipe::place_problems(path, sets, &problems);
                Err(bad_input!("recipe {} has {} problem(s):\n  - {}", path.display(), placed.len().max(1), placed.join("\n  - ")))
            }
        }
    }

    /// The image sizes the models take: the student's first, then each teacher's own.
    pub fn model_sizes(&self) -> Vec<(i64, i64)> {
        let s = self.data.image_size as i64;
        crate::data::feed::distinct_sizes((s, s), self.teachers.iter().map(|t| t.input_hw))
    }

    /// The batch one process steps on: the global `train.batch_size`, split over the ranks of a
    /// data-parallel run (MMKD's weighting networks take a batch of this size).
    pub fn local_batch_size(&self) -> usize {
        self.train.batch_size / self.world.as_ref().map_or(1, |w| w.world_size)
    }

    /// The teacher records a checkpoint must match.
    pub fn teacher_hashes(&self) -> Vec<String> {
        self.teachers.iter().map(|t| t.sha256.clone()).collect()
    }
}

fn check_version(recipe: &Recipe) -> Vec<String> {
    match recipe.version {
        1 => vec![],
        v => vec![format!("version: {v} is not supported (this tool reads version 1)")],
    }
}

/// The device from the command line or the recipe.
fn resolve_device(recipe: &Recipe, device_override: Option<&str>, problems: &mut Vec<String>) -> Device {
    crate::device::resolve(device_override.unwrap_or(&recipe.device)).unwrap_or_else(|e| {
        problems.push(format!("device: {e}"));
        Device::Cpu
    })
}

/// The resolved plan from a recipe without problems.
fn assemble(
    recipe: Recipe,
    resolved_yaml: String,
    device: Device,
    data: DataPlan,
    student: StudentPlan,
    teachers: Vec<Teacher>,
    mut uses: Vec<MethodUse>,
) -> Plan {
    let recipe_sha256 = crate::fsio::sha256_hex(resolved_yaml.as_bytes());
    let method = uses.remove(0);
    let compare = recipe.compare.map(|c| (c, uses));
    Plan {
        name: recipe.name,
        resolved_yaml,
        recipe_sha256,
        device,
        seed: recipe.seed,
        threads: recipe.train.threads,
        data,
        student,
        teachers,
        baseline: recipe.train.baseline && method.distill.method != "none",
        method,
        compare,
        train: recipe.train,
        export: recipe.export,
        gates: recipe.validate.gates,
        quantize: recipe.quantize,
        world: None,
    }
}

/// A data-parallel rank's device: on CUDA each rank takes `cuda:LOCAL_RANK`, as torchrun
/// expects (one process per GPU), unless the recipe or `--device` names an index.
fn data_parallel_device(device: Device, w: &crate::dist::Launch, problems: &mut Vec<String>) -> Device {
    match device {
        Device::Cuda(_) => {
            let count = tch::Cuda::device_count().max(0) as usize;
            if w.local_rank >= count {
                problems.push(format!(
                    "device: LOCAL_RANK={} needs cuda:{} but this node has {count} CUDA device(s) (one process per GPU)",
                    w.local_rank, w.local_rank
                ));
            }
            Device::Cuda(w.local_rank)
        }
        other => other,
    }
}

/// What a data-parallel run (WORLD_SIZE > 1) requires of the recipe.
fn check_data_parallel(recipe: &Recipe, w: &crate::dist::Launch) -> Vec<String> {
    let mut problems = Vec::new();
    let b = recipe.train.batch_size;
    if b > 0 && !b.is_multiple_of(w.world_size) {
        problems.push(format!(
            "train.batch_size: {b} is the global batch and must split evenly over WORLD_SIZE={} processes (each takes {:.1})",
            w.world_size,
            b as f64 / w.world_size as f64
        ));
    }
    problems
}

/// Where a run writes when no `--out` is given.
pub fn default_out(name: &str) -> PathBuf {
    Path::new("out").join(name)
}
