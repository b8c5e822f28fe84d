//! The ranked gallery (virtualised, keyboard review) and the selected sample's details.

use eframe::egui;

use super::*;

/// The gallery's keys of one frame: a move in ranking order, a mark (`Some(None)`: unmark), and
/// whether to toggle the enlarged view.
#[derive(Debug, Default)]
pub(super) struct Review {
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

impl Inspect {
    pub(super) fn gallery(
        &mut self,
        ui: &mut egui::Ui,
        shown: Shown<'_>,
        textures: &mut TextureCache,
    ) {
        let Shown { arm, train, truth } = shown;
        let scroll = std::mem::take(&mut self.scroll_to_selected);
        let flagged_total = (0..arm.predicted.len())
            .filter(|&i| self.flagged(arm, i))
            .count();
        self.update_ranking(arm, &train.labels);
        let (order, scores) = match &self.order {
            Some((_, order, scores)) => (order.as_slice(), scores.as_slice()),
            None => (&[][..], &[][..]),
        };
        // Wrapped: an overflowing line would widen the panel under the side panel.
        let ranked_by = match self.refining_marks() {
            Some((poisoned, clean)) => format!(
                "ranked by {} refined by your marks ({} poisoned first, {} clean last)",
                self.ranking_name(arm),
                poisoned.len(),
                clean.len()
            ),
            None => format!("ranked by {}", self.ranking_name(arm)),
        };
        ui.add(
            egui::Label::new(format!(
                "Ranked gallery: {} images, {flagged_total} flagged (most suspicious first; {ranked_by})",
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

    pub(super) fn details(
        &mut self,
        ui: &mut egui::Ui,
        shown: Shown<'_>,
        textures: &mut TextureCache,
    ) {
        let Shown { arm, train, truth } = shown;
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
                for Ranking {
                    name,
                    scores,
                    flags,
                } in &arm.detectors
                {
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
}
