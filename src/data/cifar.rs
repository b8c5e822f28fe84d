//! CIFAR-10 binary batches (`data_batch_1.bin` … `data_batch_5.bin`, `test_batch.bin`).
//!
//! Each record is 1 label byte followed by 3072 pixel bytes: the 1024 red values of the 32×32
//! image row-major, then green, then blue. We store images channels-last (H×W×C).

use std::path::{Path, PathBuf};

use super::{DataError, Dataset, Origin, Shape};

const SIDE: usize = 32;
const PLANE: usize = SIDE * SIDE;
const RECORD: usize = 1 + 3 * PLANE;
/// Largest batch file read (a standard batch holds 10 000 records; allow 20×).
const MAX_BATCH_BYTES: u64 = 200_000 * RECORD as u64;
/// The class names of CIFAR-10, used when `batches.meta.txt` is absent.
const CLASS_NAMES: [&str; 10] = [
    "airplane",
    "automobile",
    "bird",
    "cat",
    "deer",
    "dog",
    "frog",
    "horse",
    "ship",
    "truck",
];

fn train_files(dir: &Path) -> Vec<PathBuf> {
    (1..=5)
        .map(|i| dir.join(format!("data_batch_{i}.bin")))
        .filter(|p| p.is_file())
        .collect()
}

/// True when `name` is that of a CIFAR-10 binary file (`data_batch_N.bin`, `test_batch.bin`,
/// `batches.meta.txt`).
pub fn is_cifar_name(name: &str) -> bool {
    name == "test_batch.bin"
        || name == "batches.meta.txt"
        || name
            .strip_prefix("data_batch_")
            .and_then(|rest| rest.strip_suffix(".bin"))
            .is_some_and(|n| !n.is_empty() && n.bytes().all(|b| b.is_ascii_digit()))
}

/// True when `dir` holds at least one CIFAR-10 training batch.
pub fn looks_like_cifar_folder(dir: &Path) -> bool {
    !train_files(dir).is_empty()
}

fn class_names(dir: &Path) -> Result<Vec<String>, DataError> {
    let meta = dir.join("batches.meta.txt");
    if !meta.is_file() {
        return Ok(CLASS_NAMES.iter().map(|s| (*s).to_owned()).collect());
    }
    let text = std::fs::read_to_string(&meta).map_err(|e| DataError::io(&meta, e))?;
    let names: Vec<String> = text
        .lines()
        .map(str::trim)
        .filter(|l| !l.is_empty())
        .map(str::to_owned)
        .collect();
    if names.len() != CLASS_NAMES.len() {
        return Err(DataError::at(
            &meta,
            format!("lists {} class names; CIFAR-10 has 10", names.len()),
        ));
    }
    super::check_class_names(&meta, &names)?;
    Ok(names)
}

/// Appends the records of one batch file to `out`.
pub fn read_batch(path: &Path, bytes: &[u8], out: &mut Dataset) -> Result<(), DataError> {
    if bytes.is_empty() || !bytes.len().is_multiple_of(RECORD) {
        return Err(DataError::at(
            path,
            format!(
                "wrong size for a CIFAR-10 batch: {} bytes is not a positive multiple of the {RECORD}-byte record",
                bytes.len()
            ),
        ));
    }
    let mut image = vec![0u8; 3 * PLANE];
    for (index, record) in bytes.chunks_exact(RECORD).enumerate() {
        let (&label, planes) = record.split_first().unwrap_or((&0, &[]));
        if usize::from(label) >= out.num_classes() {
            return Err(DataError::at(
                path,
                format!("record {index} has label {label}; CIFAR-10 labels are 0..=9"),
            ));
        }
        for (p, px) in image.chunks_exact_mut(3).enumerate() {
            for (c, v) in px.iter_mut().enumerate() {
                *v = planes.get(c * PLANE + p).copied().unwrap_or(0);
            }
        }
        out.push(
            &image,
            u16::from(label),
            Origin::Record {
                file: path.to_path_buf(),
                index,
            },
        );
    }
    Ok(())
}

fn read_files(files: &[PathBuf], names: &[String]) -> Result<Dataset, DataError> {
    let shape = Shape {
        height: SIDE,
        width: SIDE,
        channels: 3,
    };
    let mut data = Dataset::empty(shape, names.to_vec());
    for path in files {
        let size = std::fs::metadata(path)
            .map_err(|e| DataError::io(path, e))?
            .len();
        if size > MAX_BATCH_BYTES {
            return Err(DataError::at(
                path,
                format!(
                    "{size} bytes is larger than a CIFAR-10 batch can be ({MAX_BATCH_BYTES}); refusing to read it"
                ),
            ));
        }
        let bytes = std::fs::read(path).map_err(|e| DataError::io(path, e))?;
        read_batch(path, &bytes, &mut data)?;
    }
    Ok(data)
}

/// Loads every `data_batch_*.bin` present and `test_batch.bin` when it exists.
pub fn load_folder(dir: &Path) -> Result<(Dataset, Option<Dataset>), DataError> {
    let names = class_names(dir)?;
    let train = read_files(&train_files(dir), &names)?;
    let test_path = dir.join("test_batch.bin");
    let test = if test_path.is_file() {
        Some(read_files(&[test_path], &names)?)
    } else {
        None
    };
    Ok((train, test))
}

/// Encodes a dataset of 32×32×3 images as a CIFAR-10 batch (used by tests and exports).
pub fn encode_batch(data: &Dataset) -> Vec<u8> {
    let mut out = Vec::with_capacity(data.len() * RECORD);
    for i in 0..data.len() {
        let (Some(image), Some(&label)) = (data.image(i), data.labels.get(i)) else {
            continue;
        };
        out.push(label as u8);
        for c in 0..3 {
            out.extend(image.iter().skip(c).step_by(3));
        }
    }
    out
}
