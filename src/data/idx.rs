//! MNIST IDX files (`train-images-idx3-ubyte`, `train-labels-idx1-ubyte`, optional `t10k-*`),
//! raw or gzip-compressed.

use std::io::Read;
use std::path::{Path, PathBuf};

use super::{DataError, Dataset, Origin, Shape};

/// Magic number of an IDX file of unsigned bytes with 3 dimensions (images).
const IMAGES_MAGIC: u32 = 0x0000_0803;
/// Magic number of an IDX file of unsigned bytes with 1 dimension (labels).
const LABELS_MAGIC: u32 = 0x0000_0801;
/// The largest decompressed IDX file we accept (a guard against gzip bombs).
const MAX_IDX_BYTES: u64 = 2 << 30;
/// Largest image side accepted from an IDX header.
const MAX_SIDE: usize = 4096;

/// The file name stems we look for, with the separators seen in the wild
/// (`train-images-idx3-ubyte` and `train-images.idx3-ubyte`).
fn candidates(prefix: &str, kind: &str, dims: u8) -> Vec<String> {
    let mut names = Vec::new();
    for sep in ["-", "."] {
        let stem = format!("{prefix}-{kind}{sep}idx{dims}-ubyte");
        names.push(format!("{stem}.gz"));
        names.push(stem);
    }
    names
}

fn find(dir: &Path, prefix: &str, kind: &str, dims: u8) -> Option<PathBuf> {
    candidates(prefix, kind, dims)
        .into_iter()
        .map(|name| dir.join(name))
        .find(|p| p.is_file())
}

/// True when `name` is that of an IDX file (`…-idx3-ubyte`, `….idx1-ubyte`, optionally `.gz`).
pub fn is_idx_name(name: &str) -> bool {
    let stem = name.strip_suffix(".gz").unwrap_or(name);
    ["idx1-ubyte", "idx2-ubyte", "idx3-ubyte", "idx4-ubyte"]
        .iter()
        .any(|end| stem.ends_with(end))
}

/// True when `dir` holds MNIST training images in IDX format.
pub fn looks_like_idx_folder(dir: &Path) -> bool {
    find(dir, "train", "images", 3).is_some()
}

/// Reads a whole file, gunzipping it when its name ends in `.gz`.
pub fn read_maybe_gz(path: &Path) -> Result<Vec<u8>, DataError> {
    let file = std::fs::File::open(path).map_err(|e| DataError::io(path, e))?;
    let gz = path
        .extension()
        .is_some_and(|e| e.eq_ignore_ascii_case("gz"));
    parse_maybe_gz(path, file, gz)
}

fn parse_maybe_gz(path: &Path, reader: impl Read, gz: bool) -> Result<Vec<u8>, DataError> {
    let fail = |e: std::io::Error| {
        if gz {
            DataError::at(path, format!("corrupt gzip data: {e}"))
        } else {
            DataError::io(path, e)
        }
    };
    let mut reader: Box<dyn Read> = if gz {
        // Every member of a multi-member gzip, like `gunzip` does.
        Box::new(flate2::read::MultiGzDecoder::new(reader))
    } else {
        Box::new(reader)
    };
    // The header says how long the data is: read no more than that (plus one byte to notice
    // a longer file), so a small gzip cannot inflate past what its header promises.
    let mut bytes = Vec::new();
    (&mut reader)
        .take(4)
        .read_to_end(&mut bytes)
        .map_err(fail)?;
    let dims = bytes.get(3).copied().unwrap_or(0);
    (&mut reader)
        .take(4 * u64::from(dims))
        .read_to_end(&mut bytes)
        .map_err(fail)?;
    let header = bytes.len() as u64;
    let body = (0..usize::from(dims)).try_fold(1u64, |acc, d| {
        be_u32(&bytes, 4 + 4 * d).and_then(|v| acc.checked_mul(u64::from(v)))
    });
    let total = body.and_then(|b| b.checked_add(header));
    match total {
        Some(total) if total <= MAX_IDX_BYTES => {
            (&mut reader)
                .take(total - header + 1)
                .read_to_end(&mut bytes)
                .map_err(fail)?;
            Ok(bytes)
        }
        // A header too short to size the data: the parsers say what is wrong with it.
        None if bytes.len() < 4 + 4 * usize::from(dims) => Ok(bytes),
        _ => Err(DataError::at(
            path,
            format!(
                "its header asks for more than {MAX_IDX_BYTES} bytes of data; refusing to read it"
            ),
        )),
    }
}

fn be_u32(bytes: &[u8], at: usize) -> Option<u32> {
    let b: [u8; 4] = bytes.get(at..at + 4)?.try_into().ok()?;
    Some(u32::from_be_bytes(b))
}

/// Parses an IDX image file: returns (count, height, width, pixels).
pub fn parse_images(
    path: &Path,
    bytes: &[u8],
) -> Result<(usize, usize, usize, Vec<u8>), DataError> {
    let (Some(magic), Some(n), Some(h), Some(w)) = (
        be_u32(bytes, 0),
        be_u32(bytes, 4),
        be_u32(bytes, 8),
        be_u32(bytes, 12),
    ) else {
        return Err(DataError::at(
            path,
            format!(
                "too short for an IDX image header ({} bytes, need 16)",
                bytes.len()
            ),
        ));
    };
    if magic != IMAGES_MAGIC {
        return Err(DataError::at(
            path,
            format!(
                "wrong IDX magic 0x{magic:08x}; an image file of u8 (3 dims) has 0x{IMAGES_MAGIC:08x}"
            ),
        ));
    }
    let (n, h, w) = (n as usize, h as usize, w as usize);
    if h == 0 || w == 0 || h > MAX_SIDE || w > MAX_SIDE {
        return Err(DataError::at(
            path,
            format!("implausible image size {h}×{w} in the IDX header"),
        ));
    }
    let expected = 16 + n * h * w;
    if bytes.len() > expected {
        return Err(DataError::at(
            path,
            format!(
                "header says {n} images of {h}×{w} ({expected} bytes) but the file holds more data than that"
            ),
        ));
    }
    if bytes.len() < expected {
        return Err(DataError::at(
            path,
            format!(
                "header says {n} images of {h}×{w} ({expected} bytes) but the file has {} bytes",
                bytes.len()
            ),
        ));
    }
    Ok((n, h, w, bytes.get(16..).unwrap_or_default().to_vec()))
}

/// Parses an IDX label file.
pub fn parse_labels(path: &Path, bytes: &[u8]) -> Result<Vec<u16>, DataError> {
    let (Some(magic), Some(n)) = (be_u32(bytes, 0), be_u32(bytes, 4)) else {
        return Err(DataError::at(
            path,
            format!(
                "too short for an IDX label header ({} bytes, need 8)",
                bytes.len()
            ),
        ));
    };
    if magic != LABELS_MAGIC {
        return Err(DataError::at(
            path,
            format!(
                "wrong IDX magic 0x{magic:08x}; a label file of u8 (1 dim) has 0x{LABELS_MAGIC:08x}"
            ),
        ));
    }
    let n = n as usize;
    if bytes.len() != 8 + n {
        return Err(DataError::at(
            path,
            format!(
                "header says {n} labels ({} bytes) but the file has {} bytes",
                8 + n,
                bytes.len()
            ),
        ));
    }
    Ok(bytes
        .get(8..)
        .unwrap_or_default()
        .iter()
        .map(|&b| u16::from(b))
        .collect())
}

/// Builds a dataset from parsed images and labels; `origin` names each record.
pub fn assemble(
    images_path: &Path,
    images: &[u8],
    labels_path: &Path,
    labels: &[u8],
    class_count: Option<usize>,
    origin: impl Fn(usize) -> Origin,
) -> Result<Dataset, DataError> {
    let (n, h, w, pixels) = parse_images(images_path, images)?;
    let labels = parse_labels(labels_path, labels)?;
    if labels.len() != n {
        return Err(DataError::at(
            labels_path,
            format!(
                "holds {} labels but {} holds {n} images",
                labels.len(),
                images_path.display()
            ),
        ));
    }
    let max_label = labels.iter().copied().max().map_or(0, usize::from);
    let classes = class_count.unwrap_or(max_label + 1).max(max_label + 1);
    Ok(Dataset {
        shape: Shape {
            height: h,
            width: w,
            channels: 1,
        },
        pixels,
        labels,
        class_names: (0..classes).map(|c| c.to_string()).collect(),
        origins: (0..n).map(origin).collect(),
    })
}

fn load_pair(dir: &Path, prefix: &str) -> Result<Option<Dataset>, DataError> {
    let Some(images_path) = find(dir, prefix, "images", 3) else {
        return Ok(None);
    };
    let Some(labels_path) = find(dir, prefix, "labels", 1) else {
        return Err(DataError::at(
            &images_path,
            format!(
                "has no label file beside it (looked for {})",
                candidates(prefix, "labels", 1).join(", ")
            ),
        ));
    };
    let images = read_maybe_gz(&images_path)?;
    let labels = read_maybe_gz(&labels_path)?;
    let file = images_path.clone();
    assemble(
        &images_path,
        &images,
        &labels_path,
        &labels,
        None,
        move |index| Origin::Record {
            file: file.clone(),
            index,
        },
    )
    .map(Some)
}

/// Loads `train-*` and, when present, `t10k-*` from `dir`.
pub fn load_folder(dir: &Path) -> Result<(Dataset, Option<Dataset>), DataError> {
    let Some(mut train) = load_pair(dir, "train")? else {
        return Err(DataError::at(dir, "no train-images-idx3-ubyte[.gz] file"));
    };
    let mut test = load_pair(dir, "t10k")?;
    if let Some(test) = test.as_mut() {
        if test.shape != train.shape {
            return Err(DataError::at(
                dir,
                format!(
                    "t10k images are {}×{} but train images are {}×{}",
                    test.shape.height, test.shape.width, train.shape.height, train.shape.width
                ),
            ));
        }
        let classes = train.num_classes().max(test.num_classes());
        let names: Vec<String> = (0..classes).map(|c| c.to_string()).collect();
        train.class_names.clone_from(&names);
        test.class_names = names;
    }
    Ok((train, test))
}

/// Encodes images (N×H×W, one channel) as an IDX image file.
pub fn encode_images(n: usize, height: usize, width: usize, pixels: &[u8]) -> Vec<u8> {
    let mut out = Vec::with_capacity(16 + pixels.len());
    for v in [IMAGES_MAGIC, n as u32, height as u32, width as u32] {
        out.extend_from_slice(&v.to_be_bytes());
    }
    out.extend_from_slice(pixels);
    out
}

/// Encodes labels as an IDX label file.
pub fn encode_labels(labels: &[u8]) -> Vec<u8> {
    let mut out = Vec::with_capacity(8 + labels.len());
    out.extend_from_slice(&LABELS_MAGIC.to_be_bytes());
    out.extend_from_slice(&(labels.len() as u32).to_be_bytes());
    out.extend_from_slice(labels);
    out
}

/// Gunzips in-memory bytes (used for the embedded assets).
pub fn gunzip(name: &Path, bytes: &[u8]) -> Result<Vec<u8>, DataError> {
    parse_maybe_gz(name, bytes, true)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_trip() {
        let pixels: Vec<u8> = (0..2 * 3 * 4).map(|v| v as u8).collect();
        let images = encode_images(2, 3, 4, &pixels);
        let labels = encode_labels(&[1, 0]);
        let p = Path::new("x");
        let d = assemble(p, &images, p, &labels, None, |index| Origin::Record {
            file: PathBuf::from("x"),
            index,
        })
        .unwrap();
        assert_eq!(d.len(), 2);
        assert_eq!(d.shape.height, 3);
        assert_eq!(d.image(1).unwrap(), &pixels[12..]);
        assert_eq!(d.labels, vec![1, 0]);
    }

    #[test]
    fn wrong_magic_is_named() {
        let mut images = encode_images(1, 2, 2, &[0; 4]);
        images[3] = 0x01;
        let err = parse_images(Path::new("a/imgs"), &images)
            .unwrap_err()
            .to_string();
        assert!(
            err.starts_with("a/imgs: wrong IDX magic 0x00000801"),
            "{err}"
        );
    }

    fn gz(bytes: &[u8]) -> Vec<u8> {
        use std::io::Write as _;
        let mut e = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast());
        e.write_all(bytes).unwrap();
        e.finish().unwrap()
    }

    #[test]
    fn a_multi_member_gzip_is_read_whole() {
        let pixels: Vec<u8> = (0..3 * 2 * 2).map(|v| v as u8).collect();
        let images = encode_images(3, 2, 2, &pixels);
        // Two gzip members, split inside the pixel data (what `cat a.gz b.gz` makes).
        let mut two = gz(&images[..20]);
        two.extend(gz(&images[20..]));
        let read = gunzip(Path::new("x.gz"), &two).unwrap();
        assert_eq!(read, images);
    }

    #[test]
    fn inflation_stops_at_what_the_header_promises() {
        let mut bytes = encode_images(1, 2, 2, &[7; 4]);
        bytes.extend(std::iter::repeat_n(0u8, 1 << 20));
        let read = gunzip(Path::new("x.gz"), &gz(&bytes)).unwrap();
        // The header's 20 bytes and one more to tell the file is longer.
        assert_eq!(read.len(), 21);
        let err = parse_images(Path::new("x.gz"), &read)
            .unwrap_err()
            .to_string();
        assert!(err.contains("holds more data"), "{err}");
    }
}
