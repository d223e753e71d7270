//! Distillation: the training loop (N learners in lockstep), one learner's step, the optimizer
//! and schedule, checkpoints, the losses, the connectors and the methods (one file each behind
//! one trait, with their own option rules). The student itself is `student`'s.

pub mod checkpoint;
pub mod connectors;
#[cfg(test)]
pub(crate) mod golden;
pub mod init;
pub mod learner;
pub mod losses;
pub mod methods;
pub mod optim;
pub mod record;
pub mod schedule;
pub mod stats;
pub mod teacher_cache;
pub mod trainer;
