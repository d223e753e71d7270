//! Per-sample loss building blocks shared by the methods (methods.md §1.1), computed in
//! log-space for stability.

use tch::Tensor;

/// T²·KL(softmax(z_t/T) ‖ softmax(z_s/T)) per sample. Shapes: z_s, z_t [B, C] → [B].
pub fn kd_per_sample(student: &Tensor, teacher: &Tensor, t: f64) -> Tensor {
    let k = student.kind();
    let log_ps = (student / t).log_softmax(1, k);
    let log_pt = (teacher / t).log_softmax(1, k);
    (log_pt.exp() * (&log_pt - log_ps)).sum_dim_intlist(1, false, k) * (t * t)
}

/// Cross-entropy at temperature 1 per sample. Shapes: z [B, C], y [B] int64 → [B].
pub fn ce_per_sample(logits: &Tensor, labels: &Tensor) -> Tensor {
    -logits.log_softmax(1, logits.kind()).gather(1, &labels.unsqueeze(1), false).squeeze_dim(1)
}

/// log of the binary (target, non-target) distribution of softmax(z/T) per sample, computed in
/// log-space so 1 − p_target never underflows: [B, 2].
fn log_binary(logits: &Tensor, labels: &Tensor, t: f64) -> Tensor {
    let log_p = (logits / t).log_softmax(1, logits.kind());
    let target = log_p.gather(1, &labels.unsqueeze(1), false);
    let others = log_p.where_self(&non_target_mask(logits, labels), &Tensor::full_like(&log_p, f64::NEG_INFINITY));
    Tensor::cat(&[target, others.logsumexp(&[1i64][..], true)], 1)
}

/// true where the class is not the label: [B, C] bool.
fn non_target_mask(logits: &Tensor, labels: &Tensor) -> Tensor {
    logits.zeros_like().scatter_value(1, &labels.unsqueeze(1), 1.0).eq(0.0)
}

/// log-softmax over the non-target classes of z/T, the target pushed out by −1000 as in
/// mdistiller's DKD: [B, C].
fn log_non_target(logits: &Tensor, labels: &Tensor, t: f64) -> Tensor {
    let gt = logits.zeros_like().scatter_value(1, &labels.unsqueeze(1), 1.0);
    (logits / t - gt * 1000.0).log_softmax(1, logits.kind())
}

/// KL(p ‖ q) per sample from log-probabilities [B, n] → [B].
fn kl_from_logs(log_p: &Tensor, log_q: &Tensor) -> Tensor {
    (log_p.exp() * (log_p - log_q)).sum_dim_intlist(1, false, log_p.kind())
}

/// DKD's two parts per sample (methods.md §2.3), each already times T²:
/// TCKD = T²·KL(b_t ‖ b_s) on the binary target/non-target split and
/// NCKD = T²·KL(p̂_t ‖ p̂_s) on the distributions over non-target classes. Shapes [B] each.
pub fn dkd_per_sample(student: &Tensor, teacher: &Tensor, labels: &Tensor, t: f64) -> (Tensor, Tensor) {
    let tckd = kl_from_logs(&log_binary(teacher, labels, t), &log_binary(student, labels, t)) * (t * t);
    let nckd = kl_from_logs(&log_non_target(teacher, labels, t), &log_non_target(student, labels, t)) * (t * t);
    (tckd, nckd)
}

/// Entropy of softmax(z/T) per sample: [B, C] → [B].
pub fn entropy(logits: &Tensor, t: f64) -> Tensor {
    let log_p = (logits / t).log_softmax(1, logits.kind());
    -(log_p.exp() * log_p).sum_dim_intlist(1, false, logits.kind())
}

/// Entropy of the binary target/non-target split of softmax(z/T) per sample: [B].
pub fn target_entropy(logits: &Tensor, labels: &Tensor, t: f64) -> Tensor {
    let log_b = log_binary(logits, labels, t);
    -(log_b.exp() * log_b).sum_dim_intlist(1, false, logits.kind())
}

/// Entropy of the distribution over non-target classes of softmax(z/T) per sample: [B].
pub fn non_target_entropy(logits: &Tensor, labels: &Tensor, t: f64) -> Tensor {
    let log_p = log_non_target(logits, labels, t);
    let p = log_p.exp();
    // The target's probability is exp(−1000/…) = 0; 0·log 0 is taken as 0.
    -(p * log_p).where_self(&non_target_mask(logits, labels), &Tensor::zeros([], (logits.kind(), logits.device()))).sum_dim_intlist(1, false, logits.kind())
}

/// Mean squared error per sample over every non-batch element: [B, ...] → [B].
pub fn mse_per_sample(a: &Tensor, b: &Tensor) -> Tensor {
    (a - b).square().flatten(1, -1).mean_dim(1, false, a.kind())
}

#[cfg(test)]
pub(crate) mod golden {
    //! The fixed inputs of methods.md §6.7 (`golden_vectors.py`): B=2, C=4, K=3, T=4.
    use tch::Tensor;

    pub const T: f64 = 4.0;

    pub fn labels() -> Tensor {
        Tensor::from_slice(&[0i64, 2])
    }

    pub fn student() -> Tensor {
        Tensor::from_slice(&[1.0f32, 0.5, -0.3, 0.2, 0.1, 0.3, 0.8, -0.5]).reshape([2, 4])
    }

    pub fn teachers() -> Vec<Tensor> {
        [[3.0f32, 0.2, -1.0, 0.5, 0.0, 0.4, 2.5, -0.2], [1.5, 1.2, 0.1, -0.4, 1.0, 0.9, 0.7, 0.0], [0.2, 2.0, -0.5, 0.3, -0.3, 0.2, 3.0, 0.1]]
            .iter()
            .map(|v| Tensor::from_slice(v).reshape([2, 4]))
            .collect()
    }

    pub fn values(t: &Tensor) -> Vec<f64> {
        crate::host::vec::<f64>(&t.to_kind(tch::Kind::Double).flatten(0, -1)).unwrap()
    }

    pub fn assert_close(got: &[f64], want: &[f64], tol: f64) {
        assert_eq!(got.len(), want.len(), "{got:?} vs {want:?}");
        for (g, w) in got.iter().zip(want) {
            assert!((g - w).abs() <= tol, "got {got:?}, want {want:?}");
        }
    }
}

#[cfg(test)]
mod tests {
    use super::golden::*;
    use super::*;
    use crate::host::HostRead;
    use tch::Kind;

    #[test]
    fn kd_and_ce_match_methods_md_golden_values() {
        let kl: Vec<Vec<f64>> = teachers().iter().map(|t| values(&kd_per_sample(&student(), t, T))).collect();
        assert_close(&kl[0], &[0.609945, 0.300357], 1e-5);
        assert_close(&kl[1], &[0.112719, 0.069486], 1e-5);
        assert_close(&kl[2], &[0.408105, 0.599934], 1e-5);
        let ce: Vec<Vec<f64>> = teachers().iter().map(|t| values(&ce_per_sample(t, &labels()))).collect();
        assert_close(&ce[0], &[0.149463, 0.240391], 1e-5);
        assert_close(&ce[2], &[2.157722, 0.142121], 1e-5);
    }

    #[test]
    fn dkd_matches_methods_md_golden_values() {
        let (tckd, nckd) = dkd_per_sample(&student(), &teachers()[0], &labels(), T);
        let (tckd, nckd) = (tckd.mean(Kind::Float).read_f64(), nckd.mean(Kind::Float).read_f64());
        assert!((tckd - 0.427302).abs() < 1e-5, "{tckd}");
        assert!((nckd - 0.047336).abs() < 1e-5, "{nckd}");
        assert!((tckd + 8.0 * nckd - 0.805991).abs() < 1e-5);
    }

    #[test]
    fn ce_kd_and_dkd_match_pytorch_fixtures() {
        use crate::distill::golden::case;
        let c = case("ce");
        c.check("ce", &ce_per_sample(&c.input("logits"), &c.labels("labels")), 1e-5);
        for name in ["kd", "kd_t1"] {
            let c = case(name);
            let kl = kd_per_sample(&c.input("student"), &c.input("teacher"), c.param("T"));
            c.check("kl", &kl, 1e-5);
            c.check("kd_batchmean", &kl.mean(Kind::Float), 1e-5);
        }
        let c = case("dkd");
        let (s, t, y) = (c.input("student"), c.input("teacher"), c.labels("labels"));
        let (tckd, nckd) = dkd_per_sample(&s, &t, &y, c.param("T"));
        c.check("tckd", &tckd, 1e-5);
        c.check("nckd", &nckd, 1e-5);
        let loss = tckd.mean(Kind::Float) * c.param("alpha") + nckd.mean(Kind::Float) * c.param("beta");
        c.check("loss", &loss, 1e-5);
    }

    /// The DKD identity of methods.md §2.3: T²·KL(p_t‖p_s) = TCKD + (1 − p_t,g)·NCKD per sample.
    #[test]
    fn dkd_parts_recompose_kd() {
        use crate::distill::golden::case;
        let c = case("dkd");
        let (s, t, y, temp) = (c.input("student"), c.input("teacher"), c.labels("labels"), c.param("T"));
        let (tckd, nckd) = dkd_per_sample(&s, &t, &y, temp);
        let p_target = (&t / temp).softmax(1, Kind::Float).gather(1, &y.unsqueeze(1), false).squeeze_dim(1);
        let recomposed: Tensor = tckd + (1.0 - p_target) * nckd;
        let gap = (recomposed - kd_per_sample(&s, &t, temp)).abs().max().read_f64();
        assert!(gap < 1e-5, "{gap}");
    }

    #[test]
    fn fitnets_mse_matches_pytorch_fixture() {
        use crate::distill::golden::case;
        let c = case("fitnets_mse");
        c.check("mse", &mse_per_sample(&c.input("student_hint"), &c.input("teacher")).mean(Kind::Float), 1e-5);
    }
}
