//! poisonscope: find poisoned (backdoored) samples in an untrusted image dataset.
//!
//! Data flows one way (see `shared/design/ARCHITECTURE.md`):
//! dataset → attack → train → features → scaling → detectors → metrics → report / GUI.
//! This crate is the library behind the `poisonscope` binary, so tests can drive every layer.

pub mod allocator;
pub mod artifacts;
pub mod attack;
pub mod check;
pub mod config;
pub mod cuda;
pub mod data;
pub mod detect;
pub mod diagnostics;
pub mod html_report;
pub mod interrupt;
mod kinds;
pub mod metrics;
pub mod model;
pub mod run;
pub mod scenarios;
pub mod sweep;
pub mod train;
pub mod ui;
pub mod wgpu;
