//! Distillation: the trainable student, the optimizer and schedule, the losses, the methods
//! (one file each behind one trait), and the training loop.

pub mod checkpoint;
pub mod connectors;
#[cfg(test)]
pub(crate) mod golden;
pub mod learner;
pub mod losses;
pub mod methods;
pub mod optim;
pub mod record;
pub mod schedule;
pub mod trainer;
