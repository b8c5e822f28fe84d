//! A folder with one sub-folder of images per class (folder name = class name), or a folder
//! with `train/` and `test/` sub-folders laid out that way. PNG, JPEG and BMP; grayscale or RGB.

use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};

use image::{DynamicImage, ImageReader, Limits};
use rayon::prelude::*;

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
            check_not_a_record_file(class_dir, &utf8_name(class_dir)?)?;
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

/// A folder named like an MNIST IDX or CIFAR-10 file (an archive unpacked into a folder of the
/// file's name, or a file name given to a folder) is not a class: say what it looks like.
fn check_not_a_record_file(folder: &Path, name: &str) -> Result<(), DataError> {
    let format = if super::idx::is_idx_name(name) {
        "an MNIST IDX file"
    } else if super::cifar::is_cifar_name(name) {
        "a CIFAR-10 binary file"
    } else {
        return Ok(());
    };
    let inside = folder.join(name);
    let fix = if inside.is_file() {
        format!(
            "the file is inside it: move {} up one level, in place of the folder",
            inside.display()
        )
    } else {
        "put the file itself in its place, not a folder of that name".to_owned()
    };
    Err(DataError::at(
        folder,
        format!("is a folder named like {format}; poisonscope reads such files directly: {fix}"),
    ))
}

/// Images with more pixels than this are decoded one at a time (with `resize`, each is shrunk
/// right after decoding), so a folder of huge images never holds more than one in memory.
const BIG_IMAGE_PIXELS: u64 = 2048 * 2048;

/// What an image file's header says, read without decoding the pixels.
#[derive(Clone, Copy)]
struct Header {
    height: u32,
    width: u32,
    color: bool,
}

/// Reads `path`'s header: its size (refused past [`MAX_SIDE`]) and whether it has colour.
fn header(path: &Path) -> Result<Header, DataError> {
    use image::ImageDecoder as _;
    let decoder = ImageReader::open(path)
        .map_err(|e| DataError::io(path, e))?
        .with_guessed_format()
        .map_err(|e| DataError::io(path, e))?
        .into_decoder()
        .map_err(|e| DataError::at(path, format!("cannot decode image: {e}")))?;
    let (width, height) = decoder.dimensions();
    if width > MAX_SIDE || height > MAX_SIDE {
        return Err(DataError::at(
            path,
            format!(
                "cannot decode image: {height}×{width} is over the decoder's limit of {MAX_SIDE} pixels a side"
            ),
        ));
    }
    Ok(Header {
        height,
        width,
        color: decoder.color_type().has_color(),
    })
}

/// Runs `work` on every item in parallel (rayon) and returns the outputs in order, or the error
/// of the first item (in order) that failed: once an item fails, later items are skipped and
/// earlier ones still run, so the error reported does not depend on thread timing.
fn in_order<I, U>(
    items: I,
    work: impl Fn(I::Item) -> Result<U, DataError> + Sync + Send,
) -> Result<Vec<U>, DataError>
where
    I: IndexedParallelIterator,
    U: Send,
{
    let first_failure = AtomicUsize::new(usize::MAX);
    let outputs: Vec<Option<Result<U, DataError>>> = items
        .enumerate()
        .map(|(i, item)| {
            if i > first_failure.load(Ordering::Relaxed) {
                return None;
            }
            let out = work(item);
            if out.is_err() {
                first_failure.fetch_min(i, Ordering::Relaxed);
            }
            Some(out)
        })
        .collect();
    let mut ok = Vec::with_capacity(outputs.len());
    for out in outputs {
        match out {
            Some(Ok(v)) => ok.push(v),
            Some(Err(e)) => return Err(e),
            // Skipped: an earlier item failed, and its error comes first.
            None => {}
        }
    }
    Ok(ok)
}

/// Decodes `files` (with `resize`, each shrunk right after decoding) straight into one
/// [`Dataset`] of `shape`: the pixel buffer is allocated once at its final size, so memory is
/// the decoded dataset plus one image per thread. `done` counts decoded images; `cancel` stops
/// at the next image.
fn decode_into(
    files: &[(&(u16, PathBuf), Header)],
    shape: Shape,
    class_names: Vec<String>,
    resize: bool,
    cancel: &AtomicBool,
    done: &AtomicUsize,
    reference: &str,
) -> Result<Dataset, DataError> {
    let len = shape.len();
    let mut pixels = vec![0u8; files.len() * len];
    let (height, width) = (shape.height as u32, shape.width as u32);
    let big = std::sync::Mutex::new(());
    let slots = pixels.par_chunks_mut(len.max(1)).zip(files.par_iter());
    in_order(slots, |(slot, ((_, path), header))| {
        if cancel.load(Ordering::Relaxed) {
            return Err(DataError::Cancelled);
        }
        let image = decode_sized(path, *header, resize.then_some((height, width)), &big);
        done.fetch_add(1, Ordering::Relaxed);
        let image = image?;
        if (image.height(), image.width()) != (height, width) {
            return Err(size_mismatch(
                path,
                image.height(),
                image.width(),
                reference,
                height,
                width,
            ));
        }
        if shape.channels == 1 {
            slot.copy_from_slice(image.to_luma8().as_raw());
        } else {
            slot.copy_from_slice(image.to_rgb8().as_raw());
        }
        Ok(())
    })?;
    Ok(Dataset {
        shape,
        pixels,
        labels: files.iter().map(|((label, _), _)| *label).collect(),
        class_names,
        origins: files
            .iter()
            .map(|((_, path), _)| Origin::File(path.clone()))
            .collect(),
    })
}

fn size_mismatch(
    path: &Path,
    h: u32,
    w: u32,
    reference: &str,
    height: u32,
    width: u32,
) -> DataError {
    DataError::at(
        path,
        format!(
            "image is {h}×{w} but {reference} {height}×{width}; images must share one size (set dataset.resize = [H, W] or pass --resize HxW)"
        ),
    )
}

/// Decodes one file (whose header was read) and, with `resize`, shrinks it at once.
fn decode_sized(
    path: &Path,
    header: Header,
    resize: Option<(u32, u32)>,
    big: &std::sync::Mutex<()>,
) -> Result<DynamicImage, DataError> {
    let pixels = u64::from(header.width) * u64::from(header.height);
    let _one_at_a_time = (pixels > BIG_IMAGE_PIXELS).then(|| {
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

/// The class folders and headers of one split (`train/`, `test/`, or the whole folder).
struct Listed {
    found: Found,
    headers: Vec<Header>,
}

fn list_split(
    dir: &Path,
    known: Option<&[String]>,
    cancel: &AtomicBool,
) -> Result<Listed, DataError> {
    let found = find_class_folders(dir, known)?;
    let headers = in_order(found.files.par_iter(), |(_, path)| {
        if cancel.load(Ordering::Relaxed) {
            return Err(DataError::Cancelled);
        }
        header(path)
    })?;
    Ok(Listed { found, headers })
}

/// An image folder read: the training and test sets, and whether the test set came from the
/// folder (`test/`) or from the seeded split.
pub struct Loaded {
    pub train: Dataset,
    pub test: Dataset,
    pub split_from_source: bool,
    /// Validation folders beside `train/` (`val/`, `valid/`, `validation/`), not read.
    pub left_out: Vec<String>,
}

/// Loads `dir`: class sub-folders, or `train/` (and optionally `test/`; validation folders are
/// left out) each holding class sub-folders.
///
/// Every header is read first (in parallel): the common size (or `resize`), the channels (1 when
/// every training image is grayscale, else RGB) and the split and `limit` are settled before any
/// pixel is decoded, so a size mismatch is reported at once, only the images kept are decoded,
/// and each is decoded straight into its place in the final buffer (memory: the decoded dataset
/// plus one image per thread). `on_progress(done, total)` is called on the calling thread while
/// the images decode (at most 20 times a second, when the count moved); `cancel` stops at the next image.
pub fn load(
    dir: &Path,
    options: &super::LoadOptions,
    cancel: &AtomicBool,
    on_progress: &mut dyn FnMut(usize, usize),
) -> Result<Loaded, DataError> {
    let subdirs = subfolder_names(dir)?;
    // A split layout: train/ (any case), optionally test/, and validation folders we leave out.
    let split_name = |n: &str| {
        ["train", "test", "val", "valid", "validation"]
            .iter()
            .any(|s| s.eq_ignore_ascii_case(n))
    };
    let find = |want: &str| subdirs.iter().find(|n| n.eq_ignore_ascii_case(want));
    let (train_dir, test_dir, left_out) = match find("train") {
        Some(train) if subdirs.iter().all(|n| split_name(n)) => {
            let test = find("test");
            let left_out = subdirs
                .iter()
                .filter(|n| *n != train && Some(*n) != test)
                .map(|n| format!("{n}/"))
                .collect();
            (dir.join(train), test.map(|t| dir.join(t)), left_out)
        }
        _ => (dir.to_path_buf(), None, Vec::new()),
    };
    let train = list_split(&train_dir, None, cancel)?;
    let test = match &test_dir {
        Some(test_dir) => Some(list_split(
            test_dir,
            Some(&train.found.class_names),
            cancel,
        )?),
        None => None,
    };
    let Some(first) = train.headers.first() else {
        return Err(DataError::Invalid("no images".to_owned()));
    };
    let (height, width) = options.resize.unwrap_or((first.height, first.width));
    let shape = Shape {
        height: height as usize,
        width: width as usize,
        channels: if train.headers.iter().any(|h| h.color) {
            3
        } else {
            1
        },
    };
    let train_reference = train
        .found
        .files
        .first()
        .map_or_else(String::new, |(_, p)| format!("{} is", p.display()));
    if options.resize.is_none() {
        let check = |listed: &Listed, reference: &str| {
            for ((_, path), h) in listed.found.files.iter().zip(&listed.headers) {
                if (h.height, h.width) != (height, width) {
                    return Err(size_mismatch(
                        path, h.height, h.width, reference, height, width,
                    ));
                }
            }
            Ok(())
        };
        check(&train, &train_reference)?;
        if let Some(test) = &test {
            check(test, "the training images are")?;
        }
    }
    let labels: Vec<u16> = train.found.files.iter().map(|(l, _)| *l).collect();
    super::check_classes(dir, &train.found.class_names, &labels)?;
    // The split and the limit, from the labels alone (the same draws as for the record formats).
    let (mut train_idx, test_idx) = match &test {
        Some(test) => (
            (0..labels.len()).collect::<Vec<_>>(),
            (0..test.found.files.len()).collect::<Vec<_>>(),
        ),
        None => super::stratified_split(&labels, options.test_fraction, options.split_seed),
    };
    if options.limit > 0 && options.limit < train_idx.len() {
        let kept: Vec<u16> = train_idx.iter().map(|&i| labels[i]).collect();
        let keep = super::stratified_subset(&kept, options.limit, options.split_seed);
        train_idx = keep.into_iter().map(|k| train_idx[k]).collect();
    }
    let test_listed = test.as_ref().unwrap_or(&train);
    fn pick<'a>(listed: &'a Listed, indices: &[usize]) -> Vec<(&'a (u16, PathBuf), Header)> {
        indices
            .iter()
            .map(|&i| (&listed.found.files[i], listed.headers[i]))
            .collect()
    }
    let train_sel = pick(&train, &train_idx);
    let test_sel = pick(test_listed, &test_idx);
    super::check_fits(dir, train_sel.len() + test_sel.len(), shape)?;

    let total = train_sel.len() + test_sel.len();
    let done = AtomicUsize::new(0);
    let class_names = train.found.class_names.clone();
    let resize = options.resize.is_some();
    let decoded = std::thread::scope(|scope| {
        let (finished, ended) = std::sync::mpsc::sync_channel::<()>(1);
        let (train_sel, test_sel, done) = (&train_sel, &test_sel, &done);
        let (class_names, train_reference) = (&class_names, &train_reference);
        let worker = scope.spawn(move || {
            let _signal_on_drop = finished;
            let train = decode_into(
                train_sel,
                shape,
                class_names.clone(),
                resize,
                cancel,
                done,
                train_reference,
            )?;
            let test = decode_into(
                test_sel,
                shape,
                class_names.clone(),
                resize,
                cancel,
                done,
                "the training images are",
            )?;
            Ok::<_, DataError>((train, test))
        });
        // The progress, a few times a second, until the worker ends (its end of the channel is
        // dropped with it, which wakes this loop at once).
        let mut shown = None;
        while let Err(std::sync::mpsc::RecvTimeoutError::Timeout) =
            ended.recv_timeout(std::time::Duration::from_millis(50))
        {
            let now = done.load(Ordering::Relaxed);
            if shown != Some(now) {
                shown = Some(now);
                on_progress(now, total);
            }
        }
        worker
            .join()
            .map_err(|_| DataError::Invalid("an image decoding thread panicked".to_owned()))?
    })?;
    on_progress(total, total);
    Ok(Loaded {
        train: decoded.0,
        test: decoded.1,
        split_from_source: test.is_some(),
        left_out,
    })
}
