//! AEKD, "Agree to Disagree" (Du et al. 2020; methods.md §3.4): per batch, each teacher's KD
//! gradient with respect to the student logits, averaged over the batch (ḡ_k), and the teacher
//! weights a* = argmin ‖Σ_k a_k ḡ_k‖² over the capped simplex {Σ a = 1, 0 ≤ a ≤ C}, solved
//! exactly on the device by enumerating the KKT systems in one batched solve (the reference uses
//! sklearn's ν-OneClassSVM), so the step reads nothing back. L_div = Σ_k a*_k·KD_k; the weights
//! are constants.
//!
//! ḡ_k needs no extra backward pass: ∂(batch-mean T²·KL(p_k‖p_s))/∂z_s = T·(p_s − p_k)/B.

use super::{ce_term, BatchOutputs, LossTerm, Method, Setup};
use crate::distill::losses::kd_per_sample;
use crate::recipe::schema::{AekdOptions, Distill};
use tch::{Kind, Tensor};

pub struct Aekd {
    ce: f64,
    kd: f64,
    temperature: f64,
    o: AekdOptions,
    /// The weights of the last `losses` call, reported by `teacher_weights` without solving again.
    last: std::cell::RefCell<Option<Tensor>>,
}

/// The most teachers the exact solve takes: 3^K KKT systems of K + 1 unknowns are solved at
/// once, 59,049 for 10 (under 100 MB); each teacher more triples that.
pub const MAX_TEACHERS: usize = 10;

/// The capped simplex must hold a point: c_tol in (0, 1] and c_tol·K ≥ 1; and at most
/// [`MAX_TEACHERS`] teachers.
pub fn check(cfg: &Distill, teachers: usize) -> Vec<String> {
    if teachers > MAX_TEACHERS {
        return vec![format!(
            "distill.method: aekd solves its teacher weights exactly over 3^K assignments and takes at most {MAX_TEACHERS} teachers, this recipe gives {teachers} (list fewer in distill.teachers)"
        )];
    }
    match &cfg.aekd {
        Some(a) if !(a.c_tol > 0.0 && a.c_tol <= 1.0) || (teachers > 1 && a.c_tol * (teachers as f64) < 1.0) => {
            vec![format!("distill.aekd.c_tol: {} leaves no weights summing to 1 over {teachers} teachers (needs c_tol·K ≥ 1, c_tol ≤ 1)", a.c_tol)]
        }
        _ => Vec::new(),
    }
}

pub fn build(cfg: &Distill, _: &Setup) -> anyhow::Result<Box<dyn Method>> {
    Ok(Box::new(Aekd {
        ce: cfg.loss_weights.ce,
        kd: cfg.loss_weights.kd,
        temperature: cfg.temperature,
        o: cfg.aekd.clone().unwrap_or_default(),
        last: Default::default(),
    }))
}

/// ḡ_k, the batch mean of the gradient of teacher k's batch-mean KD loss with respect to the
/// student logits: [K, C].
pub fn mean_gradients(student: &Tensor, teachers: &[Tensor], t: f64) -> Tensor {
    let b = student.size()[0] as f64;
    let ps = (student.detach() / t).softmax(1, Kind::Float);
    let g: Vec<Tensor> = teachers.iter().map(|z| ((&ps - (z / t).softmax(1, Kind::Float)) * (t / b)).mean_dim(0, false, Kind::Float)).collect();
    Tensor::stack(&g, 0)
}

/// The teacher weights for gradients `g` [K, C]: the min-norm point of their convex hull with
/// every weight at most `cap`; with `normalize`, solved on unit vectors and rescaled by 1/‖ḡ_k‖.
/// A [K] tensor on `g`'s device, computed there without reading anything back.
pub fn weights(g: &Tensor, cap: f64, normalize: bool) -> Tensor {
    let g = g.detach().to_kind(Kind::Double);
    let norms = g.norm_scalaropt_dim(2, [1i64].as_slice(), false).clamp_min(1e-12);
    let unit = if normalize { &g / norms.unsqueeze(1) } else { g.shallow_clone() };
    let a = capped_simplex_min_norm(&unit.matmul(&unit.tr()), cap);
    if normalize {
        let a = a / norms;
        &a / a.sum(Kind::Double)
    } else {
        a
    }
}

/// argmin aᵀGa subject to Σa = 1 and 0 ≤ a ≤ cap (cap·K ≥ 1) for a Gram matrix G [K, K],
/// exactly and on G's device: every assignment of the coordinates to "at 0", "free" or "at cap"
/// (3^K of them; K = 8 is 6,561, and [`MAX_TEACHERS`] bounds K) is one (K+1)-unknown KKT system, all solved in one batched call
/// without error checks (a singular system is simply not a candidate), and the feasible
/// solution of least objective is kept. No value is read back to the host.
///
/// The system of an assignment, unknowns (a, λ): a free coordinate's row is 2(Ga)_i − λ = 0,
/// a fixed one's a_i = 0 or cap, and the last row Σa = 1. Without free coordinates λ has no
/// equation: its row becomes λ = 0, and Σa = 1 is checked instead of imposed.
pub fn capped_simplex_min_norm(gram: &Tensor, cap: f64) -> Tensor {
    let k = gram.size()[0];
    let (kind, device) = (Kind::Double, gram.device());
    if k == 1 {
        return Tensor::ones([1], (kind, device));
    }
    let states = crate::host::upload(&assignments(k), device).expect("uploading the 3^K assignments");
    let free = states.eq(1).to_kind(kind);
    let fixed = states.eq(2).to_kind(kind) * cap;
    let s = states.size()[0];
    let eye = Tensor::eye(k, (kind, device));
    let top_left = free.unsqueeze(2) * (gram.to_kind(kind) * 2.0).unsqueeze(0) + (free.neg() + 1.0).unsqueeze(2) * eye.unsqueeze(0);
    let none_free = free.sum_dim_intlist([1i64].as_slice(), true, kind).eq(0.0).to_kind(kind);
    let top = Tensor::cat(&[top_left, -free.unsqueeze(2)], 2);
    let bottom = Tensor::cat(&[(none_free.neg() + 1.0).expand([s, k], false), none_free.shallow_clone()], 1).unsqueeze(1);
    let m = Tensor::cat(&[top, bottom], 1);
    let rhs = Tensor::cat(&[(free.neg() + 1.0) * &fixed, none_free.neg() + 1.0], 1).unsqueeze(2);
    let (x, info) = Tensor::linalg_solve_ex(&m, &rhs, true, false);
    let a = x.narrow(1, 0, k).squeeze_dim(2);
    let feasible = a
        .isfinite()
        .all_dim(1, false)
        .logical_and(&info.eq(0))
        .logical_and(&a.ge(-1e-9).all_dim(1, false))
        .logical_and(&a.le(cap + 1e-9).all_dim(1, false))
        .logical_and(&(a.sum_dim_intlist([1i64].as_slice(), false, kind) - 1.0).abs().le(1e-9));
    let a = a.where_self(&feasible.unsqueeze(1), &a.zeros_like());
    let objective = (a.matmul(&gram.to_kind(kind)) * &a).sum_dim_intlist([1i64].as_slice(), false, kind);
    let objective = objective.where_self(&feasible, &Tensor::full([], f64::INFINITY, (kind, device)));
    let best = objective.argmin(0, false);
    let found = objective.index_select(0, &best.unsqueeze(0)).isfinite();
    let a = a.index_select(0, &best.unsqueeze(0)).squeeze_dim(0);
    let uniform = Tensor::full([k], 1.0 / k as f64, (kind, device));
    a.where_self(&found, &uniform).clamp(0.0, cap)
}

/// Every assignment of `k` coordinates to 0 (at zero), 1 (free) or 2 (at cap), coordinate i the
/// i-th base-3 digit of the row number: [3^k, k] int64 on the host.
fn assignments(k: i64) -> Tensor {
    let total = 3i64.pow(k as u32);
    let codes: Vec<i64> = (0..total).flat_map(|code| (0..k).map(move |i| (code / 3i64.pow(i as u32)) % 3)).collect();
    Tensor::from_slice(&codes).view([total, k])
}

impl Aekd {
    /// The weights for this batch. In a data-parallel run the ranks' mean gradients are
    /// averaged first: that is the whole batch's ḡ up to one common factor (each rank's b is
    /// B / world), to which the min-norm weights are blind, so every rank solves the same system.
    fn current_weights(&self, batch: &BatchOutputs) -> anyhow::Result<Tensor> {
        let g = mean_gradients(batch.student, batch.teachers, self.temperature);
        if let Some(group) = batch.dist {
            group.allreduce_mean(&[&g])?;
        }
        Ok(weights(&g, self.o.c_tol, self.o.normalize))
    }
}

impl Method for Aekd {
    fn losses(&self, batch: &BatchOutputs) -> anyhow::Result<Vec<LossTerm>> {
        let a = self.current_weights(batch)?;
        *self.last.borrow_mut() = Some(a.shallow_clone());
        let a = a.to_kind(Kind::Float);
        let kd = batch
            .teachers
            .iter()
            .enumerate()
            .map(|(k, z)| kd_per_sample(batch.student, z, self.temperature).mean(Kind::Float) * a.get(k as i64))
            .reduce(|x, y| x + y)
            .expect("at least one teacher");
        Ok(vec![ce_term(self.ce, batch), LossTerm { name: "kd", value: kd * self.kd }])
    }

    fn teacher_weights(&self, batch: &BatchOutputs) -> anyhow::Result<Option<Tensor>> {
        let last = self.last.borrow().as_ref().map(Tensor::shallow_clone);
        let a = match last {
            Some(a) => a,
            None => self.current_weights(batch)?,
        };
        Ok(Some(a.to_kind(Kind::Float)))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::distill::golden::case;
    use crate::host::HostRead;

    #[test]
    fn too_many_teachers_are_refused_by_key() {
        let cfg = Distill { method: "aekd".into(), ..Default::default() };
        assert!(check(&cfg, MAX_TEACHERS).is_empty());
        let problems = check(&cfg, MAX_TEACHERS + 1);
        assert!(problems.len() == 1 && problems[0].starts_with("distill.method: aekd") && problems[0].contains("at most 10"), "{problems:?}");
    }

    #[test]
    fn gradients_weights_and_loss_match_pytorch() {
        let c = case("aekd");
        let (s, ts, t) = (c.input("student"), c.per_teacher("teachers"), c.param("T"));
        let g = mean_gradients(&s, &ts, t);
        c.check("grad_mean", &g, 1e-5);
        let a = weights(&g, c.param("C_tol"), false);
        c.check("weights", &a, 1e-5);
        let loss: f64 = ts.iter().enumerate().map(|(k, z)| kd_per_sample(&s, z, t).mean(Kind::Float).read_f64() * a.get(k as i64).read_f64()).sum();
        c.check("loss", &Tensor::from(loss), 1e-5);
    }

    /// methods.md §3.4's two-teacher closed form a = clip(−(g1−g2)·g2 / ‖g1−g2‖², 1−C, C), on the
    /// clipped example of §6.7 and on an interior one.
    #[test]
    fn two_teacher_closed_form() {
        for name in ["aekd_two_teacher", "aekd_two_teacher_interior"] {
            let c = case(name);
            let a = weights(&c.input("grads"), c.param("C_tol"), false);
            c.check("weights", &a, 1e-6);
        }
        // g1 = (1, 0), g2 = (0.2, 0.5)
        let gram = Tensor::from_slice(&[1.0f64, 0.2, 0.2, 0.29]).view([2, 2]);
        let a = crate::host::vec::<f64>(&capped_simplex_min_norm(&gram, 0.6)).unwrap();
        assert!((a[0] - 0.4).abs() < 1e-9 && (a[1] - 0.6).abs() < 1e-9, "{a:?}");
    }

    /// The batched solve is never worse than a brute-force search over a fine grid of the capped
    /// simplex, for 2 to 4 teachers, and stays in the simplex; duplicate teachers (a singular
    /// Gram matrix) are handled.
    #[test]
    fn weights_are_the_capped_simplex_minimum() {
        let mut rng = crate::data::rng::Rng::new(3);
        for k in 2..=4i64 {
            for trial in 0..4 {
                let mut data: Vec<f64> = (0..k * 5).map(|_| rng.normal()).collect();
                if trial == 3 {
                    // Teacher 1 repeats teacher 0.
                    let (a, b) = data.split_at_mut(5);
                    b[..5].copy_from_slice(a);
                }
                let g = Tensor::from_slice(&data).view([k, 5]);
                let cap = (1.0 / k as f64 + 0.45).min(1.0);
                let a = crate::host::vec::<f64>(&weights(&g, cap, false)).unwrap();
                assert!((a.iter().sum::<f64>() - 1.0).abs() < 1e-9, "{a:?}");
                assert!(a.iter().all(|&v| (0.0..=cap + 1e-12).contains(&v)), "{a:?}");
                let gram = crate::host::vec::<f64>(&g.matmul(&g.tr()).view([-1])).unwrap();
                let f = |w: &[f64]| (0..k as usize).map(|i| (0..k as usize).map(|j| w[i] * gram[i * k as usize + j] * w[j]).sum::<f64>()).sum::<f64>();
                let steps = 60;
                let mut best = f64::INFINITY;
                let mut w = vec![0.0; k as usize];
                let mut grid = |w: &mut Vec<f64>| {
                    let last = 1.0 - w[..k as usize - 1].iter().sum::<f64>();
                    w[k as usize - 1] = last;
                    if (0.0..=cap).contains(&last) && w.iter().all(|&v| v <= cap) {
                        best = best.min(f(w));
                    }
                };
                let n = (steps + 1) as u64;
                for code in 0..n.pow(k as u32 - 1) {
                    for (i, wi) in w.iter_mut().take(k as usize - 1).enumerate() {
                        *wi = ((code / n.pow(i as u32)) % n) as f64 / steps as f64;
                    }
                    grid(&mut w);
                }
                let ours = f(&a);
                assert!(ours <= best + 1e-12, "k={k} trial {trial}: {ours} > grid {best}");
            }
        }
    }
}
