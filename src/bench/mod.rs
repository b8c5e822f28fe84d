//! `poisonscope bench`: training throughput of the small CNN on the embedded MNIST set, SGD and
//! SAM, with the PyTorch reference's settings (x/255 inputs, no augmentation, batch 128), side by
//! side with PyTorch when asked ([`train`]); frame time of the inspection view ([`ui`]).

mod rerank;
mod train;
mod ui;

use clap::{Args, Subcommand};
use poisonscope::config::DeviceKind;

#[derive(Subcommand)]
pub enum What {
    /// Images per second of SGD and SAM training steps (and, with --compare-reference, PyTorch's
    /// in the same window).
    Train(TrainArgs),
    /// Frame time of the inspection view (layout and tessellation on the CPU, no GPU painting)
    /// with POINTS samples in the gallery and the scatter, the pointer hovering the scatter.
    Ui {
        #[arg(long, default_value_t = 60_000)]
        points: usize,
        /// Timed frames (after 5 untimed ones).
        #[arg(long, default_value_t = 60)]
        frames: usize,
    },
    /// "Find more like these" against the detectors' own rankings, on a saved run with a planted
    /// attack: poisons among the next NEXT images after a reviewer confirmed the first MARKS.
    Rerank {
        /// A `run` or `compare` folder.
        run_dir: std::path::PathBuf,
        #[arg(long, default_value_t = 5)]
        marks: usize,
        #[arg(long, default_value_t = 50)]
        next: usize,
        /// Print JSON.
        #[arg(long)]
        json: bool,
    },
}

#[derive(Args, Clone, Debug)]
pub struct TrainArgs {
    /// The model: cnn (the reference's small CNN) or preact-resnet18.
    #[arg(long, value_enum, default_value_t = Model::Cnn)]
    model: Model,
    /// Image side in pixels: 28 trains on the embedded digits, any other size (say 32) on
    /// random images of that size (only the speed is measured).
    #[arg(long, default_value_t = 28, value_parser = clap::value_parser!(u16).range(8..=512))]
    size: u16,
    /// Image channels, 1 or 3 (3 trains on random images).
    #[arg(long, default_value_t = 1, value_parser = clap::value_parser!(u8).range(1..=3))]
    channels: u8,
    /// Timed batches per optimiser (after the warm-up batches).
    #[arg(long, default_value_t = 20)]
    batches: usize,
    /// Untimed batches first.
    #[arg(long, default_value_t = 3)]
    warmup: usize,
    #[arg(long, default_value_t = 128)]
    batch_size: usize,
    /// Where to train: cpu, cuda (a build with `--features cuda`), wgpu (a build with
    /// `--features wgpu`), auto.
    #[arg(long, value_enum, default_value_t = Device::Cpu)]
    device: Device,
    /// CPU thread counts to measure, comma-separated (default: RAYON_NUM_THREADS, or every core).
    #[arg(long, value_delimiter = ',')]
    threads: Vec<usize>,
    /// Measurement rounds; with several, the medians are reported.
    #[arg(long, default_value_t = 1)]
    rounds: usize,
    /// Also time one whole epoch: 8 000 training images, then the evaluation of 2 000 test and
    /// 1 783 triggered images.
    #[arg(long)]
    epoch: bool,
    /// Run the PyTorch reference's training step (benches/torch_step.py) in the same rounds,
    /// interleaved with ours, and print the ratios. Needs a Python with torch (`--python`).
    #[arg(long)]
    compare_reference: bool,
    /// The Python interpreter for --compare-reference.
    #[arg(long, default_value = "python3")]
    python: String,
    /// Print JSON.
    #[arg(long)]
    json: bool,
    /// Also print where our step's time goes, layer by layer (the fused CPU layers' time,
    /// summed over every timed and untimed batch of the last round).
    #[arg(long)]
    profile: bool,
}

/// `--model` (clap's names for [`poisonscope::config::ModelKind`]).
#[derive(Clone, Copy, Debug, clap::ValueEnum)]
pub enum Model {
    Cnn,
    #[value(name = "preact-resnet18")]
    PreactResnet18,
}

impl From<Model> for poisonscope::config::ModelKind {
    fn from(model: Model) -> Self {
        match model {
            Model::Cnn => Self::Cnn,
            Model::PreactResnet18 => Self::PreActResNet18,
        }
    }
}

impl Model {
    /// The name `benches/torch_step.py --model` takes.
    fn name(self) -> &'static str {
        match self {
            Self::Cnn => "cnn",
            Self::PreactResnet18 => "preact-resnet18",
        }
    }
}

/// `--device` (clap's names for [`DeviceKind`]).
#[derive(Clone, Copy, Debug, clap::ValueEnum)]
pub enum Device {
    Cpu,
    Cuda,
    Wgpu,
    Auto,
}

impl From<Device> for DeviceKind {
    fn from(device: Device) -> Self {
        match device {
            Device::Cpu => Self::Cpu,
            Device::Cuda => Self::Cuda,
            Device::Wgpu => Self::Wgpu,
            Device::Auto => Self::Auto,
        }
    }
}

/// The build profile this binary was compiled with (speed figures are meaningless without it).
fn profile() -> &'static str {
    if cfg!(debug_assertions) {
        "debug/test profile (opt-level 1, numeric crates at 3)"
    } else {
        "release"
    }
}

pub fn run(what: What) -> anyhow::Result<()> {
    match what {
        What::Train(args) => train::run(&args),
        What::Ui { points, frames } => ui::frames(points, frames),
        What::Rerank {
            run_dir,
            marks,
            next,
            json,
        } => rerank::run(&run_dir, marks, next, json),
    }
}
