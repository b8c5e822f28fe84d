//! The inspection view's controls: which model, which ranking, how samples are flagged, the
//! colouring of the scatter, and the exports.

use eframe::egui;

use super::*;

impl Inspect {
    /// The name of the current ranking (a detector, or the consensus).
    pub(super) fn ranking_name(&self, arm: &Arm) -> String {
        self.ranking
            .and_then(|i| arm.detectors.get(i))
            .map_or("consensus", |r| r.name.as_str())
            .to_owned()
    }

    pub(super) fn controls(
        &mut self,
        ui: &mut egui::Ui,
        finished: &Finished,
        shown: Shown<'_>,
        exporting: bool,
    ) -> Option<Export> {
        let Shown { arm, truth, .. } = shown;
        ui.horizontal_wrapped(|ui| {
            if finished.arms.len() > 1 {
                ui.label("Model");
                for (i, a) in finished.arms.iter().enumerate() {
                    let hover = if a.name == crate::ui::worker::FUSED {
                        "both models together: rank percentiles averaged, flagged where either model flags (SGD finds learned backdoors, SAM the poisons it refused to fit). Shown first: in the three-seed grid (docs/detection.md) the fused consensus found at least what the better model found in every cell and seed, flagging at most 0.8 % of clean images"
                    } else {
                        "this model's detectors"
                    };
                    if ui
                        .selectable_label(self.arm == i, a.name.to_uppercase())
                        .on_hover_text(hover)
                        .clicked()
                    {
                        self.arm = i;
                    }
                }
                ui.separator();
            }
            let label = ui.label("Rank by");
            let current = self.ranking_name(arm);
            egui::ComboBox::from_id_salt("ranking")
                .selected_text(current)
                .show_ui(ui, |ui| {
                    ui.selectable_value(&mut self.ranking, None, "consensus");
                    for (i, ranking) in arm.detectors.iter().enumerate() {
                        ui.selectable_value(&mut self.ranking, Some(i), &ranking.name);
                    }
                })
                .response
                .labelled_by(label.id);
            ui.separator();
            ui.label("Flag");
            if ui
                .radio(!self.use_top, "its decision")
                .on_hover_text("the detector's threshold (the consensus: enough detectors agree)")
                .clicked()
            {
                self.use_top = false;
            }
            if ui
                .radio(self.use_top, "the top")
                .on_hover_text("the K most suspicious samples of this ranking; the gallery, the scatter and the export follow")
                .clicked()
                && !self.use_top
            {
                // Start from what the decision flags, so the switch changes nothing at first.
                let n = arm.predicted.len();
                let flagged = (0..n).filter(|&i| self.flagged(arm, i)).count();
                self.top_k = flagged.clamp(1, n.max(1));
                self.use_top = true;
            }
            let n = arm.predicted.len().max(1);
            ui.add_enabled(
                self.use_top,
                egui::DragValue::new(&mut self.top_k).range(1..=n),
            )
            .on_hover_text("how many of the most suspicious samples to flag");
            ui.separator();
            ui.label("Colour by");
            ui.selectable_value(&mut self.color_by, ColorBy::Class, "class");
            ui.selectable_value(&mut self.color_by, ColorBy::Flagged, "flagged");
            if truth.is_some() {
                ui.selectable_value(&mut self.color_by, ColorBy::GroundTruth, "ground truth");
            }
            ui.separator();
            ui.label(format!("{} marked", self.marks.len()));
            let poisoned = self.marks.values().filter(|m| **m == Mark::Poisoned).count();
            ui.add_enabled(
                poisoned > 0 || self.find_like,
                egui::Checkbox::new(&mut self.find_like, "Find more like the marked"),
            )
            .on_hover_text(
                "re-rank with your marks: this ranking averaged with the direction from the rest \
                 to the samples you marked poisoned (in the features the detectors saw), among the \
                 given labels your marked poisons carry; marked poisons first, marked clean last. \
                 The top-K flags and the exports follow. Measured in docs/rerank.md",
            )
            .on_disabled_hover_text("mark a poisoned sample first (P)");
        });
        self.export_ui(ui, finished, shown, exporting)
    }
}
