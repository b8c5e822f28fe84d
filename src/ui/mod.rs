//! The eframe desktop app. For now a window that shows the loaded dataset; the workstation
//! panels (attack, training, detection, inspection) come with their issues.

use eframe::egui;

use crate::data::{EMBEDDED_MNIST, LoadOptions, Summary};

/// Title of the main window.
pub const APP_TITLE: &str = "poisonscope";

/// The application state.
pub struct App {
    /// What was loaded, or why loading failed (shown in the window, not the console).
    dataset: Result<Summary, String>,
}

impl App {
    /// Loads `source` (the demo set when `None`) and builds the app.
    pub fn new(source: Option<&str>) -> Self {
        let source = source.unwrap_or(EMBEDDED_MNIST);
        let dataset = crate::data::load(source, &LoadOptions::default())
            .map(|d| Summary::of(&d))
            .map_err(|e| e.to_string());
        Self { dataset }
    }

    /// Draws the whole UI.
    pub fn root_ui(&mut self, ui: &mut egui::Ui) {
        egui::CentralPanel::default().show(ui, |ui| {
            ui.heading(APP_TITLE);
            match &self.dataset {
                Ok(summary) => dataset_ui(ui, summary),
                Err(message) => {
                    ui.colored_label(ui.visuals().error_fg_color, message);
                }
            }
        });
    }
}

fn dataset_ui(ui: &mut egui::Ui, summary: &Summary) {
    let [h, w, c] = summary.shape;
    ui.label(format!("Dataset: {} ({})", summary.source, summary.format));
    ui.label(format!(
        "{} training / {} test images, {h}×{w}×{c}",
        summary.n_train, summary.n_test
    ));
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
}

impl eframe::App for App {
    fn ui(&mut self, ui: &mut egui::Ui, _frame: &mut eframe::Frame) {
        self.root_ui(ui);
    }
}

/// Opens the window and blocks until it is closed.
pub fn run_native(source: Option<String>) -> Result<(), eframe::Error> {
    let options = eframe::NativeOptions {
        viewport: egui::ViewportBuilder::default()
            .with_title(APP_TITLE)
            .with_inner_size([1200.0, 800.0]),
        ..Default::default()
    };
    eframe::run_native(
        APP_TITLE,
        options,
        Box::new(move |_cc| Ok(Box::new(App::new(source.as_deref())))),
    )
}
