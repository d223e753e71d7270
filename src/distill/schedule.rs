//! Learning-rate schedules, computed by hand each step (tch has no schedulers): step decay set at
//! epoch start (epochs count from 1; the decay applies once the epoch exceeds a milestone, as in
//! the reference CIFAR code) and cosine decay per step.

use crate::recipe::schema::Schedule;

/// The learning rate for `step` (0-based, global) of `total_steps`, in `epoch` (1-based).
pub fn lr_at(schedule: &Schedule, base: f64, epoch: usize, step: usize, total_steps: usize) -> f64 {
    if let Some(s) = &schedule.step {
        let passed = s.milestones.iter().filter(|&&m| epoch > m).count() as i32;
        return base * s.gamma.powi(passed);
    }
    let progress = step as f64 / total_steps.max(1) as f64;
    0.5 * base * (1.0 + (std::f64::consts::PI * progress).cos())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::recipe::schema::StepSchedule;

    #[test]
    fn step_decays_after_each_milestone() {
        let s = Schedule { step: Some(StepSchedule { milestones: vec![150, 180, 210], gamma: 0.1 }), cosine: None };
        assert_eq!(lr_at(&s, 0.05, 150, 0, 1), 0.05);
        assert!((lr_at(&s, 0.05, 151, 0, 1) - 0.005).abs() < 1e-12);
        assert!((lr_at(&s, 0.05, 211, 0, 1) - 0.00005).abs() < 1e-12);
    }

    #[test]
    fn cosine_starts_at_base_and_halves_midway() {
        let s = Schedule::default();
        assert_eq!(lr_at(&s, 0.1, 1, 0, 100), 0.1);
        assert!((lr_at(&s, 0.1, 1, 50, 100) - 0.05).abs() < 1e-12);
        assert!(lr_at(&s, 0.1, 1, 100, 100).abs() < 1e-12);
    }
}
