//! Inline SVG charts: the training curves and the feature-space scatter.

use super::*;

/// One line of a chart: its name, colour and (x, y) points.
pub(super) type Series<'a> = (String, &'a str, Vec<(f64, f64)>);

pub(super) const COLORS: [&str; 4] = ["#1f77b4", "#d62728", "#2ca02c", "#9467bd"];

/// A line chart: each series `(name, colour, points)` over a shared x range; y in `y_range`.
pub(super) fn line_chart(title: &str, series: &[Series<'_>], y_range: (f64, f64)) -> String {
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
pub(super) fn curves(arms: &[Arm]) -> String {
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
            point(&|e| e.test_accuracy),
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

/// Most points drawn in a scatter (all flagged and poisoned samples, then a seeded sample).
pub(super) const SCATTER_POINTS: usize = 3000;

/// The training features on their two principal axes, coloured by the consensus flag and the
/// ground truth.
pub(super) fn scatter(arm: &Arm, prepared: &Prepared) -> Result<String, super::ReportError> {
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
    .map_err(|_| super::ReportError::Cancelled)?;
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
