//! Step 4: detectors, scaling, references, decisions.

use eframe::egui;

use super::super::*;

/// One line on what a detector looks at (hover help).
fn detector_help(kind: DetectorKind) -> &'static str {
    match kind {
        DetectorKind::Ac => {
            "Activation Clustering: splits each class's features in two; a small separate cluster is suspicious"
        }
        DetectorKind::Ss => {
            "Spectral Signatures: distance along each class's top singular direction"
        }
        DetectorKind::Spectre => "SPECTRE: robust whitening, then the QUE score of each class",
        DetectorKind::Scan => {
            "SCAn: does a class's features need two components (clean + poison) instead of one"
        }
        DetectorKind::Beatrix => {
            "Beatrix: Gram-matrix statistics of the features, against the references'"
        }
        DetectorKind::Loss => {
            "Loss: each sample's loss under its given label; high when the model refused to fit the label (SAM often refuses a few relabelled poisons)"
        }
        DetectorKind::Strip => {
            "STRIP: blends each image with 20 clean references; a trigger keeps the prediction fixed (low entropy). 20 extra model passes per image"
        }
        DetectorKind::ScaleUp => {
            "SCALE-UP: multiplies the pixel values by 3 to 11; a trigger keeps the prediction (high consistency). 5 extra model passes per image"
        }
        DetectorKind::IbdPsc => {
            "IBD-PSC: amplifies the deepest BatchNorm layers until clean references break; a trigger keeps the prediction (high consistency). 5 extra model passes per image. Needs residual connections (preact-resnet18): on the plain CNN amplification changes no prediction, and it says so instead of scoring"
        }
    }
}

impl App {
    pub(in crate::ui) fn detection_step(&mut self, ui: &mut egui::Ui) {
        let d = &mut self.settings.config.detect;
        ui.label("Detectors");
        ui.horizontal_wrapped(|ui| {
            for kind in DetectorKind::ALL {
                let mut on = d.methods.contains(&kind);
                if ui
                    .checkbox(&mut on, kind.name())
                    .on_hover_text(detector_help(kind))
                    .changed()
                {
                    if on {
                        d.methods.push(kind);
                    } else {
                        d.methods.retain(|k| *k != kind);
                    }
                }
            }
        });
        ui.checkbox(
            &mut d.feature_scaling,
            "Feature scaling (PCA + clean-reference whitening)",
        )
        .on_hover_text("the seed paper's feature preparation: PCA, then whitening with the clean references, so no feature direction dominates the detectors");
        if d.feature_scaling {
            ui.horizontal(|ui| {
                ui.label("Whitening")
                    .on_hover_text("with the clean references' covariance: pooled over classes, or within each class");
                ui.radio_value(
                    &mut d.whitening,
                    crate::detect::scaling::ReferenceCovariance::Pooled,
                    "pooled",
                );
                ui.radio_value(
                    &mut d.whitening,
                    crate::detect::scaling::ReferenceCovariance::WithinClass,
                    "within-class",
                );
            });
        }
        ui.horizontal(|ui| {
            let label = ui.label("Clean references per class");
            ui.add(egui::DragValue::new(&mut d.clean_per_class).range(2..=1000))
                .labelled_by(label.id)
                .on_hover_text("trusted images per class drawn from the held-out split; they calibrate the thresholds and the whitening");
        });
        ui.horizontal(|ui| {
            ui.label("Decision");
            ui.radio_value(
                &mut d.decision,
                crate::detect::decision::Decision::Calibrated,
                "calibrated",
            )
            .on_hover_text(
                "flag a sample when its score exceeds the clean references' 99th percentile",
            );
            ui.radio_value(
                &mut d.decision,
                crate::detect::decision::Decision::Paper,
                "published rules",
            )
            .on_hover_text("each detector's own rule, as in its paper (flags a fixed share)");
        });
        ui.horizontal(|ui| {
            let label = ui.label("Consensus: flagged by at least");
            ui.add(egui::DragValue::new(&mut d.consensus_agreement).range(1..=7))
                .labelled_by(label.id)
                .on_hover_text("the consensus flags a sample when this many detectors flag it");
            ui.label("detectors");
        });
        ui.horizontal(|ui| {
            let label = ui.label("Expected poison ratio");
            let mut known = d.expected_ratio.is_some();
            if ui
                .checkbox(&mut known, "set")
                .on_hover_text("used by the published rules only; unset: each detector's default")
                .changed()
            {
                d.expected_ratio = known.then_some(0.05);
            }
            if let Some(r) = &mut d.expected_ratio {
                ui.add(egui::DragValue::new(r).speed(0.001).range(0.0..=0.5))
                    .labelled_by(label.id)
                    .on_hover_text("what the published rules assume about the poison share (a defender rarely knows it)");
            }
        });
    }
}
