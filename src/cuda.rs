//! Whether CUDA training can start on this machine: the driver (`libcuda`, `cuInit`, a device),
//! NVRTC and the CUDA headers cubecl-cuda compiles kernels against. Burn's CUDA runtime panics on
//! its first operation when one is missing; the probe says which, in one line. No dependency on
//! the rest of the crate, so the config can check `train.device` with it.

/// `None` when CUDA training can start here; otherwise what is missing, in one line. Probed once
/// per process.
pub fn cuda_unavailable() -> Option<String> {
    static PROBE: std::sync::OnceLock<Option<String>> = std::sync::OnceLock::new();
    PROBE.get_or_init(probe::run).clone()
}

#[cfg(not(feature = "cuda"))]
mod probe {
    pub fn run() -> Option<String> {
        Some("this build has no CUDA backend (build with `--features cuda`)".to_owned())
    }
}

#[cfg(feature = "cuda")]
mod probe {
    use libloading::Library;

    /// The names cudarc (Burn's CUDA binding) tries for `lib{name}.so` on Linux.
    fn candidates(name: &str) -> Vec<String> {
        let mut names = vec![format!("lib{name}.so")];
        names.extend(["13", "12", "11", "10", "9", "1"].map(|v| format!("lib{name}.so.{v}")));
        names
    }

    fn open(name: &str) -> Option<Library> {
        candidates(name).into_iter().find_map(|file| {
            // SAFETY: loading a system library runs its initialisers; the CUDA driver and NVRTC
            // are the libraries Burn's CUDA backend would load in the same process anyway.
            unsafe { Library::new(&file) }.ok()
        })
    }

    pub fn run() -> Option<String> {
        let Some(driver) = open("cuda") else {
            return Some(
                "no NVIDIA driver: libcuda.so not found (install the driver; in a container, \
                 run it with GPU access)"
                    .to_owned(),
            );
        };
        type Init = unsafe extern "C" fn(u32) -> i32;
        type Count = unsafe extern "C" fn(*mut i32) -> i32;
        // SAFETY: `cuInit(unsigned int)` and `cuDeviceGetCount(int*)` have these C signatures in
        // every CUDA driver API version; the count is written to a local.
        let devices = unsafe {
            let (Ok(init), Ok(count)) = (
                driver.get::<Init>(b"cuInit\0"),
                driver.get::<Count>(b"cuDeviceGetCount\0"),
            ) else {
                return Some(
                    "libcuda.so lacks cuInit/cuDeviceGetCount (a broken driver install)".to_owned(),
                );
            };
            let status = init(0);
            if status != 0 {
                return Some(format!(
                    "the CUDA driver found no usable GPU (cuInit returned {status})"
                ));
            }
            let mut n = 0;
            if count(&mut n) != 0 {
                return Some("the CUDA driver could not count the GPUs".to_owned());
            }
            n
        };
        if devices < 1 {
            return Some("the CUDA driver reports no GPU".to_owned());
        }
        if open("nvrtc").is_none() {
            return Some(
                "NVRTC (libnvrtc.so, the CUDA runtime compiler) not found: install the CUDA \
                 toolkit's NVRTC and add its lib folder to LD_LIBRARY_PATH"
                    .to_owned(),
            );
        }
        match cubecl_cuda::install::cuda_path() {
            Some(root) if root.join("include").join("cuda_fp16.h").is_file() => None,
            Some(root) => Some(format!(
                "the CUDA headers are missing: {} has no include/cuda_fp16.h (set CUDA_PATH to \
                 the toolkit)",
                root.display()
            )),
            None => Some(
                "no CUDA toolkit found for the kernel headers (set CUDA_PATH, or install it in \
                 /usr/local/cuda)"
                    .to_owned(),
            ),
        }
    }
}
