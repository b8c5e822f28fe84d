//! The eframe desktop app. For now a window that shows the loaded dataset (class counts and a
//! few thumbnails per class); the workstation panels (attack, training, detection, inspection)
//! come with their issues.

use eframe::egui;

use crate::data::{Dataset, EMBEDDED_MNIST, LoadOptions, SplitDataset, Summary};

/// Title of the main window.
pub const APP_TITLE: &str = "poisonscope";
/// Thumbnails shown per class.
const THUMBNAILS_PER_CLASS: usize = 12;
/// Side of a thumbnail on screen, in points.
const THUMBNAIL_SIDE: f32 = 40.0;

/// A dataset loaded into the window.
struct Loaded {
    summary: Summary,
    data: SplitDataset,
    /// Per class, textures of its first training images; made on the first frame that needs
    /// them (textures need the egui context).
    thumbnails: Option<Vec<Vec<egui::TextureHandle>>>,
}

/// The application state.
pub struct App {
    /// What was loaded, or why loading failed (shown in the window, not the console).
    dataset: Result<Loaded, String>,
}

/// The image of sample `index` as an egui image.
pub fn color_image(data: &Dataset, index: usize) -> Option<egui::ColorImage> {
    let s = data.shape;
    let pixels = data.image(index)?;
    let size = [s.width, s.height];
    Some(match s.channels {
        1 => egui::ColorImage::from_gray(size, pixels),
        _ => egui::ColorImage::from_rgb(size, pixels),
    })
}

fn make_thumbnails(ctx: &egui::Context, data: &Dataset) -> Vec<Vec<egui::TextureHandle>> {
    let mut per_class = vec![Vec::new(); data.num_classes()];
    for (i, &label) in data.labels.iter().enumerate() {
        let Some(slot) = per_class.get_mut(usize::from(label)) else {
            continue;
        };
        if slot.len() >= THUMBNAILS_PER_CLASS {
            continue;
        }
        if let Some(image) = color_image(data, i) {
            slot.push(ctx.load_texture(format!("thumb-{i}"), image, egui::TextureOptions::NEAREST));
        }
    }
    per_class
}

impl App {
    /// Loads `source` (the demo set when `None`) and builds the app.
    pub fn new(source: Option<&str>) -> Self {
        let source = source.unwrap_or(EMBEDDED_MNIST);
        let dataset = crate::data::load(source, &LoadOptions::default())
            .map(|data| Loaded {
                summary: Summary::of(&data),
                data,
                thumbnails: None,
            })
            .map_err(|e| e.to_string());
        Self { dataset }
    }

    /// Draws the whole UI.
    pub fn root_ui(&mut self, ui: &mut egui::Ui) {
        egui::CentralPanel::default().show(ui, |ui| {
            ui.heading(APP_TITLE);
            match &mut self.dataset {
                Ok(loaded) => dataset_ui(ui, loaded),
                Err(message) => {
                    ui.colored_label(ui.visuals().error_fg_color, message.as_str());
                }
            }
        });
    }
}

fn dataset_ui(ui: &mut egui::Ui, loaded: &mut Loaded) {
    let summary = &loaded.summary;
    let [h, w, c] = summary.shape;
    ui.label(format!("Dataset: {} ({})", summary.source, summary.format));
    ui.label(format!(
        "{} training / {} test images, {h}×{w}×{c}",
        summary.n_train, summary.n_test
    ));
    ui.add_space(8.0);
    let thumbnails = loaded
        .thumbnails
        .get_or_insert_with(|| make_thumbnails(ui.ctx(), &loaded.data.train));
    egui::ScrollArea::vertical().show(ui, |ui| {
        egui::Grid::new("class_counts")
            .striped(true)
            .show(ui, |ui| {
                ui.strong("class");
                ui.strong("train");
                ui.strong("test");
                ui.strong("first training images");
                ui.end_row();
                for class in &summary.classes {
                    ui.label(&class.name);
                    ui.label(class.train.to_string());
                    ui.label(class.test.to_string());
                    ui.horizontal(|ui| {
                        for texture in thumbnails.get(class.index).into_iter().flatten() {
                            ui.add(
                                egui::Image::new(texture)
                                    .fit_to_exact_size(egui::vec2(THUMBNAIL_SIDE, THUMBNAIL_SIDE)),
                            );
                        }
                    });
                    ui.end_row();
                }
            });
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
