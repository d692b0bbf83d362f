//! The Co-GRPO trainer on a tiny Sudoku model: alternate mode touches only
//! the intended parameter group in each phase; a resumed arm equals an
//! uninterrupted one; a failing reward stops training after a checkpoint.

use std::path::Path;

use burn::backend::{Autodiff, Flex};
use burn::module::{Module, ModuleVisitor, Param};
use burn::prelude::*;
use cogrpo_config::{ExperimentConfig, UpdateMode, load_str, tasks};
use cogrpo_grpo::ArmRun;
use cogrpo_grpo::state::{TrainedArm, init_policy, read_arm_state};
use cogrpo_grpo::trainer::train_arm;
use cogrpo_pretrain::pretrain;
use cogrpo_runtime::distributed::World;
use cogrpo_runtime::logging::Scalars;
use cogrpo_runtime::run_dir::RunDir;
use cogrpo_runtime::training::Start;

type B = Autodiff<Flex>;

pub(crate) fn config(out: &Path, extra: &str) -> ExperimentConfig {
    let data = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../data");
    let text = format!(
        r#"
[run]
name = "arms"
out_dir = "{}"
seed = 5
threads = 2
[task]
kind = "sudoku4"
data_dir = "{}"
[model]
d_model = 32
n_layers = 1
n_heads = 2
d_ff = 64
[pretrain]
steps = 30
batch_size = 32
lr = 3e-3
[eval]
max_examples = 20
[cogrpo]
iterations = 4
prompts_per_iteration = 3
group_size = 4
steps = 2
arms = ["alternate"]
reference = {{ kind = "confidence", temperature = 1.0 }}
alternate_every = 2
lr_model = 1e-3
lr_schedule = 5e-2
[cogrpo.schedule]
kind = "per_step"
learn = ["ratio", "temperature"]
order = true
{extra}
"#,
        out.display(),
        data.display()
    );
    load_str(&text, "test", &[]).unwrap()
}

/// Every parameter's values, flattened, in visiting order.
pub(crate) fn weights<M: Module<B>>(m: &M) -> Vec<Vec<f32>> {
    struct Collect(Vec<Vec<f32>>);
    impl ModuleVisitor<B> for Collect {
        fn visit_float<const D: usize>(&mut self, param: &Param<Tensor<B, D>>) {
            self.0
                .push(param.val().into_data().to_vec::<f32>().unwrap());
        }
    }
    let mut c = Collect(Vec::new());
    m.visit(&mut c);
    c.0
}

pub(crate) fn pretrained(cfg: &ExperimentConfig) -> std::path::PathBuf {
    let task = tasks::build(cfg).unwrap();
    let run = RunDir::create(&cfg.run.out_dir()).unwrap();
    pretrain::<B>(
        cfg,
        task.as_ref(),
        &run,
        &Default::default(),
        Start::Fresh,
        &mut Scalars::disabled(),
        &World::single(),
    )
    .unwrap()
    .checkpoint
}

/// The weights of the pre-trained checkpoint `init`, flattened.
fn pretrained_weights(cfg: &ExperimentConfig, init: &Path) -> Vec<Vec<f32>> {
    let task = tasks::build(cfg).unwrap();
    let d = tasks::denoiser_config(cfg, task.as_ref());
    weights(&cogrpo_runtime::checkpoint::load_model::<B>(init, &d, &Default::default()).unwrap())
}

fn train(cfg: &ExperimentConfig, init: &Path, resume: bool) -> anyhow::Result<TrainedArm<B>> {
    train_mode(cfg, init, UpdateMode::Alternate, resume)
}

/// Trains arm `mode` of `cfg` from `init`, fresh or resumed.
pub(crate) fn train_mode(
    cfg: &ExperimentConfig,
    init: &Path,
    mode: UpdateMode,
    resume: bool,
) -> anyhow::Result<TrainedArm<B>> {
    let task = tasks::build(cfg).unwrap();
    let run = RunDir::create(&cfg.run.out_dir()).unwrap();
    let world = World::single();
    let arm_run = ArmRun::<B> {
        cfg,
        task: task.as_ref(),
        run: &run,
        init,
        device: Default::default(),
        world: &world,
    };
    let start = Start::from_flag(resume);
    train_arm(&arm_run, mode, start, &mut Scalars::disabled())
}

#[test]
fn alternate_phases_touch_only_their_parameters_and_resume_exactly() {
    let tmp = tempfile::tempdir().unwrap();
    let mut full = config(tmp.path(), "");
    full.cogrpo.as_mut().unwrap().dump_every = 1;
    let init = pretrained(&full);
    let task = tasks::build(&full).unwrap();
    let c = full.cogrpo.as_ref().unwrap();
    let model0 = pretrained_weights(&full, &init);
    let policy0 = weights(&init_policy::<B>(c, task.as_ref(), &Default::default()));

    // Iterations 1-2 train theta only.
    let mut half = full.clone();
    half.cogrpo.as_mut().unwrap().iterations = 2;
    let a = train(&half, &init, false).unwrap();
    assert!(
        a.state
            .history
            .iter()
            .all(|h| h.updated_model && !h.updated_schedule)
    );
    assert_ne!(weights(&a.model), model0, "theta phase changed the model");
    assert_eq!(
        weights(&a.policy),
        policy0,
        "theta phase left phi bit-identical"
    );

    // Iterations 3-4 (resumed) train phi only.
    let b = train(&full, &init, true).unwrap();
    assert_eq!(b.state.iteration, 4);
    assert!(
        b.state.history[2..]
            .iter()
            .all(|h| !h.updated_model && h.updated_schedule)
    );
    assert_eq!(
        weights(&b.model),
        weights(&a.model),
        "phi phase left theta bit-identical"
    );
    assert_ne!(
        weights(&b.policy),
        policy0,
        "phi phase changed the schedule"
    );

    // The same four iterations without a stop give the same weights.
    let other = tempfile::tempdir().unwrap();
    let mut fresh = full.clone();
    fresh.run.out_dir = Some(other.path().to_path_buf());
    let c2 = train(&fresh, &init, false).unwrap();
    assert_eq!(weights(&c2.model), weights(&b.model));
    assert_eq!(weights(&c2.policy), weights(&b.policy));
    // So do the rollout dumps: one per iteration, none repeated by the resume.
    let dumped = |cfg: &ExperimentConfig| {
        cogrpo_eval::dumps::read(&cfg.run.out_dir().join("dumps/alternate.jsonl.gz")).unwrap()
    };
    let (resumed, straight) = (dumped(&full), dumped(&fresh));
    let per_iteration = c.dump_groups * c.group_size;
    assert_eq!(resumed.len(), 4 * per_iteration);
    assert_eq!(
        resumed.iter().map(|r| r.iteration).collect::<Vec<_>>(),
        (1..=4)
            .flat_map(|i| vec![i; per_iteration])
            .collect::<Vec<_>>()
    );
    assert_eq!(resumed, straight);
    // The logs agree too (up to JSON's float round trip of the resumed half).
    assert_eq!(c2.state.history.len(), b.state.history.len());
    for (x, y) in c2.state.history.iter().zip(&b.state.history) {
        assert_eq!(x.reward_mean, y.reward_mean);
        assert_eq!(x.solve_rate, y.solve_rate);
        for (k, xs) in &x.schedule {
            for (u, v) in xs.iter().zip(&y.schedule[k]) {
                assert!(
                    u.is_nan() && v.is_nan() || (u - v).abs() < 1e-12,
                    "{k}: {u} vs {v}"
                );
            }
        }
    }
}

/// A LoRA arm (with a KL term to its base): only the adapters move, the
/// checkpoint holds them alone beside the base's fingerprint, a resumed arm
/// equals an uninterrupted one, and adapters are refused on another base.
#[test]
fn a_lora_arm_trains_adapters_alone_resumes_exactly_and_refuses_another_base() {
    let tmp = tempfile::tempdir().unwrap();
    let mut full = config(tmp.path(), "");
    {
        let c = full.cogrpo.as_mut().unwrap();
        c.lora = Some(mdm::LoraConfig {
            rank: 2,
            alpha: 4.0,
            ..Default::default()
        });
        c.alternate_every = 1;
        c.beta = 0.05;
    }
    let init = pretrained(&full);
    let base0 = pretrained_weights(&full, &init);

    let mut half = full.clone();
    half.cogrpo.as_mut().unwrap().iterations = 2;
    let a = train(&half, &init, false).unwrap();
    assert!(a.state.history[0].updated_model);
    assert_eq!(
        weights(&a.model.clone().without_lora()),
        base0,
        "the base is frozen"
    );
    assert!(
        a.model
            .adapters()
            .iter()
            .any(|(_, _, ad)| ad.b.val().abs().max().into_scalar() > 0.0),
        "the adapters moved"
    );
    let ckpt = a.checkpoint.clone();
    assert!(ckpt.join("adapters.safetensors").is_file());
    assert!(
        !ckpt.join("model.safetensors").exists(),
        "no copy of the base"
    );
    assert_eq!(
        read_arm_state(&ckpt).unwrap().base_fingerprint.as_deref(),
        Some(
            cogrpo_runtime::fingerprint::fingerprint(&init)
                .unwrap()
                .as_str()
        )
    );

    // Resumed for iterations 3-4 = four iterations in one go.
    let b = train(&full, &init, true).unwrap();
    let other = tempfile::tempdir().unwrap();
    let mut fresh = full.clone();
    fresh.run.out_dir = Some(other.path().to_path_buf());
    let c = train(&fresh, &init, false).unwrap();
    assert_eq!(weights(&b.model), weights(&c.model));
    assert_eq!(weights(&b.policy), weights(&c.policy));

    // The same adapters on another pre-trained model: refused by name.
    let elsewhere = tempfile::tempdir().unwrap();
    let mut moved = full.clone();
    moved.run.out_dir = Some(elsewhere.path().to_path_buf());
    moved.run.seed = 6;
    let other_init = pretrained(&moved);
    let mut longer = full.clone();
    longer.cogrpo.as_mut().unwrap().iterations = 6;
    longer.run.allow_config_change = true;
    let err = train(&longer, &other_init, true)
        .err()
        .expect("another base is refused")
        .to_string();
    assert!(
        err.contains("fingerprint") && err.contains(&other_init.display().to_string()),
        "{err}"
    );
}

#[test]
fn a_failing_reward_stops_training_after_a_checkpoint() {
    let tmp = tempfile::tempdir().unwrap();
    // A reward plugin that is not there: every item fails.
    let cfg = config(
        tmp.path(),
        r#"
[rewards]
max_failure_fraction = 0.5
[[rewards.terms]]
kind = "subprocess"
name = "missing"
command = ["/nonexistent/reward-plugin"]
"#,
    );
    let init = pretrained(&cfg);
    let err = train(&cfg, &init, false)
        .err()
        .expect("training must stop")
        .to_string();
    assert!(err.contains("iteration 1"), "{err}");
    assert!(
        err.contains("cogrpo train --arm alternate --resume"),
        "{err}"
    );
    let latest = cogrpo_runtime::checkpoint::CheckpointDir::new(
        cfg.run.out_dir().join("arms/alternate/checkpoints"),
    )
    .latest()
    .expect("a checkpoint was written before stopping");
    let state = read_arm_state(&latest).unwrap();
    assert_eq!(state.iteration, 0);
    assert_eq!(state.rollouts, 0, "the failed batch is not counted");
    // A plain start now refuses, saying how to continue.
    let err = train(&cfg, &init, false)
        .err()
        .expect("refused")
        .to_string();
    assert!(
        err.contains("nothing was overwritten") && err.contains("--resume"),
        "{err}"
    );
}

#[test]
fn resampling_replaces_groups_without_signal_and_counts_the_extra_rollouts() {
    let tmp = tempfile::tempdir().unwrap();
    let mut cfg = config(tmp.path(), "");
    let init = pretrained(&cfg);
    {
        let c = cfg.cogrpo.as_mut().unwrap();
        c.resample_rounds = 3;
        // Groups of 2 with a binary reward: many have no variance.
        c.group_size = 2;
        c.prompts_per_iteration = 6;
    }
    cfg.rewards = toml::from_str("[[terms]]\nkind = \"builtin\"\nname = \"solved\"\n").unwrap();
    let arm = train(&cfg, &init, false).unwrap();
    let base = (4 * 6 * 2) as u64;
    let before: f64 = arm
        .state
        .history
        .iter()
        .map(|h| h.zero_variance_share)
        .sum();
    let after: f64 = arm
        .state
        .history
        .iter()
        .map(|h| h.zero_variance_after_resampling)
        .sum();
    assert!(
        before > 0.0,
        "the binary reward leaves groups without variance"
    );
    assert!(
        arm.state.rollouts > base,
        "extra rollouts are counted: {}",
        arm.state.rollouts
    );
    assert!(
        arm.state
            .history
            .iter()
            .all(|h| h.zero_variance_after_resampling <= h.zero_variance_share)
    );
    assert!(after <= before);
}

/// Co-GRPO over a block-wise reference (two blocks of 8, two steps each):
/// both factors train, and the learned ratio acts at each block's first
/// step only (its last reveals what the block has left).
#[test]
fn an_alternate_arm_over_blocks_trains_and_its_ratio_acts_inside_blocks() {
    let tmp = tempfile::tempdir().unwrap();
    let mut cfg = config(tmp.path(), "");
    {
        let c = cfg.cogrpo.as_mut().unwrap();
        c.reference.block_length = 8;
        c.steps = 4;
        c.alternate_every = 1;
        c.iterations = 2;
    }
    let init = pretrained(&cfg);
    let task = tasks::build(&cfg).unwrap();
    let c = cfg.cogrpo.as_ref().unwrap();
    let policy0 = weights(&init_policy::<B>(c, task.as_ref(), &Default::default()));
    let arm = train(&cfg, &init, false).unwrap();
    let h = &arm.state.history;
    assert!(h[0].updated_model && !h[0].updated_schedule);
    assert!(h[1].updated_schedule && !h[1].updated_model);
    assert_ne!(weights(&arm.policy), policy0, "the schedule moved");
    let ratio = &h[1].schedule["ratio"];
    assert_eq!(ratio.len(), 4);
    assert!(ratio[0].is_finite() && ratio[2].is_finite(), "{ratio:?}");
    assert!(ratio[1].is_nan() && ratio[3].is_nan(), "{ratio:?}");
    // Every block is filled by its own last step: 8 positions per block.
    let reveal = &h[1].schedule["reveal"];
    assert!((reveal[0] + reveal[1] - 8.0).abs() < 1e-9, "{reveal:?}");
    assert!((reveal[2] + reveal[3] - 8.0).abs() < 1e-9, "{reveal:?}");
}
