//! Devices as users write them (`auto`, `cpu`, `cuda`, `cuda:N`): parsing a name into a
//! `tch::Device` against what this process sees, and naming a device back; and libtorch's CUDA
//! sync-debug mode, which makes every synchronizing CUDA call warn or fail.

use crate::bad_input;
use tch::Device;

/// Picks the device from the recipe or the command line (`auto`, `cpu`, `cuda`, `cuda:N`).
pub fn resolve(spec: &str) -> anyhow::Result<Device> {
    let cuda = tch::Cuda::is_available();
    match spec {
        "auto" => Ok(if cuda { Device::Cuda(0) } else { Device::Cpu }),
        "cpu" => Ok(Device::Cpu),
        s if s == "cuda" || s.starts_with("cuda:") => {
            let index: usize = s.strip_prefix("cuda:").map_or(Ok(0), str::parse).map_err(|_| bad_input!("device `{s}`: bad CUDA index"))?;
            if !cuda || index as i64 >= tch::Cuda::device_count() {
                return Err(bad_input!("device `{s}` requested but CUDA is not available (devices: {})", tch::Cuda::device_count()));
            }
            Ok(Device::Cuda(index))
        }
        other => Err(bad_input!("device `{other}`: expected auto, cpu, cuda or cuda:N")),
    }
}

/// A device as users write it in recipes: `cpu`, `cuda:0`.
pub fn name(d: Device) -> String {
    match d {
        Device::Cpu => "cpu".into(),
        Device::Cuda(i) => format!("cuda:{i}"),
        other => format!("{other:?}").to_lowercase(),
    }
}

/// libtorch's `c10::cuda::SyncDebugMode`: what a synchronizing CUDA call does.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum SyncDebug {
    Off = 0,
    Warn = 1,
    Error = 2,
}

/// The one `c10::cuda::WarningState` of the process: the function-local static of the inline
/// `c10::cuda::warning_state()`, a unique symbol every libtorch library shares. Its only member
/// is the `SyncDebugMode` (an `int`-sized enum class), as `c10/cuda/CUDAFunctions.h` of torch
/// 2.11 declares; tch binds no setter, and this is the state `torch.cuda.set_sync_debug_mode`
/// writes.
fn warning_state() -> Option<*mut i32> {
    let name = c"_ZZN3c104cuda13warning_stateEvE14warning_state_";
    // SAFETY: dlsym with RTLD_DEFAULT (null on glibc) only looks the name up among the loaded
    // libraries.
    let p = unsafe { libc::dlsym(std::ptr::null_mut(), name.as_ptr()) };
    (!p.is_null()).then_some(p as *mut i32)
}

/// Sets libtorch's CUDA sync-debug mode; an error when libtorch's CUDA library is not loaded.
pub fn set_sync_debug(mode: SyncDebug) -> anyhow::Result<()> {
    let p = warning_state().ok_or_else(|| anyhow::anyhow!("libtorch's CUDA library is not loaded: no sync-debug mode to set"))?;
    // SAFETY: `p` points at the WarningState object, whose first and only field is the mode.
    unsafe { p.write_volatile(mode as i32) };
    Ok(())
}

/// The current sync-debug mode, when libtorch's CUDA library is loaded.
pub fn sync_debug() -> Option<SyncDebug> {
    // SAFETY: as in `set_sync_debug`.
    let v = unsafe { warning_state()?.read_volatile() };
    Some(match v {
        1 => SyncDebug::Warn,
        2 => SyncDebug::Error,
        _ => SyncDebug::Off,
    })
}

/// `COMPRESS_CUDA_SYNC_DEBUG` (`warn` or `error`): the sync-debug mode training steps run under
/// after the run's first step (a diagnostic: `error` makes any hidden host–device wait in the
/// step fail the run with libtorch's message). Unset or `off`: None.
pub fn sync_debug_requested() -> anyhow::Result<Option<SyncDebug>> {
    match std::env::var("COMPRESS_CUDA_SYNC_DEBUG").as_deref() {
        Err(_) | Ok("") | Ok("off") => Ok(None),
        Ok("warn") => Ok(Some(SyncDebug::Warn)),
        Ok("error") => Ok(Some(SyncDebug::Error)),
        Ok(v) => Err(bad_input!("COMPRESS_CUDA_SYNC_DEBUG must be off, warn or error, got {v:?}")),
    }
}

#[cfg(test)]
mod tests {
    use tch::Device;

    #[test]
    fn sync_debug_mode_is_libtorchs_own_state() {
        use super::{set_sync_debug, sync_debug, SyncDebug};
        // The binary links libtorch_cuda (the CUDA build of torch), so the state is there even
        // on a machine without a GPU.
        assert_eq!(sync_debug(), Some(SyncDebug::Off));
        set_sync_debug(SyncDebug::Error).unwrap();
        assert_eq!(sync_debug(), Some(SyncDebug::Error));
        set_sync_debug(SyncDebug::Off).unwrap();
        assert_eq!(sync_debug(), Some(SyncDebug::Off));
    }

    #[test]
    fn names_read_back() {
        assert_eq!(super::resolve("cpu").unwrap(), Device::Cpu);
        assert_eq!(super::name(Device::Cuda(1)), "cuda:1");
        assert!(crate::error::is_bad_input(&super::resolve("tpu").unwrap_err()));
        assert!(crate::error::is_bad_input(&super::resolve("cuda:x").unwrap_err()));
    }
}
