//! AEKD, "Agree to Disagree" (Du et al. 2020; methods.md §3.4): per batch, each teacher's KD
//! gradient with respect to the student logits, averaged over the batch (ḡ_k), and the teacher
//! weights a* = argmin ‖Σ_k a_k ḡ_k‖² over the capped simplex {Σ a = 1, 0 ≤ a ≤ C}, solved
//! exactly in Rust (the reference uses sklearn's ν-OneClassSVM). L_div = Σ_k a*_k·KD_k; the
//! weights are constants.
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
    last: std::cell::RefCell<Option<Vec<f64>>>,
}

/// The capped simplex must hold a point: c_tol in (0, 1] and c_tol·K ≥ 1.
pub fn check(cfg: &Distill, teachers: usize) -> Vec<String> {
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
pub fn weights(g: &Tensor, cap: f64, normalize: bool) -> Vec<f64> {
    let g = g.detach().to_kind(Kind::Double).to_device(tch::Device::Cpu);
    let norms: Vec<f64> = Vec::try_from(&g.norm_scalaropt_dim(2, [1i64].as_slice(), false)).unwrap_or_default();
    let g = if normalize { &g / g.norm_scalaropt_dim(2, [1i64].as_slice(), true).clamp_min(1e-12) } else { g };
    let gram: Vec<f64> = Vec::try_from(&g.matmul(&g.tr()).flatten(0, -1)).unwrap_or_default();
    let k = norms.len();
    let gram: Vec<Vec<f64>> = gram.chunks(k).map(|r| r.to_vec()).collect();
    let mut a = capped_simplex_min_norm(&gram, cap);
    if normalize {
        for (ai, n) in a.iter_mut().zip(&norms) {
            *ai /= n.max(1e-12);
        }
        let s: f64 = a.iter().sum();
        a.iter_mut().for_each(|ai| *ai /= s);
    }
    a
}

/// argmin aᵀGa subject to Σa = 1 and 0 ≤ a ≤ cap (cap·K ≥ 1), exactly: every assignment of the
/// coordinates to "at 0", "free" or "at cap" is tried, the free ones solved from the KKT
/// equations, and the best feasible point kept. K is the number of teachers (3^K systems of at
/// most K + 1 unknowns; K = 8 is 6,561 tiny solves).
pub fn capped_simplex_min_norm(gram: &[Vec<f64>], cap: f64) -> Vec<f64> {
    let k = gram.len();
    if k == 1 {
        return vec![1.0];
    }
    let objective = |a: &[f64]| -> f64 { (0..k).map(|i| (0..k).map(|j| a[i] * gram[i][j] * a[j]).sum::<f64>()).sum() };
    let mut best: Option<(f64, Vec<f64>)> = None;
    let total = 3usize.pow(k as u32);
    for code in 0..total {
        // state per coordinate: 0 = at zero, 1 = free, 2 = at cap
        let state: Vec<usize> = (0..k).map(|i| (code / 3usize.pow(i as u32)) % 3).collect();
        let free: Vec<usize> = (0..k).filter(|&i| state[i] == 1).collect();
        let at_cap: Vec<usize> = (0..k).filter(|&i| state[i] == 2).collect();
        let rest = 1.0 - cap * at_cap.len() as f64;
        let mut a = vec![0.0; k];
        for &i in &at_cap {
            a[i] = cap;
        }
        if free.is_empty() {
            if rest.abs() > 1e-12 {
                continue;
            }
        } else {
            // [2G_FF  −1] [a_F]   [−2 G_FU a_U]
            // [1ᵀ      0] [λ ] = [rest        ]
            let n = free.len();
            let mut m = vec![vec![0.0; n + 2]; n + 1];
            for (r, &i) in free.iter().enumerate() {
                for (c, &j) in free.iter().enumerate() {
                    m[r][c] = 2.0 * gram[i][j];
                }
                m[r][n] = -1.0;
                m[r][n + 1] = -2.0 * at_cap.iter().map(|&j| gram[i][j] * cap).sum::<f64>();
            }
            m[n].iter_mut().take(n).for_each(|v| *v = 1.0);
            m[n][n + 1] = rest;
            let Some(x) = solve(m) else { continue };
            for (r, &i) in free.iter().enumerate() {
                a[i] = x[r];
            }
        }
        if a.iter().any(|&v| v < -1e-9 || v > cap + 1e-9) {
            continue;
        }
        let f = objective(&a);
        if best.as_ref().is_none_or(|(bf, _)| f < *bf - 1e-15) {
            best = Some((f, a));
        }
    }
    let mut a = best.map(|(_, a)| a).unwrap_or_else(|| vec![1.0 / k as f64; k]);
    a.iter_mut().for_each(|v| *v = v.clamp(0.0, cap));
    a
}

/// Gaussian elimination with partial pivoting on an augmented matrix; None when singular.
fn solve(mut m: Vec<Vec<f64>>) -> Option<Vec<f64>> {
    let n = m.len();
    for col in 0..n {
        let pivot = (col..n).max_by(|&a, &b| m[a][col].abs().total_cmp(&m[b][col].abs()))?;
        if m[pivot][col].abs() < 1e-12 {
            return None;
        }
        m.swap(col, pivot);
        for row in 0..n {
            if row != col {
                let f = m[row][col] / m[col][col];
                let pivot_row = m[col].clone();
                for (v, p) in m[row].iter_mut().zip(&pivot_row).skip(col) {
                    *v -= f * p;
                }
            }
        }
    }
    Some((0..n).map(|i| m[i][n] / m[i][i]).collect())
}

impl Aekd {
    fn current_weights(&self, batch: &BatchOutputs) -> Vec<f64> {
        let g = mean_gradients(batch.student, batch.teachers, self.temperature);
        weights(&g, self.o.c_tol, self.o.normalize)
    }
}

impl Method for Aekd {
    fn losses(&self, batch: &BatchOutputs) -> anyhow::Result<Vec<LossTerm>> {
        let a = self.current_weights(batch);
        *self.last.borrow_mut() = Some(a.clone());
        let kd = batch
            .teachers
            .iter()
            .zip(&a)
            .map(|(z, w)| kd_per_sample(batch.student, z, self.temperature).mean(Kind::Float) * *w)
            .reduce(|x, y| x + y)
            .expect("at least one teacher");
        Ok(vec![ce_term(self.ce, batch), LossTerm { name: "kd", value: kd * self.kd }])
    }

    fn teacher_weights(&self, batch: &BatchOutputs) -> anyhow::Result<Option<Tensor>> {
        let a = self.last.borrow().clone().unwrap_or_else(|| self.current_weights(batch));
        Ok(Some(Tensor::from_slice(&a).to_kind(Kind::Float)))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::distill::golden::case;

    #[test]
    fn gradients_weights_and_loss_match_pytorch() {
        let c = case("aekd");
        let (s, ts, t) = (c.input("student"), c.per_teacher("teachers"), c.param("T"));
        let g = mean_gradients(&s, &ts, t);
        c.check("grad_mean", &g, 1e-5);
        let a = weights(&g, c.param("C_tol"), false);
        c.check("weights", &Tensor::from_slice(&a), 1e-5);
        let loss: f64 = ts.iter().zip(&a).map(|(z, w)| kd_per_sample(&s, z, t).mean(Kind::Float).double_value(&[]) * w).sum();
        c.check("loss", &Tensor::from(loss), 1e-5);
    }

    /// methods.md §3.4's two-teacher closed form a = clip(−(g1−g2)·g2 / ‖g1−g2‖², 1−C, C), on the
    /// clipped example of §6.7 and on an interior one.
    #[test]
    fn two_teacher_closed_form() {
        for name in ["aekd_two_teacher", "aekd_two_teacher_interior"] {
            let c = case(name);
            let a = weights(&c.input("grads"), c.param("C_tol"), false);
            c.check("weights", &Tensor::from_slice(&a), 1e-6);
        }
        let gram = vec![vec![1.0, 0.2], vec![0.2, 0.29]]; // g1 = (1, 0), g2 = (0.2, 0.5)
        let a = capped_simplex_min_norm(&gram, 0.6);
        assert!((a[0] - 0.4).abs() < 1e-9 && (a[1] - 0.6).abs() < 1e-9, "{a:?}");
    }

    #[test]
    fn weights_stay_in_the_capped_simplex() {
        tch::manual_seed(3);
        for k in 2..=5 {
            let g = Tensor::randn([k, 7], (Kind::Double, tch::Device::Cpu));
            let cap = (1.0 / k as f64 + 0.6).min(1.0);
            let a = weights(&g, cap, false);
            assert!((a.iter().sum::<f64>() - 1.0).abs() < 1e-9, "{a:?}");
            assert!(a.iter().all(|&v| (0.0..=cap + 1e-12).contains(&v)), "{a:?}");
        }
    }
}
