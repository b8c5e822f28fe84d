//! A folder with one sub-folder of images per class (folder name = class name), or a folder
//! with `train/` and `test/` sub-folders laid out that way. PNG, JPEG and BMP; grayscale or RGB.

use std::path::{Path, PathBuf};

use image::{DynamicImage, ImageReader, Limits};

use super::{DataError, Dataset, Origin, Shape};

/// File extensions we decode (compared case-insensitively).
pub const IMAGE_EXTENSIONS: [&str; 4] = ["png", "jpg", "jpeg", "bmp"];
/// Largest image side we decode; larger headers are refused before any allocation.
const MAX_SIDE: u32 = 8192;
/// Largest allocation the decoder may make for one image.
const MAX_ALLOC_BYTES: u64 = 256 << 20;

fn utf8_name(path: &Path) -> Result<String, DataError> {
    let name = path.file_name().unwrap_or_default();
    name.to_str().map(str::to_owned).ok_or_else(|| {
        DataError::at(
            path,
            format!(
                "file name is not valid UTF-8 ({:?}); rename it",
                name.to_string_lossy()
            ),
        )
    })
}

/// The entries of `dir`, sorted by name, hidden ones (leading `.`) left out.
fn entries(dir: &Path) -> Result<Vec<PathBuf>, DataError> {
    let read = std::fs::read_dir(dir).map_err(|e| DataError::io(dir, e))?;
    let mut out = Vec::new();
    for entry in read {
        let path = entry.map_err(|e| DataError::io(dir, e))?.path();
        let name = utf8_name(&path)?;
        if !name.starts_with('.') {
            out.push(path);
        }
    }
    out.sort();
    Ok(out)
}

/// The names of the sub-folders of `dir`, sorted, hidden ones left out.
fn subfolder_names(dir: &Path) -> Result<Vec<String>, DataError> {
    Ok(entries(dir)?
        .iter()
        .filter(|p| p.is_dir())
        .filter_map(|p| p.file_name().and_then(|n| n.to_str()).map(str::to_owned))
        .collect())
}

/// True when the file name has one of [`IMAGE_EXTENSIONS`].
pub fn is_image_file(path: &Path) -> bool {
    path.extension()
        .and_then(|e| e.to_str())
        .is_some_and(|e| IMAGE_EXTENSIONS.iter().any(|x| x.eq_ignore_ascii_case(e)))
}

/// Decodes one image file with the decoder limits that stop decompression bombs.
pub fn decode(path: &Path) -> Result<DynamicImage, DataError> {
    let mut reader = ImageReader::open(path)
        .map_err(|e| DataError::io(path, e))?
        .with_guessed_format()
        .map_err(|e| DataError::io(path, e))?;
    let mut limits = Limits::default();
    limits.max_image_width = Some(MAX_SIDE);
    limits.max_image_height = Some(MAX_SIDE);
    limits.max_alloc = Some(MAX_ALLOC_BYTES);
    reader.limits(limits);
    reader
        .decode()
        .map_err(|e| DataError::at(path, format!("cannot decode image: {e}")))
}

struct Found {
    class_names: Vec<String>,
    /// (class index, file) in class then file-name order.
    files: Vec<(u16, PathBuf)>,
}

fn find_class_folders(dir: &Path, known: Option<&[String]>) -> Result<Found, DataError> {
    let all = entries(dir)?;
    let class_dirs: Vec<&PathBuf> = all.iter().filter(|p| p.is_dir()).collect();
    if class_dirs.is_empty() {
        let loose = all.iter().filter(|p| is_image_file(p)).count();
        let message = if loose > 0 {
            format!(
                "holds {loose} images but no class sub-folders; put each class's images in a sub-folder named after the class"
            )
        } else {
            "empty: no class sub-folders of images (nor IDX or CIFAR-10 files)".to_owned()
        };
        return Err(DataError::at(dir, message));
    }
    let mut class_names: Vec<String> = known.map(<[String]>::to_vec).unwrap_or_default();
    let mut files = Vec::new();
    for class_dir in class_dirs {
        let name = utf8_name(class_dir)?;
        let class = match class_names.iter().position(|n| *n == name) {
            Some(c) => c,
            None if known.is_some() => {
                return Err(DataError::at(
                    class_dir,
                    "class folder in test/ has no counterpart in train/",
                ));
            }
            None => {
                class_names.push(name);
                class_names.len() - 1
            }
        };
        let images: Vec<PathBuf> = entries(class_dir)?
            .into_iter()
            .filter(|p| p.is_file() && is_image_file(p))
            .collect();
        if images.is_empty() {
            let nested: Vec<String> = subfolder_names(class_dir)?.into_iter().take(3).collect();
            let hint = if nested.is_empty() {
                String::new()
            } else {
                format!(
                    " but has sub-folders ({}); the layout is SOURCE/CLASS/IMAGE, or SOURCE/train/CLASS/IMAGE with an optional SOURCE/test/",
                    nested.join(", ")
                )
            };
            return Err(DataError::at(
                class_dir,
                format!(
                    "class folder holds no images ({}){hint}",
                    IMAGE_EXTENSIONS.join(", ")
                ),
            ));
        }
        let class =
            u16::try_from(class).map_err(|_| DataError::at(dir, "more than 65535 classes"))?;
        files.extend(images.into_iter().map(|p| (class, p)));
    }
    Ok(Found { class_names, files })
}

/// Images with more pixels than this are decoded one at a time (with `resize`, each is shrunk
/// right after decoding), so a folder of huge images never holds more than one in memory.
const BIG_IMAGE_PIXELS: u64 = 2048 * 2048;

/// Decodes one file and, with `resize`, shrinks it at once.
fn decode_sized(
    path: &Path,
    resize: Option<(u32, u32)>,
    big: &std::sync::Mutex<()>,
) -> Result<DynamicImage, DataError> {
    let (w, h) = ImageReader::open(path)
        .and_then(ImageReader::with_guessed_format)
        .ok()
        .and_then(|r| r.into_dimensions().ok())
        .unwrap_or((0, 0));
    let _one_at_a_time = (u64::from(w) * u64::from(h) > BIG_IMAGE_PIXELS).then(|| {
        big.lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    });
    let image = decode(path)?;
    Ok(match resize {
        Some((rh, rw)) if (image.height(), image.width()) != (rh, rw) => {
            image.resize_exact(rw, rh, image::imageops::FilterType::Triangle)
        }
        _ => image,
    })
}

fn decode_all(
    files: &[(u16, PathBuf)],
    resize: Option<(u32, u32)>,
) -> Result<Vec<DynamicImage>, DataError> {
    let workers = std::thread::available_parallelism()
        .map_or(1, usize::from)
        .min(8);
    let chunk = files.len().div_ceil(workers).max(1);
    let big = std::sync::Mutex::new(());
    std::thread::scope(|scope| {
        let handles: Vec<_> = files
            .chunks(chunk)
            .map(|part| {
                let big = &big;
                scope.spawn(move || {
                    part.iter()
                        .map(|(_, p)| decode_sized(p, resize, big))
                        .collect::<Result<Vec<_>, _>>()
                })
            })
            .collect();
        let mut out = Vec::with_capacity(files.len());
        for handle in handles {
            let part = handle.join().map_err(|_| {
                DataError::Invalid("an image decoding thread panicked".to_owned())
            })??;
            out.extend(part);
        }
        Ok(out)
    })
}

fn is_gray(image: &DynamicImage) -> bool {
    !image.color().has_color()
}

/// Turns decoded images into one [`Dataset`]: common size (or `resize`), 1 channel when every
/// image is grayscale, else RGB. `channels` forces the channel count (to match a train split).
fn assemble(
    found: Found,
    images: Vec<DynamicImage>,
    resize: Option<(u32, u32)>,
    like: Option<&Dataset>,
) -> Result<Dataset, DataError> {
    let Some(first) = images.first() else {
        return Err(DataError::Invalid("no images".to_owned()));
    };
    // What the odd image is compared with in the error message.
    let reference = match like {
        Some(_) => "the training images are".to_owned(),
        None => found
            .files
            .first()
            .map_or_else(String::new, |(_, p)| format!("{} is", p.display())),
    };
    let (height, width) = match (like, resize) {
        (Some(d), _) => (d.shape.height as u32, d.shape.width as u32),
        (None, Some(size)) => size,
        (None, None) => (first.height(), first.width()),
    };
    let channels = match like {
        Some(d) => d.shape.channels,
        None if images.iter().all(is_gray) => 1,
        None => 3,
    };
    let shape = Shape {
        height: height as usize,
        width: width as usize,
        channels,
    };
    let mut data = Dataset::empty(shape, found.class_names);
    data.pixels.reserve(images.len() * shape.len());
    for ((label, path), image) in found.files.into_iter().zip(images) {
        let image = if (image.height(), image.width()) == (height, width) {
            image
        } else if resize.is_some() {
            image.resize_exact(width, height, image::imageops::FilterType::Triangle)
        } else {
            return Err(DataError::at(
                &path,
                format!(
                    "image is {}×{} but {reference} {height}×{width}; images must share one size (set dataset.resize = [H, W] or pass --resize HxW)",
                    image.height(),
                    image.width(),
                ),
            ));
        };
        if channels == 1 {
            data.push(image.to_luma8().as_raw(), label, Origin::File(path));
        } else {
            data.push(image.to_rgb8().as_raw(), label, Origin::File(path));
        }
    }
    Ok(data)
}

fn load_split(
    dir: &Path,
    resize: Option<(u32, u32)>,
    like: Option<&Dataset>,
) -> Result<Dataset, DataError> {
    let known = like.map(|d| d.class_names.as_slice());
    let found = find_class_folders(dir, known)?;
    let images = decode_all(&found.files, resize)?;
    assemble(found, images, resize, like)
}

/// Loads `dir`: class sub-folders, or `train/` and `test/` each holding class sub-folders.
pub fn load(
    dir: &Path,
    resize: Option<(u32, u32)>,
) -> Result<(Dataset, Option<Dataset>), DataError> {
    let subdirs = subfolder_names(dir)?;
    // A split layout: train/ (any case), optionally test/, and validation folders we leave out.
    let split_name = |n: &str| {
        ["train", "test", "val", "valid", "validation"]
            .iter()
            .any(|s| s.eq_ignore_ascii_case(n))
    };
    let find = |want: &str| subdirs.iter().find(|n| n.eq_ignore_ascii_case(want));
    if let Some(train_dir) = find("train")
        && subdirs.iter().all(|n| split_name(n))
    {
        let train = load_split(&dir.join(train_dir), resize, None)?;
        let test = match find("test") {
            Some(test_dir) => Some(load_split(&dir.join(test_dir), resize, Some(&train))?),
            None => None,
        };
        return Ok((train, test));
    }
    Ok((load_split(dir, resize, None)?, None))
}
