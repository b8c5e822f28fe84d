//! The cleaned dataset: the training samples an analyst keeps, written as an image folder.

use std::path::Path;

use super::Dataset;
use crate::artifacts::{self, ArtifactError};

/// One CSV field, quoted when it holds a comma, a quote or a line break.
pub fn csv_field(text: &str) -> String {
    if text.contains([',', '"', '\n', '\r']) {
        format!("\"{}\"", text.replace('"', "\"\""))
    } else {
        text.to_owned()
    }
}

/// Writes the training samples `keep` of `data` as an image folder (`DIR/<class>/<index>.png`,
/// plus `kept.csv`) — the cleaned dataset. The folder must be new or empty and must not overlap
/// the dataset's `source`; the images are written into a hidden sibling folder that is renamed
/// into place at the end, so a failed export leaves nothing half-written. Returns the number of
/// images written.
pub fn write_kept_folder(
    dir: &Path,
    data: &Dataset,
    keep: &[usize],
    source: &str,
) -> Result<usize, ArtifactError> {
    crate::artifacts::check_not_in_source(dir, source)?;
    let staged = crate::artifacts::Staged::new(dir, None)?;
    write_kept_into(staged.path(), data, keep)?;
    staged.commit()?;
    Ok(keep.len())
}

fn write_kept_into(temp: &Path, data: &Dataset, keep: &[usize]) -> Result<(), ArtifactError> {
    let s = data.shape;
    let mut manifest = String::from("index,file,label\n");
    for &i in keep {
        let (Some(pixels), Some(&label)) = (data.image(i), data.labels.get(i)) else {
            continue;
        };
        let class = data
            .class_names
            .get(usize::from(label))
            .map_or("unknown", String::as_str);
        let file = artifacts::write_class_png(
            temp,
            class,
            &format!("{i:06}.png"),
            pixels,
            [s.width, s.height, s.channels],
        )?;
        manifest.push_str(&format!("{i},{},{}\n", csv_field(&file), csv_field(class)));
    }
    let path = temp.join("kept.csv");
    std::fs::write(&path, manifest)
        .map_err(|e| ArtifactError::new(&path, format!("cannot write: {e}")))?;
    Ok(())
}
