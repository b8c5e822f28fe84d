//! Helpers shared by the end-to-end tests: run the binary, write small datasets.
#![allow(dead_code)]

use std::io::Write;
use std::path::Path;
use std::process::Output;

use poisonscope::data::idx;

/// Runs the `poisonscope` binary with `args`.
pub fn poisonscope(args: &[&str]) -> Output {
    std::process::Command::new(env!("CARGO_BIN_EXE_poisonscope"))
        .args(args)
        .output()
        .expect("the binary runs")
}

/// stdout of a successful run; panics with stderr otherwise.
pub fn ok_stdout(args: &[&str]) -> String {
    let out = poisonscope(args);
    assert!(
        out.status.success(),
        "{args:?} failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8(out.stdout).unwrap()
}

/// A deterministic grayscale image with a class-dependent pattern.
pub fn gray_image(h: u32, w: u32, seed: u32) -> image::GrayImage {
    image::GrayImage::from_fn(w, h, |x, y| {
        image::Luma([((x * 7 + y * 13 + seed * 31) % 256) as u8])
    })
}

/// A deterministic RGB image.
pub fn rgb_image(h: u32, w: u32, seed: u32) -> image::RgbImage {
    image::RgbImage::from_fn(w, h, |x, y| {
        image::Rgb([
            ((x * 5 + seed) % 256) as u8,
            ((y * 3 + seed * 2) % 256) as u8,
            ((x + y + seed * 7) % 256) as u8,
        ])
    })
}

/// Writes gzip-compressed bytes.
pub fn write_gz(path: &Path, bytes: &[u8]) {
    let file = std::fs::File::create(path).unwrap();
    let mut gz = flate2::write::GzEncoder::new(file, flate2::Compression::fast());
    gz.write_all(bytes).unwrap();
    gz.finish().unwrap();
}

/// Writes an MNIST IDX pair `{prefix}-images-idx3-ubyte` / `{prefix}-labels-idx1-ubyte` with
/// `labels.len()` images of h×w, optionally gzipped.
pub fn write_idx(dir: &Path, prefix: &str, labels: &[u8], h: usize, w: usize, gz: bool) {
    let pixels: Vec<u8> = (0..labels.len() * h * w).map(|i| (i % 251) as u8).collect();
    let images = idx::encode_images(labels.len(), h, w, &pixels);
    let labels = idx::encode_labels(labels);
    let (img_name, lbl_name) = (
        format!("{prefix}-images-idx3-ubyte"),
        format!("{prefix}-labels-idx1-ubyte"),
    );
    if gz {
        write_gz(&dir.join(format!("{img_name}.gz")), &images);
        write_gz(&dir.join(format!("{lbl_name}.gz")), &labels);
    } else {
        std::fs::write(dir.join(img_name), images).unwrap();
        std::fs::write(dir.join(lbl_name), labels).unwrap();
    }
}

/// One CIFAR-10 record: label then the R, G and B planes.
pub fn cifar_records(labels: &[u8]) -> Vec<u8> {
    let mut out = Vec::new();
    for (i, &label) in labels.iter().enumerate() {
        out.push(label);
        out.extend((0..3072).map(|p| ((p + i * 17) % 256) as u8));
    }
    out
}

/// `labels` cycled over `classes` classes, `n` long.
pub fn cycle_labels(n: usize, classes: u8) -> Vec<u8> {
    (0..n).map(|i| (i % classes as usize) as u8).collect()
}
