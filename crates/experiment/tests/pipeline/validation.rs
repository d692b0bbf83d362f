//! Evaluation during RL (`cogrpo.eval_every`, `keep_best`) on the tiny
//! Sudoku arm: every validated iteration is logged, validation never
//! touches the test prompts, the checkpoint under `best/` is the best
//! validated iteration, and the arm's test evaluation is that checkpoint's.

use std::collections::BTreeSet;

use burn::backend::{Autodiff, Flex};
use cogrpo_config::{UpdateMode, tasks};
use cogrpo_eval::{Scorer, test_examples};
use cogrpo_grpo::ArmRun;
use cogrpo_grpo::evaluate::evaluate_arm;
use cogrpo_grpo::state::{load_arm, read_arm_state};
use cogrpo_grpo::validation::{self, validation_examples};
use cogrpo_runtime::checkpoint::CheckpointDir;
use cogrpo_runtime::distributed::World;
use cogrpo_runtime::run_dir::RunDir;
use cogrpo_runtime::training::Start;

use crate::arms::{config, pretrained};

type B = Autodiff<Flex>;

#[test]
fn validation_keeps_the_best_checkpoint_and_never_uses_test_prompts() {
    let tmp = tempfile::tempdir().unwrap();
    let mut cfg = config(tmp.path(), "");
    let c = cfg.cogrpo.as_mut().unwrap();
    c.eval_every = 1;
    c.keep_best = Some("d1_cell_accuracy".into());
    let init = pretrained(&cfg);
    let task = tasks::build(&cfg).unwrap();

    // The validation prompts are not test prompts.
    let prompts = |xs: &[envs::Example]| -> BTreeSet<Vec<u32>> {
        xs.iter().map(|e| e.prompt.clone()).collect()
    };
    let (val, test) = (
        prompts(validation_examples(&cfg, task.as_ref())),
        prompts(test_examples(&cfg, task.as_ref())),
    );
    assert!(val.len() >= 10 && !test.is_empty());
    assert!(
        val.is_disjoint(&test),
        "a validation prompt is a test prompt"
    );

    let run = RunDir::create(&cfg.run.out_dir()).unwrap();
    let world = World::single();
    let arm_run = ArmRun::<B> {
        cfg: &cfg,
        task: task.as_ref(),
        run: &run,
        init: &init,
        device: Default::default(),
        world: &world,
    };
    let scorer = Scorer::new(&cfg, task.as_ref()).unwrap();
    let (outcome, arm) = arm_run
        .arm(UpdateMode::Alternate, Start::Fresh, Some(&scorer))
        .unwrap()
        .unwrap();

    let key = "d1_cell_accuracy@2";
    assert_eq!(arm.state.history.len(), 4);
    for h in &arm.state.history {
        let v = h
            .validation
            .as_ref()
            .expect("validated after every iteration");
        assert!(v.values[key].is_finite() && v.noise[key] >= 0.0, "{v:?}");
    }
    let best = validation::best(&arm.state.history, key).unwrap();
    assert_eq!(arm.state.best.as_ref(), Some(&best));
    assert_eq!(outcome.best.as_ref(), Some(&best));

    // `best/` holds that iteration's checkpoint, and the test evaluation
    // is its model's and schedule's.
    let dir = CheckpointDir::new(run.arm("alternate").join("best"))
        .latest()
        .unwrap();
    assert_eq!(read_arm_state(&dir).unwrap().iteration, best.iteration);
    let (model, policy, _) =
        load_arm::<Flex>(&cfg, task.as_ref(), &dir, &Default::default()).unwrap();
    let again = evaluate_arm(
        &cfg,
        task.as_ref(),
        &model,
        Some(&policy),
        "alternate",
        &scorer,
        &Default::default(),
    )
    .unwrap();
    let values = |rows: &[cogrpo_eval::EvalRow]| -> Vec<(String, f64)> {
        rows.iter().map(|r| (r.metric.clone(), r.value)).collect()
    };
    assert_eq!(values(&outcome.eval.rows), values(&again.rows));
}
