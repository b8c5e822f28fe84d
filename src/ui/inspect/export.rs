//! The exports the inspection view asks for: decisions CSV, cleaned dataset, run + report.

use eframe::egui;

use super::*;

/// An export the inspection view asks the window to run (on a worker: thousands of images or a
/// model must not stall the frame).
#[derive(Debug)]
pub enum Export {
    /// The scores, flags and marks of every sample (`decisions.csv`).
    Decisions {
        path: std::path::PathBuf,
        text: String,
    },
    /// The kept training samples as an image folder.
    Cleaned {
        dir: std::path::PathBuf,
        keep: Vec<usize>,
    },
    /// The whole run (models, report.json, scores.csv, config.toml) and `report.html`.
    Run { dir: std::path::PathBuf },
}

/// An export of the cleaned dataset removing more than this share asks first.
pub const CONFIRM_SHARE: f64 = 0.10;

impl Inspect {
    /// The exports: scores + marks (CSV), the cleaned dataset and the whole run with its HTML
    /// report, to a folder picked in a dialog or typed (when no dialog service runs, the typed
    /// folder is the way). Returns the export asked for; the window runs it on a worker.
    pub(super) fn export_ui(
        &mut self,
        ui: &mut egui::Ui,
        finished: &Finished,
        shown: Shown<'_>,
        exporting: bool,
    ) -> Option<Export> {
        let Shown { arm, train, truth } = shown;
        let keep = self.kept(arm);
        let total = arm.predicted.len().max(1);
        let removed = total - keep.len().min(total);
        let share = removed as f64 / total as f64;
        ui.horizontal(|ui| {
            let label = ui.label("Export to folder");
            ui.add(
                egui::TextEdit::singleline(&mut self.export_dir)
                    .hint_text("/path/to/new/folder")
                    .desired_width(260.0),
            )
            .labelled_by(label.id)
            .on_hover_text(
                "A new or empty folder outside the dataset; typed, or picked with Browse…",
            );
            let dialogs = crate::ui::file_dialogs_available();
            if ui
                .add_enabled(dialogs, egui::Button::new("Browse…"))
                .on_disabled_hover_text(crate::ui::no_dialog("type the folder in the field"))
                .clicked()
                && let Some(dir) = rfd::FileDialog::new().pick_folder()
            {
                self.export_dir = dir.display().to_string();
            }
        });
        let dir = std::path::PathBuf::from(self.export_dir.trim());
        let ready = !self.export_dir.trim().is_empty() && !exporting;
        let why_not = if exporting {
            "an export is under way"
        } else {
            "type or pick a folder first"
        };
        let mut export = None;
        ui.horizontal_wrapped(|ui| {
            if ui
                .add_enabled(ready, egui::Button::new("Export scores + marks"))
                .on_hover_text(
                    "writes FOLDER/decisions.csv: every sample's scores, flags and your marks",
                )
                .on_disabled_hover_text(why_not)
                .clicked()
            {
                export = Some(Export::Decisions {
                    path: dir.join("decisions.csv"),
                    text: decisions_csv(arm, train, truth, &self.marks),
                });
            }
            let caption = if self.confirm_export {
                format!("Confirm: remove {removed} images ({:.1} %)", 100.0 * share)
            } else {
                "Export cleaned dataset".to_owned()
            };
            if ui
                .add_enabled(ready, egui::Button::new(caption))
                .on_hover_text("writes the kept images as class folders (a new or empty folder)")
                .on_disabled_hover_text(why_not)
                .clicked()
            {
                if share > CONFIRM_SHARE && !self.confirm_export {
                    self.confirm_export = true;
                } else {
                    self.confirm_export = false;
                    export = Some(Export::Cleaned {
                        dir: dir.clone(),
                        keep: keep.clone(),
                    });
                }
            }
            ui.label(format!(
                "keeps {} of {total} (removes {:.1} %)",
                keep.len(),
                100.0 * share
            ));
            ui.separator();
            let saved_models = !finished.run.arms.is_empty();
            if ui
                .add_enabled(ready && saved_models, egui::Button::new("Save run + report"))
                .on_hover_text(
                    "writes the run as `poisonscope run`/`compare` would (models, report.json, scores.csv, config.toml) and a self-contained report.html, into a new or empty folder",
                )
                .on_disabled_hover_text(if saved_models {
                    why_not
                } else {
                    "these results hold no trained model"
                })
                .clicked()
            {
                export = Some(Export::Run { dir: dir.clone() });
            }
        });
        if self.confirm_export {
            ui.colored_label(
                ui.visuals().warn_fg_color,
                format!(
                    "This removes more than {:.0} % of the training set: review the flags, or click again to confirm.",
                    100.0 * CONFIRM_SHARE
                ),
            );
        }
        export
    }

    /// Samples kept in the cleaned dataset: not flagged by the current ranking, with the
    /// reviewer's marks overriding.
    pub fn kept(&self, arm: &Arm) -> Vec<usize> {
        (0..arm.predicted.len())
            .filter(|&i| match self.marks.get(&i) {
                Some(Mark::Poisoned) => false,
                Some(Mark::Clean) => true,
                None => !self.flagged(arm, i),
            })
            .collect()
    }
}

/// The manual decisions with every detector's score and flag, one row per training sample.
pub fn decisions_csv(
    arm: &Arm,
    train: &Dataset,
    truth: Option<&[bool]>,
    marks: &BTreeMap<usize, Mark>,
) -> String {
    let mut text = String::from("index,given_label,predicted,poisoned,decision");
    for Ranking { name, .. } in &arm.detectors {
        text.push_str(&format!(",{name}_score,{name}_flag"));
    }
    text.push('\n');
    for i in 0..arm.predicted.len() {
        let poisoned = truth
            .and_then(|t| t.get(i))
            .map_or(String::new(), |p| u8::from(*p).to_string());
        let decision = match marks.get(&i) {
            Some(Mark::Poisoned) => "poisoned",
            Some(Mark::Clean) => "clean",
            None => "",
        };
        text.push_str(&format!(
            "{i},{},{},{poisoned},{decision}",
            train.labels.get(i).copied().unwrap_or_default(),
            arm.predicted.get(i).copied().unwrap_or_default()
        ));
        for Ranking { scores, flags, .. } in &arm.detectors {
            text.push_str(&format!(
                ",{},{}",
                scores.get(i).copied().unwrap_or(f64::NAN),
                u8::from(flags.get(i).copied().unwrap_or(false))
            ));
        }
        text.push('\n');
    }
    text
}
