//! A whole experiment driven in process, through the library the binary
//! calls: pre-training, every Co-GRPO arm and the report, then the resume
//! policy both training scopes share (pre-training and an arm).

use std::path::{Path, PathBuf};

use burn::backend::{Autodiff, Flex};
use cogrpo_config::{ExperimentConfig, UpdateMode, load};
use cogrpo_experiment::Experiment;
use cogrpo_runtime::distributed::World;
use cogrpo_runtime::training::Start;

type B = Autodiff<Flex>;

/// The smoke Co-GRPO experiment, writing into `out`.
fn config(out: &Path) -> ExperimentConfig {
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("../..");
    let sets = [
        format!("run.out_dir={}", out.display()),
        format!("task.data_dir={}", root.join("data").display()),
        "run.threads=2".to_string(),
    ];
    load(&root.join("experiments/smoke/sudoku4-cogrpo.toml"), &sets).expect("the smoke config")
}

fn report(out: &Path) -> serde_json::Value {
    serde_json::from_slice(&std::fs::read(out.join("report.json")).expect("a report"))
        .expect("JSON")
}

fn newest(dir: PathBuf) -> String {
    cogrpo_runtime::checkpoint::CheckpointDir::new(dir)
        .latest()
        .expect("a checkpoint")
        .file_name()
        .expect("a name")
        .to_string_lossy()
        .into_owned()
}

#[test]
fn a_whole_run_in_process_then_reused_without_training_again() {
    let tmp = tempfile::tempdir().unwrap();
    let out = tmp.path().join("run");
    let world = World::single();
    let experiment = Experiment::<B>::open(config(&out), Default::default(), &world).unwrap();
    experiment.run_all().expect("the whole experiment");

    let r = report(&out);
    let arms: Vec<&str> = r["arms"]
        .as_object()
        .expect("arms")
        .keys()
        .map(String::as_str)
        .collect();
    for arm in ["base", "model", "schedule", "joint", "alternate"] {
        assert!(arms.contains(&arm), "{arm} missing from {arms:?}");
    }
    let solved = |arm: &str, steps: u64| {
        r["arms"][arm]["eval"]
            .as_array()
            .expect("rows")
            .iter()
            .find(|row| row["metric"] == "solved" && row["steps"] == steps)
            .and_then(|row| row["value"].as_f64())
            .expect("a solved row")
    };
    assert!((0.0..=1.0).contains(&solved("alternate", 2)));
    assert_eq!(newest(out.join("checkpoints")), "step-00000020");
    assert_eq!(newest(out.join("arms/joint/checkpoints")), "step-00000004");

    // Run again: every stage is finished, so nothing trains again and the
    // report's numbers are the same.
    let model = out.join("arms/model/checkpoints/step-00000004/model.safetensors");
    let before = std::fs::read(&model).unwrap();
    drop(experiment);
    let again = Experiment::<B>::open(config(&out), Default::default(), &world).unwrap();
    again.run_all().expect("the finished experiment again");
    assert_eq!(std::fs::read(&model).unwrap(), before, "the arm was reused");
    let (a, b) = (report(&out), r);
    for arm in ["base", "model", "alternate"] {
        assert_eq!(a["arms"][arm]["eval"], b["arms"][arm]["eval"], "{arm}");
    }
}

/// One resume policy for both scopes: without `--resume` an existing
/// checkpoint is refused and kept; `--resume` with nothing to resume is
/// refused; with a checkpoint it continues.
#[test]
fn pretraining_and_an_arm_start_and_resume_by_the_same_policy() {
    let tmp = tempfile::tempdir().unwrap();
    let out = tmp.path().join("run");
    let world = World::single();
    let mut cfg = config(&out);
    cfg.cogrpo.as_mut().unwrap().iterations = 2;
    let experiment = Experiment::<B>::open(cfg, Default::default(), &world).unwrap();

    // Pre-training.
    let e = experiment.pretrain(Start::Resume).unwrap_err().to_string();
    assert!(e.contains("nothing to resume"), "{e}");
    experiment.pretrain(Start::Fresh).unwrap();
    let e = experiment.pretrain(Start::Fresh).unwrap_err().to_string();
    assert!(e.contains("already holds") && e.contains("--resume"), "{e}");
    assert!(e.contains("nothing was overwritten"), "{e}");
    experiment
        .pretrain(Start::Resume)
        .expect("continues (nothing left)");

    // An arm, by the same rules.
    let init = experiment.checkpoint(None).unwrap();
    let mode = UpdateMode::Schedule;
    let e = experiment
        .train_arm(mode, &init, Start::Resume)
        .unwrap_err()
        .to_string();
    assert!(e.contains("nothing to resume"), "{e}");
    experiment.train_arm(mode, &init, Start::Fresh).unwrap();
    let e = experiment
        .train_arm(mode, &init, Start::Fresh)
        .unwrap_err()
        .to_string();
    assert!(
        e.contains("already holds") && e.contains("cogrpo train --arm schedule --resume"),
        "{e}"
    );
    let trained = experiment
        .train_arm(mode, &init, Start::Resume)
        .unwrap()
        .expect("rank 0 evaluates");
    assert_eq!(trained.rollouts, 2 * 2 * 4, "2 iterations x 2 prompts x 4");
}
