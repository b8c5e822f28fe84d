//! The top bar: the app's name, the config file buttons and the status line (the last job's
//! outcome, in warning colour when it is a problem).

use eframe::egui;

use super::super::*;

impl App {
    pub(in crate::ui) fn top_bar(&mut self, ui: &mut egui::Ui) {
        ui.horizontal(|ui| {
            ui.heading(APP_TITLE);
            ui.separator();
            let dialogs = file_dialogs_available();
            if ui
                .add_enabled(dialogs, egui::Button::new("Open config…"))
                .on_disabled_hover_text(no_dialog("start with `poisonscope gui CONFIG`"))
                .clicked()
                && let Some(path) = rfd::FileDialog::new()
                    .add_filter("TOML", &["toml"])
                    .pick_file()
            {
                self.commands.push(Command::OpenConfig(path));
            }
            if ui
                .add_enabled(dialogs, egui::Button::new("Save config…"))
                .on_disabled_hover_text(no_dialog("the settings are kept between sessions anyway"))
                .clicked()
                && let Some(path) = rfd::FileDialog::new()
                    .add_filter("TOML", &["toml"])
                    .set_file_name("experiment.toml")
                    .save_file()
            {
                self.commands.push(Command::SaveConfig(path));
            }
            if let Some(status) = &self.status {
                ui.separator();
                if self.task.is_some() {
                    ui.spinner();
                }
                let color = if self.status_ok {
                    ui.visuals().text_color()
                } else {
                    ui.visuals().warn_fg_color
                };
                ui.colored_label(color, status.as_str());
            }
        });
    }
}
