//! The learning-rate schedule, the evaluation schedule and training itself on small data.

use super::*;
use crate::data::{Origin, Shape};

/// 64 8×8 images of two classes (bright top half or bright bottom half).
fn halves() -> Dataset {
    let shape = Shape {
        height: 8,
        width: 8,
        channels: 1,
    };
    let mut d = Dataset::empty(shape, vec!["top".into(), "bottom".into()]);
    for index in 0..64 {
        let label = (index % 2) as u16;
        let image: Vec<u8> = (0..64)
            .map(|p| {
                if (p < 32) == (label == 0) {
                    200
                } else {
                    (index * 3 % 50) as u8
                }
            })
            .collect();
        d.push(&image, label, Origin::Embedded { split: "t", index });
    }
    d
}

#[test]
fn evaluation_runs_on_the_asked_schedule_and_always_after_the_last_epoch() {
    let data = halves();
    let epochs_evaluated = |every: Option<usize>| {
        let config = TrainConfig {
            epochs: 3,
            batch_size: 16,
            evaluate_every: every,
            ..TrainConfig::default()
        };
        let data = TrainData {
            train: &data,
            test: &data,
            triggered: Some(&data),
        };
        let trained = train(&config, data, &AtomicBool::new(false), &mut |_| {}).unwrap();
        for e in &trained.history {
            assert_eq!(e.test_accuracy.is_some(), e.attack_success_rate.is_some());
        }
        assert_eq!(
            Some(trained.clean_accuracy),
            trained.history.last().unwrap().test_accuracy
        );
        trained
            .history
            .iter()
            .filter(|e| e.test_accuracy.is_some())
            .map(|e| e.epoch)
            .collect::<Vec<_>>()
    };
    assert_eq!(epochs_evaluated(None), [3]);
    assert_eq!(epochs_evaluated(Some(0)), [3]);
    assert_eq!(epochs_evaluated(Some(1)), [1, 2, 3]);
    assert_eq!(epochs_evaluated(Some(2)), [2, 3]);
}

#[test]
fn cosine_schedule_starts_at_lr_and_decays_to_near_zero() {
    let lr = |t| learning_rate(Schedule::Cosine, 0.1, t, 100);
    assert!((lr(0) - 0.1).abs() < 1e-12);
    assert!((lr(50) - 0.05).abs() < 1e-12);
    assert!(lr(99) > 0.0 && lr(99) < 1e-4);
    assert_eq!(learning_rate(Schedule::Constant, 0.1, 99, 100), 0.1);
}
