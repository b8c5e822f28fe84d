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
            self.open_run_menu(ui, dialogs);
            self.scenarios_menu(ui);
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

    /// Ready experiments for teaching, each with what to look for.
    fn scenarios_menu(&mut self, ui: &mut egui::Ui) {
        let idle = !self.busy();
        ui.add_enabled_ui(idle, |ui| {
            ui.menu_button("Scenarios", |ui| {
                for (i, scenario) in crate::scenarios::ALL.iter().enumerate() {
                    if ui
                        .button(scenario.title)
                        .on_hover_text(scenario.look_for)
                        .clicked()
                    {
                        self.commands.push(Command::Scenario(i));
                        ui.close();
                    }
                }
            })
            .response
            .on_hover_text("ready experiments on the demo digits, each with what to look for");
        });
    }

    /// The loaded scenario's paragraph, above the views, with the button that runs it.
    pub(in crate::ui) fn scenario_box(&mut self, ui: &mut egui::Ui) {
        let Some(scenario) = self.scenario.and_then(|i| crate::scenarios::ALL.get(i)) else {
            return;
        };
        egui::Frame::group(ui.style()).show(ui, |ui| {
            ui.horizontal(|ui| {
                ui.strong(format!("Scenario: {}", scenario.title));
                let label = if scenario.compare {
                    "Run this scenario (SGD vs SAM)"
                } else {
                    "Run this scenario"
                };
                let ready = !self.busy() && self.dataset_loaded();
                if ui.add_enabled(ready, egui::Button::new(label)).clicked() {
                    self.commands.push(Command::Run {
                        compare: scenario.compare,
                    });
                }
                if ui
                    .small_button("Hide")
                    .on_hover_text("hide the scenario's text")
                    .clicked()
                {
                    self.scenario = None;
                }
            });
            ui.label(scenario.look_for);
        });
    }

    /// File → Open run…: a saved `run` or `compare` folder, by dialog, typed path or from the
    /// recent runs.
    fn open_run_menu(&mut self, ui: &mut egui::Ui, dialogs: bool) {
        let idle = !self.busy();
        ui.add_enabled_ui(idle, |ui| {
            ui.menu_button("Open run", |ui| {
                ui.label("A folder written by `run` or `compare` (or saved from this window):");
                if ui
                    .add_enabled(dialogs, egui::Button::new("Choose folder…"))
                    .on_disabled_hover_text(no_dialog("type the folder below"))
                    .clicked()
                {
                    if let Some(dir) = rfd::FileDialog::new().pick_folder() {
                        self.commands.push(Command::OpenRun(dir));
                    }
                    ui.close();
                }
                ui.horizontal(|ui| {
                    let field = ui.add(
                        egui::TextEdit::singleline(&mut self.typed_run)
                            .hint_text("/path/to/run")
                            .desired_width(260.0),
                    );
                    let typed = !self.typed_run.trim().is_empty();
                    let entered =
                        field.lost_focus() && ui.input(|i| i.key_pressed(egui::Key::Enter));
                    if ui.add_enabled(typed, egui::Button::new("Open")).clicked()
                        || (typed && entered)
                    {
                        let dir = PathBuf::from(self.typed_run.trim());
                        self.commands.push(Command::OpenRun(dir));
                        ui.close();
                    }
                });
                if !self.settings.recent_runs.is_empty() {
                    ui.separator();
                    ui.label("Recent:");
                    for dir in self.settings.recent_runs.clone() {
                        if ui.button(dir.display().to_string()).clicked() {
                            self.commands.push(Command::OpenRun(dir));
                            ui.close();
                        }
                    }
                }
            })
            .response
            .on_hover_text(
                "open a saved run: its results, gallery and scatter, without training again",
            );
        });
    }
}
