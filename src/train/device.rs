//! Where training runs: the CPU (Burn's `flex` backend, with our fused blocks), an NVIDIA GPU
//! through Burn's CUDA backend (a build with the `cuda` feature), or a wgpu adapter through Burn's
//! wgpu backend (a build with the `wgpu` feature: Vulkan, Metal, DirectX 12). Both GPU backends
//! are probed before use ([`cuda_unavailable`], [`wgpu_adapter`]): a run that asks for one that
//! cannot work fails with one line naming what is missing, before anything is loaded or written,
//! and `auto` takes the first that works: CUDA, then a hardware wgpu adapter, then the CPU.

use burn::tensor::Device;

use super::TrainError;
use crate::config::DeviceKind;
pub use crate::cuda::cuda_unavailable;
pub use crate::wgpu::wgpu_adapter;

/// The device a run on `kind` trains on: `auto` resolved (CUDA where it works, else a wgpu
/// adapter that is not a software renderer, else the CPU).
pub fn resolve(kind: DeviceKind) -> DeviceKind {
    match kind {
        DeviceKind::Auto if cuda_unavailable().is_none() => DeviceKind::Cuda,
        DeviceKind::Auto if wgpu_adapter().is_ok_and(|a| !a.is_software()) => DeviceKind::Wgpu,
        DeviceKind::Auto => DeviceKind::Cpu,
        other => other,
    }
}

/// Why `auto` passed over each GPU backend (empty when it chose one): what the window's hover
/// text and the `auto` progress line say.
pub fn auto_passed_over() -> Vec<String> {
    if cuda_unavailable().is_none() {
        return Vec::new();
    }
    let mut why = vec![format!("cuda: {}", cuda_unavailable().unwrap_or_default())];
    match wgpu_adapter() {
        Ok(a) if !a.is_software() => return Vec::new(),
        Ok(a) => why.push(format!(
            "wgpu: the only adapter is {}, slower than the CPU backend (ask for it with train.device = \"wgpu\")",
            a.describe()
        )),
        Err(e) => why.push(format!("wgpu: {e}")),
    }
    why
}

/// Which hardware `kind` (resolved) runs on, in words, for reports and progress lines: "wgpu on"
/// the adapter's name, API and kind; "CUDA GPU 0"; the CPU backend and its thread count.
pub fn describe(kind: DeviceKind) -> String {
    match resolve(kind) {
        DeviceKind::Cuda => "CUDA GPU 0".to_owned(),
        DeviceKind::Wgpu => match wgpu_adapter() {
            Ok(adapter) => format!("wgpu on {}", adapter.describe()),
            Err(why) => why,
        },
        _ => format!(
            "CPU (Burn flex backend, {} threads)",
            rayon::current_num_threads()
        ),
    }
}

/// Whether `kind` (resolved) computes on the host, where reading a value back costs nothing.
pub fn on_host(kind: DeviceKind) -> bool {
    resolve(kind) == DeviceKind::Cpu
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
        DeviceKind::Wgpu => wgpu_device(),
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

#[cfg(feature = "wgpu")]
fn wgpu_device() -> Result<Device, TrainError> {
    wgpu_adapter()
        .map(|adapter| adapter.device.clone())
        .map_err(|why| TrainError::Invalid(format!("train.device = \"wgpu\": {why}")))
}

#[cfg(not(feature = "wgpu"))]
fn wgpu_device() -> Result<Device, TrainError> {
    Err(TrainError::Invalid(format!(
        "train.device = \"wgpu\": {}",
        wgpu_adapter().err().unwrap_or_default()
    )))
}

/// Gives the memory the device's pools hold but no tensor uses back to the driver: after a
/// training's optimiser state and gradients are dropped, so the next arm of a comparison (or the
/// next cell of a sweep) starts from what its own model needs. On the CPU, the allocator gives
/// back what was freed (it keeps freed memory for minutes otherwise: [`crate::allocator`]).
pub fn release_unused(device: &Device) {
    device.memory_cleanup();
    crate::allocator::give_back_freed_memory();
}
