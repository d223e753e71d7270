//! A student and the method of one `distill` section, ready to train: the one set-up that the
//! run, its labels-only baseline, the QAT stage and every entry of a comparison share.

use super::plan::{MethodUse, Plan};
use crate::distill::learner::Learner;
use crate::distill::methods::{self, Setup};
use crate::distill::trainer::{self, Lockstep, TrainInputs, TrainOutcome};
use crate::graph::Graph;
use crate::recipe::schema::Train;
use crate::report::TrainingRecord;
use crate::student::Student;
use crate::teacher::Teacher;
use std::rc::Rc;
use std::time::Instant;

pub struct Distiller {
    pub student: Student,
    /// Shared with the QAT stage, which continues under the same method (connectors, state).
    pub method: Rc<dyn methods::Method>,
    pub usage: MethodUse,
}

impl Distiller {
    /// Builds the method of `usage` for the student `graph` (its taps resolved on it), its own
    /// modules drawn from `seed`.
    pub fn new(plan: &Plan, usage: &MethodUse, graph: Graph, seed: u64) -> anyhow::Result<Distiller> {
        let student = Student::with_taps(graph, plan.device, &usage.needs.student_taps)?;
        let chosen: Vec<&Teacher> = usage.teachers.iter().map(|&i| &plan.teachers[i]).collect();
        let shapes = student.taps().iter().map(|t| t.shape.clone()).collect();
        let setup =
            Setup::for_models(&chosen, shapes, &usage.needs, plan.student.arch.num_classes, plan.device, plan.local_batch_size() as i64, plan.train.epochs)?
                .with_seed(seed);
        let method = Rc::from(methods::build(&usage.distill, &setup)?);
        Ok(Distiller { student, method, usage: usage.clone() })
    }

    /// A fresh student from the seed (the same initial weights for every training that
    /// re-seeds with it) under `usage`.
    pub fn fresh(plan: &Plan, usage: &MethodUse, seed: u64) -> anyhow::Result<Distiller> {
        tch::manual_seed(seed as i64);
        Distiller::new(plan, usage, plan.student.build(plan.device)?, seed)
    }

    /// This student as a learner of the trainer, named `label`.
    pub fn learner(&self, label: &str, teachers: &[Teacher], cfg: &Train) -> anyhow::Result<Learner<'_>> {
        Learner::new(label, &self.student, self.method.as_ref(), &self.usage.needs.teacher_taps, self.usage.teachers.clone(), teachers, &cfg.optimizer.sgd)
    }

    /// Trains under `cfg` alone (the trainer's one-learner case); with no epochs, only measures
    /// the student as it is.
    pub fn train(&self, cfg: &Train, inputs: &TrainInputs) -> anyhow::Result<TrainingRecord> {
        let method = self.usage.distill.method.clone();
        let started = Instant::now();
        if cfg.epochs == 0 {
            let test = inputs.test.student();
            let top1 = crate::metrics::top_k(&self.student.logits(test, inputs.preprocess, 256)?, &test.labels, 1);
            eprintln!("{}: no epochs; the student as given has test top-1 {:.2}%", inputs.label, 100.0 * top1);
            return Ok(TrainingRecord {
                method,
                method_summary: None,
                epochs: vec![],
                best_top1: top1,
                best_epoch: 0,
                final_top1: top1,
                seconds: 0.0,
                teacher_cache: None,
                world_size: inputs.dist.map_or(1, |g| g.world_size),
                communication_seconds: None,
            });
        }
        let communicated = inputs.dist.map(|g| g.seconds());
        let mut lockstep = Lockstep { learners: vec![self.learner(inputs.label, inputs.teachers, cfg)?], keep_best: false };
        let trained = trainer::train(&mut lockstep, cfg, inputs)?;
        let teacher_cache = Some(trained.teacher_cache);
        let TrainOutcome { method_summary, epochs, best_top1, best_epoch, final_top1, .. } =
            trained.outcomes.into_iter().next().expect("one learner, one outcome");
        Ok(TrainingRecord {
            method,
            method_summary,
            epochs,
            best_top1,
            best_epoch,
            final_top1,
            seconds: started.elapsed().as_secs_f64(),
            teacher_cache,
            world_size: inputs.dist.map_or(1, |g| g.world_size),
            communication_seconds: inputs.dist.zip(communicated).map(|(g, before)| g.seconds() - before),
        })
    }
}
