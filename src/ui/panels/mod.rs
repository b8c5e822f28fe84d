//! The left panel's four steps, one file each, as `impl App` blocks: dataset, attack,
//! training, detection; and the top bar.

mod attack;
mod dataset;
mod detection;
mod top_bar;
mod training;
