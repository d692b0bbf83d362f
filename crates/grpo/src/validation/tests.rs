//! The best checkpoint and the reward-hacking warning on synthetic
//! histories (what a run would log), where the answer is known.

use super::*;

/// A history of `rewards`, one per iteration from 1, with a validation of
/// `metric@4` every `every` iterations taking the next of `values`, each
/// with noise `noise`.
fn history(
    rewards: &[f64],
    every: usize,
    metric: &str,
    values: &[f64],
    noise: f64,
) -> Vec<IterationLog> {
    let mut vals = values.iter();
    rewards
        .iter()
        .enumerate()
        .map(|(i, &r)| {
            let iteration = i + 1;
            let validation = iteration.is_multiple_of(every).then(|| {
                let v = *vals.next().expect("a value per validation");
                Validation {
                    values: [(key(metric, 4), v)].into(),
                    noise: [(key(metric, 4), noise)].into(),
                }
            });
            IterationLog {
                iteration,
                reward_mean: r,
                solve_rate: None,
                zero_variance_share: 0.0,
                zero_variance_after_resampling: 0.0,
                nfe: 4.0,
                updated_model: true,
                updated_schedule: true,
                schedule: Default::default(),
                discriminator: None,
                validation,
            }
        })
        .collect()
}

fn rising(n: usize) -> Vec<f64> {
    (0..n).map(|i| 1.0 + 0.01 * i as f64).collect()
}

#[test]
fn the_best_checkpoint_is_the_best_validation_not_the_last() {
    let h = history(
        &rising(8),
        2,
        "class_accuracy",
        &[0.90, 0.97, 0.95, 0.93],
        0.01,
    );
    let b = best(&h, "class_accuracy@4").unwrap();
    assert_eq!((b.iteration, b.value), (4, 0.97));
    // Lower is better for the Frechet distance; ties keep the earliest.
    let h = history(&rising(8), 2, "frechet", &[30.0, 21.0, 21.0, 25.0], 1.0);
    let b = best(&h, "frechet@4").unwrap();
    assert_eq!((b.iteration, b.value), (4, 21.0));
    // A metric never validated has no best.
    assert!(best(&h, "class_accuracy@4").is_none());
}

#[test]
fn the_warning_fires_when_reward_rises_while_validation_falls_beyond_noise() {
    // Reward up, accuracy down by 0.08 over two validations, noise 0.02.
    let h = history(
        &rising(8),
        2,
        "class_accuracy",
        &[0.95, 0.95, 0.91, 0.87],
        0.02,
    );
    let w = hacking_warning(&h, "class_accuracy@4").expect("a warning");
    assert!(
        w.contains("from iteration 4 to 8") && w.contains("0.9500 -> 0.8700"),
        "{w}"
    );
    // Frechet rising is worsening.
    let h = history(&rising(8), 2, "frechet", &[20.0, 20.0, 26.0, 31.0], 2.0);
    assert!(hacking_warning(&h, "frechet@4").is_some());
}

#[test]
fn no_warning_on_a_clean_run_a_fall_within_noise_or_a_falling_reward() {
    // Both rise: learning, not hacking.
    let h = history(
        &rising(8),
        2,
        "class_accuracy",
        &[0.90, 0.92, 0.94, 0.96],
        0.02,
    );
    assert_eq!(hacking_warning(&h, "class_accuracy@4"), None);
    // The metric falls by less than its noise.
    let h = history(
        &rising(8),
        2,
        "class_accuracy",
        &[0.95, 0.95, 0.94, 0.93],
        0.05,
    );
    assert_eq!(hacking_warning(&h, "class_accuracy@4"), None);
    // The metric falls, but so does the reward.
    let falling: Vec<f64> = rising(8).into_iter().rev().collect();
    let h = history(
        &falling,
        2,
        "class_accuracy",
        &[0.95, 0.95, 0.91, 0.87],
        0.02,
    );
    assert_eq!(hacking_warning(&h, "class_accuracy@4"), None);
    // Too few validations to look back over.
    let h = history(&rising(4), 2, "class_accuracy", &[0.95, 0.80], 0.01);
    assert_eq!(hacking_warning(&h, "class_accuracy@4"), None);
}
