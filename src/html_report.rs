//! `poisonscope report DIR --out report.html`: one self-contained HTML page (styles, charts and
//! images inlined, nothing fetched) that an analyst can mail or archive: the settings, the fit
//! and the warnings, the training curves, the detector table (SGD and SAM with their differences
//! after a `compare`), the training set's features projected on their two principal axes and
//! coloured by flag and ground truth, and each detector's most suspicious images with scores.
//!
//! DIR is a `run` (or `detect`) folder, or a `compare` folder holding `sgd/` and `sam/`.
//! Everything is read from the folder; the images and features come from the dataset named in
//! its `config.toml` and the saved model. When the dataset is gone, the page says so and still
//! carries the tables and curves.

use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::path::{Path, PathBuf};
use std::sync::atomic::AtomicBool;

use anyhow::Context as _;
use base64::Engine as _;

use crate::config::Experiment;
use crate::data::Dataset;
use crate::detect::{consensus, features, linalg};
use crate::prepare::Prepared;
use crate::report::{DetectorReport, Report};
use crate::train::{self, EpochStats, checkpoint};

/// One arm's files.
struct Arm {
    name: String,
    dir: PathBuf,
    config: Experiment,
    report: Report,
    history: Vec<EpochStats>,
    scores: Scores,
    /// The consensus as the run computed it (mean rank percentile, flags by agreement).
    consensus: (Vec<f64>, Vec<bool>),
}

/// `scores.csv`: per sample, the given label, the ground truth when known, and per detector
/// the score and the flag.
#[derive(Default)]
struct Scores {
    given: Vec<u16>,
    poisoned: Option<Vec<bool>>,
    detectors: Vec<(String, Vec<f64>, Vec<bool>)>,
}

impl Scores {
    fn read(path: &Path) -> anyhow::Result<Self> {
        let text = std::fs::read_to_string(path)
            .with_context(|| format!("{}: cannot read", path.display()))?;
        let mut lines = text.lines();
        let header: Vec<&str> = lines
            .next()
            .with_context(|| format!("{}: empty", path.display()))?
            .split(',')
            .collect();
        let column = |name: &str| header.iter().position(|h| *h == name);
        let names: Vec<String> = header
            .iter()
            .filter_map(|h| h.strip_suffix("_score"))
            .filter(|n| column(&format!("{n}_flag")).is_some())
            .map(str::to_owned)
            .collect();
        let mut out = Self {
            detectors: names
                .iter()
                .map(|n| (n.clone(), Vec::new(), Vec::new()))
                .collect(),
            ..Self::default()
        };
        let (given_at, poisoned_at) = (column("given_label"), column("poisoned"));
        let mut poisoned = Vec::new();
        for (row, line) in lines.enumerate() {
            let cells: Vec<&str> = line.split(',').collect();
            let bad = || anyhow::anyhow!("{}: row {} is malformed", path.display(), row + 2);
            let cell = |at: Option<usize>| at.and_then(|a| cells.get(a).copied());
            out.given.push(
                cell(given_at)
                    .and_then(|v| v.parse().ok())
                    .ok_or_else(bad)?,
            );
            if let Some(p) = cell(poisoned_at) {
                poisoned.push(p == "1");
            }
            for (name, scores, flags) in &mut out.detectors {
                let score = cell(column(&format!("{name}_score")))
                    .and_then(|v| v.parse::<f64>().ok())
                    .ok_or_else(bad)?;
                let flag = cell(column(&format!("{name}_flag"))).ok_or_else(bad)? == "1";
                scores.push(score);
                flags.push(flag);
            }
        }
        if poisoned_at.is_some() && poisoned.len() == out.given.len() {
            out.poisoned = Some(poisoned);
        }
        Ok(out)
    }

    /// The consensus as the run computed it: mean rank percentile, flagged by agreement.
    fn consensus(&self, agreement: usize) -> (Vec<f64>, Vec<bool>) {
        let n = self.given.len();
        let scores: Vec<&[f64]> = self.detectors.iter().map(|d| d.1.as_slice()).collect();
        let flags: Vec<&[bool]> = self.detectors.iter().map(|d| d.2.as_slice()).collect();
        let need = agreement.min(flags.len().max(1));
        (
            consensus::mean_rank(&scores, n),
            consensus::agreement(&flags, n, need),
        )
    }
}

fn read_arm(name: &str, dir: &Path) -> anyhow::Result<Arm> {
    let read = |file: &str| {
        let path = dir.join(file);
        std::fs::read_to_string(&path).with_context(|| format!("{}: cannot read", path.display()))
    };
    let report: Report = serde_json::from_str(&read("report.json")?).with_context(|| {
        format!(
            "{}: not a poisonscope report",
            dir.join("report.json").display()
        )
    })?;
    let config = Experiment::from_file(&dir.join("config.toml"), &[])?;
    let history = read("training.json")
        .ok()
        .and_then(|t| serde_json::from_str::<serde_json::Value>(&t).ok())
        .and_then(|v| serde_json::from_value(v["history"].clone()).ok())
        .unwrap_or_default();
    let scores = Scores::read(&dir.join("scores.csv"))?;
    let consensus = scores.consensus(config.detect.consensus_agreement);
    Ok(Arm {
        name: name.to_owned(),
        dir: dir.to_path_buf(),
        config,
        report,
        history,
        scores,
        consensus,
    })
}

/// The arms of DIR: `sgd/` and `sam/` of a comparison, or the run itself.
fn read_arms(dir: &Path) -> anyhow::Result<Vec<Arm>> {
    if dir.join("comparison.json").is_file() {
        return ["sgd", "sam"]
            .iter()
            .map(|name| read_arm(name, &dir.join(name)))
            .collect();
    }
    anyhow::ensure!(
        dir.join("report.json").is_file(),
        "{}: holds neither report.json (a run) nor comparison.json (a compare)",
        dir.display()
    );
    Ok(vec![read_arm("run", dir)?])
}

/// HTML-escapes `text`.
fn esc(text: &str) -> String {
    text.replace('&', "&amp;")
        .replace('<', "&lt;")
        .replace('>', "&gt;")
        .replace('"', "&quot;")
}

/// The config name of a setting (`sgd`, `preact-resnet18`).
fn config_name<T: serde::Serialize>(value: &T) -> String {
    serde_json::to_value(value)
        .ok()
        .and_then(|v| v.as_str().map(str::to_owned))
        .unwrap_or_default()
}

fn pct(v: Option<f64>) -> String {
    v.map_or("–".to_owned(), |v| format!("{:.1}", 100.0 * v))
}

/// One line of a chart: its name, colour and (x, y) points.
type Series<'a> = (String, &'a str, Vec<(f64, f64)>);

const COLORS: [&str; 4] = ["#1f77b4", "#d62728", "#2ca02c", "#9467bd"];

/// A line chart: each series `(name, colour, points)` over a shared x range; y in `y_range`.
fn line_chart(title: &str, series: &[Series<'_>], y_range: (f64, f64)) -> String {
    let (w, h, pad) = (420.0, 200.0, 36.0);
    let xs = series.iter().flat_map(|s| s.2.iter().map(|p| p.0));
    let (x0, x1) = xs.fold((f64::INFINITY, f64::NEG_INFINITY), |(a, b), x| {
        (a.min(x), b.max(x))
    });
    if !x0.is_finite() {
        return String::new();
    }
    let x1 = if x1 > x0 { x1 } else { x0 + 1.0 };
    let (y0, y1) = y_range;
    let sx = |x: f64| pad + (x - x0) / (x1 - x0) * (w - 2.0 * pad);
    let sy = |y: f64| h - pad - (y.clamp(y0, y1) - y0) / (y1 - y0) * (h - 2.0 * pad);
    let mut svg = format!(
        r##"<figure><svg viewBox="0 0 {w} {h}" width="{w}" height="{h}" role="img" aria-label="{t}"><rect x="{pad}" y="{pad}" width="{}" height="{}" fill="none" stroke="#ccc"/>"##,
        w - 2.0 * pad,
        h - 2.0 * pad,
        t = esc(title)
    );
    for (label, y) in [(format!("{y1:.2}"), y1), (format!("{y0:.2}"), y0)] {
        let _ = write!(
            svg,
            r#"<text x="2" y="{:.1}" font-size="10">{label}</text>"#,
            sy(y) + 3.0
        );
    }
    let _ = write!(
        svg,
        r#"<text x="{pad}" y="{:.1}" font-size="10">epoch {x0:.0}</text><text x="{:.1}" y="{:.1}" font-size="10" text-anchor="end">{x1:.0}</text>"#,
        h - 12.0,
        w - pad,
        h - 12.0
    );
    for (i, (name, color, points)) in series.iter().enumerate() {
        let path: Vec<String> = points
            .iter()
            .filter(|p| p.1.is_finite())
            .map(|&(x, y)| format!("{:.1},{:.1}", sx(x), sy(y)))
            .collect();
        let _ = write!(
            svg,
            r#"<polyline fill="none" stroke="{color}" stroke-width="2" points="{}"/><text x="{:.1}" y="{:.1}" font-size="11" fill="{color}">{}</text>"#,
            path.join(" "),
            pad + 4.0 + 110.0 * i as f64,
            pad - 8.0,
            esc(name)
        );
    }
    let _ = write!(
        svg,
        "</svg><figcaption>{}</figcaption></figure>",
        esc(title)
    );
    svg
}

/// Training curves of every arm: test accuracy, attack success rate, training loss.
fn curves(arms: &[Arm]) -> String {
    let mut acc = Vec::new();
    let mut loss = Vec::new();
    for (i, arm) in arms.iter().enumerate() {
        let color = COLORS[i % COLORS.len()];
        let name = arm.name.to_uppercase();
        let point = |f: &dyn Fn(&EpochStats) -> Option<f64>| -> Vec<(f64, f64)> {
            arm.history
                .iter()
                .filter_map(|e| f(e).map(|v| (e.epoch as f64, v)))
                .collect()
        };
        acc.push((
            format!("{name} test acc."),
            color,
            point(&|e| Some(e.test_accuracy)),
        ));
        let asr = point(&|e| e.attack_success_rate);
        if !asr.is_empty() {
            acc.push((format!("{name} ASR"), COLORS[(i + 2) % COLORS.len()], asr));
        }
        loss.push((
            format!("{name} loss"),
            color,
            point(&|e| Some(e.train_loss)),
        ));
    }
    let top = loss
        .iter()
        .flat_map(|s| s.2.iter().map(|p| p.1))
        .fold(0.0f64, f64::max)
        .max(1e-9);
    format!(
        "{}{}",
        line_chart(
            "Test accuracy and attack success rate per epoch",
            &acc,
            (0.0, 1.0)
        ),
        line_chart("Training loss per epoch", &loss, (0.0, top))
    )
}

/// The detector table: one row per detector and the consensus; with two arms, both and Δ.
fn detector_table(arms: &[Arm]) -> String {
    let rows = |arm: &Arm| -> BTreeMap<String, DetectorReport> {
        let mut rows = arm.report.detectors.clone();
        if let Some(c) = &arm.report.consensus {
            rows.insert("consensus".to_owned(), c.clone());
        }
        rows
    };
    let all: Vec<BTreeMap<String, DetectorReport>> = arms.iter().map(rows).collect();
    let mut html = String::from("<table><tr><th>detector</th>");
    for arm in arms {
        let n = esc(&arm.name.to_uppercase());
        let _ = write!(
            html,
            "<th>{n} flagged</th><th>{n} TPR %</th><th>{n} FPR %</th><th>{n} AUROC</th>"
        );
    }
    if arms.len() == 2 {
        html.push_str("<th>Δ TPR (SAM − SGD)</th><th>Δ AUROC</th>");
    }
    html.push_str("</tr>");
    let names: Vec<&String> = all.first().map(|r| r.keys().collect()).unwrap_or_default();
    for name in names {
        let _ = write!(html, "<tr><td>{}</td>", esc(name));
        for rows in &all {
            match rows.get(name) {
                Some(d) if d.error.is_some() => {
                    let _ = write!(
                        html,
                        r#"<td colspan="4" class="warn">failed: {}</td>"#,
                        esc(d.error.as_deref().unwrap_or_default())
                    );
                }
                Some(d) => {
                    let _ = write!(
                        html,
                        "<td>{}</td><td>{}</td><td>{}</td><td>{}</td>",
                        d.flagged,
                        pct(d.tpr),
                        pct(d.fpr),
                        d.auroc.map_or("–".to_owned(), |a| format!("{a:.3}"))
                    );
                }
                None => html.push_str("<td colspan=\"4\">–</td>"),
            }
        }
        if let [a, b] = all.as_slice() {
            let delta =
                |f: &dyn Fn(&DetectorReport) -> Option<f64>, scale: f64, digits: usize| match (
                    a.get(name).and_then(f),
                    b.get(name).and_then(f),
                ) {
                    (Some(x), Some(y)) => format!("{:+.*}", digits, scale * (y - x)),
                    _ => "–".to_owned(),
                };
            let _ = write!(
                html,
                "<td>{}</td><td>{}</td>",
                delta(&|d| d.tpr, 100.0, 1),
                delta(&|d| d.auroc, 1.0, 3)
            );
        }
        html.push_str("</tr>");
    }
    html.push_str("</table>");
    html
}

/// A PNG of sample `i`, as a data URL.
fn image_url(data: &Dataset, i: usize) -> Option<String> {
    let s = data.shape;
    let pixels = data.image(i)?;
    let color = if s.channels == 1 {
        image::ExtendedColorType::L8
    } else {
        image::ExtendedColorType::Rgb8
    };
    let mut png = Vec::new();
    image::ImageEncoder::write_image(
        image::codecs::png::PngEncoder::new(&mut png),
        pixels,
        s.width as u32,
        s.height as u32,
        color,
    )
    .ok()?;
    Some(format!(
        "data:image/png;base64,{}",
        base64::engine::general_purpose::STANDARD.encode(png)
    ))
}

/// Each detector's (and the consensus's) `top` most suspicious training images.
fn galleries(arm: &Arm, data: &Dataset, top: usize) -> String {
    let s = &arm.scores;
    let (consensus_scores, consensus_flags) = arm.consensus.clone();
    let mut rankings = vec![("consensus".to_owned(), consensus_scores, consensus_flags)];
    rankings.extend(s.detectors.iter().cloned());
    let mut html = String::new();
    for (name, scores, flags) in &rankings {
        let order = linalg::top_k(scores, top);
        let _ = write!(
            html,
            "<h4>{} — top {}</h4><div class=\"gallery\">",
            esc(name),
            order.len()
        );
        for (rank, &i) in order.iter().enumerate() {
            let label = s
                .given
                .get(i)
                .and_then(|&l| data.class_names.get(usize::from(l)))
                .map_or("?", String::as_str);
            let truth = match s.poisoned.as_ref().and_then(|p| p.get(i)) {
                Some(true) => " · <b class=\"warn\">poisoned</b>",
                Some(false) => " · clean",
                None => "",
            };
            let flag = if flags.get(i).copied().unwrap_or(false) {
                " · flagged"
            } else {
                ""
            };
            let img = image_url(data, i)
                .map(|url| format!(r#"<img src="{url}" alt="sample {i}">"#))
                .unwrap_or_default();
            let _ = write!(
                html,
                "<figure>{img}<figcaption>#{} · sample {i}<br>label {}{flag}{truth}<br>score {:.3}</figcaption></figure>",
                rank + 1,
                esc(label),
                scores.get(i).copied().unwrap_or(f64::NAN)
            );
        }
        html.push_str("</div>");
    }
    html
}

/// Most points drawn in a scatter (all flagged and poisoned samples, then a seeded sample).
const SCATTER_POINTS: usize = 3000;

/// The training features on their two principal axes, coloured by the consensus flag and the
/// ground truth.
fn scatter(arm: &Arm, prepared: &Prepared) -> anyhow::Result<String> {
    let train = prepared.train_data().train;
    let device = train::device_for(arm.config.train.device)?;
    let loaded = checkpoint::load_for(&arm.dir, &device, Some(train))?;
    let cancel = AtomicBool::new(false);
    let extracted = features::extract(
        &loaded.model,
        train,
        &loaded.normalization,
        &device,
        &cancel,
        &mut |_, _| {},
    )
    .map_err(|_| anyhow::anyhow!("feature extraction was cancelled"))?;
    let projected = linalg::principal_plane(extracted.features.view());
    let flags = &arm.consensus.1;
    let poisoned = arm.scores.poisoned.clone();
    let n = projected.len();
    let important = |i: usize| {
        flags.get(i).copied().unwrap_or(false)
            || poisoned
                .as_ref()
                .is_some_and(|p| p.get(i).copied().unwrap_or(false))
    };
    let stride = n.div_ceil(SCATTER_POINTS).max(1);
    let shown: Vec<usize> = (0..n)
        .filter(|&i| important(i) || i % stride == 0)
        .collect();
    let coord = |i: usize, k: usize| projected.get(i).map_or(0.0, |p| p[k]);
    let range = |k: usize| {
        shown
            .iter()
            .map(|&i| coord(i, k))
            .fold((f64::INFINITY, f64::NEG_INFINITY), |(a, b), v| {
                (a.min(v), b.max(v))
            })
    };
    let ((x0, x1), (y0, y1)) = (range(0), range(1));
    let (w, h, pad) = (560.0, 420.0, 20.0);
    let sx = |v: f64| pad + (v - x0) / (x1 - x0).max(1e-12) * (w - 2.0 * pad);
    let sy = |v: f64| h - pad - (v - y0) / (y1 - y0).max(1e-12) * (h - 2.0 * pad);
    let mut svg = format!(
        r##"<figure><svg viewBox="0 0 {w} {h}" width="{w}" height="{h}" role="img" aria-label="feature scatter"><rect width="{w}" height="{h}" fill="#fafafa"/>"##
    );
    // Clean and unflagged first, so the interesting points are drawn on top.
    let mut order = shown.clone();
    order.sort_by_key(|&i| important(i));
    for i in order {
        let flagged = flags.get(i).copied().unwrap_or(false);
        let bad = poisoned.as_ref().and_then(|p| p.get(i).copied());
        let (fill, stroke) = match (bad, flagged) {
            (Some(true), true) => ("#d62728", "#000"),
            (Some(true), false) => ("#ff9896", "#d62728"),
            (_, true) => ("#ffbb00", "#000"),
            _ => ("#9ab", "none"),
        };
        let _ = write!(
            svg,
            r#"<circle cx="{:.1}" cy="{:.1}" r="2.5" fill="{fill}" stroke="{stroke}" stroke-width="0.6"/>"#,
            sx(coord(i, 0)),
            sy(coord(i, 1))
        );
    }
    let legend = if poisoned.is_some() {
        "grey: clean, not flagged · yellow: flagged clean (false positive) · dark red: flagged poison · pink: missed poison"
    } else {
        "grey: not flagged · yellow: flagged by the consensus"
    };
    let _ = write!(
        svg,
        "</svg><figcaption>{} — training features on their first two principal axes ({} of {n} samples drawn); {legend}</figcaption></figure>",
        esc(&arm.name.to_uppercase()),
        shown.len()
    );
    Ok(svg)
}

/// Settings, fit and warnings of one arm.
fn summary(arm: &Arm) -> String {
    let r = &arm.report;
    let c = &arm.config;
    let mut html = format!(
        "<h3>{}</h3><ul><li>dataset <code>{}</code>: {} training / {} test images, {} classes</li>",
        esc(&arm.name.to_uppercase()),
        esc(&c.dataset.source),
        r.dataset.n_train,
        r.dataset.n_test,
        r.dataset.classes.len()
    );
    if let Some(a) = &c.attack {
        let _ = write!(
            html,
            "<li>planted attack: {} at {:.2} % (target {}), for evaluation</li>",
            a.kind.name(),
            100.0 * a.ratio,
            a.target
        );
    }
    let t = &c.train;
    let _ = write!(
        html,
        "<li>training: model {}, optimiser {}{}, {} epochs, lr {}, batch {}</li><li>clean accuracy {:.2} %{}</li><li>decision: {}</li>",
        config_name(&t.model),
        config_name(&t.optimizer),
        if t.optimizer == crate::config::OptimizerKind::Sgd {
            String::new()
        } else {
            format!(" (ρ {})", t.rho)
        },
        t.epochs,
        t.lr,
        t.batch_size,
        100.0 * r.training.clean_accuracy,
        r.training
            .attack_success_rate
            .map_or(String::new(), |a| format!(
                ", attack success rate {:.2} %",
                100.0 * a
            )),
        esc(&r.decision)
    );
    if let Some(fit) = &r.fit {
        let _ = write!(
            html,
            "<li>fit: {:.1} % of the training samples predicted as their given label ({:.1} % disagree)</li>",
            100.0 * fit.train_accuracy,
            100.0 * fit.disagreement
        );
    }
    html.push_str("</ul>");
    for w in &r.warnings {
        let _ = write!(html, "<p class=\"banner\">Warning: {}</p>", esc(&w.message));
    }
    html
}

const STYLE: &str = "body{font-family:sans-serif;max-width:1200px;margin:2em auto;color:#222}\
table{border-collapse:collapse;margin:1em 0}td,th{border:1px solid #ccc;padding:3px 8px;text-align:right}\
td:first-child,th:first-child{text-align:left}.warn{color:#b00}\
.banner{background:#fff3cd;border:1px solid #e0b000;padding:6px 10px}\
.gallery{display:flex;flex-wrap:wrap;gap:8px}.gallery figure{margin:0;width:112px;font-size:11px}\
.gallery img{width:84px;height:84px;image-rendering:pixelated;border:1px solid #999}\
figure{display:inline-block;margin:0 1em 1em 0}figcaption{font-size:12px;color:#444}";

/// The whole page for DIR, with `top` images per ranking.
pub fn build(dir: &Path, top: usize) -> anyhow::Result<String> {
    build_with(dir, top, None)
}

/// [`build`], with the run's data already prepared (the window has it; the CLI loads it again
/// from the run's config).
pub fn build_with(dir: &Path, top: usize, prepared: Option<&Prepared>) -> anyhow::Result<String> {
    let arms = read_arms(dir)?;
    let mut html = format!(
        "<!DOCTYPE html><html lang=\"en\"><head><meta charset=\"utf-8\"><title>poisonscope report — {0}</title><style>{STYLE}</style></head><body><h1>poisonscope report</h1><p><code>{0}</code></p>",
        esc(&dir.display().to_string())
    );
    html.push_str("<h2>Settings, fit and warnings</h2>");
    for arm in &arms {
        html.push_str(&summary(arm));
    }
    html.push_str("<h2>Training</h2>");
    html.push_str(&curves(&arms));
    html.push_str("<h2>Detectors</h2><p>TPR and FPR over the whole training set (with ground truth only when an attack was planted for evaluation).</p>");
    html.push_str(&detector_table(&arms));
    // Images and features need the dataset and the model: say so when they are gone.
    let loaded = match prepared {
        Some(_) => Ok(None),
        None => arms
            .first()
            .map(|arm| Prepared::load(&arm.config))
            .transpose(),
    };
    let prepared = loaded.as_ref().map(|loaded| prepared.or(loaded.as_ref()));
    match prepared {
        Ok(Some(prepared)) => {
            html.push_str("<h2>Feature space</h2>");
            for arm in &arms {
                match scatter(arm, prepared) {
                    Ok(svg) => html.push_str(&svg),
                    Err(e) => {
                        let _ = write!(
                            html,
                            "<p class=\"warn\">no scatter: {}</p>",
                            esc(&format!("{e:#}"))
                        );
                    }
                }
            }
            html.push_str("<h2>Most suspicious images</h2>");
            for arm in &arms {
                let _ = write!(html, "<h3>{}</h3>", esc(&arm.name.to_uppercase()));
                html.push_str(&galleries(arm, prepared.train_data().train, top));
            }
        }
        Ok(None) => {}
        Err(e) => {
            let _ = write!(
                html,
                "<p class=\"warn\">The images and the feature scatter are left out: the dataset could not be loaded ({}).</p>",
                esc(&format!("{e:#}"))
            );
        }
    }
    html.push_str("</body></html>\n");
    Ok(html)
}
