//! Writes a poisoned training set as an image folder (one sub-folder per given label, PNG) with
//! `manifest.csv`: `index,file,original_label,given_label,poisoned,role`, and `preview.png`, a
//! before/after picture of the first poisoned samples.
//!
//! The folder is built next to its destination under a hidden temporary name and renamed into
//! place when complete, so a reader never sees half an export. A non-empty destination is
//! refused unless `force`, and even then only a previous export (one holding `manifest.csv`) is
//! replaced. Nothing is ever written inside the source dataset's folder.

use std::io::Write;
use std::path::{Path, PathBuf};

use super::{AttackError, PoisonedData, Role};
use crate::data::Dataset;

/// Name of the manifest inside an export.
pub const MANIFEST: &str = "manifest.csv";
/// Name of the before/after picture inside an export.
pub const PREVIEW: &str = "preview.png";

/// What an export wrote.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ExportSummary {
    pub dir: PathBuf,
    pub images: usize,
    pub poisoned: usize,
    pub covers: usize,
}

pub use crate::data::export::csv_field;

fn io_err(path: &Path) -> impl Fn(std::io::Error) -> AttackError + '_ {
    move |e| AttackError::At {
        path: path.to_path_buf(),
        message: e.to_string(),
    }
}

/// Writes `data`'s training set to `dir`; `clean` is the training set before the attack (for
/// the preview).
pub fn write_image_folder(
    dir: &Path,
    clean: &Dataset,
    data: &PoisonedData,
    force: bool,
) -> Result<ExportSummary, AttackError> {
    let previous_export = |d: &Path| d.join(MANIFEST).is_file();
    let staged = crate::artifacts::Staged::new(dir, force.then_some(&previous_export as _))
        .map_err(|e| AttackError::At {
            path: e.path,
            message: e.message,
        })?;
    write_into(staged.path(), clean, data)?;
    staged.commit().map_err(|e| AttackError::At {
        path: e.path,
        message: e.message,
    })?;
    Ok(ExportSummary {
        dir: dir.to_path_buf(),
        images: data.train.len(),
        poisoned: data.plan.poisoned.len(),
        covers: data.plan.covers.len(),
    })
}

fn write_into(tmp: &Path, clean: &Dataset, data: &PoisonedData) -> Result<(), AttackError> {
    let train = &data.train;
    let names = &train.class_names;
    let s = train.shape;
    let width = (train.len().max(1) as f64).log10().floor() as usize + 1;
    let mut manifest = String::from("index,file,original_label,given_label,poisoned,role\n");
    for i in 0..train.len() {
        let (Some(image), Some(&given), Some(&original), Some(&role)) = (
            train.image(i),
            train.labels.get(i),
            data.plan.original_labels.get(i),
            data.plan.roles.get(i),
        ) else {
            continue;
        };
        let class = names
            .get(usize::from(given))
            .map_or("unknown", String::as_str);
        let file = crate::artifacts::write_class_png(
            tmp,
            class,
            &format!("{i:0width$}.png"),
            image,
            [s.width, s.height, s.channels],
        )
        .map_err(|e| AttackError::At {
            path: e.path,
            message: e.message,
        })?;
        let original_name = names
            .get(usize::from(original))
            .map_or("unknown", String::as_str);
        manifest.push_str(&format!(
            "{i},{},{},{},{},{}\n",
            csv_field(&file),
            csv_field(original_name),
            csv_field(class),
            u8::from(role == Role::Poison),
            role.as_str()
        ));
    }
    let preview = tmp.join(PREVIEW);
    super::preview::before_after(clean, data, 8)
        .save(&preview)
        .map_err(|e| AttackError::At {
            path: preview.clone(),
            message: e.to_string(),
        })?;
    let path = tmp.join(MANIFEST);
    let mut f = std::fs::File::create(&path).map_err(io_err(&path))?;
    f.write_all(manifest.as_bytes()).map_err(io_err(&path))?;
    f.sync_all().map_err(io_err(&path))?;
    Ok(())
}
