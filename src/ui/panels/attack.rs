//! Step 2: the attack settings and the before/after preview.

use eframe::egui;

use super::super::*;
use crate::attack::{Knob, PoisonPlan, TriggerConfig};

impl App {
    pub(in crate::ui) fn attack_step(&mut self, ui: &mut egui::Ui) {
        ui.checkbox(&mut self.settings.attack_on, "Plant an attack")
            .on_hover_text("for teaching and evaluation: poison a share of the training set with a known trigger, so the detectors' hits can be scored against the truth");
        if !self.settings.attack_on {
            ui.label("No attack — this is a real untrusted dataset.");
            return;
        }
        let a = &mut self.settings.attack;
        egui::Grid::new("attack_grid")
            .num_columns(2)
            .show(ui, |ui| {
                let label = ui.label("Kind");
                let mut kind = a.kind();
                egui::ComboBox::from_id_salt("attack_kind")
                    .selected_text(kind.name())
                    .show_ui(ui, |ui| {
                        // `image` is BadNets with a picked trigger (the button below).
                        for k in AttackKind::ALL.into_iter().filter(|k| *k != AttackKind::Image) {
                            ui.selectable_value(&mut kind, k, k.name())
                                .on_hover_text(k.help());
                        }
                    })
                    .response
                    .labelled_by(label.id)
                    .on_hover_text(kind.help());
                if kind != a.kind() {
                    a.trigger = TriggerConfig::of(kind);
                }
                ui.end_row();
                let label = ui.label("Poisoning ratio");
                ui.add(
                    egui::Slider::new(&mut a.ratio, 0.001..=0.2)
                        .logarithmic(true)
                        .custom_formatter(|v, _| format!("{:.1} %", v * 100.0))
                        .custom_parser(|t| {
                            t.trim_end_matches('%')
                                .trim()
                                .parse::<f64>()
                                .ok()
                                .map(|v| v / 100.0)
                        }),
                )
                .labelled_by(label.id)
                .on_hover_text("share of the training images that get the trigger (and, for most attacks, the target label); weak attacks are below 1 %");
                ui.end_row();
                let label = ui.label("Target class");
                ui.add(egui::DragValue::new(&mut a.target).range(0..=999))
                    .labelled_by(label.id)
                    .on_hover_text("the class the backdoor sends triggered images to (its index)");
                ui.end_row();
                ui.label("Mode");
                ui.horizontal(|ui| {
                    ui.radio_value(&mut a.mode, TargetMode::AllToOne, "all-to-one")
                        .on_hover_text("every triggered image goes to the target class");
                    ui.radio_value(&mut a.mode, TargetMode::AllToAll, "all-to-all")
                        .on_hover_text("a triggered image of class c goes to class c + 1");
                });
                ui.end_row();
                for knob in a.trigger.settings_mut().knobs(a.target) {
                    knob_ui(ui, knob);
                    ui.end_row();
                }
            });
        if let Some(image) = a.trigger.settings_mut().trigger_image() {
            ui.horizontal(|ui| {
                let name = image
                    .as_ref()
                    .map_or("built-in".to_owned(), |p| p.display().to_string());
                ui.label(format!("Trigger: {name}"));
                if ui
                    .add_enabled(file_dialogs_available(), egui::Button::new("Pick image…"))
                    .on_disabled_hover_text(no_dialog("set attack.trigger_image in a config"))
                    .clicked()
                    && let Some(path) = rfd::FileDialog::new()
                        .add_filter("image", &["png", "jpg", "jpeg", "bmp"])
                        .pick_file()
                {
                    *image = Some(path);
                }
                if image.is_some() && ui.button("Clear").clicked() {
                    *image = None;
                }
            });
        }
        self.preview_ui(ui);
    }

    /// Before/after of the attack on a few training images, redrawn when a setting changes.
    pub(in crate::ui) fn preview_ui(&mut self, ui: &mut egui::Ui) {
        let Ok(loaded) = &self.dataset else {
            return;
        };
        let stale = self
            .preview
            .as_ref()
            .is_none_or(|(a, _)| *a != self.settings.attack);
        if stale {
            let train = &loaded.data.train;
            let tiles = Attack::from_config(&self.settings.attack, train.shape)
                .map_err(|e| e.to_string())
                .and_then(|attack| {
                    // The samples the run would poison (target-class ones for clean-label
                    // attacks, source-class ones for TaCT), in the plan's order.
                    let plan = PoisonPlan::draw(&train.labels, train.num_classes(), &attack.plan)
                        .map_err(|e| e.to_string())?;
                    Ok((attack, plan))
                })
                .map(|(attack, plan)| {
                    plan.poisoned
                        .iter()
                        .copied()
                        .take(PREVIEW_SAMPLES)
                        .filter_map(|i| {
                            let before = color_image(train, i)?;
                            let after = image_of(train, &attack.poison_image(train.image(i)?, i))?;
                            let tex = |name: String, img| {
                                ui.ctx()
                                    .load_texture(name, img, egui::TextureOptions::NEAREST)
                            };
                            Some([
                                tex(format!("before-{i}"), before),
                                tex(format!("after-{i}"), after),
                            ])
                        })
                        .collect()
                });
            self.preview = Some((self.settings.attack.clone(), tiles));
        }
        let Some((_, tiles)) = &self.preview else {
            return;
        };
        match tiles {
            Ok(tiles) => {
                ui.label("Preview (top: clean, bottom: poisoned)");
                if self.settings.attack.kind() == AttackKind::Lc {
                    ui.weak(
                        "PGD noise is added when the run starts (after a clean model is trained)",
                    );
                }
                let side = egui::vec2(56.0, 56.0);
                for row in 0..2 {
                    ui.horizontal(|ui| {
                        for pair in tiles {
                            ui.add(egui::Image::new(&pair[row]).fit_to_exact_size(side));
                        }
                    });
                }
            }
            Err(e) => {
                ui.colored_label(ui.visuals().error_fg_color, e.as_str());
            }
        }
    }
}

/// One attack setting as a labelled row of the attack grid.
fn knob_ui(ui: &mut egui::Ui, knob: Knob<'_>) {
    match knob {
        Knob::Number {
            label,
            value,
            range,
            speed,
        } => {
            let name = ui.label(label);
            ui.add(egui::DragValue::new(value).range(range).speed(speed))
                .labelled_by(name.id);
        }
        Knob::Count {
            label,
            value,
            range,
        } => {
            let name = ui.label(label);
            ui.add(egui::DragValue::new(value).range(range))
                .labelled_by(name.id);
        }
        Knob::Class {
            label,
            help,
            value,
            default,
        } => {
            let name = ui.label(label);
            let mut class = value
                .as_ref()
                .and_then(|s| s.first().copied())
                .unwrap_or(default);
            if ui
                .add(egui::DragValue::new(&mut class).range(0..=999))
                .labelled_by(name.id)
                .on_hover_text(help)
                .changed()
            {
                *value = Some(vec![class]);
            }
        }
    }
}
