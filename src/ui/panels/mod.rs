//! The left panel's four steps, one file each, as `impl App` blocks: dataset, attack,
//! training, detection.

mod attack;
mod dataset;
mod detection;
mod training;
