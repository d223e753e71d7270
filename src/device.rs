//! Devices as users write them (`auto`, `cpu`, `cuda`, `cuda:N`): parsing a name into a
//! `tch::Device` against what this process sees, and naming a device back.

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

#[cfg(test)]
mod tests {
    use tch::Device;

    #[test]
    fn names_read_back() {
        assert_eq!(super::resolve("cpu").unwrap(), Device::Cpu);
        assert_eq!(super::name(Device::Cuda(1)), "cuda:1");
        assert!(crate::error::is_bad_input(&super::resolve("tpu").unwrap_err()));
        assert!(crate::error::is_bad_input(&super::resolve("cuda:x").unwrap_err()));
    }
}
