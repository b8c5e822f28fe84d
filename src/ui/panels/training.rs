//! Step 3: model, optimiser arms, recipe, device; the run buttons, progress and curves.

use eframe::egui;

use super::super::*;

impl App {
    pub(in crate::ui) fn training_step(&mut self, ui: &mut egui::Ui) {
        let idle = !self.busy();
        ui.add_enabled_ui(idle, |ui| {
            let t = &mut self.settings.config.train;
            egui::Grid::new("train_grid").num_columns(2).show(ui, |ui| {
                let label = ui.label("Model");
                egui::ComboBox::from_id_salt("model")
                    .selected_text(match t.model {
                        ModelKind::Cnn => "small CNN",
                        ModelKind::PreActResNet18 => "PreAct-ResNet18",
                    })
                    .show_ui(ui, |ui| {
                        ui.selectable_value(&mut t.model, ModelKind::Cnn, "small CNN");
                        ui.selectable_value(
                            &mut t.model,
                            ModelKind::PreActResNet18,
                            "PreAct-ResNet18",
                        );
                    })
                    .response
                    .labelled_by(label.id)
                    .on_hover_text("small CNN for 28×28 digits; PreAct-ResNet18 (the seed paper's model; IBD-PSC needs it) for 32×32 colour images: about 50× slower than the CNN on a CPU (some 30 digits/s per core, 10 epochs of 2 000 digits ≈ 11 min with SGD, twice that with SAM)");
                ui.end_row();
                ui.label("Optimiser");
                ui.horizontal(|ui| {
                    ui.radio_value(&mut t.optimizer, OptimizerKind::Sgd, "SGD")
                        .on_hover_text("plain SGD with momentum: the detectors' usual model");
                    ui.radio_value(&mut t.optimizer, OptimizerKind::Sam, "SAM")
                        .on_hover_text("sharpness-aware minimisation: the seed paper's recipe, meant to make a weak backdoor stand out in the features");
                    ui.radio_value(&mut t.optimizer, OptimizerKind::Asam, "ASAM")
                        .on_hover_text("adaptive SAM: the radius scaled per weight");
                });
                ui.end_row();
                let label = ui.label("SAM radius (rho)");
                ui.add(
                    egui::DragValue::new(&mut t.rho)
                        .speed(0.005)
                        .range(0.0..=5.0),
                )
                .labelled_by(label.id)
                .on_hover_text("how far SAM looks for the worst nearby weights; 0.02 by default (larger radii let SAM skip fitting weak backdoors)");
                ui.end_row();
                let label = ui.label("Epochs");
                ui.add(egui::DragValue::new(&mut t.epochs).range(1..=500))
                    .labelled_by(label.id)
                    .on_hover_text("passes over the training set");
                ui.end_row();
                let label = ui.label("Batch size");
                ui.add(egui::DragValue::new(&mut t.batch_size).range(2..=4096))
                    .labelled_by(label.id)
                    .on_hover_text("images per step (at least 2: BatchNorm needs a batch)");
                ui.end_row();
                let label = ui.label("Learning rate");
                ui.add(
                    egui::DragValue::new(&mut t.lr)
                        .speed(0.001)
                        .range(1e-5..=1.0),
                )
                .labelled_by(label.id)
                .on_hover_text("SGD step size; a run that stays at chance accuracy usually needs a larger one");
                ui.end_row();
                let label = ui.label("Seed");
                ui.add(egui::DragValue::new(&mut t.seed))
                    .labelled_by(label.id)
                    .on_hover_text("fixes the split, the poisoned samples, the initial weights and the batch order: the same seed gives the same run");
                ui.end_row();
                ui.label("Device");
                ui.horizontal(|ui| {
                    use crate::config::DeviceKind;
                    ui.radio_value(&mut t.device, DeviceKind::Cpu, "CPU")
                        .on_hover_text("Burn's CPU backend on every core");
                    let missing = crate::train::cuda_unavailable();
                    if ui
                        .add_enabled(
                            missing.is_none(),
                            egui::RadioButton::new(t.device == DeviceKind::Cuda, "CUDA"),
                        )
                        .on_hover_text("an NVIDIA GPU through Burn's CUDA backend")
                        .on_disabled_hover_text(missing.clone().unwrap_or_default())
                        .clicked()
                    {
                        t.device = DeviceKind::Cuda;
                    }
                    // The wgpu probe creates a device; it runs on a thread of its own from the
                    // window's start, and until it answers the choice waits.
                    let probed = crate::wgpu::probed();
                    let adapter = probed.then(crate::wgpu::wgpu_adapter);
                    let usable = matches!(adapter, Some(Ok(_)));
                    let (hover, disabled_hover) = match &adapter {
                        Some(Ok(a)) if a.is_software() => (
                            format!(
                                "Burn's wgpu backend on {}: a software renderer, slower than the CPU backend; for checking results, not for speed",
                                a.describe()
                            ),
                            String::new(),
                        ),
                        Some(Ok(a)) => (
                            format!("Burn's wgpu backend (Vulkan, Metal, DirectX 12) on {}", a.describe()),
                            String::new(),
                        ),
                        Some(Err(why)) => (String::new(), why.clone()),
                        None => (String::new(), "looking for a wgpu adapter…".to_owned()),
                    };
                    if ui
                        .add_enabled(
                            usable,
                            egui::RadioButton::new(t.device == DeviceKind::Wgpu, "wgpu"),
                        )
                        .on_hover_text(hover)
                        .on_disabled_hover_text(disabled_hover)
                        .clicked()
                    {
                        t.device = DeviceKind::Wgpu;
                    }
                    let here = if probed {
                        let mut here =
                            crate::train::device::resolve(DeviceKind::Auto).name().to_owned();
                        for why in crate::train::device::auto_passed_over() {
                            here.push_str(&format!("; {why}"));
                        }
                        here
                    } else {
                        "not yet known".to_owned()
                    };
                    ui.radio_value(&mut t.device, DeviceKind::Auto, "auto")
                        .on_hover_text(format!(
                            "CUDA where it works, else a hardware wgpu adapter, else the CPU (here: {here}); the report says which trained"
                        ));
                });
                ui.end_row();
            });
        });
        ui.horizontal(|ui| {
            let ready = idle && self.dataset_loaded();
            let why = if !idle {
                "a run is in progress (Cancel stops it)".to_owned()
            } else {
                match &self.dataset {
                    Err(e) if self.loading.is_some() => e.clone(),
                    Err(e) => format!("no dataset: {e}"),
                    Ok(_) => String::new(),
                }
            };
            if ui
                .add_enabled(ready, egui::Button::new("Start"))
                .on_disabled_hover_text(&why)
                .clicked()
            {
                self.commands.push(Command::Run { compare: false });
            }
            if ui
                .add_enabled(ready, egui::Button::new("Compare SGD vs SAM"))
                .on_disabled_hover_text(&why)
                .clicked()
            {
                self.commands.push(Command::Run { compare: true });
            }
            let cancellable = self.job.as_ref().is_some_and(|j| !j.worker.is_cancelling());
            if ui
                .add_enabled(cancellable, egui::Button::new("Cancel"))
                .clicked()
            {
                self.commands.push(Command::Cancel);
            }
        });
        if self.job.is_some() {
            let p = &self.progress;
            let eta = p
                .eta_seconds()
                .map_or(String::new(), |s| format!(" · ETA {}", format_seconds(s)));
            let arm = if p.arms > 1 {
                format!(
                    "{} ",
                    ["SGD", "SAM"].get(p.arm).copied().unwrap_or_default()
                )
            } else {
                String::new()
            };
            ui.add(
                egui::ProgressBar::new(p.fraction())
                    .show_percentage()
                    .text(format!("{arm}{}{eta}", p.stage)),
            );
            if p.images_per_second > 0.0 {
                let digits = if p.images_per_second < 10.0 { 1 } else { 0 };
                // "wgpu on llvmpipe (…)": the device first, what `auto` passed over in the hover.
                let (place, passed_over) =
                    p.device.split_once("; ").unwrap_or((p.device.as_str(), ""));
                let speed = ui.label(format!(
                    "{:.*} images/s on {place}",
                    digits, p.images_per_second
                ));
                if !passed_over.is_empty() {
                    speed.on_hover_text(passed_over.replace("; ", "\n"));
                }
            }
        }
        self.curves_ui(ui);
    }

    pub(in crate::ui) fn curves_ui(&self, ui: &mut egui::Ui) {
        let p = &self.progress;
        if p.loss.iter().all(Vec::is_empty) {
            return;
        }
        let names = if p.arms > 1 {
            vec!["SGD", "SAM"]
        } else {
            vec!["run"]
        };
        ui.label("Training loss (per batch)");
        // Live curves: always fitted to the data (a wheel or drag must not pan them away).
        egui_plot::Plot::new("loss_plot")
            .height(120.0)
            // From zero: a loss falling over a small range still gets several ticks.
            .include_y(0.0)
            .allow_scroll(false)
            .allow_drag(false)
            .allow_zoom(false)
            .allow_boxed_zoom(false)
            .legend(egui_plot::Legend::default())
            .x_axis_label("epoch")
            .show(ui, |plot| {
                for (curve, name) in p.loss.iter().zip(&names) {
                    plot.line(egui_plot::Line::new(*name, curve.clone()));
                }
            });
        ui.label("Test accuracy and attack success rate (per epoch)");
        egui_plot::Plot::new("accuracy_plot")
            .height(120.0)
            .allow_scroll(false)
            .allow_drag(false)
            .allow_zoom(false)
            .allow_boxed_zoom(false)
            .legend(egui_plot::Legend::default())
            .include_y(0.0)
            .include_y(1.0)
            .x_axis_label("epoch")
            .show(ui, |plot| {
                for (i, name) in names.iter().enumerate() {
                    if let Some(c) = p.accuracy.get(i) {
                        plot.line(egui_plot::Line::new(format!("{name} accuracy"), c.clone()));
                    }
                    if let Some(c) = p.asr.get(i).filter(|c| !c.is_empty()) {
                        plot.line(egui_plot::Line::new(format!("{name} ASR"), c.clone()));
                    }
                }
            });
    }
}
