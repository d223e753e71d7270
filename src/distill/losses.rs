//! Per-sample loss building blocks shared by the methods (methods.md §1.1), computed in
//! log-space for stability.

use tch::{Kind, Tensor};

/// T²·KL(softmax(z_t/T) ‖ softmax(z_s/T)) per sample. Shapes: z_s, z_t [B, C] → [B].
pub fn kd_per_sample(student: &Tensor, teacher: &Tensor, t: f64) -> Tensor {
    let log_ps = (student / t).log_softmax(1, Kind::Float);
    let log_pt = (teacher / t).log_softmax(1, Kind::Float);
    (log_pt.exp() * (&log_pt - log_ps)).sum_dim_intlist(1, false, Kind::Float) * (t * t)
}

/// Cross-entropy at temperature 1 per sample. Shapes: z [B, C], y [B] int64 → [B].
pub fn ce_per_sample(logits: &Tensor, labels: &Tensor) -> Tensor {
    -logits.log_softmax(1, Kind::Float).gather(1, &labels.unsqueeze(1), false).squeeze_dim(1)
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
        [
            [3.0f32, 0.2, -1.0, 0.5, 0.0, 0.4, 2.5, -0.2],
            [1.5, 1.2, 0.1, -0.4, 1.0, 0.9, 0.7, 0.0],
            [0.2, 2.0, -0.5, 0.3, -0.3, 0.2, 3.0, 0.1],
        ]
        .iter()
        .map(|v| Tensor::from_slice(v).reshape([2, 4]))
        .collect()
    }

    pub fn values(t: &Tensor) -> Vec<f64> {
        Vec::<f64>::try_from(&t.to_kind(tch::Kind::Double).flatten(0, -1)).unwrap()
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
}
