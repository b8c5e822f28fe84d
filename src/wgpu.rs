//! Whether training can run on a wgpu adapter (Burn's wgpu backend: Vulkan, Metal or DirectX 12;
//! AMD, Intel, Apple and NVIDIA GPUs, or Mesa's lavapipe, a software Vulkan device), and which
//! adapter it is. The probe creates the runtime once per process, with wgpu's default choice (a
//! high-performance adapter first; `CUBECL_WGPU_DEFAULT_DEVICE` overrides it) and keeps the
//! device it made, so every later run uses the adapter the probe described. No dependency on the
//! rest of the crate, so the config can check `train.device` with it.

/// What kind of adapter wgpu found.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum AdapterKind {
    Discrete,
    Integrated,
    Virtual,
    /// A software renderer on the CPU (Mesa's lavapipe/llvmpipe, SwiftShader, WARP): a correctness
    /// device, slower than the CPU backend. `auto` never picks it.
    Software,
    Other,
}

impl AdapterKind {
    fn words(self) -> &'static str {
        match self {
            Self::Discrete => "discrete GPU",
            Self::Integrated => "integrated GPU",
            Self::Virtual => "virtual GPU",
            Self::Software => "software renderer on the CPU",
            Self::Other => "unknown kind",
        }
    }
}

/// The adapter the wgpu runtime was created on.
#[derive(Clone, Debug)]
pub struct Adapter {
    /// The driver's name for it, e.g. "llvmpipe (LLVM 15.0.6, 256 bits)".
    pub name: String,
    /// The graphics API: "Vulkan", "Metal", "Dx12", "Gl".
    pub api: String,
    pub kind: AdapterKind,
    /// The Burn device on this adapter.
    #[cfg(feature = "wgpu")]
    pub device: burn::tensor::Device,
}

impl Adapter {
    /// One line: name, API, kind.
    pub fn describe(&self) -> String {
        format!("{} ({}, {})", self.name, self.api, self.kind.words())
    }

    pub fn is_software(&self) -> bool {
        self.kind == AdapterKind::Software
    }
}

/// The wgpu adapter training would use, or why there is none (one line). Probed once per
/// process; the first call takes a moment (it creates the device), later calls return at once.
pub fn wgpu_adapter() -> Result<&'static Adapter, String> {
    static PROBE: std::sync::OnceLock<Result<Adapter, String>> = std::sync::OnceLock::new();
    PROBE.get_or_init(probe::run).as_ref().map_err(Clone::clone)
}

/// Whether the probe has finished (the window asks before drawing, so it never waits on it).
pub fn probed() -> bool {
    PROBED.load(std::sync::atomic::Ordering::Acquire)
}

static PROBED: std::sync::atomic::AtomicBool = std::sync::atomic::AtomicBool::new(false);

/// Starts the probe on a thread of its own (the window calls this when it opens, so its device
/// choice never waits for a driver).
pub fn probe_in_background() {
    if probed() {
        return;
    }
    let _ = std::thread::Builder::new()
        .name("poisonscope-wgpu-probe".into())
        .spawn(|| {
            let _ = wgpu_adapter();
        });
}

#[cfg(not(feature = "wgpu"))]
mod probe {
    pub fn run() -> Result<super::Adapter, String> {
        super::PROBED.store(true, std::sync::atomic::Ordering::Release);
        Err("this build has no wgpu backend (build with `--features wgpu`)".to_owned())
    }
}

#[cfg(feature = "wgpu")]
mod probe {
    use burn::tensor::Device;
    use burn::tensor::wgpu::wgpu::DeviceType;
    use burn::tensor::wgpu::{WgpuBackend, WgpuSetup};

    use super::{Adapter, AdapterKind};

    pub fn run() -> Result<Adapter, String> {
        let found = found();
        super::PROBED.store(true, std::sync::atomic::Ordering::Release);
        found
    }

    /// Creates the runtime on `api`; the error in one line.
    fn create(api: WgpuBackend) -> Result<(Device, WgpuSetup), String> {
        let _quiet = QuietStderr::without_session();
        // wgpu answers "no adapter" with an error, but a broken driver can panic inside it: that
        // is one line too, not a backtrace.
        let attempt =
            std::panic::catch_unwind(|| Device::wgpu_options().graphics_api(api).init_with_setup());
        match attempt {
            Ok(Ok(made)) => Ok(made),
            Ok(Err(e)) => Err(e.to_string()),
            Err(panic) => Err(panic
                .downcast_ref::<String>()
                .cloned()
                .or_else(|| panic.downcast_ref::<&str>().map(|s| (*s).to_owned()))
                .unwrap_or_else(|| "the wgpu runtime panicked".to_owned())),
        }
    }

    /// The graphics APIs tried, best first. Not OpenGL: wgpu's automatic choice goes on to it
    /// when Vulkan offers only a software device, and Mesa's OpenGL probe prints
    /// "XDG_RUNTIME_DIR is invalid" four times without a desktop session; a GPU with OpenGL but no
    /// Vulkan driver predates 2014, and its compute support is the weakest of the APIs.
    fn apis() -> &'static [(WgpuBackend, &'static str)] {
        if cfg!(target_os = "macos") {
            &[(WgpuBackend::Metal, "Metal")]
        } else if cfg!(windows) {
            &[
                (WgpuBackend::Vulkan, "Vulkan"),
                (WgpuBackend::Dx12, "DirectX 12"),
            ]
        } else {
            &[(WgpuBackend::Vulkan, "Vulkan")]
        }
    }

    fn found() -> Result<Adapter, String> {
        let mut failures = Vec::new();
        let mut made = None;
        for &(api, name) in apis() {
            match create(api) {
                Ok(m) => {
                    made = Some(m);
                    break;
                }
                Err(why) if why.contains("No adapter available") => {
                    failures.push(format!("no {name} adapter"));
                }
                Err(why) => failures.push(format!("{name}: {why}")),
            }
        }
        let Some((device, setup)) = made else {
            return Err(unusable(&failures.join("; ")));
        };
        let info = setup.adapter.get_info();
        let kind = match info.device_type {
            DeviceType::DiscreteGpu => AdapterKind::Discrete,
            DeviceType::IntegratedGpu => AdapterKind::Integrated,
            DeviceType::VirtualGpu => AdapterKind::Virtual,
            DeviceType::Cpu => AdapterKind::Software,
            DeviceType::Other => AdapterKind::Other,
        };
        Ok(Adapter {
            name: info.name.trim().to_owned(),
            api: format!("{:?}", info.backend),
            kind,
            device,
        })
    }

    fn unusable(why: &str) -> String {
        let why = why.lines().next().unwrap_or_default().trim();
        format!(
            "no usable wgpu adapter ({why}); on Linux install a Vulkan driver (Debian/Ubuntu: \
             mesa-vulkan-drivers and libvulkan1, which include the software device lavapipe)"
        )
    }

    /// Mesa's Vulkan drivers (lavapipe included) print "error: XDG_RUNTIME_DIR is invalid or not
    /// set in the environment." two to four times while wgpu lists the adapters, when there is no
    /// desktop session (a server, a container, CI): the Wayland part of their window-system
    /// support looking for a display, which compute never uses. The lines read like ours and
    /// mean nothing here, so while the probe runs without a session, stderr goes to /dev/null;
    /// what the probe finds wrong is returned, not printed. With a session nothing is hidden.
    struct QuietStderr {
        #[cfg(unix)]
        saved: Option<i32>,
    }

    impl QuietStderr {
        fn without_session() -> Self {
            #[cfg(unix)]
            {
                let session = std::env::var_os("XDG_RUNTIME_DIR")
                    .is_some_and(|dir| std::path::Path::new(&dir).is_dir());
                if session {
                    return Self { saved: None };
                }
                // SAFETY: plain descriptor calls on stderr (2) and a descriptor we open; the saved
                // copy is restored and closed in `drop`, and nothing else holds these numbers.
                let saved = unsafe {
                    let saved = libc::dup(2);
                    let null = libc::open(c"/dev/null".as_ptr(), libc::O_WRONLY);
                    if saved < 0 || null < 0 {
                        if saved >= 0 {
                            libc::close(saved);
                        }
                        if null >= 0 {
                            libc::close(null);
                        }
                        return Self { saved: None };
                    }
                    libc::dup2(null, 2);
                    libc::close(null);
                    saved
                };
                Self { saved: Some(saved) }
            }
            #[cfg(not(unix))]
            Self {}
        }
    }

    impl Drop for QuietStderr {
        fn drop(&mut self) {
            #[cfg(unix)]
            if let Some(saved) = self.saved.take() {
                // SAFETY: `saved` is the duplicate of stderr made in `without_session`.
                unsafe {
                    libc::dup2(saved, 2);
                    libc::close(saved);
                }
            }
        }
    }
}
