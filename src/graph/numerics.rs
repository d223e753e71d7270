//! How float kernels may trade exactness for speed on a GPU, set per thread for a scope: TF32
//! tensor cores in convolutions, cuDNN's autotuner, and cuDNN's deterministic algorithms.
//!
//! Outside any scope every kernel runs exact fp32 (no TF32, no autotuning): what evaluation,
//! the fidelity checks against ONNX Runtime (1e-4 relative, where TF32 is about 1e-3),
//! calibration and export need. The trainer opens a scope for its steps: [`Numerics::training`]
//! (TF32 and autotuning on, unless `train.deterministic`) for float training, and
//! [`Numerics::qat`] (never TF32: fake quantization must round what the exported file rounds).
//! Matrix products follow libtorch's default `float32_matmul_precision`, "highest": no TF32.
//! On the CPU these switches change nothing.

use std::cell::Cell;

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Numerics {
    /// Convolutions may use TF32 tensor cores (about 1e-3 relative).
    pub allow_tf32: bool,
    /// cuDNN times the algorithms for each new shape and keeps the fastest.
    pub benchmark: bool,
    /// cuDNN picks only deterministic algorithms.
    pub deterministic: bool,
}

thread_local! {
    static CURRENT: Cell<Numerics> = const { Cell::new(Numerics::EXACT) };
}

impl Numerics {
    /// Exact fp32, the default.
    pub const EXACT: Numerics = Numerics { allow_tf32: false, benchmark: false, deterministic: false };

    /// Float training: fast unless `deterministic`, which also makes a resumed run repeat an
    /// uninterrupted one on CUDA (as far as cuDNN goes).
    pub fn training(deterministic: bool) -> Numerics {
        if deterministic {
            Numerics { allow_tf32: false, benchmark: false, deterministic: true }
        } else {
            Numerics { allow_tf32: true, benchmark: true, deterministic: false }
        }
    }

    /// Quantization-aware training: never TF32.
    pub fn qat(deterministic: bool) -> Numerics {
        Numerics { allow_tf32: false, ..Numerics::training(deterministic) }
    }

    /// This thread's setting.
    pub fn current() -> Numerics {
        CURRENT.with(Cell::get)
    }

    /// Makes `self` this thread's setting until the guard drops (the previous one returns).
    pub fn enter(self) -> Scope {
        Scope { previous: CURRENT.with(|c| c.replace(self)) }
    }
}

/// Restores the previous [`Numerics`] when dropped.
pub struct Scope {
    previous: Numerics,
}

impl Drop for Scope {
    fn drop(&mut self) {
        CURRENT.with(|c| c.set(self.previous));
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn scopes_nest_and_default_to_exact() {
        assert_eq!(Numerics::current(), Numerics::EXACT);
        {
            let _train = Numerics::training(false).enter();
            assert!(Numerics::current().allow_tf32 && Numerics::current().benchmark);
            {
                let _qat = Numerics::qat(false).enter();
                assert!(!Numerics::current().allow_tf32 && Numerics::current().benchmark);
            }
            assert!(Numerics::current().allow_tf32);
        }
        assert_eq!(Numerics::current(), Numerics::EXACT);
        let d = Numerics::training(true);
        assert!(d.deterministic && !d.benchmark && !d.allow_tf32);
    }
}
