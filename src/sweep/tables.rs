//! The sweep's tables: `results.csv` (one row per cell, arm and variant), `results.md` (mean ± std
//! over seeds in the seed paper's Table-1 layout, SGD → SAM with paired deltas, fused arms).

use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::path::Path;

use super::{Cell, Grid, Row, SweepError, cannot, cell_path, finished_rows};
use crate::run::report::{self, DetectorReport};

/// Mean and sample standard deviation (0 for one value); `None` when empty.
pub(super) fn mean_std(values: &[f64]) -> Option<(f64, f64)> {
    if values.is_empty() {
        return None;
    }
    let n = values.len() as f64;
    let mean = values.iter().sum::<f64>() / n;
    let var = if values.len() > 1 {
        values.iter().map(|v| (v - mean).powi(2)).sum::<f64>() / (n - 1.0)
    } else {
        0.0
    };
    Some((mean, var.sqrt()))
}

/// Student's t 0.975 quantile for `df` degrees of freedom (1–30; beyond, the normal's 1.96).
fn t_975(df: usize) -> f64 {
    const T: [f64; 30] = [
        12.706, 4.303, 3.182, 2.776, 2.571, 2.447, 2.365, 2.306, 2.262, 2.228, 2.201, 2.179, 2.160,
        2.145, 2.131, 2.120, 2.110, 2.101, 2.093, 2.086, 2.080, 2.074, 2.069, 2.064, 2.060, 2.056,
        2.052, 2.048, 2.045, 2.042,
    ];
    T.get(df.wrapping_sub(1)).copied().unwrap_or(1.96)
}

/// Mean and the half-width of its 95 % t-interval (`None` for fewer than two values).
pub(super) fn mean_ci(values: &[f64]) -> Option<(f64, Option<f64>)> {
    let (m, s) = mean_std(values)?;
    let n = values.len();
    Some((m, (n > 1).then(|| t_975(n - 1) * s / (n as f64).sqrt())))
}

/// A paired difference in percentage points: `+3.1 [−2.0, +8.2]` (95 % interval over seeds).
fn pp_ci(values: &[f64]) -> String {
    match mean_ci(values) {
        None => "–".to_owned(),
        Some((m, None)) => format!("{:+.1}", 100.0 * m),
        Some((m, Some(h))) => format!(
            "{:+.1} [{:+.1}, {:+.1}]",
            100.0 * m,
            100.0 * (m - h),
            100.0 * (m + h)
        ),
    }
}

fn pct_ms(values: &[f64]) -> String {
    mean_std(values).map_or("–".to_owned(), |(m, s)| {
        if values.len() > 1 {
            format!("{:.1} ± {:.1}", 100.0 * m, 100.0 * s)
        } else {
            format!("{:.1}", 100.0 * m)
        }
    })
}

/// The ordered detector names that appear in `rows` (consensus last).
fn detector_names(rows: &[Row]) -> Vec<String> {
    let mut names: Vec<String> = Vec::new();
    for r in rows {
        for k in r.detectors.keys() {
            if k != "consensus" && !names.contains(k) {
                names.push(k.clone());
            }
        }
    }
    names.push("consensus".to_owned());
    names
}

/// Writes `results.json`, `results.csv` and `results.md`.
pub fn write_results(dir: &Path, grid: &Grid, rows: &[Row]) -> Result<(), SweepError> {
    let write = |name: &str, text: &str| {
        let path = dir.join(name);
        crate::artifacts::write_text(&path, text).map_err(cannot("write", &path))
    };
    write("results.json", &serde_json::to_string_pretty(rows)?)?;
    let names = detector_names(rows);
    let mut csv = String::from(
        "attack,ratio,seed,arm,variant,clean_accuracy,attack_success_rate,train_accuracy,estimated_ratio",
    );
    for n in &names {
        let _ = write!(csv, ",{n}_tpr,{n}_fpr,{n}_auroc,{n}_flagged");
    }
    csv.push('\n');
    let opt = |v: Option<f64>| v.map_or(String::new(), |v| format!("{v:.6}"));
    for r in rows {
        let _ = write!(
            csv,
            "{},{},{},{},{},{},{},{},{}",
            crate::attack::export::csv_field(&r.attack),
            r.ratio,
            r.seed,
            r.arm,
            crate::attack::export::csv_field(&r.variant),
            opt(r.clean_accuracy),
            opt(r.attack_success_rate),
            opt(r.train_accuracy),
            opt(r.estimated_ratio)
        );
        for n in &names {
            match r.detectors.get(n) {
                Some(d) => {
                    let _ = write!(
                        csv,
                        ",{},{},{},{}",
                        opt(d.tpr),
                        opt(d.fpr),
                        opt(d.auroc),
                        d.flagged
                    );
                }
                None => csv.push_str(",,,,"),
            }
        }
        csv.push('\n');
    }
    write("results.csv", &csv)?;
    write("results.md", &markdown(grid, rows))?;
    Ok(())
}

/// Mean over the detectors (not the consensus) of one metric in a row.
fn detector_mean(row: &Row, metric: fn(&DetectorReport) -> Option<f64>) -> Option<f64> {
    let values: Vec<f64> = row
        .detectors
        .iter()
        .filter(|(k, _)| k.as_str() != "consensus")
        .filter_map(|(_, d)| metric(d))
        .collect();
    mean_std(&values).map(|(m, _)| m)
}

/// Whether a row's backdoor was learned (its attack success rate at least the warning's bar).
fn learned(row: &Row) -> Option<bool> {
    row.attack_success_rate
        .map(|a| a >= crate::diagnostics::MIN_ATTACK_SUCCESS)
}

/// `results.md`'s first section: every other arm (and `fused`) against the first arm, paired by
/// seed, with 95 % intervals, and whether the arm learned the backdoor where the first did.
fn paired_section(grid: &Grid, rows: &[Row], cells: &[(String, f64)], variant: &str) -> String {
    let arms: Vec<&str> = grid.arms.iter().map(|a| a.name.as_str()).collect();
    let Some((&first, others)) = arms.split_first() else {
        return String::new();
    };
    let mut out = String::new();
    let _ = writeln!(
        out,
        "## Each arm against `{first}`, paired by seed (variant `{variant}`)\n\n\
         Δ = arm − {first} in percentage points, mean over seeds and its 95 % t-interval \
         (brackets; one seed: no interval). *learned* = seeds whose attack success rate is at \
         least {:.0} %, this arm / {first}; *as well* = no seed where {first} learned the \
         backdoor and this arm did not. Mean TPR / FPR: over the detectors, not the consensus.\n",
        100.0 * crate::diagnostics::MIN_ATTACK_SUCCESS
    );
    let _ = writeln!(
        out,
        "| attack | ratio | arm | seeds | ASR % (Δ) | learned | as well | mean TPR Δ | mean FPR Δ | consensus TPR Δ |"
    );
    let _ = writeln!(out, "|---|---|---|---|---|---|---|---|---|---|");
    let by_seed = |attack: &str, ratio: f64, arm: &str| -> BTreeMap<u64, &Row> {
        rows.iter()
            .filter(|r| {
                r.attack == attack && r.ratio == ratio && r.arm == arm && r.variant == variant
            })
            .map(|r| (r.seed, r))
            .collect()
    };
    for (attack, ratio) in cells {
        let base = by_seed(attack, *ratio, first);
        for arm in others.iter().copied().chain(std::iter::once("fused")) {
            let other = by_seed(attack, *ratio, arm);
            let pairs: Vec<(&Row, &Row)> = base
                .iter()
                .filter_map(|(s, a)| Some((*a, *other.get(s)?)))
                .collect();
            if pairs.is_empty() {
                continue;
            }
            let delta = |f: &dyn Fn(&Row) -> Option<f64>| -> Vec<f64> {
                pairs
                    .iter()
                    .filter_map(|(a, b)| Some(f(b)? - f(a)?))
                    .collect()
            };
            let fused = arm == "fused";
            let (asr, learned_col, as_well) = if fused {
                ("–".to_owned(), "–".to_owned(), "–".to_owned())
            } else {
                let asr: Vec<f64> = pairs
                    .iter()
                    .filter_map(|(_, b)| b.attack_success_rate)
                    .collect();
                let n_b = pairs
                    .iter()
                    .filter(|(_, b)| learned(b) == Some(true))
                    .count();
                let n_a = pairs
                    .iter()
                    .filter(|(a, _)| learned(a) == Some(true))
                    .count();
                let worse = pairs
                    .iter()
                    .filter(|(a, b)| learned(a) == Some(true) && learned(b) == Some(false))
                    .count();
                (
                    format!(
                        "{} ({})",
                        pct_ms(&asr),
                        pp_ci(&delta(&|r| r.attack_success_rate))
                    ),
                    format!("{n_b} / {n_a}"),
                    if worse == 0 {
                        "yes".to_owned()
                    } else {
                        format!("**no** ({worse} seed{})", if worse == 1 { "" } else { "s" })
                    },
                )
            };
            let consensus = |r: &Row| r.detectors.get("consensus").and_then(|d| d.tpr);
            let _ = writeln!(
                out,
                "| {attack} | {:.1} % | {arm} | {} | {asr} | {learned_col} | {as_well} | {} | {} | {} |",
                100.0 * ratio,
                pairs.len(),
                pp_ci(&delta(&|r| detector_mean(r, |d| d.tpr))),
                pp_ci(&delta(&|r| detector_mean(r, |d| d.fpr))),
                pp_ci(&delta(&consensus)),
            );
        }
    }
    out
}

/// `results.md`'s decision check: every (cell, seed, arm, detector) whose ranking separates the
/// poisons (AUROC ≥ 0.95) but whose decision found fewer than 80 % of them, with what the ranking
/// allowed at FPR ≤ 1.5 % (`ranking_tpr`): where that is below 80 % too, no threshold on this
/// score could have found them at an acceptable false-positive rate.
fn decision_check(rows: &[Row], variant: &str) -> String {
    let mut out = String::new();
    let mut misses = Vec::new();
    let (mut separating, mut max_fpr, mut over, mut results) = (0, 0.0f64, 0, 0);
    for r in rows.iter().filter(|r| r.variant == variant) {
        for (name, d) in &r.detectors {
            if name == "consensus" {
                continue;
            }
            // The fused arms flag where either arm flags: their FPR is shown in the tables.
            if let Some(fpr) = d.fpr.filter(|_| r.arm != "fused") {
                results += 1;
                max_fpr = max_fpr.max(fpr);
                over += usize::from(fpr > 0.015);
            }
            let (Some(auroc), Some(tpr)) = (d.auroc, d.tpr) else {
                continue;
            };
            if auroc < 0.95 {
                continue;
            }
            separating += 1;
            if tpr < 0.8 {
                misses.push(format!(
                    "| {} | {:.1} % | {} | {} | {name} | {auroc:.3} | {:.1} | {} |",
                    r.attack,
                    100.0 * r.ratio,
                    r.seed,
                    r.arm,
                    100.0 * tpr,
                    d.ranking_tpr
                        .map_or("–".to_owned(), |t| format!("{:.1}", 100.0 * t)),
                ));
            }
        }
    }
    let _ = writeln!(
        out,
        "## Decision check (variant `{variant}`)\n\n\
         {separating} detector results rank the poisons with AUROC ≥ 0.95; {} of them flag fewer \
         than 80 % of the poisons (below; *ranking allows* = the best TPR any threshold on that \
         score reaches at FPR ≤ 1.5 %: below 80 %, no decision on this ranking could). Largest \
         detector FPR of a trained arm in the grid {:.2} %; {over} of {results} above 1.5 %.\n",
        misses.len(),
        100.0 * max_fpr
    );
    if !misses.is_empty() {
        let _ = writeln!(
            out,
            "| attack | ratio | seed | arm | detector | AUROC | TPR % | ranking allows % |"
        );
        let _ = writeln!(out, "|---|---|---|---|---|---|---|---|");
        for m in misses {
            let _ = writeln!(out, "{m}");
        }
    }
    out
}

/// The tables of `results.md`.
pub fn markdown(grid: &Grid, rows: &[Row]) -> String {
    let names = detector_names(rows);
    let arms: Vec<&str> = grid.arms.iter().map(|a| a.name.as_str()).collect();
    let (first, second) = (arms.first().copied(), arms.get(1).copied());
    let mut cells: Vec<(String, f64)> = Vec::new();
    for r in rows {
        if !cells.iter().any(|(a, x)| *a == r.attack && *x == r.ratio) {
            cells.push((r.attack.clone(), r.ratio));
        }
    }
    let select = |attack: &str, ratio: f64, arm: &str, variant: &str| -> Vec<&Row> {
        rows.iter()
            .filter(|r| {
                r.attack == attack && r.ratio == ratio && r.arm == arm && r.variant == variant
            })
            .collect()
    };
    let mut out = String::new();
    let _ = writeln!(
        out,
        "# Sweep results\n\nSeeds {:?}; arms {}; mean ± std over seeds. TPR and FPR are over the \
         whole training set (%). Δ = paired per-seed difference {} − {} (mean ± std; the \
         per-seed values in brackets). `fused` = the two arms' rank percentiles averaged, \
         flagged where either flags.\n",
        grid.seeds,
        arms.join(", "),
        second.unwrap_or("-"),
        first.unwrap_or("-")
    );
    let first_variant = grid.variant.first().map_or("default", |v| v.name.as_str());
    let _ = writeln!(out, "{}", paired_section(grid, rows, &cells, first_variant));
    let _ = writeln!(out, "{}", decision_check(rows, first_variant));
    let _ = writeln!(out, "## Training\n");
    let _ = writeln!(
        out,
        "| attack | ratio | seeds done | {} |",
        arms.iter()
            .map(|a| format!("{a} clean acc. | {a} ASR | {a} train acc. (given labels)"))
            .collect::<Vec<_>>()
            .join(" | ")
    );
    let _ = writeln!(out, "|---|---|---|{}", "---|".repeat(3 * arms.len()));
    for (attack, ratio) in &cells {
        let done = first.map_or(0, |a| select(attack, *ratio, a, first_variant).len());
        let mut line = format!("| {attack} | {:.1} % | {done} |", 100.0 * ratio);
        for arm in &arms {
            let rs = select(attack, *ratio, arm, first_variant);
            let col = |f: &dyn Fn(&Row) -> Option<f64>| -> String {
                pct_ms(&rs.iter().filter_map(|r| f(r)).collect::<Vec<_>>())
            };
            let _ = write!(
                line,
                " {} | {} | {} |",
                col(&|r| r.clean_accuracy),
                col(&|r| r.attack_success_rate),
                col(&|r| r.train_accuracy)
            );
        }
        let _ = writeln!(out, "{line}");
    }
    for variant in &grid.variant {
        let _ = writeln!(
            out,
            "\n## Detection, variant `{}` {}\n",
            variant.name,
            if variant.set.is_empty() {
                "(the defaults)".to_owned()
            } else {
                format!("({})", variant.set.join(", "))
            }
        );
        for (metric, what) in [("tpr", "TPR %"), ("fpr", "FPR %")] {
            let _ = writeln!(
                out,
                "**{what}** ({} → {}, Δ; fused)\n",
                first.unwrap_or("-"),
                second.unwrap_or("-")
            );
            let _ = writeln!(out, "| attack | ratio | {} |", names.join(" | "));
            let _ = writeln!(out, "|---|---|{}", "---|".repeat(names.len()));
            for (attack, ratio) in &cells {
                let mut line = format!("| {attack} | {:.1} % |", 100.0 * ratio);
                for name in &names {
                    let value = |r: &Row| -> Option<f64> {
                        let d = r.detectors.get(name)?;
                        if metric == "tpr" { d.tpr } else { d.fpr }
                    };
                    let by_seed = |arm: &str| -> BTreeMap<u64, f64> {
                        select(attack, *ratio, arm, &variant.name)
                            .into_iter()
                            .filter_map(|r| Some((r.seed, value(r)?)))
                            .collect()
                    };
                    let a = first.map(by_seed).unwrap_or_default();
                    let b = second.map(by_seed).unwrap_or_default();
                    let f = by_seed("fused");
                    let vals = |m: &BTreeMap<u64, f64>| m.values().copied().collect::<Vec<_>>();
                    let deltas: Vec<f64> =
                        a.iter().filter_map(|(s, x)| Some(b.get(s)? - x)).collect();
                    let delta = mean_std(&deltas).map_or("–".to_owned(), |(m, s)| {
                        let each: Vec<String> = deltas
                            .iter()
                            .map(|d| format!("{:+.0}", 100.0 * d))
                            .collect();
                        if deltas.len() > 1 {
                            format!("{:+.1} ± {:.1} [{}]", 100.0 * m, 100.0 * s, each.join(", "))
                        } else {
                            format!("{:+.1}", 100.0 * m)
                        }
                    });
                    let _ = write!(
                        line,
                        " {} → {} (Δ {}; fused {}) |",
                        pct_ms(&vals(&a)),
                        pct_ms(&vals(&b)),
                        delta,
                        pct_ms(&vals(&f))
                    );
                }
                let _ = writeln!(out, "{line}");
            }
            out.push('\n');
        }
        // Mean over detectors (not the consensus) per arm: the "mean TPR" / "mean FPR".
        let _ = writeln!(out, "**Mean over detectors** (TPR / FPR %)\n");
        let _ = writeln!(out, "| attack | ratio | {} | fused |", arms.join(" | "));
        let _ = writeln!(out, "|---|---|{}---|", "---|".repeat(arms.len()));
        for (attack, ratio) in &cells {
            let mut line = format!("| {attack} | {:.1} % |", 100.0 * ratio);
            for arm in arms.iter().copied().chain(std::iter::once("fused")) {
                let rs = select(attack, *ratio, arm, &variant.name);
                let mean_of = |f: &dyn Fn(&DetectorReport) -> Option<f64>| -> Vec<f64> {
                    rs.iter()
                        .filter_map(|r| {
                            let v: Vec<f64> = r
                                .detectors
                                .iter()
                                .filter(|(k, _)| k.as_str() != "consensus")
                                .filter_map(|(_, d)| f(d))
                                .collect();
                            mean_std(&v).map(|(m, _)| m)
                        })
                        .collect()
                };
                let _ = write!(
                    line,
                    " {} / {} |",
                    pct_ms(&mean_of(&|d| d.tpr)),
                    pct_ms(&mean_of(&|d| d.fpr))
                );
            }
            let _ = writeln!(out, "{line}");
        }
        // The consensus against the defender's own estimate ε̂ (no ground truth): the issue asks
        // for at most 2·ε̂·N flagged.
        let _ = writeln!(
            out,
            "\n**Consensus flagged vs the estimate ε̂** (% of the training set: ε̂ / consensus \
             flagged; runs with consensus > 2·ε̂·N)\n"
        );
        let _ = writeln!(out, "| attack | ratio | {} |", arms.join(" | "));
        let _ = writeln!(out, "|---|---|{}", "---|".repeat(arms.len()));
        for (attack, ratio) in &cells {
            let mut line = format!("| {attack} | {:.1} % |", 100.0 * ratio);
            for arm in &arms {
                let rs = select(attack, *ratio, arm, &variant.name);
                let share = |r: &Row| -> Option<f64> {
                    let flagged = r.detectors.get("consensus")?.flagged;
                    Some(flagged as f64 / r.n_train.max(1) as f64)
                };
                let estimates: Vec<f64> = rs.iter().filter_map(|r| r.estimated_ratio).collect();
                let shares: Vec<f64> = rs.iter().filter_map(|r| share(r)).collect();
                let over = rs
                    .iter()
                    .filter(|r| match (share(r), r.estimated_ratio) {
                        (Some(s), Some(e)) => s > 2.0 * e,
                        _ => false,
                    })
                    .count();
                let _ = write!(
                    line,
                    " {} / {} ({over} of {}) |",
                    pct_ms(&estimates),
                    pct_ms(&shares),
                    rs.len()
                );
            }
            let _ = writeln!(out, "{line}");
        }
    }
    out
}

/// Rewrites the result files from the cells finished so far, running nothing.
pub fn tables(grid: &Grid, dir: &Path) -> Result<Vec<Row>, SweepError> {
    let rows = rewrite(dir, grid)?;
    if rows.is_empty() {
        return Err(SweepError::NoFinishedCells(dir.to_path_buf()));
    }
    Ok(rows)
}

/// Rewrites the result files from every cell finished on disk (any shard's), holding
/// `results.lock` from the reading to the last rename: of two processes rewriting at once, the
/// later one read after the earlier one's cells were written. Writes nothing (and returns no
/// rows) while no cell has finished.
pub(super) fn rewrite(dir: &Path, grid: &Grid) -> Result<Vec<Row>, SweepError> {
    let _lock = super::claim::lock(&dir.join("results.lock"))?;
    let rows: Vec<Row> = grid
        .cells()
        .iter()
        .filter_map(|cell| finished_rows(&cell_path(dir, cell)))
        .flatten()
        .collect();
    if !rows.is_empty() {
        write_results(dir, grid, &rows)?;
    }
    Ok(rows)
}

pub(super) fn row_of(
    cell: &Cell,
    arm: &str,
    variant: &str,
    report: &report::Report,
    train_seconds: Option<f64>,
) -> Row {
    let mut detectors = report.detectors.clone();
    if let Some(c) = &report.consensus {
        detectors.insert("consensus".to_owned(), c.clone());
    }
    Row {
        attack: cell.label.clone(),
        ratio: cell.ratio,
        seed: cell.seed,
        arm: arm.to_owned(),
        variant: variant.to_owned(),
        clean_accuracy: Some(report.training.clean_accuracy),
        attack_success_rate: report.training.attack_success_rate,
        train_accuracy: report.fit.as_ref().map(|f| f.train_accuracy),
        estimated_ratio: report.estimated_ratio,
        n_train: report.dataset.n_train,
        warnings: report.warnings.iter().map(|w| w.message.clone()).collect(),
        detectors,
        train_seconds,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn mean_std_is_the_sample_deviation() {
        let (m, s) = mean_std(&[1.0, 2.0, 3.0]).unwrap();
        assert!((m - 2.0).abs() < 1e-12 && (s - 1.0).abs() < 1e-12);
        assert_eq!(mean_std(&[]), None);
    }

    #[test]
    fn paired_intervals_use_students_t() {
        // Three seeds: mean 2, sd 1, half-width 4.303 / √3.
        let (m, h) = mean_ci(&[1.0, 2.0, 3.0]).unwrap();
        assert!((m - 2.0).abs() < 1e-12);
        assert!((h.unwrap() - 4.303 / 3f64.sqrt()).abs() < 1e-9);
        assert_eq!(mean_ci(&[0.5]), Some((0.5, None)));
        assert_eq!(pp_ci(&[0.01, 0.02, 0.03]), "+2.0 [-0.5, +4.5]");
        assert_eq!(t_975(100), 1.96);
    }
}
