//! A stand-in for `cubecl-llvm` 0.11.3, patched in by poisonscope's `Cargo.toml`.
//!
//! `cubecl-cuda` 0.11.3 always depends on `cubecl-llvm`, whose build script downloads an LLVM
//! bundle: the `cuda` feature could not build offline. cubecl-cuda has a second kernel compiler,
//! CUDA C++ through NVRTC at run time, chosen by its `cpp` feature, which poisonscope's `cuda`
//! feature turns on. With `cpp` the LLVM backend is compiled in but never selected, so this crate
//! provides only the items cubecl-cuda names, with the same paths and shapes:
//! [`nvptx::ptx_version::PtxVersion`] (the real driver → PTX table: it keys the kernel cache),
//! [`shared::lowered_features`], [`LlvmTarget`], [`PlironOptions`], [`NvptxModule`],
//! [`PlironArtifact`] and [`PlironCompiler`], whose `compile` returns an error naming this crate.
//! Nothing here links LLVM or runs a build script.

pub mod nvptx {
    pub mod ptx_version {
        use core::fmt;

        /// A PTX ISA version (`ptx87` = 8.7), as the real crate models it.
        #[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
        pub struct PtxVersion(u32);

        impl PtxVersion {
            /// The newest PTX version a driver (`cuDriverGetVersion`, e.g. 12080) loads.
            pub fn for_driver(driver: i32) -> Option<Self> {
                DRIVER_PTX
                    .iter()
                    .find(|(first_driver, _)| driver >= *first_driver)
                    .map(|(_, ptx)| Self(*ptx))
            }
        }

        impl fmt::Display for PtxVersion {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                write!(f, "ptx{}", self.0)
            }
        }

        /// First driver version of each PTX version (copied from cubecl-llvm 0.11.3).
        const DRIVER_PTX: &[(i32, u32)] = &[
            (13030, 93),
            (13020, 92),
            (13010, 91),
            (13000, 90),
            (12090, 88),
            (12080, 87),
            (12050, 85),
            (12040, 84),
            (12030, 83),
            (12020, 82),
            (12010, 81),
            (12000, 80),
            (11080, 78),
            (11070, 77),
            (11060, 76),
            (11050, 75),
            (11040, 74),
            (11030, 73),
            (11020, 72),
            (11010, 71),
            (11000, 70),
            (10020, 65),
            (10010, 64),
            (10000, 63),
        ];

        #[cfg(test)]
        mod tests {
            use super::*;

            #[test]
            fn a_driver_gets_the_newest_version_it_loads() {
                assert_eq!(PtxVersion::for_driver(12080), Some(PtxVersion(87)));
                assert_eq!(PtxVersion::for_driver(12060), Some(PtxVersion(85)));
                assert_eq!(PtxVersion::for_driver(8000), None);
                assert_eq!(PtxVersion(87).to_string(), "ptx87");
            }
        }
    }
}

pub mod shared {
    pub mod lowered_features {
        use cubecl_core::ir::DeviceProperties;

        /// The GPU target a device's features would be narrowed for.
        #[derive(Clone, Copy, Debug, PartialEq, Eq)]
        pub enum GpuTarget {
            Nvptx,
        }

        /// The real crate narrows `props` to what its LLVM lowering supports. cubecl-cuda calls
        /// it only when the LLVM backend is selected, which the `cpp` feature rules out; the
        /// C++ backend's properties are left as they are.
        pub fn restrict_features(_props: &mut DeviceProperties, _target: GpuTarget) {}
    }
}

use cubecl_core::ir::nvidia::SmArch;
use cubecl_environment::backtrace::BackTrace;
use cubecl_runtime::compiler::{CompilationError, Compiler};
use cubecl_runtime::kernel::{BufferIOAttr, KernelDefinition};
use nvptx::ptx_version::PtxVersion;

/// The LLVM target.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum LlvmTarget {
    #[default]
    Cpu,
    Nvptx,
}

/// The LLVM backend's options (the fields cubecl-cuda sets).
#[derive(Clone, Debug, Default)]
pub struct PlironOptions {
    /// AMDGPU architecture in the real crate; always `None` from cubecl-cuda.
    pub arch: Option<String>,
    pub sm_arch: Option<SmArch>,
    pub ptx_version: Option<PtxVersion>,
    pub grid_constants: bool,
}

/// A compiled PTX module (never produced here).
#[derive(Clone, Debug)]
pub struct NvptxModule {
    pub ptx: Vec<core::ffi::c_char>,
    pub entrypoint: String,
    pub ir: String,
    pub shared_memory_size: usize,
    pub io: Vec<BufferIOAttr>,
}

/// A compiled kernel of the LLVM backend (never produced here).
#[derive(Clone, Debug)]
pub enum PlironArtifact {
    NvptxCode(NvptxModule),
}

impl core::fmt::Display for PlironArtifact {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        match self {
            Self::NvptxCode(module) => f.write_str(&module.ir),
        }
    }
}

/// The LLVM kernel compiler: not available in this build.
#[derive(Clone, Debug, Default)]
pub struct PlironCompiler {
    pub target: LlvmTarget,
}

impl Compiler for PlironCompiler {
    type Representation = PlironArtifact;
    type CompilationOptions = PlironOptions;

    fn compile(
        &mut self,
        _kernel: KernelDefinition,
        _options: &Self::CompilationOptions,
    ) -> Result<Self::Representation, CompilationError> {
        Err(CompilationError::Generic {
            reason: "this build has no LLVM kernel compiler (poisonscope's cubecl-llvm stand-in); \
                     kernels compile through cubecl-cuda's CUDA C++ backend (feature `cpp`)"
                .to_owned(),
            backtrace: BackTrace::capture(),
        })
    }

    fn extension(&self) -> &'static str {
        match self.target {
            LlvmTarget::Cpu => "plir",
            LlvmTarget::Nvptx => "ll",
        }
    }

    fn lang_tag(&self) -> &'static str {
        match self.target {
            LlvmTarget::Cpu => "mlir",
            LlvmTarget::Nvptx => "llvm",
        }
    }
}
