//! `[dataset]`: where the images come from and how they are split and resized.

use serde::{Deserialize, Serialize};

use crate::data::{EMBEDDED_MNIST, LoadOptions};

/// `[dataset]`: where the images come from.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct DatasetConfig {
    /// `embedded:mnist`, or a folder (class sub-folders, MNIST IDX, or CIFAR-10 binary).
    pub source: String,
    /// Share held out for testing when the source has no test split.
    pub test_fraction: f64,
    /// Seed of that split and of `limit`'s sub-sample.
    pub split_seed: u64,
    /// 0 = all; else keep this many training samples (seeded, stratified).
    pub limit: usize,
    /// Resize every image to `[height, width]`; needed when image sizes differ.
    #[serde(
        skip_serializing_if = "Option::is_none",
        deserialize_with = "two_sizes"
    )]
    pub resize: Option<[u32; 2]>,
}

impl Default for DatasetConfig {
    fn default() -> Self {
        Self {
            source: EMBEDDED_MNIST.to_owned(),
            test_fraction: 0.2,
            split_seed: 0,
            limit: 0,
            resize: None,
        }
    }
}

/// `[height, width]`, exactly two values (serde's fixed-size arrays would drop a third).
fn two_sizes<'de, D: serde::Deserializer<'de>>(d: D) -> Result<Option<[u32; 2]>, D::Error> {
    let values: Option<Vec<u32>> = Option::deserialize(d)?;
    match values.as_deref() {
        None => Ok(None),
        Some(&[h, w]) => Ok(Some([h, w])),
        Some(other) => Err(serde::de::Error::custom(format!(
            "expected [height, width], got {} values",
            other.len()
        ))),
    }
}

impl DatasetConfig {
    /// The loader options these settings stand for.
    pub fn load_options(&self) -> LoadOptions {
        LoadOptions {
            test_fraction: self.test_fraction,
            split_seed: self.split_seed,
            resize: self.resize.map(|[h, w]| (h, w)),
            limit: self.limit,
        }
    }
}
