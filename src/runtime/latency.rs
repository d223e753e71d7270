//! Latency of several ONNX files side by side in ONNX Runtime on this CPU: per batch size,
//! interleaved rounds (file A, file B, file A, …) so drifts of the machine hit all of them alike,
//! and the median of the rounds per file.

use super::OrtModel;
use serde::Serialize;
use std::path::Path;
use tch::{Kind, Tensor};

#[derive(Clone, Debug, Serialize)]
pub struct LatencyRow {
    pub batch: usize,
    /// Median milliseconds per run, one per file, in the order given.
    pub median_ms: Vec<f64>,
}

/// Each round times enough back-to-back runs to last about this long.
const ROUND_SECONDS: f64 = 0.2;

/// Times `files` (all taking one `[batch, …input]` float input) at each batch size.
pub fn measure(files: &[&Path], input: &[i64], batches: &[usize], rounds: usize, threads: usize) -> anyhow::Result<Vec<LatencyRow>> {
    let mut models: Vec<OrtModel> = files.iter().map(|f| OrtModel::load(f, threads)).collect::<anyhow::Result<_>>()?;
    let mut rows = Vec::new();
    for &batch in batches {
        let mut shape = vec![batch as i64];
        shape.extend_from_slice(input);
        let x = Tensor::randn(shape.as_slice(), (Kind::Float, tch::Device::Cpu));
        // Warm-up, and enough runs per round for the fastest file to last ROUND_SECONDS.
        let mut iters = 1;
        for m in models.iter_mut() {
            m.seconds_per_run(&x, 2)?;
            let t = m.seconds_per_run(&x, 3)?;
            iters = iters.max((ROUND_SECONDS / t.max(1e-6)).ceil() as usize).min(10_000);
        }
        let mut times: Vec<Vec<f64>> = vec![Vec::new(); models.len()];
        for _ in 0..rounds {
            for (m, t) in models.iter_mut().zip(times.iter_mut()) {
                t.push(1e3 * m.seconds_per_run(&x, iters)?);
            }
        }
        rows.push(LatencyRow { batch, median_ms: times.iter_mut().map(|t| median(t)).collect() });
    }
    Ok(rows)
}

fn median(v: &mut [f64]) -> f64 {
    v.sort_by(|a, b| a.total_cmp(b));
    let n = v.len();
    if n % 2 == 1 {
        v[n / 2]
    } else {
        (v[n / 2 - 1] + v[n / 2]) / 2.0
    }
}

#[cfg(test)]
mod tests {
    #[test]
    fn median_of_odd_and_even_counts() {
        assert_eq!(super::median(&mut [3.0, 1.0, 2.0]), 2.0);
        assert_eq!(super::median(&mut [4.0, 1.0, 3.0, 2.0]), 2.5);
    }
}
