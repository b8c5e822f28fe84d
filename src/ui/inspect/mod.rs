//! The inspection view: the results table (one run, or SGD vs SAM with deltas), the ranked
//! gallery of suspicious training images (virtualised), the feature-space scatter linked to it,
//! the enlarged sample with manual marks, and the exports.

use std::collections::{BTreeMap, HashMap};
use std::sync::Arc;

use eframe::egui;
use egui_plot::{Legend, MarkerShape, Plot, PlotPoint, Points};

mod controls;
mod export;
mod gallery;
mod scatter;
mod table;

use super::Command;
use super::layout::Layout;
use super::worker::{Arm, Finished};
use crate::data::Dataset;
use crate::detect::Ranking;
use crate::run::report;
pub use export::{CONFIRM_SHARE, Export, decisions_csv};
use table::{results_table, warnings_banner};

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

/// What the inspection view shows this frame: the chosen model's arm, the training set it ran
/// on, and the ground truth when an attack was planted.
#[derive(Clone, Copy)]
pub(super) struct Shown<'a> {
    arm: &'a Arm,
    train: &'a Dataset,
    truth: Option<&'a [bool]>,
}

/// Which ordering the gallery shows: the arm, the ranking (a detector or the consensus), and
/// the marks the ranking is refined by (0: not refined; else a hash of the marks).
type OrderKey = (usize, Option<usize>, u64);
/// A cached ranking: its key, the order, the scores.
/// Flags of the top K: keyed by the ranking's key and K.
type TopFlags = ((OrderKey, usize), Vec<bool>);
type CachedOrder = (OrderKey, Vec<usize>, Vec<f64>);

/// State of the inspection view.
#[derive(Default)]
pub struct Inspect {
    /// Which arm (0 = the run, or SGD; 1 = SAM in a comparison).
    pub arm: usize,
    /// Which ranking: a detector's index, or `None` for the consensus.
    pub ranking: Option<usize>,
    pub selected: Option<usize>,
    pub marks: BTreeMap<usize, Mark>,
    /// "Find more like the marked": the ranking refined by the marks (`detect::like::refine`),
    /// the marked poisons first and the marked clean images last.
    pub find_like: bool,
    color_by: ColorBy,
    layout: LayoutKind,
    /// t-SNE layouts per arm, once computed (or why they failed).
    pub(super) tsne: HashMap<usize, Result<Vec<[f64; 2]>, String>>,
    tsne_job: Option<Layout>,
    scroll_to_selected: bool,
    order: Option<CachedOrder>,
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
    /// The gallery's current order (sample indices, most suspicious first), once drawn.
    pub fn gallery_order(&self) -> Option<&[usize]> {
        self.order.as_ref().map(|(_, order, _)| order.as_slice())
    }

    /// The marked poisons and clean images, when the ranking is refined by them.
    fn refining_marks(&self) -> Option<(Vec<usize>, Vec<usize>)> {
        let poisoned: Vec<usize> = self
            .marks
            .iter()
            .filter(|(_, m)| **m == Mark::Poisoned)
            .map(|(&i, _)| i)
            .collect();
        if !self.find_like || poisoned.is_empty() {
            return None;
        }
        let clean = self
            .marks
            .iter()
            .filter(|(_, m)| **m == Mark::Clean)
            .map(|(&i, _)| i)
            .collect();
        Some((poisoned, clean))
    }

    /// Brings the cached ranking up to date with the chosen arm, ranking and (refining) marks.
    fn update_ranking(&mut self, arm: &Arm, given: &[u16]) {
        let refining = self.refining_marks();
        let marks_key = refining.as_ref().map_or(0, |marks| {
            use std::hash::{Hash, Hasher};
            let mut hasher = std::collections::hash_map::DefaultHasher::new();
            marks.hash(&mut hasher);
            hasher.finish() | 1
        });
        let key = (self.arm, self.ranking, marks_key);
        if self.order.as_ref().is_none_or(|(k, _, _)| *k != key) {
            let n = arm.predicted.len();
            let mut scores = match self.ranking.and_then(|i| arm.detectors.get(i)) {
                Some(ranking) => ranking.scores.clone(),
                None if arm.consensus.scores.len() == n => arm.consensus.scores.clone(),
                None => vec![0.0; n],
            };
            // Marked poisons first, then the rest by score, marked clean images last.
            let mut group = vec![1u8; n];
            if let Some((poisoned, clean)) = &refining
                && arm.features.nrows() == n
                && given.len() == n
            {
                scores =
                    crate::detect::like::refine(&scores, &arm.features, given, poisoned, clean);
                for &i in poisoned.iter().filter(|&&i| i < n) {
                    group[i] = 0;
                }
                for &i in clean.iter().filter(|&&i| i < n) {
                    group[i] = 2;
                }
            }
            let mut order: Vec<usize> = (0..scores.len()).collect();
            order.sort_by(|&a, &b| {
                group[a]
                    .cmp(&group[b])
                    .then(scores[b].total_cmp(&scores[a]))
            });
            self.order = Some((key, order, scores));
        }
        let top_key = (key, self.top_k);
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
            Some(ranking) => ranking.flags.get(i).copied().unwrap_or(false),
            None => arm.consensus.flags.get(i).copied().unwrap_or(false),
        }
    }

    pub fn ui(
        &mut self,
        ui: &mut egui::Ui,
        finished: &Finished,
        textures: &mut TextureCache,
        exporting: bool,
    ) -> Option<Command> {
        let arm = finished
            .arms
            .get(self.arm.min(finished.arms.len().saturating_sub(1)))?;
        let mut command = None;
        let shown = Shown {
            arm,
            train: finished.run.prepared.train_data().train,
            truth: finished.run.truth.as_deref(),
        };
        egui::Panel::top("inspect_top").show(ui, |ui| {
            warnings_banner(ui, finished);
            egui::ScrollArea::horizontal()
                .id_salt(("results_scroll", self.generation))
                .show(ui, |ui| results_table(ui, finished));
            ui.separator();
            self.update_ranking(arm, &shown.train.labels);
            command = self
                .controls(ui, finished, shown, exporting)
                .map(Command::Export);
        });
        let width = ui.available_width();
        egui::Panel::right("inspect_side")
            .resizable(true)
            .default_size(width * 0.5)
            .show(ui, |ui| {
                self.details(ui, shown, textures);
                ui.separator();
                if self.scatter(ui, shown, textures) {
                    command = Some(Command::Tsne {
                        arm: self.arm,
                        features: Arc::clone(&arm.features),
                    });
                }
            });
        egui::CentralPanel::default().show(ui, |ui| {
            self.gallery(ui, shown, textures);
        });
        command
    }
}
