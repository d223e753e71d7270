//! Per-model input transform: uint8 NHWC batch → normalised float32 tensor in the layout the
//! model expects, computed on the model's device.
//!
//! Teachers exported from different frameworks disagree on layout, scale (1/255 or 1) and
//! normalisation constants, so each model carries its own [`Preprocess`].

use anyhow::{bail, Context, Result};
use serde::{Deserialize, Serialize};
use tch::{Device, Kind, Tensor};

/// Memory layout of the float tensor handed to a model.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Layout {
    Nchw,
    Nhwc,
}

/// `x = u8 * scale`, then `(x - mean[c]) / std[c]` per RGB channel, then `layout`.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Preprocess {
    pub layout: Layout,
    pub scale: f64,
    pub mean: [f64; 3],
    pub std: [f64; 3],
}

impl Preprocess {
    /// Checks that the constants give finite outputs; `what` names where they came from (a
    /// recipe key or model file) so a bad value is reported against the user's input.
    pub fn validate(&self, what: &str) -> Result<()> {
        if !self.scale.is_finite() || self.scale == 0.0 {
            return Err(crate::bad_input!("{what}: preprocess scale must be finite and non-zero, got {}", self.scale));
        }
        if let Some(m) = self.mean.iter().find(|m| !m.is_finite()) {
            return Err(crate::bad_input!("{what}: preprocess mean must be finite, got {m}"));
        }
        if let Some(s) = self.std.iter().find(|s| !s.is_finite() || **s <= 0.0) {
            return Err(crate::bad_input!("{what}: preprocess std must be positive, got {s}"));
        }
        Ok(())
    }

    /// Transforms a `[B, H, W, 3]` uint8 batch into float32 on `device` (constants built for
    /// this call; a model applying it to every batch keeps a [`Normalizer`]). A wrong shape or a
    /// device failure is an error, never a panic.
    pub fn f_apply(&self, batch_u8_nhwc: &Tensor, device: Device) -> Result<Tensor> {
        self.on(device)?.apply(batch_u8_nhwc)
    }

    /// This transform with its constants built once on `device`, for a model that applies it
    /// to every batch.
    pub fn on(&self, device: Device) -> Result<Normalizer> {
        // Fold scale into the per-channel affine map: y = x * (scale/std) + (-mean/std), one
        // fused multiply-add per element instead of three passes.
        let mul: Vec<f32> = (0..3).map(|c| (self.scale / self.std[c]) as f32).collect();
        let add: Vec<f32> = (0..3).map(|c| (-self.mean[c] / self.std[c]) as f32).collect();
        let mul = Tensor::from_slice(&mul).f_to_device(device).context("moving normalisation constants to the device")?;
        let add = Tensor::from_slice(&add).f_to_device(device).context("moving normalisation constants to the device")?;
        Ok(Normalizer { layout: self.layout.clone(), mul, add, device })
    }
}

/// A [`Preprocess`] whose constants live on one device: built once per model, applied to every
/// batch without uploading anything but the batch itself (not at all when it is already there).
#[derive(Debug)]
pub struct Normalizer {
    layout: Layout,
    mul: Tensor,
    add: Tensor,
    device: Device,
}

impl Normalizer {
    pub fn device(&self) -> Device {
        self.device
    }

    /// Transforms a `[B, H, W, 3]` uint8 batch into float32 on this normalizer's device.
    ///
    /// A batch on another device is moved first, as uint8: a quarter of the bytes of moving
    /// the float result.
    pub fn apply(&self, batch_u8_nhwc: &Tensor) -> Result<Tensor> {
        let size = batch_u8_nhwc.size();
        if size.len() != 4 || size[3] != 3 {
            bail!("expected a [B, H, W, 3] batch, got {size:?}");
        }
        let x = batch_u8_nhwc.f_to_device(self.device).context("moving batch to device")?.f_to_kind(Kind::Float)?;
        // NHWC: channel is the last dimension, so [3] broadcasts directly.
        let y = x.f_mul(&self.mul)?.f_add(&self.add)?;
        Ok(match self.layout {
            Layout::Nhwc => y,
            Layout::Nchw => y.f_permute([0, 3, 1, 2])?.f_contiguous()?,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn batch() -> Tensor {
        // One 1×2 image: pixel 0 = (0, 51, 255), pixel 1 = (102, 204, 10).
        Tensor::from_slice(&[0u8, 51, 255, 102, 204, 10]).view([1, 1, 2, 3])
    }

    fn pre(layout: Layout) -> Preprocess {
        Preprocess { layout, scale: 1.0 / 255.0, mean: [0.5, 0.2, 0.0], std: [0.5, 0.2, 2.0] }
    }

    #[test]
    fn nhwc_values_by_hand() {
        let y = pre(Layout::Nhwc).f_apply(&batch(), Device::Cpu).unwrap();
        assert_eq!(y.size(), vec![1, 1, 2, 3]);
        assert_eq!(y.kind(), Kind::Float);
        let got = crate::host::vec::<f32>(&y.flatten(0, -1)).unwrap();
        // (0/255-.5)/.5=-1, (51/255-.2)/.2=0, (1-0)/2=.5, (.4-.5)/.5=-.2, (.8-.2)/.2=3, (10/255)/2
        let want = [-1.0, 0.0, 0.5, -0.2, 3.0, 10.0 / 255.0 / 2.0];
        for (g, w) in got.iter().zip(want) {
            assert!((*g as f64 - w).abs() < 1e-5, "{got:?} vs {want:?}");
        }
    }

    #[test]
    fn nchw_moves_channels_first() {
        let y = pre(Layout::Nchw).f_apply(&batch(), Device::Cpu).unwrap();
        assert_eq!(y.size(), vec![1, 3, 1, 2]);
        let got = crate::host::vec::<f32>(&y.flatten(0, -1)).unwrap();
        let want = [-1.0, -0.2, 0.0, 3.0, 0.5, 10.0 / 255.0 / 2.0];
        for (g, w) in got.iter().zip(want) {
            assert!((*g as f64 - w).abs() < 1e-5, "{got:?} vs {want:?}");
        }
    }

    #[test]
    fn a_normalizer_built_once_gives_the_same_values() {
        let p = pre(Layout::Nchw);
        let n = p.on(Device::Cpu).unwrap();
        let once = n.apply(&batch()).unwrap();
        assert!(once.equal(&p.f_apply(&batch(), Device::Cpu).unwrap()));
        // Applied again, the same constants serve a second batch.
        assert!(n.apply(&batch()).unwrap().equal(&once));
        assert!(n.apply(&Tensor::zeros([2, 3], (Kind::Uint8, Device::Cpu))).is_err());
    }

    #[test]
    fn wrong_shape_is_an_error_not_a_panic() {
        let flat = Tensor::zeros([2, 3], (Kind::Uint8, Device::Cpu));
        assert!(pre(Layout::Nchw).f_apply(&flat, Device::Cpu).is_err());
    }

    #[test]
    fn validate_rejects_zero_std_as_bad_input() {
        let mut p = pre(Layout::Nchw);
        assert!(p.validate("model a.onnx").is_ok());
        p.std[1] = 0.0;
        let err = p.validate("model a.onnx").unwrap_err();
        assert!(crate::error::is_bad_input(&err));
        assert!(err.to_string().contains("a.onnx"));
    }

    #[test]
    fn layout_serialises_lowercase() {
        let p = pre(Layout::Nhwc);
        let s = serde_json::to_string(&p).unwrap();
        assert!(s.contains("\"nhwc\""), "{s}");
        assert_eq!(serde_json::from_str::<Preprocess>(&s).unwrap(), p);
    }
}
