//! Step 4: detectors, scaling, references, decisions.

use eframe::egui;

use super::super::*;

impl App {
    pub(in crate::ui) fn detection_step(&mut self, ui: &mut egui::Ui) {
        let d = &mut self.settings.config.detect;
        ui.label("Detectors");
        ui.horizontal_wrapped(|ui| {
            for kind in DetectorKind::ALL {
                let mut on = d.methods.contains(&kind);
                if ui
                    .checkbox(&mut on, kind.name())
                    .on_hover_text(kind.help())
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
        if d.methods.contains(&DetectorKind::IbdPsc) {
            ui.horizontal(|ui| {
                ui.label("IBD-PSC score");
                ui.radio_value(
                    &mut d.ibd_psc_score,
                    crate::config::IbdPscScore::Probability,
                    "probability (published)",
                )
                .on_hover_text("the paper's PSC: the mean probability of the original prediction under the amplified models; it rounds to 1.0 for every image that keeps its prediction with room to spare, so those tie");
                ui.radio_value(
                    &mut d.ibd_psc_score,
                    crate::config::IbdPscScore::LogOdds,
                    "log-odds",
                )
                .on_hover_text("the mean log-odds of the original prediction: the same order, with the ties at probability 1.0 broken by how far past certainty each image stays");
            });
        }
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
                .on_hover_text("trusted images per class drawn from the held-out split; they calibrate the thresholds and the whitening. A class's own threshold needs 99 of them (fewer: the class uses all classes' references); from 199 on it is their second-largest score, so one unusual reference no longer sets it (default 250, as the seed paper)");
        });
        ui.horizontal(|ui| {
            ui.label("Decision");
            ui.radio_value(
                &mut d.decision,
                crate::detect::decision::Decision::Calibrated,
                "calibrated",
            )
            .on_hover_text(
                "flag a sample when its score exceeds the 99th percentile of its class's clean references",
            );
            ui.radio_value(
                &mut d.decision,
                crate::detect::decision::Decision::Paper,
                "published rules",
            )
            .on_hover_text("each detector's own rule, as in its paper (flags a fixed share)");
        });
        if d.decision == crate::detect::decision::Decision::Calibrated {
            ui.horizontal(|ui| {
                ui.label("Thresholds from");
                ui.radio_value(
                    &mut d.reference_scope,
                    crate::config::ReferenceScope::Class,
                    "each class's references",
                )
                .on_hover_text("a class's threshold from its own references: a class whose scores run high (natural sub-styles, a heavy tail) neither flags its clean images nor hides another class's poisons");
                ui.radio_value(
                    &mut d.reference_scope,
                    crate::config::ReferenceScope::Pooled,
                    "all references",
                )
                .on_hover_text("one threshold for every class, from all references (steadier with few references per class)");
            });
        }
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
