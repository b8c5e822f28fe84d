//! Step 1 and the central dataset view: source, split, limit; class counts and thumbnails.

use eframe::egui;

use super::super::*;

impl App {
    pub(in crate::ui) fn dataset_step(&mut self, ui: &mut egui::Ui) {
        ui.horizontal(|ui| {
            let label = ui.label("Source");
            ui.text_edit_singleline(&mut self.settings.config.dataset.source)
                .labelled_by(label.id)
                .on_hover_text("an image folder (class sub-folders, optionally train/ and test/), MNIST IDX files, a CIFAR-10 binary folder, or embedded:mnist");
        });
        ui.horizontal(|ui| {
            if ui.button("Load").clicked() {
                self.commands
                    .push(Command::Load(self.settings.config.dataset.source.clone()));
            }
            if ui
                .add_enabled(file_dialogs_available(), egui::Button::new("Open folder…"))
                .on_disabled_hover_text(no_dialog("type the folder in Source and press Load"))
                .clicked()
                && let Some(folder) = rfd::FileDialog::new().pick_folder()
            {
                self.settings.config.dataset.source = folder.display().to_string();
                self.commands
                    .push(Command::Load(self.settings.config.dataset.source.clone()));
            }
            if ui.button("Demo digits").clicked() {
                self.settings.config.dataset.source = EMBEDDED_MNIST.to_owned();
                self.commands.push(Command::Load(EMBEDDED_MNIST.to_owned()));
            }
        });
        ui.label("…or drop a dataset folder onto the window.");
        ui.horizontal(|ui| {
            let label = ui.label("Use the first");
            ui.add(
                egui::DragValue::new(&mut self.settings.config.dataset.limit).range(0..=1_000_000),
            )
            .labelled_by(label.id)
            .on_hover_text("a quick look on a subset; detection results on all images need 0");
            ui.label("training images (0 = all)");
        });
    }

    pub(in crate::ui) fn dataset_view(&mut self, ui: &mut egui::Ui) {
        let loaded = match &self.dataset {
            Ok(loaded) => loaded,
            Err(message) => {
                if let Some(loading) = &self.loading {
                    ui.horizontal(|ui| {
                        ui.spinner();
                        ui.label(message.as_str());
                    });
                    let (done, total) = loading.progress;
                    if total > 0 {
                        ui.add(
                            egui::ProgressBar::new(done as f32 / total as f32)
                                .text(format!("{done} / {total} images decoded"))
                                .desired_width(320.0),
                        );
                    }
                    if ui
                        .button("Cancel loading")
                        .on_hover_text("stop decoding; the dataset is not loaded")
                        .clicked()
                    {
                        self.commands.push(Command::Cancel);
                    }
                } else if self.job.is_some() {
                    // A saved run being opened reads its dataset on the run's worker.
                    ui.horizontal(|ui| {
                        ui.spinner();
                        ui.label(message.as_str());
                    });
                } else {
                    ui.colored_label(ui.visuals().error_fg_color, message.as_str());
                }
                return;
            }
        };
        let summary = &loaded.summary;
        let [h, w, c] = summary.shape;
        ui.label(format!("Dataset: {} ({})", summary.source, summary.format));
        ui.label(format!(
            "{} training / {} test images, {h}×{w}×{c}",
            summary.n_train, summary.n_test
        ));
        ui.horizontal(|ui| {
            let label = ui.label("Show class");
            let shown = self
                .class_filter
                .and_then(|c| summary.classes.get(usize::from(c)))
                .map_or("all".to_owned(), |c| c.name.clone());
            egui::ComboBox::from_id_salt("class_filter")
                .selected_text(shown)
                .show_ui(ui, |ui| {
                    ui.selectable_value(&mut self.class_filter, None, "all");
                    for class in &summary.classes {
                        let index = u16::try_from(class.index).unwrap_or(u16::MAX);
                        ui.selectable_value(&mut self.class_filter, Some(index), &class.name);
                    }
                })
                .response
                .labelled_by(label.id);
        });
        egui::Panel::left("class_counts_panel")
            .resizable(false)
            .exact_size(200.0)
            .show(ui, |ui| {
                egui::ScrollArea::vertical()
                    .id_salt("class_counts")
                    .show(ui, |ui| {
                        egui::Grid::new("class_counts")
                            .striped(true)
                            .show(ui, |ui| {
                                ui.strong("class");
                                ui.strong("train");
                                ui.strong("test");
                                ui.end_row();
                                for class in &summary.classes {
                                    ui.label(&class.name);
                                    ui.label(class.train.to_string());
                                    ui.label(class.test.to_string());
                                    ui.end_row();
                                }
                            });
                    });
            });
        egui::CentralPanel::default().show(ui, |ui| {
            let train = &loaded.data.train;
            let shown: Vec<usize> = match self.class_filter {
                None => (0..train.len()).collect(),
                Some(c) => (0..train.len())
                    .filter(|&i| train.labels.get(i) == Some(&c))
                    .collect(),
            };
            ui.label(format!("{} training images", shown.len()));
            let step = THUMBNAIL_SIDE + ui.spacing().item_spacing.x;
            let per_row = ((ui.available_width() / step).floor() as usize).max(1);
            let rows = shown.len().div_ceil(per_row);
            egui::ScrollArea::vertical()
                .id_salt("thumbnail_grid")
                .auto_shrink([false, false])
                .show_rows(
                    ui,
                    THUMBNAIL_SIDE + ui.spacing().item_spacing.y,
                    rows,
                    |ui, range| {
                        for row in range {
                            ui.horizontal(|ui| {
                                for &i in shown.iter().skip(row * per_row).take(per_row) {
                                    if let Some(tex) =
                                        self.thumbnails.get(ui.ctx(), "data", train, i)
                                    {
                                        ui.add(egui::Image::new(&tex).fit_to_exact_size(
                                            egui::vec2(THUMBNAIL_SIDE, THUMBNAIL_SIDE),
                                        ));
                                    }
                                }
                            });
                        }
                    },
                );
        });
    }
}
