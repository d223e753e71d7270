//! Learned step size quantization (LSQ, Esser et al. 2020), written with `detach` as
//! runtime-notes §2.4 recommends: no custom autograd function, no host syncs, any precision.
//! `fake_quant` is the reference formulation, checked here against libtorch's fused learnable
//! fake-quant ops; a QAT graph applies the same rule through its QuantizeLinear →
//! DequantizeLinear pairs (straight-through rounding in `graph/ops/quant.rs`, the gradient scale
//! g in the optimizer, `distill/optim.rs`). The initial steps come from `mse_step`.
//!
//! With step s on the integer grid [lo, hi] (zero point 0, symmetric):
//! y = round_ste(clamp(x / s_g, lo, hi)) · s_g, where round_ste rounds in the forward pass and
//! passes the gradient straight through, and s_g = s in the forward pass while its gradient is
//! scaled by g = 1/√(N·Q_P) (N elements per step, Q_P = hi). `clamp` already gives zero gradient
//! outside the range, which is LSQ's rule for x; the step's gradient follows from the same graph.

use tch::{Kind, Tensor};

/// An integer grid [lo, hi].
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Grid {
    pub lo: i64,
    pub hi: i64,
}

impl Grid {
    /// Weights: narrow symmetric ±(2^(b−1) − 1) (±127 at 8 bits, ±7 at 4, ±1 at 2), so folding a
    /// negative BatchNorm scale into a channel keeps the grid.
    pub fn weights(bits: u32) -> Grid {
        let q = (1i64 << (bits - 1)) - 1;
        Grid { lo: -q, hi: q }
    }

    /// Signed activations [−2^(b−1), 2^(b−1) − 1].
    pub fn signed(bits: u32) -> Grid {
        Grid { lo: -(1i64 << (bits - 1)), hi: (1i64 << (bits - 1)) - 1 }
    }

    /// Unsigned activations [0, 2^b − 1] (after a ReLU).
    pub fn unsigned(bits: u32) -> Grid {
        Grid { lo: 0, hi: (1i64 << bits) - 1 }
    }
}

/// Rounds to the nearest integer (ties to even, as torch.round) with a straight-through gradient.
pub fn round_ste(x: &Tensor) -> Tensor {
    (x.round() - x).detach() + x
}

/// The value of `s` with its gradient multiplied by `g`.
pub fn grad_scale(s: &Tensor, g: f64) -> Tensor {
    let scaled = s * g;
    (s - &scaled).detach() + scaled
}

/// Elements that share one step: all of `x`, or a slice along `axis` for per-channel steps.
fn elements_per_step(x: &Tensor, axis: Option<i64>) -> i64 {
    match axis {
        None => x.numel() as i64,
        Some(a) => x.numel() as i64 / x.size()[a as usize],
    }
}

/// The step reshaped to broadcast along `axis` of `x` (a 1-D step of `x.size()[axis]` entries).
fn broadcast(s: &Tensor, x: &Tensor, axis: Option<i64>) -> Tensor {
    match axis {
        None => s.shallow_clone(),
        Some(a) => {
            let mut shape = vec![1i64; x.dim()];
            shape[a as usize] = -1;
            s.reshape(shape.as_slice())
        }
    }
}

/// LSQ fake quantization of `x` with step `s` (a scalar, or 1-D along `axis`) on `grid`.
pub fn fake_quant(x: &Tensor, s: &Tensor, grid: Grid, axis: Option<i64>) -> Tensor {
    let g = 1.0 / ((elements_per_step(x, axis) * grid.hi.max(1)) as f64).sqrt();
    let s = broadcast(&grad_scale(s, g), x, axis);
    round_ste(&(x / &s).clamp(grid.lo, grid.hi)) * s
}

/// LSQ's initial step, 2·mean(|x|)/√Q_P, per tensor or per slice along `axis`.
pub fn initial_step(x: &Tensor, grid: Grid, axis: Option<i64>) -> Tensor {
    let q = (grid.hi.max(1) as f64).sqrt();
    let x = x.detach().abs();
    let mean = match axis {
        None => x.mean(Kind::Float),
        Some(a) => x.transpose(0, a).flatten(1, -1).mean_dim(1, false, Kind::Float),
    };
    (mean * (2.0 / q)).clamp_min(1e-8)
}

/// Candidate clipping ranges for [`mse_step`]: α · max|x| for α = 1/STEPS, 2/STEPS, …, 1.
const MSE_CANDIDATES: i64 = 40;

/// The initial step that minimizes the mean squared quantization error of `x` on `grid`,
/// searched over clipping ranges α·max|x| (α = 1/40 … 1), per tensor or per slice along `axis`.
/// LSQ's own rule 2·mean|x|/√Q_P suits 2–4 bits; at 8 bits it spreads the grid over about 30×
/// the mean magnitude, several times the largest value, so few codes are used. The MSE search
/// (as LSQ+ proposes) fits every width.
pub fn mse_step(x: &Tensor, grid: Grid, axis: Option<i64>) -> Tensor {
    let _guard = tch::no_grad_guard();
    let x = x.detach().to_kind(Kind::Float);
    let rows = match axis {
        None => x.reshape([1, -1]),
        Some(a) => x.transpose(0, a).flatten(1, -1),
    };
    let q = grid.hi.max(1) as f64;
    let max = rows.abs().amax(1, true).clamp_min(1e-8);
    let mut best_step = &max / q;
    let mut best_err = Tensor::full([rows.size()[0], 1], f64::INFINITY, (Kind::Float, rows.device()));
    for i in 1..=MSE_CANDIDATES {
        let step = &max * (i as f64 / MSE_CANDIDATES as f64 / q);
        let err = ((&rows / &step).round().clamp(grid.lo, grid.hi) * &step - &rows).square().mean_dim(1, true, Kind::Float);
        let better = err.lt_tensor(&best_err);
        best_step = step.where_self(&better, &best_step);
        best_err = err.where_self(&better, &best_err);
    }
    match axis {
        None => best_step.reshape([] as [i64; 0]),
        Some(_) => best_step.reshape([-1]),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::host::HostRead;
    use tch::Device;

    fn max_diff(a: &Tensor, b: &Tensor) -> f64 {
        (a - b).abs().max().read_f64()
    }

    /// libtorch's op decides clipping after rounding, LSQ (and this module) before: they differ
    /// for inputs within half a step outside the grid. Moves such inputs one step further out.
    fn avoid_edge_band(x: &Tensor, s: &Tensor, grid: Grid, axis: Option<i64>) -> Tensor {
        let s = broadcast(&s.detach(), x, axis);
        let v = x / &s;
        let above = v.gt(grid.hi as f64).logical_and(&v.lt(grid.hi as f64 + 0.5));
        let below = v.lt(grid.lo as f64).logical_and(&v.gt(grid.lo as f64 - 0.5));
        x + above.to_kind(Kind::Float) * &s - below.to_kind(Kind::Float) * &s
    }

    /// Forward values and the gradients of x and of the step equal libtorch's fused learnable
    /// fake-quant op (LSQ with grad_factor g), per tensor.
    #[test]
    fn per_tensor_matches_libtorchs_learnable_fake_quant() {
        tch::manual_seed(1);
        for bits in [8u32, 4, 2] {
            let grid = Grid::signed(bits);
            let s = Tensor::from(0.07f32 * (9 - bits) as f32).reshape([1]).set_requires_grad(true);
            let x = Tensor::randn([4, 3, 5, 5], (Kind::Float, Device::Cpu)) * 2.0;
            let x = avoid_edge_band(&x, &s, grid, None).set_requires_grad(true);
            let ours = fake_quant(&x, &s, grid, None);
            let dy = Tensor::randn(ours.size().as_slice(), (Kind::Float, Device::Cpu));
            let (gx, gs) = {
                let g = Tensor::run_backward(&[(&ours * &dy).sum(Kind::Float)], &[&x, &s], false, false);
                (g[0].shallow_clone(), g[1].shallow_clone())
            };
            let x2 = x.detach().set_requires_grad(true);
            let s2 = s.detach().set_requires_grad(true);
            let zp = Tensor::zeros([1], (Kind::Float, Device::Cpu));
            let factor = 1.0 / ((x.numel() as f64) * grid.hi as f64).sqrt();
            let theirs = x2.internal_fake_quantize_learnable_per_tensor_affine(&s2, &zp, grid.lo, grid.hi, factor);
            let g = Tensor::run_backward(&[(&theirs * &dy).sum(Kind::Float)], &[&x2, &s2], false, false);
            assert!(max_diff(&ours, &theirs) < 1e-6, "{bits} bits: forward");
            assert!(max_diff(&gx, &g[0]) < 1e-6, "{bits} bits: dx");
            assert!(
                (crate::host::element_f64(&gs, 0) - crate::host::element_f64(&g[1], 0)).abs() < 1e-4 * crate::host::element_f64(&g[1].abs(), 0).max(1.0),
                "{bits} bits: ds {gs} vs {}",
                g[1]
            );
        }
    }

    /// The same per channel (axis 0, narrow weight grid).
    #[test]
    fn per_channel_matches_libtorchs_learnable_fake_quant() {
        tch::manual_seed(2);
        let grid = Grid::weights(4);
        let w = Tensor::randn([6, 3, 3, 3], (Kind::Float, Device::Cpu));
        let s = initial_step(&w, grid, Some(0)).set_requires_grad(true);
        let w = avoid_edge_band(&w, &s, grid, Some(0)).set_requires_grad(true);
        let ours = fake_quant(&w, &s, grid, Some(0));
        let dy = Tensor::randn(ours.size().as_slice(), (Kind::Float, Device::Cpu));
        let g = Tensor::run_backward(&[(&ours * &dy).sum(Kind::Float)], &[&w, &s], false, false);
        let w2 = w.detach().set_requires_grad(true);
        let s2 = s.detach().set_requires_grad(true);
        let zp = Tensor::zeros([6], (Kind::Float, Device::Cpu));
        let factor = 1.0 / ((w.numel() as f64 / 6.0) * grid.hi as f64).sqrt();
        let theirs = w2.internal_fake_quantize_learnable_per_channel_affine(&s2, &zp, 0, grid.lo, grid.hi, factor);
        let h = Tensor::run_backward(&[(&theirs * &dy).sum(Kind::Float)], &[&w2, &s2], false, false);
        assert!(max_diff(&ours, &theirs) < 1e-6);
        assert!(max_diff(&g[0], &h[0]) < 1e-6);
        assert!(max_diff(&g[1], &h[1]) < 1e-4 * h[1].abs().max().read_f64().max(1.0), "{} vs {}", g[1], h[1]);
        // Every output lies on its channel's grid.
        let q = (&ours.detach() / s.detach().reshape([-1, 1, 1, 1])).round();
        assert!(q.abs().max().read_f64() <= 7.0);
    }

    /// On uniform values the whole range is the MSE-optimal clip at 8 bits; on a heavy-tailed
    /// tensor the search clips, and beats LSQ's rule.
    #[test]
    fn mse_step_fits_the_grid() {
        let u = Tensor::linspace(-1.0, 1.0, 10_001, (Kind::Float, Device::Cpu));
        let s = mse_step(&u, Grid::weights(8), None).read_f64();
        assert!((s - 1.0 / 127.0).abs() < 1e-6, "{s}");
        tch::manual_seed(3);
        let x = Tensor::randn([20_000], (Kind::Float, Device::Cpu)).pow_tensor_scalar(3);
        let err = |s: &Tensor, g: Grid| ((&x / s).round().clamp(g.lo, g.hi) * s - &x).square().mean(Kind::Float).read_f64();
        for bits in [8u32, 4, 2] {
            let g = Grid::signed(bits);
            let (mse, lsq) = (mse_step(&x, g, None), initial_step(&x, g, None));
            assert!(err(&mse, g) <= err(&lsq, g), "{bits} bits: {} vs {}", err(&mse, g), err(&lsq, g));
        }
        // Per channel: one step per slice along the axis.
        let w = Tensor::randn([6, 3, 3, 3], (Kind::Float, Device::Cpu)) * Tensor::from_slice(&[1.0f32, 2.0, 4.0, 8.0, 16.0, 32.0]).reshape([6, 1, 1, 1]);
        let s = mse_step(&w, Grid::weights(4), Some(0));
        assert_eq!(s.size(), vec![6]);
        let ratio = (s.get(5) / s.get(0)).read_f64();
        assert!(ratio > 8.0 && ratio < 128.0, "{ratio}");
    }

    #[test]
    fn grids() {
        assert_eq!(Grid::weights(8), Grid { lo: -127, hi: 127 });
        assert_eq!(Grid::weights(2), Grid { lo: -1, hi: 1 });
        assert_eq!(Grid::signed(4), Grid { lo: -8, hi: 7 });
        assert_eq!(Grid::unsigned(8), Grid { lo: 0, hi: 255 });
    }
}
