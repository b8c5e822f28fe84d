//! The feature-space scatter, linked to the gallery's selection.

use eframe::egui;

use super::*;

impl Inspect {
    /// Starts the t-SNE layout of `arm`'s `features` on a worker.
    pub(in crate::ui) fn start_tsne(
        &mut self,
        arm: usize,
        features: Arc<ndarray::Array2<f64>>,
        ctx: &egui::Context,
    ) {
        let ctx = ctx.clone();
        match Layout::spawn(arm, features, move || ctx.request_repaint()) {
            Ok(job) => self.tsne_job = Some(job),
            Err(e) => {
                self.tsne
                    .insert(arm, Err(format!("cannot start t-SNE: {e}")));
            }
        }
    }

    /// Takes in a finished t-SNE layout.
    pub(in crate::ui) fn poll(&mut self) {
        if let Some(job) = &self.tsne_job
            && let Some(result) = job.poll()
        {
            self.tsne.insert(job.arm, result);
            self.tsne_job = None;
        }
    }

    /// Draws the scatter; returns true when the user asks for a t-SNE layout.
    pub(super) fn scatter(
        &mut self,
        ui: &mut egui::Ui,
        shown: Shown<'_>,
        textures: &mut TextureCache,
    ) -> bool {
        let Shown { arm, train, truth } = shown;
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
                return false;
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
                } else {
                    return ui
                        .button(format!(
                            "Compute t-SNE ({} samples; about a minute per 10,000 on 2 cores)",
                            arm.projection.len()
                        ))
                        .clicked();
                }
                return false;
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
        false
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
