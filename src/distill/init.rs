//! PyTorch's default initialisation for the modules a method trains or learns beside the student
//! (connectors, MMKD's weight networks, MGD's encoders and self-analyzing heads), so they start
//! where the reference code's modules start. tch's defaults differ: Kaiming-uniform weights
//! (bound √(6/fan_in), about 2.45× PyTorch's) and BatchNorm γ drawn from U(0, 1).
//!
//! PyTorch's rules (`reset_parameters` of Linear, Conv and ConvTranspose; BatchNorm's):
//! - a weight of two or more dimensions and its bias: U(−1/√fan_in, 1/√fan_in), with fan_in =
//!   size(1) × the kernel's elements, computed on the stored layout, so a transposed
//!   convolution's fan_in counts its output channels ([C_in, C_out/groups, kH, kW]);
//! - BatchNorm: γ = 1, β = 0 (running statistics 0 and 1, as tch creates them).
//!
//! Values come from the crate's own seeded generator (one stream per seed and module set, drawn
//! in sorted name order) and are copied to the module's device: a seed gives the same modules on
//! the CPU and on a GPU, whatever else uses libtorch's global generator meanwhile.

use crate::data::rng::{mix64, Rng};
use std::collections::BTreeMap;
use tch::nn;
use tch::Tensor;

/// One module's tensors, by their last name segment.
type Group = BTreeMap<String, Tensor>;

/// The bound PyTorch's default uses for a weight of this shape: 1/√fan_in.
pub fn default_bound(weight_shape: &[i64]) -> f64 {
    let fan_in: i64 = weight_shape.iter().skip(1).product();
    1.0 / (fan_in.max(1) as f64).sqrt()
}

/// Resets every module in `vs` to PyTorch's default initialisation, drawing from the stream
/// that `seed` and `stream` (the module set's name) select, in sorted name order. Fails on a
/// tensor whose module has no PyTorch rule here (an internal error: every module kind the
/// methods build is covered).
pub fn reset_like_pytorch(vs: &nn::VarStore, seed: u64, stream: &str) -> anyhow::Result<()> {
    let salt = stream.bytes().fold(0xcbf2_9ce4_8422_2325u64, |h, b| (h ^ b as u64).wrapping_mul(0x0100_0000_01b3));
    let mut rng = Rng::new(mix64(seed ^ salt));
    let mut groups: BTreeMap<String, Group> = BTreeMap::new();
    for (name, t) in vs.variables() {
        let (module, leaf) = name.rsplit_once('.').unwrap_or(("", name.as_str()));
        groups.entry(module.to_string()).or_default().insert(leaf.to_string(), t);
    }
    let _guard = tch::no_grad_guard();
    for (module, g) in &groups {
        reset_group(module, g, &mut rng)?;
    }
    Ok(())
}

fn reset_group(module: &str, g: &Group, rng: &mut Rng) -> anyhow::Result<()> {
    let weight = g.get("weight").ok_or_else(|| anyhow::anyhow!("module `{module}` has no weight; no PyTorch initialisation rule applies"))?;
    if g.contains_key("running_mean") {
        let _ = weight.shallow_clone().fill_(1.0);
        if let Some(b) = g.get("bias") {
            let _ = b.shallow_clone().fill_(0.0);
        }
        return Ok(());
    }
    anyhow::ensure!(weight.dim() >= 2, "module `{module}`: a {}-d weight without running statistics has no PyTorch rule here", weight.dim());
    let bound = default_bound(&weight.size());
    fill_uniform(weight, bound, rng);
    if let Some(b) = g.get("bias") {
        fill_uniform(b, bound, rng);
    }
    Ok(())
}

/// Copies U(−bound, bound) draws from `rng` into `t`.
fn fill_uniform(t: &Tensor, bound: f64, rng: &mut Rng) {
    let values: Vec<f32> = (0..t.numel()).map(|_| rng.range(-bound, bound) as f32).collect();
    let draw = Tensor::from_slice(&values).view(t.size().as_slice());
    t.shallow_clone().copy_(&draw.to_kind(t.kind()).to_device(t.device()));
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bounds_follow_pytorchs_fan_in() {
        // Linear [out, in], Conv [out, in/groups, kH, kW], ConvTranspose [in, out/groups, kH, kW].
        assert_eq!(default_bound(&[10, 64]), 0.125);
        assert_eq!(default_bound(&[32, 16, 3, 3]), 1.0 / 12.0);
        assert_eq!(default_bound(&[64, 16, 4, 4]), 1.0 / 16.0);
    }
}
