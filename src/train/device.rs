//! Where training runs: the CPU (Burn's `flex` backend) or, in builds with the `cuda` feature, an
//! NVIDIA GPU through Burn's CUDA backend. Burn's CUDA runtime panics on its first operation when
//! the driver, NVRTC or the CUDA headers are missing; [`cuda_unavailable`] checks all three
//! first, so a run that asks for CUDA fails with one line naming what is missing, and `auto`
//! falls back to the CPU.

use burn::tensor::Device;

use super::TrainError;
use crate::config::DeviceKind;
pub use crate::cuda::cuda_unavailable;

/// The device a run on `kind` trains on: `auto` is CUDA where it works, else the CPU.
pub fn resolve(kind: DeviceKind) -> DeviceKind {
    match kind {
        DeviceKind::Auto if cuda_unavailable().is_none() => DeviceKind::Cuda,
        DeviceKind::Auto => DeviceKind::Cpu,
        other => other,
    }
}

/// The Burn device for `kind`, or why it cannot be had (one line).
pub fn device_for(kind: DeviceKind) -> Result<Device, TrainError> {
    match resolve(kind) {
        DeviceKind::Cuda => match cuda_unavailable() {
            None => cuda_device(),
            Some(why) => Err(TrainError::Invalid(format!(
                "train.device = \"cuda\": {why}"
            ))),
        },
        _ => Ok(Device::flex()),
    }
}

#[cfg(feature = "cuda")]
fn cuda_device() -> Result<Device, TrainError> {
    Ok(Device::cuda(0))
}

#[cfg(not(feature = "cuda"))]
fn cuda_device() -> Result<Device, TrainError> {
    Err(TrainError::Invalid(
        "train.device = \"cuda\": this build has no CUDA backend (build with `--features cuda`)"
            .into(),
    ))
}
