//! `poisonscope bench rerank RUN_DIR`: how much "find more like these" helps a reviewer. For each
//! model of a saved run (opened again: no training) and each ranking (every detector and the
//! consensus), a simulated reviewer walks down the ranking, confirming each image against the
//! ground truth, until `marks` poisons are confirmed (the clean images seen on the way are
//! marked clean). Then the precision of the next `next` images is compared: the detector's own
//! next ones, against the unmarked images ranked by likeness to the marks
//! (`detect::like::like_marked`). The ground truth plays the reviewer only; the re-ranking
//! reads the marks and the features.

use std::io::IsTerminal as _;
use std::path::Path;
use std::sync::atomic::AtomicBool;

use anyhow::Context as _;
use poisonscope::detect::like;
use poisonscope::run::Run;

/// One measured ranking.
#[derive(serde::Serialize)]
struct Row {
    arm: String,
    ranking: String,
    /// Images the reviewer looked at to confirm `marks` poisons.
    reviewed: usize,
    /// Poisons among the detector's next `next` images / among the re-ranked top `next`.
    detector_hits: usize,
    /// Nearest neighbours, and the marks' direction, alone and within the marked poisons' given
    /// labels (`detect::like`).
    nearest_hits: usize,
    direction_hits: usize,
    nearest_label_hits: usize,
    direction_label_hits: usize,
    /// What the window does: `like::refine`.
    refined_hits: usize,
    /// How many of the next images could be poisons at best (poisons not yet marked).
    possible: usize,
}

/// Precision among the first `next` of `order` that are not in `skip`.
fn hits(order: &[usize], truth: &[bool], skip: &[bool], next: usize) -> usize {
    order
        .iter()
        .filter(|&&i| !skip[i])
        .take(next)
        .filter(|&&i| truth[i])
        .count()
}

fn descending(scores: &[f64]) -> Vec<usize> {
    let mut order: Vec<usize> = (0..scores.len()).collect();
    order.sort_by(|&a, &b| scores[b].total_cmp(&scores[a]));
    order
}

pub fn run(dir: &Path, marks: usize, next: usize, json: bool) -> anyhow::Result<()> {
    anyhow::ensure!(
        marks > 0,
        "--marks {marks}: the reviewer confirms at least 1 poison"
    );
    anyhow::ensure!(next > 0, "--next {next}: count at least 1 image");
    if std::io::stderr().is_terminal() {
        eprintln!("opening {} (its models detected again)…", dir.display());
    }
    let run = Run::open(dir, &AtomicBool::new(false), &mut |_, _| {})?;
    let truth = run.truth.as_deref().with_context(|| {
        format!(
            "{}: the run has no planted attack: there is no ground truth to play the reviewer",
            dir.display()
        )
    })?;
    let poisons = truth.iter().filter(|&&t| t).count();
    anyhow::ensure!(
        marks < poisons,
        "--marks {marks}: {} has {poisons} poisons; confirm fewer, so that some are left to find",
        dir.display()
    );
    let n = truth.len();
    let mut rows = Vec::new();
    for arm in &run.arms {
        let detection = &arm.outcome.detection;
        let features = &detection.detector_features;
        let mut rankings: Vec<(String, &[f64])> = detection
            .results
            .iter()
            .filter(|r| r.error.is_none())
            .map(|r| (r.name.to_owned(), r.detection.scores.as_slice()))
            .collect();
        rankings.push((
            "consensus".to_owned(),
            detection.consensus.scores.as_slice(),
        ));
        for (name, scores) in rankings {
            if scores.len() != n || features.nrows() != n {
                continue;
            }
            let order = descending(scores);
            let (mut poisoned, mut clean, mut reviewed) = (Vec::new(), Vec::new(), 0);
            for &i in &order {
                reviewed += 1;
                if truth[i] {
                    poisoned.push(i);
                } else {
                    clean.push(i);
                }
                if poisoned.len() == marks {
                    break;
                }
            }
            if poisoned.len() < marks {
                continue;
            }
            let mut marked = vec![false; n];
            for &i in poisoned.iter().chain(&clean) {
                marked[i] = true;
            }
            let given = &run.prepared.train_data().train.labels;
            let within = |scores: &[f64]| {
                descending(&like::within_marked_labels(scores, given, &poisoned, 1e12))
            };
            let nearest = like::nearest(features, &poisoned, &clean);
            let direction = like::direction(features, &poisoned, &clean);
            let refined = descending(&like::refine(scores, features, given, &poisoned, &clean));
            let left = truth.iter().filter(|&&t| t).count() - poisoned.len();
            rows.push(Row {
                arm: arm.name.to_owned(),
                ranking: name,
                reviewed,
                detector_hits: hits(&order, truth, &marked, next),
                nearest_hits: hits(&descending(&nearest), truth, &marked, next),
                direction_hits: hits(&descending(&direction), truth, &marked, next),
                nearest_label_hits: hits(&within(&nearest), truth, &marked, next),
                direction_label_hits: hits(&within(&direction), truth, &marked, next),
                refined_hits: hits(&refined, truth, &marked, next),
                possible: left.min(next),
            });
        }
    }
    if json {
        println!("{}", serde_json::to_string_pretty(&rows)?);
        return Ok(());
    }
    println!(
        "{}: after confirming the first {marks} poisons of each ranking, poisons among the next {next} images",
        dir.display()
    );
    println!(
        "{:<6} {:<10} {:>9} {:>9} {:>8} {:>8} {:>8} {:>8} {:>8} {:>9}",
        "model",
        "ranking",
        "reviewed",
        "detector",
        "nearest",
        "dir",
        "nn+lbl",
        "dir+lbl",
        "refined",
        "possible"
    );
    for r in &rows {
        println!(
            "{:<6} {:<10} {:>9} {:>9} {:>8} {:>8} {:>8} {:>8} {:>8} {:>9}",
            r.arm,
            r.ranking,
            r.reviewed,
            r.detector_hits,
            r.nearest_hits,
            r.direction_hits,
            r.nearest_label_hits,
            r.direction_label_hits,
            r.refined_hits,
            r.possible
        );
    }
    Ok(())
}
