//! The page's sections: the detector table, the per-arm summary and the image galleries.

use super::*;

/// The detector table: one row per detector and the consensus; with two arms, both and Δ.
pub(super) fn detector_table(arms: &[Arm]) -> String {
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
pub(super) fn image_url(data: &Dataset, i: usize) -> Option<String> {
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
pub(super) fn galleries(arm: &Arm, data: &Dataset, top: usize) -> String {
    let s = &arm.scores;
    let (scores, flags) = arm.consensus.clone();
    let mut rankings = vec![Ranking {
        name: "consensus".to_owned(),
        scores,
        flags,
    }];
    rankings.extend(s.detectors.iter().cloned());
    let mut html = String::new();
    for Ranking {
        name,
        scores,
        flags,
    } in &rankings
    {
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

/// Settings, fit and warnings of one arm.
pub(super) fn summary(arm: &Arm) -> String {
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
            a.kind().name(),
            100.0 * a.ratio,
            a.target
        );
    }
    let t = &c.train;
    let _ = write!(
        html,
        "<li>training: model {}, optimiser {}{}, {} epochs, lr {}, batch {}, on {}</li><li>clean accuracy {:.2} %{}</li><li>decision: {}</li>",
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
        esc(r
            .training
            .adapter
            .as_deref()
            .unwrap_or(r.training.device.as_str())),
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
