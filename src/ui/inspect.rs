//! The inspection view: the results table (one run, or SGD vs SAM with deltas), the ranked
//! gallery of suspicious training images (virtualised), the feature-space scatter linked to it,
//! the enlarged sample with manual marks, and the exports.

use std::collections::{BTreeMap, HashMap};

use eframe::egui;
use egui_plot::{Legend, MarkerShape, Plot, PlotPoint, Points};

use super::worker::{Arm, Finished, Layout};
use crate::data::Dataset;
use crate::report;

/// Gallery tile side, in points.
const TILE: f32 = 64.0;
/// Height of a gallery cell (image and three lines of text).
const CELL_HEIGHT: f32 = TILE + 56.0;
/// Width of a gallery tile (image plus room for its captions).
const TILE_WIDTH: f32 = TILE + 8.0;
/// Caption size of the gallery tiles (egui's "small" is 9 px: too small to read).
const CAPTION: f32 = 11.0;
/// The gallery's keyboard review, in one line.
const KEYS_HELP: &str = "Keys: arrows (or J/K) move in ranking order · P / C mark poisoned / clean · U unmark · Space enlarges; marks override the flags in the exports.";
/// Side of the enlarged sample (Space), in points.
const ENLARGED: f32 = 320.0;
/// Pointer distance (points) within which a scatter point counts as hovered.
const HOVER_RADIUS: f32 = 8.0;
/// Textures kept before the cache is emptied (the gallery makes them again on demand).
const MAX_TEXTURES: usize = 4000;

/// Textures of dataset images, made on first use.
#[derive(Default)]
pub struct TextureCache {
    textures: HashMap<(&'static str, usize), egui::TextureHandle>,
}

impl TextureCache {
    pub fn clear(&mut self) {
        self.textures.clear();
    }

    /// The texture of sample `index` of `data` (`set` names the dataset).
    pub fn get(
        &mut self,
        ctx: &egui::Context,
        set: &'static str,
        data: &Dataset,
        index: usize,
    ) -> Option<egui::TextureHandle> {
        if self.textures.len() > MAX_TEXTURES {
            self.textures.clear();
        }
        if let Some(t) = self.textures.get(&(set, index)) {
            return Some(t.clone());
        }
        let image = super::color_image(data, index)?;
        let texture = ctx.load_texture(
            format!("{set}-{index}"),
            image,
            egui::TextureOptions::NEAREST,
        );
        self.textures.insert((set, index), texture.clone());
        Some(texture)
    }
}

/// How scatter points are coloured.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum ColorBy {
    #[default]
    Class,
    Flagged,
    GroundTruth,
}

/// Which 2-d layout the scatter shows.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum LayoutKind {
    #[default]
    Pca,
    Tsne,
}

/// A reviewer's decision on one sample.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Mark {
    Poisoned,
    Clean,
}

/// A cached ranking: its key (arm, detector or consensus), the order, the scores.
/// Flags of the top K: keyed by (arm, ranking, K).
type TopFlags = ((usize, Option<usize>, usize), Vec<bool>);
type Ranking = ((usize, Option<usize>), Vec<usize>, Vec<f64>);

/// State of the inspection view.
#[derive(Default)]
pub struct Inspect {
    /// Which arm (0 = the run, or SGD; 1 = SAM in a comparison).
    pub arm: usize,
    /// Which ranking: a detector's index, or `None` for the consensus.
    pub ranking: Option<usize>,
    pub selected: Option<usize>,
    pub marks: BTreeMap<usize, Mark>,
    color_by: ColorBy,
    layout: LayoutKind,
    /// t-SNE layouts per arm, once computed (or why they failed).
    tsne: HashMap<usize, Result<Vec<[f64; 2]>, String>>,
    tsne_job: Option<Layout>,
    scroll_to_selected: bool,
    order: Option<Ranking>,
    /// Which result this view shows (scroll areas and plots are keyed by it, so a new result
    /// opens at the top, scrolled left, with the scatter fitted).
    pub generation: u64,
    /// The folder typed for the exports (the fallback when no file dialog can open).
    pub export_dir: String,
    /// The export removes more than [`CONFIRM_SHARE`] and waits for a second click.
    confirm_export: bool,
    /// The analyst's decision: the detector's (or the consensus's) own flags, or (`use_top`) the
    /// `top_k` most suspicious samples of the current ranking.
    pub use_top: bool,
    pub top_k: usize,
    /// The top-K flags of the current ranking, keyed by (arm, ranking, K).
    top_flags: Option<TopFlags>,
    /// The selected sample is shown large (Space toggles).
    pub enlarged: bool,
    /// The gallery's scroll offset and visible height in the last frame (keyboard moves scroll
    /// only as far as needed to show the selection).
    gallery_view: (f32, f32),
}

/// The gallery's keys of one frame: a move in ranking order, a mark (`Some(None)`: unmark), and
/// whether to toggle the enlarged view.
#[derive(Debug, Default)]
struct Review {
    step: Option<isize>,
    mark: Option<Option<Mark>>,
    enlarge: bool,
}

impl Review {
    fn read(input: &egui::InputState, per_row: usize) -> Self {
        use egui::Key;
        let row = isize::try_from(per_row).unwrap_or(1);
        let pressed = |keys: &[Key]| keys.iter().any(|&k| input.key_pressed(k));
        // Every press of the frame counts (a held key or fast typing repeats within a frame).
        let count = |keys: &[Key]| -> isize {
            keys.iter()
                .map(|&k| isize::try_from(input.num_presses(k)).unwrap_or(0))
                .sum()
        };
        let moved = count(&[Key::ArrowRight, Key::J]) - count(&[Key::ArrowLeft, Key::K])
            + row * (count(&[Key::ArrowDown]) - count(&[Key::ArrowUp]));
        let step = (moved != 0).then_some(moved);
        let mark = if pressed(&[Key::P]) {
            Some(Some(Mark::Poisoned))
        } else if pressed(&[Key::C]) {
            Some(Some(Mark::Clean))
        } else if pressed(&[Key::U]) {
            Some(None)
        } else {
            None
        };
        Self {
            step,
            mark,
            enlarge: pressed(&[Key::Space]),
        }
    }
}

/// An export the inspection view asks the window to run (on a worker: thousands of images or a
/// model must not stall the frame).
#[derive(Debug)]
pub enum Export {
    /// The scores, flags and marks of every sample (`decisions.csv`).
    Decisions {
        path: std::path::PathBuf,
        text: String,
    },
    /// The kept training samples as an image folder.
    Cleaned {
        dir: std::path::PathBuf,
        keep: Vec<usize>,
    },
    /// The whole run (models, report.json, scores.csv, config.toml) and `report.html`.
    Run { dir: std::path::PathBuf },
}

/// An export of the cleaned dataset removing more than this share asks first.
pub const CONFIRM_SHARE: f64 = 0.10;

impl Inspect {
    /// A fresh view for the next result: selections, marks, layouts and scroll positions reset;
    /// the export folder kept.
    pub fn for_new_result(&mut self) -> Self {
        Self {
            generation: self.generation + 1,
            export_dir: std::mem::take(&mut self.export_dir),
            ..Self::default()
        }
    }
}

fn pct(v: Option<f64>) -> String {
    v.map_or("—".to_owned(), |v| format!("{:.1} %", v * 100.0))
}

fn num(v: Option<f64>) -> String {
    v.map_or("—".to_owned(), |v| format!("{v:.3}"))
}

/// A colour per class, evenly spread in hue.
fn class_color(class: usize, classes: usize) -> egui::Color32 {
    let h = class as f32 / classes.max(1) as f32;
    egui::ecolor::Hsva::new(h, 0.75, 0.85, 1.0).into()
}

impl Inspect {
    /// Brings the cached ranking up to date with the chosen arm and ranking.
    fn update_ranking(&mut self, arm: &Arm) {
        let key = (self.arm, self.ranking);
        if self.order.as_ref().is_none_or(|(k, _, _)| *k != key) {
            let n = arm.predicted.len();
            let scores = match self.ranking.and_then(|i| arm.detectors.get(i)) {
                Some((_, scores, _)) => scores.clone(),
                None if arm.consensus.scores.len() == n => arm.consensus.scores.clone(),
                None => vec![0.0; n],
            };
            let mut order: Vec<usize> = (0..scores.len()).collect();
            order.sort_by(|&a, &b| scores[b].total_cmp(&scores[a]));
            self.order = Some((key, order, scores));
        }
        let top_key = (self.arm, self.ranking, self.top_k);
        if self.use_top && self.top_flags.as_ref().is_none_or(|(k, _)| *k != top_key) {
            let mut flags = vec![false; arm.predicted.len()];
            if let Some((_, order, _)) = &self.order {
                for &i in order.iter().take(self.top_k) {
                    if let Some(f) = flags.get_mut(i) {
                        *f = true;
                    }
                }
            }
            self.top_flags = Some((top_key, flags));
        }
    }

    /// Whether the current ranking flags sample `i` (consensus: enough detectors agree).
    fn flagged(&self, arm: &Arm, i: usize) -> bool {
        if self.use_top
            && let Some((_, flags)) = &self.top_flags
        {
            return flags.get(i).copied().unwrap_or(false);
        }
        match self.ranking.and_then(|r| arm.detectors.get(r)) {
            Some((_, _, flags)) => flags.get(i).copied().unwrap_or(false),
            None => arm.consensus.flags.get(i).copied().unwrap_or(false),
        }
    }

    pub fn ui(
        &mut self,
        ui: &mut egui::Ui,
        finished: &Finished,
        textures: &mut TextureCache,
        exporting: bool,
    ) -> Option<Export> {
        let arm = finished
            .arms
            .get(self.arm.min(finished.arms.len().saturating_sub(1)))?;
        let mut export = None;
        let truth = finished.truth.as_deref();
        let train = finished.prepared.train_data().train;
        egui::Panel::top("inspect_top").show(ui, |ui| {
            warnings_banner(ui, finished);
            egui::ScrollArea::horizontal()
                .id_salt(("results_scroll", self.generation))
                .show(ui, |ui| results_table(ui, finished));
            ui.separator();
            self.update_ranking(arm);
            export = self.controls(ui, finished, arm, exporting, truth, train);
        });
        let width = ui.available_width();
        egui::Panel::right("inspect_side")
            .resizable(true)
            .default_size(width * 0.5)
            .show(ui, |ui| {
                self.details(ui, arm, train, truth, textures);
                ui.separator();
                self.scatter(ui, arm, train, truth, textures);
            });
        egui::CentralPanel::default().show(ui, |ui| {
            self.gallery(ui, arm, train, truth, textures);
        });
        export
    }

    fn controls(
        &mut self,
        ui: &mut egui::Ui,
        finished: &Finished,
        arm: &Arm,
        exporting: bool,
        truth: Option<&[bool]>,
        train: &Dataset,
    ) -> Option<Export> {
        ui.horizontal_wrapped(|ui| {
            if finished.arms.len() > 1 {
                ui.label("Model");
                for (i, a) in finished.arms.iter().enumerate() {
                    let hover = if a.name == super::worker::FUSED {
                        "both models together: rank percentiles averaged, flagged where either model flags (SGD finds learned backdoors, SAM the poisons it refused to fit)"
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
            let current = self
                .ranking
                .and_then(|i| arm.detectors.get(i))
                .map_or("consensus", |(n, _, _)| n.as_str())
                .to_owned();
            egui::ComboBox::from_id_salt("ranking")
                .selected_text(current)
                .show_ui(ui, |ui| {
                    ui.selectable_value(&mut self.ranking, None, "consensus");
                    for (i, (name, _, _)) in arm.detectors.iter().enumerate() {
                        ui.selectable_value(&mut self.ranking, Some(i), name);
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
        });
        self.export_ui(ui, finished, arm, train, truth, exporting)
    }

    /// The exports: scores + marks (CSV), the cleaned dataset and the whole run with its HTML
    /// report, to a folder picked in a dialog or typed (when no dialog service runs, the typed
    /// folder is the way). Returns the export asked for; the window runs it on a worker.
    fn export_ui(
        &mut self,
        ui: &mut egui::Ui,
        finished: &Finished,
        arm: &Arm,
        train: &crate::data::Dataset,
        truth: Option<&[bool]>,
        exporting: bool,
    ) -> Option<Export> {
        let keep = self.kept(arm);
        let total = arm.predicted.len().max(1);
        let removed = total - keep.len().min(total);
        let share = removed as f64 / total as f64;
        ui.horizontal(|ui| {
            let label = ui.label("Export to folder");
            ui.add(
                egui::TextEdit::singleline(&mut self.export_dir)
                    .hint_text("/path/to/new/folder")
                    .desired_width(260.0),
            )
            .labelled_by(label.id)
            .on_hover_text(
                "A new or empty folder outside the dataset; typed, or picked with Browse…",
            );
            let dialogs = super::file_dialogs_available();
            if ui
                .add_enabled(dialogs, egui::Button::new("Browse…"))
                .on_disabled_hover_text(super::no_dialog("type the folder in the field"))
                .clicked()
                && let Some(dir) = rfd::FileDialog::new().pick_folder()
            {
                self.export_dir = dir.display().to_string();
            }
        });
        let dir = std::path::PathBuf::from(self.export_dir.trim());
        let ready = !self.export_dir.trim().is_empty() && !exporting;
        let why_not = if exporting {
            "an export is under way"
        } else {
            "type or pick a folder first"
        };
        let mut export = None;
        ui.horizontal_wrapped(|ui| {
            if ui
                .add_enabled(ready, egui::Button::new("Export scores + marks"))
                .on_hover_text(
                    "writes FOLDER/decisions.csv: every sample's scores, flags and your marks",
                )
                .on_disabled_hover_text(why_not)
                .clicked()
            {
                export = Some(Export::Decisions {
                    path: dir.join("decisions.csv"),
                    text: decisions_csv(arm, train, truth, &self.marks),
                });
            }
            let caption = if self.confirm_export {
                format!("Confirm: remove {removed} images ({:.1} %)", 100.0 * share)
            } else {
                "Export cleaned dataset".to_owned()
            };
            if ui
                .add_enabled(ready, egui::Button::new(caption))
                .on_hover_text("writes the kept images as class folders (a new or empty folder)")
                .on_disabled_hover_text(why_not)
                .clicked()
            {
                if share > CONFIRM_SHARE && !self.confirm_export {
                    self.confirm_export = true;
                } else {
                    self.confirm_export = false;
                    export = Some(Export::Cleaned {
                        dir: dir.clone(),
                        keep: keep.clone(),
                    });
                }
            }
            ui.label(format!(
                "keeps {} of {total} (removes {:.1} %)",
                keep.len(),
                100.0 * share
            ));
            ui.separator();
            let saved_models = !finished.runs.is_empty();
            if ui
                .add_enabled(ready && saved_models, egui::Button::new("Save run + report"))
                .on_hover_text(
                    "writes the run as `poisonscope run`/`compare` would (models, report.json, scores.csv, config.toml) and a self-contained report.html, into a new or empty folder",
                )
                .on_disabled_hover_text(if saved_models {
                    why_not
                } else {
                    "these results hold no trained model"
                })
                .clicked()
            {
                export = Some(Export::Run { dir: dir.clone() });
            }
        });
        if self.confirm_export {
            ui.colored_label(
                ui.visuals().warn_fg_color,
                format!(
                    "This removes more than {:.0} % of the training set: review the flags, or click again to confirm.",
                    100.0 * CONFIRM_SHARE
                ),
            );
        }
        export
    }

    /// Samples kept in the cleaned dataset: not flagged by the current ranking, with the
    /// reviewer's marks overriding.
    pub fn kept(&self, arm: &Arm) -> Vec<usize> {
        (0..arm.predicted.len())
            .filter(|&i| match self.marks.get(&i) {
                Some(Mark::Poisoned) => false,
                Some(Mark::Clean) => true,
                None => !self.flagged(arm, i),
            })
            .collect()
    }

    fn gallery(
        &mut self,
        ui: &mut egui::Ui,
        arm: &Arm,
        train: &Dataset,
        truth: Option<&[bool]>,
        textures: &mut TextureCache,
    ) {
        let scroll = std::mem::take(&mut self.scroll_to_selected);
        let flagged_total = (0..arm.predicted.len())
            .filter(|&i| self.flagged(arm, i))
            .count();
        self.update_ranking(arm);
        let (order, scores) = match &self.order {
            Some((_, order, scores)) => (order.as_slice(), scores.as_slice()),
            None => (&[][..], &[][..]),
        };
        // Wrapped: an overflowing line would widen the panel under the side panel.
        ui.add(
            egui::Label::new(format!(
                "Ranked gallery: {} images, {flagged_total} flagged (most suspicious first)",
                order.len()
            ))
            .wrap(),
        );
        let step = TILE_WIDTH + 8.0 + ui.spacing().item_spacing.x;
        let per_row = ((ui.available_width() / step).floor() as usize).max(1);
        // Keyboard review (not while a text field takes the keys).
        let mut keyed = false;
        if !ui.ctx().egui_wants_keyboard_input() {
            let review = ui.input(|input| Review::read(input, per_row));
            if let Some(step) = review.step
                && !order.is_empty()
            {
                let at = self
                    .selected
                    .and_then(|s| order.iter().position(|&i| i == s));
                let next = match at {
                    None => 0,
                    Some(at) => at.saturating_add_signed(step).min(order.len() - 1),
                };
                self.selected = order.get(next).copied();
                keyed = true;
            }
            if let Some(i) = self.selected {
                match review.mark {
                    Some(Some(mark)) => {
                        self.marks.insert(i, mark);
                    }
                    Some(None) => {
                        self.marks.remove(&i);
                    }
                    None => {}
                }
            }
            if review.enlarge {
                self.enlarged = !self.enlarged;
            }
        }
        let selected = self.selected;
        let rows = order.len().div_ceil(per_row);
        let mut area = egui::ScrollArea::vertical()
            .id_salt(("gallery", self.generation))
            .auto_shrink([false, false]);
        let row_height = CELL_HEIGHT + ui.spacing().item_spacing.y;
        if (scroll || keyed)
            && let Some(pos) = selected.and_then(|s| order.iter().position(|&i| i == s))
        {
            let top = (pos / per_row) as f32 * row_height;
            let (offset, height) = self.gallery_view;
            if scroll {
                // From the scatter: the selected row at the top.
                area = area.vertical_scroll_offset(top);
            } else if top < offset {
                area = area.vertical_scroll_offset(top);
            } else if top + row_height > offset + height {
                // Scrolled just enough to show the row.
                area = area.vertical_scroll_offset(top + row_height - height);
            }
        }
        let mut clicked = None;
        // The tiles are clicked as a whole: their text must not take the click for selection.
        ui.style_mut().interaction.selectable_labels = false;
        let shown = area.show_rows(ui, CELL_HEIGHT, rows, |ui, range| {
            for row in range {
                ui.horizontal(|ui| {
                    for (rank, &i) in order.iter().enumerate().skip(row * per_row).take(per_row) {
                        let flagged = self.flagged(arm, i);
                        // One stroke width for every tile, so the columns line up.
                        let color = if Some(i) == selected {
                            ui.visuals().selection.stroke.color
                        } else if flagged {
                            egui::Color32::from_rgb(220, 60, 60)
                        } else {
                            ui.visuals().widgets.noninteractive.bg_stroke.color
                        };
                        let fill = if Some(i) == selected {
                            ui.visuals().selection.bg_fill.gamma_multiply(0.4)
                        } else {
                            egui::Color32::TRANSPARENT
                        };
                        let response = egui::Frame::new()
                            .stroke(egui::Stroke::new(2.0, color))
                            .fill(fill)
                            .inner_margin(2.0)
                            .show(ui, |ui| {
                                ui.set_width(TILE_WIDTH + 4.0);
                                ui.vertical(|ui| {
                                    if let Some(tex) = textures.get(ui.ctx(), "train", train, i) {
                                        ui.add(
                                            egui::Image::new(&tex)
                                                .fit_to_exact_size(egui::vec2(TILE, TILE)),
                                        );
                                    }
                                    let strong = ui.visuals().strong_text_color();
                                    let small = |t: String| {
                                        egui::RichText::new(t).size(CAPTION).color(strong)
                                    };
                                    ui.add(
                                        egui::Label::new(small(format!(
                                            "#{} {:.3}",
                                            rank + 1,
                                            scores.get(i).copied().unwrap_or(f64::NAN)
                                        )))
                                        .truncate(),
                                    );
                                    let given = train.labels.get(i).copied().unwrap_or_default();
                                    let pred = arm.predicted.get(i).copied().unwrap_or_default();
                                    let name = |c: u16| {
                                        train
                                            .class_names
                                            .get(usize::from(c))
                                            .cloned()
                                            .unwrap_or_else(|| c.to_string())
                                    };
                                    ui.add(
                                        egui::Label::new(small(format!("label {}", name(given))))
                                            .truncate(),
                                    );
                                    let mark = match self.marks.get(&i) {
                                        Some(Mark::Poisoned) => " · marked poisoned",
                                        Some(Mark::Clean) => " · marked clean",
                                        None => "",
                                    };
                                    let gt = match truth.and_then(|t| t.get(i)) {
                                        Some(true) => "poison",
                                        Some(false) => "clean",
                                        None => "",
                                    };
                                    let sep = if gt.is_empty() { "" } else { " · " };
                                    ui.add(
                                        egui::Label::new(small(format!(
                                            "pred {}{sep}{gt}{mark}",
                                            name(pred)
                                        )))
                                        .truncate(),
                                    );
                                });
                            })
                            .response
                            .interact(egui::Sense::click());
                        if response.clicked() {
                            clicked = Some(i);
                        }
                    }
                });
            }
        });
        self.gallery_view = (shown.state.clamped_offset().y, shown.inner_rect.height());
        if let Some(i) = clicked {
            self.selected = Some(i);
            ui.ctx().request_repaint();
        }
    }

    fn details(
        &mut self,
        ui: &mut egui::Ui,
        arm: &Arm,
        train: &Dataset,
        truth: Option<&[bool]>,
        textures: &mut TextureCache,
    ) {
        let Some(i) = self.selected else {
            ui.label("Click an image (or a point) to inspect it.");
            ui.weak(KEYS_HELP);
            return;
        };
        if self.enlarged
            && let Some(tex) = textures.get(ui.ctx(), "train", train, i)
        {
            let side = ui.available_width().clamp(128.0, ENLARGED);
            ui.add(egui::Image::new(&tex).fit_to_exact_size(egui::vec2(side, side)))
                .on_hover_text("Space: back to the small view");
        }
        ui.horizontal(|ui| {
            if !self.enlarged
                && let Some(tex) = textures.get(ui.ctx(), "train", train, i)
            {
                ui.add(egui::Image::new(&tex).fit_to_exact_size(egui::vec2(128.0, 128.0)))
                    .on_hover_text("Space: enlarge");
            }
            ui.vertical(|ui| {
                let class = |l: Option<u16>| {
                    l.and_then(|l| train.class_names.get(usize::from(l)))
                        .cloned()
                        .unwrap_or_default()
                };
                ui.strong(format!("Sample {i}"));
                ui.label(format!(
                    "given label {} · predicted {}",
                    class(train.labels.get(i).copied()),
                    class(arm.predicted.get(i).copied())
                ));
                if let Some(t) = truth.and_then(|t| t.get(i)) {
                    ui.label(if *t {
                        "ground truth: poisoned"
                    } else {
                        "ground truth: clean"
                    });
                }
                for (name, scores, flags) in &arm.detectors {
                    let flag = if flags.get(i).copied().unwrap_or(false) {
                        "flagged"
                    } else {
                        ""
                    };
                    ui.label(format!(
                        "{name}: {:.3} {flag}",
                        scores.get(i).copied().unwrap_or(f64::NAN)
                    ));
                }
                ui.horizontal(|ui| {
                    let current = self.marks.get(&i).copied();
                    if ui
                        .selectable_label(current == Some(Mark::Poisoned), "Mark poisoned")
                        .on_hover_text("key P")
                        .clicked()
                    {
                        self.marks.insert(i, Mark::Poisoned);
                    }
                    if ui
                        .selectable_label(current == Some(Mark::Clean), "Mark clean")
                        .on_hover_text("key C")
                        .clicked()
                    {
                        self.marks.insert(i, Mark::Clean);
                    }
                    if current.is_some() && ui.button("Unmark").on_hover_text("key U").clicked() {
                        self.marks.remove(&i);
                    }
                });
            });
        });
    }

    fn scatter(
        &mut self,
        ui: &mut egui::Ui,
        arm: &Arm,
        train: &Dataset,
        truth: Option<&[bool]>,
        textures: &mut TextureCache,
    ) {
        if let Some(job) = &self.tsne_job
            && let Ok(result) = job.result.try_recv()
        {
            self.tsne.insert(job.arm, result);
            self.tsne_job = None;
        }
        ui.horizontal(|ui| {
            ui.label("Feature space of the features the detectors saw:");
            ui.selectable_value(&mut self.layout, LayoutKind::Pca, "PCA");
            ui.selectable_value(&mut self.layout, LayoutKind::Tsne, "t-SNE");
        });
        let points: &[[f64; 2]] = match (self.layout, self.tsne.get(&self.arm)) {
            (LayoutKind::Pca, _) => &arm.projection,
            (LayoutKind::Tsne, Some(Ok(layout))) => layout,
            (LayoutKind::Tsne, Some(Err(e))) => {
                ui.colored_label(ui.visuals().error_fg_color, e.as_str());
                return;
            }
            (LayoutKind::Tsne, None) => {
                if self.tsne_job.is_some() {
                    ui.horizontal(|ui| {
                        ui.spinner();
                        ui.label(format!(
                            "computing t-SNE of {} samples…",
                            arm.projection.len()
                        ));
                    });
                } else if ui
                    .button(format!(
                        "Compute t-SNE ({} samples; about a minute per 10,000 on 2 cores)",
                        arm.projection.len()
                    ))
                    .clicked()
                {
                    let ctx = ui.ctx().clone();
                    match Layout::spawn(self.arm, arm.features.clone(), move || {
                        ctx.request_repaint();
                    }) {
                        Ok(job) => self.tsne_job = Some(job),
                        Err(e) => {
                            self.tsne
                                .insert(self.arm, Err(format!("cannot start t-SNE: {e}")));
                        }
                    }
                }
                return;
            }
        };
        let n = points.len();
        let classes = train.num_classes();
        // Group the points by colour.
        let mut groups: BTreeMap<usize, (String, egui::Color32, Vec<[f64; 2]>)> = BTreeMap::new();
        for (i, p) in points.iter().enumerate() {
            let key = match self.color_by {
                ColorBy::Class => usize::from(train.labels.get(i).copied().unwrap_or_default()),
                ColorBy::Flagged => usize::from(self.flagged(arm, i)),
                ColorBy::GroundTruth => {
                    usize::from(truth.and_then(|t| t.get(i)).copied().unwrap_or(false))
                }
            };
            groups
                .entry(key)
                .or_insert_with(|| {
                    let (name, color) = match (self.color_by, key) {
                        (ColorBy::Class, c) => (
                            train.class_names.get(c).cloned().unwrap_or_default(),
                            class_color(c, classes),
                        ),
                        (ColorBy::Flagged, 1) => {
                            ("flagged".to_owned(), egui::Color32::from_rgb(220, 60, 60))
                        }
                        (ColorBy::Flagged, _) => {
                            ("not flagged".to_owned(), egui::Color32::from_gray(140))
                        }
                        (ColorBy::GroundTruth, 1) => {
                            ("poisoned".to_owned(), egui::Color32::from_rgb(230, 120, 20))
                        }
                        (ColorBy::GroundTruth, _) => {
                            ("clean".to_owned(), egui::Color32::from_rgb(70, 130, 200))
                        }
                    };
                    (name, color, Vec::new())
                })
                .2
                .push(*p);
        }
        let radius = if n > 20_000 { 1.0 } else { 2.0 };
        let selected = self.selected.and_then(|i| points.get(i).copied());
        let (x_title, y_title) = match self.layout {
            LayoutKind::Pca => ("principal component 1", "principal component 2"),
            LayoutKind::Tsne => ("t-SNE 1", "t-SNE 2"),
        };
        let response = Plot::new(("scatter", self.generation))
            .legend(
                Legend::default()
                    .position(egui_plot::Corner::RightBottom)
                    .background_alpha(0.6),
            )
            .x_axis_label(x_title)
            .y_axis_label(y_title)
            // Room at the sides, so the legend (bottom right) sits beside the points.
            .set_margin_fraction(egui::vec2(0.22, 0.05))
            .data_aspect(1.0)
            .allow_boxed_zoom(true)
            .show(ui, |plot| {
                for (_, (name, color, points)) in groups {
                    plot.points(
                        Points::new(name, points)
                            .color(color)
                            .radius(radius)
                            .allow_hover(false),
                    );
                }
                if let Some(p) = selected {
                    plot.points(
                        Points::new("selected", vec![p])
                            .shape(MarkerShape::Circle)
                            .filled(false)
                            .radius(8.0)
                            .color(egui::Color32::WHITE),
                    );
                }
                let pointer = plot.pointer_coordinate();
                let transform = *plot.transform();
                pointer.and_then(|pointer| nearest(points, &transform, pointer))
            });
        let hovered = response.inner;
        if let Some(i) = hovered {
            if let Some(tex) = textures.get(ui.ctx(), "train", train, i) {
                response.response.clone().on_hover_ui_at_pointer(|ui| {
                    ui.add(egui::Image::new(&tex).fit_to_exact_size(egui::vec2(64.0, 64.0)));
                    ui.label(format!(
                        "sample {i} · label {}",
                        train.labels.get(i).copied().unwrap_or_default()
                    ));
                });
            }
            if response.response.clicked() {
                self.selected = Some(i);
                self.scroll_to_selected = true;
            }
        }
    }
}

/// The sample whose point lies nearest the pointer on screen, within [`HOVER_RADIUS`].
fn nearest(
    points: &[[f64; 2]],
    transform: &egui_plot::PlotTransform,
    pointer: PlotPoint,
) -> Option<usize> {
    let at = transform.position_from_point(&pointer);
    let mut best = None;
    let mut best_distance = HOVER_RADIUS * HOVER_RADIUS;
    for (i, p) in points.iter().enumerate() {
        let s = transform.position_from_point(&PlotPoint::new(p[0], p[1]));
        let d = (s - at).length_sq();
        if d <= best_distance {
            best_distance = d;
            best = Some(i);
        }
    }
    best
}

/// The manual decisions with every detector's score and flag, one row per training sample.
pub fn decisions_csv(
    arm: &Arm,
    train: &Dataset,
    truth: Option<&[bool]>,
    marks: &BTreeMap<usize, Mark>,
) -> String {
    let mut text = String::from("index,given_label,predicted,poisoned,decision");
    for (name, _, _) in &arm.detectors {
        text.push_str(&format!(",{name}_score,{name}_flag"));
    }
    text.push('\n');
    for i in 0..arm.predicted.len() {
        let poisoned = truth
            .and_then(|t| t.get(i))
            .map_or(String::new(), |p| u8::from(*p).to_string());
        let decision = match marks.get(&i) {
            Some(Mark::Poisoned) => "poisoned",
            Some(Mark::Clean) => "clean",
            None => "",
        };
        text.push_str(&format!(
            "{i},{},{},{poisoned},{decision}",
            train.labels.get(i).copied().unwrap_or_default(),
            arm.predicted.get(i).copied().unwrap_or_default()
        ));
        for (_, scores, flags) in &arm.detectors {
            text.push_str(&format!(
                ",{},{}",
                scores.get(i).copied().unwrap_or(f64::NAN),
                u8::from(flags.get(i).copied().unwrap_or(false))
            ));
        }
        text.push('\n');
    }
    text
}

/// The warnings of every arm (model near chance, not fitted, backdoor not learned, too many
/// flagged, a detector failed), each with what to try, above the results they qualify.
fn warnings_banner(ui: &mut egui::Ui, finished: &Finished) {
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

fn results_table(ui: &mut egui::Ui, finished: &Finished) {
    let arms = &finished.arms;
    let Some(first) = arms.first() else {
        return;
    };
    ui.horizontal_wrapped(|ui| {
        // The fused arm trained nothing of its own.
        for arm in arms.iter().filter(|a| a.name != super::worker::FUSED) {
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
    let mut rows: Vec<String> = first.detectors.iter().map(|(n, _, _)| n.clone()).collect();
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
