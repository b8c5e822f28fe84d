//! Burn models. Each exposes `forward` (logits) and `features` (the penultimate layer), which
//! the detectors read.

pub mod cnn;

pub use cnn::{SmallCnn, SmallCnnConfig};
