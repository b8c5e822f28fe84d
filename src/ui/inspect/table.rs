//! The results table (one run or SGD vs SAM) and the warnings banner above it.

use eframe::egui;

use super::*;

/// The warnings of every arm (model near chance, not fitted, backdoor not learned, too many
/// flagged, a detector failed), each with what to try, above the results they qualify.
pub(super) fn warnings_banner(ui: &mut egui::Ui, finished: &Finished) {
    let many = finished.arms.len() > 1;
    for arm in &finished.arms {
        for warning in &arm.report.warnings {
            let prefix = if many {
                format!("Warning ({}): ", arm.name.to_uppercase())
            } else {
                "Warning: ".to_owned()
            };
            ui.label(
                egui::RichText::new(format!("{prefix}{}", warning.message))
                    .color(ui.visuals().warn_fg_color),
            );
        }
    }
}

pub(super) fn results_table(ui: &mut egui::Ui, finished: &Finished) {
    let arms = &finished.arms;
    let Some(first) = arms.first() else {
        return;
    };
    ui.horizontal_wrapped(|ui| {
        // The fused arm trained nothing of its own.
        for arm in arms.iter().filter(|a| a.name != crate::ui::worker::FUSED) {
            let t = &arm.report.training;
            ui.label(format!(
                "{}: clean accuracy {} · ASR {} · {:.0} s",
                arm.name.to_uppercase(),
                pct(Some(t.clean_accuracy)),
                pct(t.attack_success_rate),
                t.seconds
            ));
            ui.separator();
        }
    });
    let has_truth = first.report.attack.is_some();
    let mut rows: Vec<String> = first.detectors.iter().map(|r| r.name.clone()).collect();
    if first.report.consensus.is_some() {
        rows.push("consensus".to_owned());
    }
    let row = |arm: &Arm, name: &str| -> Option<report::DetectorReport> {
        if name == "consensus" {
            arm.report.consensus.clone()
        } else {
            arm.report.detectors.get(name).cloned()
        }
    };
    if arms.len() == 1 {
        let a = first.name.to_uppercase();
        egui::Grid::new("results_table")
            .striped(true)
            .show(ui, |ui| {
                ui.strong("detector");
                ui.strong(format!("{a} flagged"));
                if has_truth {
                    for m in ["TPR", "FPR", "F1", "AUROC"] {
                        ui.strong(format!("{a} {m}"));
                    }
                }
                ui.end_row();
                for name in &rows {
                    let Some(d) = row(first, name) else {
                        continue;
                    };
                    ui.label(name);
                    ui.label(d.flagged.to_string());
                    if has_truth {
                        ui.label(pct(d.tpr));
                        ui.label(pct(d.fpr));
                        ui.label(num(d.f1));
                        ui.label(num(d.auroc));
                    }
                    ui.end_row();
                }
            });
        return;
    }
    // A comparison: one column per measure, the models side by side in each cell (narrow
    // enough for a 1280-pixel window; the deltas are in comparison.json and the HTML report).
    let names: Vec<String> = arms.iter().map(|a| a.name.to_uppercase()).collect();
    ui.weak(format!("each cell: {}", names.join(" / ")));
    let joined = |name: &str, value: &dyn Fn(&report::DetectorReport) -> String| {
        arms.iter()
            .map(|arm| row(arm, name).map_or("—".to_owned(), |d| value(&d)))
            .collect::<Vec<_>>()
            .join(" / ")
    };
    let percent = |v: Option<f64>| v.map_or("—".to_owned(), |v| format!("{:.1}", 100.0 * v));
    egui::Grid::new("results_table")
        .striped(true)
        .show(ui, |ui| {
            ui.strong("detector");
            ui.strong("flagged");
            if has_truth {
                for m in ["TPR %", "FPR %", "F1", "AUROC"] {
                    ui.strong(m);
                }
            }
            ui.end_row();
            for name in &rows {
                ui.label(name);
                ui.label(joined(name, &|d| d.flagged.to_string()));
                if has_truth {
                    ui.label(joined(name, &|d| percent(d.tpr)));
                    ui.label(joined(name, &|d| percent(d.fpr)));
                    ui.label(joined(name, &|d| num(d.f1)));
                    ui.label(joined(name, &|d| num(d.auroc)));
                }
                ui.end_row();
            }
        });
}
