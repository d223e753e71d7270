//! AVER (methods.md §3.1): the mean over teachers of the batch-mean KD loss, uniform fixed
//! weights. L = γ·CE + α·(1/K)·Σ_k (1/B)·Σ_i T²·KL(p_k ‖ p_s).

use super::{ce_term, BatchOutputs, LossTerm, Method, Setup};
use crate::distill::losses::kd_per_sample;
use crate::recipe::schema::Distill;
use tch::{Kind, Tensor};

pub struct Aver {
    pub ce: f64,
    pub kd: f64,
    pub temperature: f64,
}

pub fn build(cfg: &Distill, _: &Setup) -> anyhow::Result<Box<dyn Method>> {
    Ok(Box::new(Aver { ce: cfg.loss_weights.ce, kd: cfg.loss_weights.kd, temperature: cfg.temperature }))
}

/// The unweighted AVER KD term (scalar).
pub fn aver_kd(student: &Tensor, teachers: &[Tensor], t: f64) -> Tensor {
    let per_teacher: Vec<Tensor> = teachers.iter().map(|z| kd_per_sample(student, z, t).mean(Kind::Float)).collect();
    Tensor::stack(&per_teacher, 0).mean(Kind::Float)
}

impl Method for Aver {
    fn losses(&self, batch: &BatchOutputs) -> anyhow::Result<Vec<LossTerm>> {
        let kd = aver_kd(batch.student, batch.teachers, self.temperature);
        Ok(vec![ce_term(self.ce, batch), LossTerm { name: "kd", value: kd * self.kd }])
    }

    fn teacher_weights(&self, batch: &BatchOutputs) -> anyhow::Result<Option<Tensor>> {
        let k = batch.teachers.len() as i64;
        Ok(Some(Tensor::full([k], 1.0 / k as f64, (Kind::Float, batch.student.device()))))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::distill::losses::golden::*;
    use crate::host::HostRead;

    #[test]
    fn aver_matches_methods_md_golden_value() {
        let got = aver_kd(&student(), &teachers(), T).read_f64();
        assert!((got - 0.350091).abs() < 1e-5, "{got}");
    }

    #[test]
    fn aver_matches_pytorch_fixture() {
        let c = crate::distill::golden::case("aver");
        c.check("loss", &aver_kd(&c.input("student"), &c.per_teacher("teachers"), c.param("T")), 1e-5);
    }
}
