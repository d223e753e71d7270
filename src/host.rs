//! Reads of tensor values into host memory, all through here, and uploads that do not block.
//! On an accelerator each read waits for the device to finish its queue, so every one is
//! counted (per thread): the training step must make none after its first, and the trainer
//! reports how many it made.
//!
//! Integer tensors the executor keeps on the host by design (shapes, axes, indices computed by
//! shape arithmetic) are read with [`host_ints`], which counts only when such a tensor sits on an
//! accelerator after all. `clippy.toml` forbids tch's reading methods elsewhere, and
//! `tests/layering.rs` forbids `Vec::try_from` on tensors outside this file.

#![allow(clippy::disallowed_methods)]

use std::cell::Cell;
use tch::{Device, TchError, Tensor};

thread_local! {
    static READS: Cell<u64> = const { Cell::new(0) };
}

/// The number of counted reads this thread has made so far.
pub fn reads() -> u64 {
    READS.with(Cell::get)
}

fn count() {
    READS.with(|c| c.set(c.get() + 1));
}

/// `t` (on the CPU) on `device` without blocking the host: on CUDA it is copied into pinned
/// memory from libtorch's caching host allocator, then sent asynchronously on the current stream,
/// so the step neither waits for the queue (a copy from pageable memory synchronizes the stream)
/// nor trips CUDA's sync-debug mode. On the CPU it is `t` itself.
pub fn upload(t: &Tensor, device: Device) -> Result<Tensor, TchError> {
    if t.device() == device {
        return Ok(t.shallow_clone());
    }
    match device {
        Device::Cuda(_) if t.device() == Device::Cpu => t.f_pin_memory(device)?.f_to_device_(device, t.kind(), true, false),
        _ => t.f_to_device(device),
    }
}

/// The value of a one-element tensor, as f64.
pub fn f64(t: &Tensor) -> f64 {
    try_f64(t).unwrap_or_else(|e| panic!("reading a scalar: {e}"))
}

/// The value of a one-element tensor, as i64.
pub fn i64(t: &Tensor) -> i64 {
    count();
    t.int64_value(&[])
}

/// Method forms of [`f64`] and [`i64`], for reads at the end of a tensor expression.
pub trait HostRead {
    fn read_f64(&self) -> f64;
    fn read_i64(&self) -> i64;
}

impl HostRead for Tensor {
    fn read_f64(&self) -> f64 {
        f64(self)
    }

    fn read_i64(&self) -> i64 {
        i64(self)
    }
}

/// The value of a one-element tensor, as f64, or the error that reading it gave.
pub fn try_f64(t: &Tensor) -> Result<f64, TchError> {
    count();
    t.f_double_value(&[])
}

/// Element `index` of a tensor's flattened values, as f64.
pub fn element_f64(t: &Tensor, index: i64) -> f64 {
    count();
    t.view([-1]).double_value(&[index])
}

/// Every value of a tensor, in row-major order, converted to `T`.
pub fn vec<T: tch::kind::Element + Copy>(t: &Tensor) -> Result<Vec<T>, TchError> {
    count();
    Vec::<T>::try_from(t)
}

/// A tensor's raw bytes (native layout of its element type) into `dst`.
pub fn bytes(t: &Tensor, dst: &mut [u8]) -> Result<(), TchError> {
    count();
    t.f_copy_data_u8(dst, t.numel())
}

/// The values of an integer tensor kept on the host by design (a shape, axes, indices).
pub fn host_ints(t: &Tensor) -> Result<Vec<i64>, TchError> {
    if t.device() != Device::Cpu {
        count();
    }
    Vec::<i64>::try_from(&t.f_to_kind(tch::Kind::Int64)?.f_flatten(0, -1)?)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_read_is_counted_on_its_thread() {
        let t = Tensor::from_slice(&[2.5f32, 3.0]);
        let before = reads();
        assert_eq!(f64(&t.sum(tch::Kind::Float)), 5.5);
        assert_eq!(vec::<f32>(&t).unwrap(), vec![2.5, 3.0]);
        assert_eq!(element_f64(&t, 1), 3.0);
        assert_eq!(reads() - before, 3);
        // Host-side shape values are not device reads.
        assert_eq!(host_ints(&Tensor::from_slice(&[4i64, 5])).unwrap(), vec![4, 5]);
        assert_eq!(reads() - before, 3);
        // Another thread's reads are its own.
        std::thread::spawn(|| f64(&Tensor::from_slice(&[1.0f32]))).join().unwrap();
        assert_eq!(reads() - before, 3);
    }
}
