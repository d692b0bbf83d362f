//! An arm whose discriminator reward keeps learning (`[cogrpo.adversarial]`,
//! digits): the discriminator's updates are logged each iteration, its
//! state goes into the arm's checkpoint, and an arm stopped and resumed
//! equals one trained straight through, discriminator included.

use std::path::Path;

use burn::backend::{Autodiff, Flex};
use burn::module::AutodiffModule;
use cogrpo_config::{ExperimentConfig, UpdateMode, load};
use cogrpo_grpo::learned_rewards;
use cogrpo_grpo::state::TrainedArm;
use cogrpo_runtime::checkpoint::load_model;
use cogrpo_vision::adversarial::Discriminator;
use cogrpo_vision::net::Classifier;

use crate::arms::{pretrained, train_mode, weights};

type B = Autodiff<Flex>;

fn config(out: &Path, iterations: usize) -> ExperimentConfig {
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("../..");
    load(
        &root.join("experiments/smoke/digits-cogrpo.toml"),
        &[
            format!("run.out_dir={}", out.display()),
            format!("task.data_dir={}", root.join("data").display()),
            format!("cogrpo.iterations={iterations}"),
            "cogrpo.adversarial.update_every=1".into(),
            "cogrpo.adversarial.steps=2".into(),
            "cogrpo.adversarial.max_accuracy=1.0".into(),
        ],
    )
    .unwrap()
}

/// Pre-trains the tiny generator and trains the reward models against it.
fn prepared(cfg: &ExperimentConfig) -> std::path::PathBuf {
    let init = pretrained(cfg);
    let task = cogrpo_config::tasks::build(cfg).unwrap();
    let d = cogrpo_config::tasks::denoiser_config(cfg, task.as_ref());
    let base = load_model::<Flex>(&init, &d, &Default::default()).unwrap();
    learned_rewards::prepare(cfg, task.as_ref(), &base, &Default::default()).unwrap();
    init
}

fn train(cfg: &ExperimentConfig, init: &Path, resume: bool) -> TrainedArm<B> {
    train_mode(cfg, init, UpdateMode::Joint, resume).unwrap()
}

#[test]
fn an_adversarial_arm_logs_its_discriminator_and_resumes_it_exactly() {
    let tmp = tempfile::tempdir().unwrap();
    let full = config(tmp.path(), 4);
    let init = prepared(&full);

    let half = config(tmp.path(), 2);
    let a = train(&half, &init, false);
    assert!(a.checkpoint.join("discriminator.safetensors").is_file());
    assert!(a.checkpoint.join("discriminator_replay.json").is_file());
    let resumed = train(&full, &init, true);

    // The same four iterations straight through, in another run folder
    // with a copy of the reward models (the same generator `init`).
    let other = tempfile::tempdir().unwrap();
    copy_dir(&tmp.path().join("models"), &other.path().join("models"));
    let straight = train(&config(other.path(), 4), &init, false);

    let history = |arm: &TrainedArm<B>| -> Vec<_> {
        arm.state
            .history
            .iter()
            .map(|h| h.discriminator.expect("updated after every iteration"))
            .collect()
    };
    let logged = history(&straight);
    assert_eq!(logged.len(), 4);
    assert!(logged.iter().all(|d| d.loss.is_some_and(f64::is_finite)));
    assert_eq!(history(&resumed), logged);
    // The rewards the discriminator handed out after its updates agree too,
    // and so does the model they trained.
    let rewards = |arm: &TrainedArm<B>| -> Vec<f64> {
        arm.state.history.iter().map(|h| h.reward_mean).collect()
    };
    assert_eq!(rewards(&resumed), rewards(&straight));
    assert_eq!(weights(&resumed.model), weights(&straight.model));
    // The discriminator's state in the final checkpoints agrees too.
    let settings = full.cogrpo.as_ref().unwrap().adversarial.clone().unwrap();
    let saved = |arm: &TrainedArm<B>| {
        let d = Discriminator::load(&full, &settings, &arm.checkpoint).unwrap();
        assert_eq!(d.replay_len(), 4 * 2 * 4, "4 iterations of 2 x 4 rollouts");
        weights(&Classifier::<B>::from_inner(d.model()))
    };
    assert_eq!(saved(&resumed), saved(&straight));
}

fn copy_dir(from: &Path, to: &Path) {
    std::fs::create_dir_all(to).unwrap();
    for entry in std::fs::read_dir(from).unwrap() {
        let entry = entry.unwrap();
        let target = to.join(entry.file_name());
        if entry.file_type().unwrap().is_dir() {
            copy_dir(&entry.path(), &target);
        } else {
            std::fs::copy(entry.path(), target).unwrap();
        }
    }
}
