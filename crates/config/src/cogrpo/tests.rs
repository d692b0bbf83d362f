//! The `[cogrpo]` section's derived values and its checks.

use super::UpdateMode;

#[test]
fn alternate_spends_each_factors_iterations_in_turn() {
    let theta = |a, b| -> String {
        (0..12)
            .map(|it| match UpdateMode::Alternate.phase(it, a, b) {
                (true, false) => 'm',
                (false, true) => 's',
                _ => '?',
            })
            .collect()
    };
    assert_eq!(theta(2, 2), "mmssmmssmmss");
    assert_eq!(theta(1, 3), "msssmsssmsss");
    assert_eq!(theta(3, 1), "mmmsmmmsmmms");
    assert_eq!(UpdateMode::Joint.phase(5, 1, 3), (true, true));
}

/// A minimal `[cogrpo]` section plus `extra` lines.
fn c(extra: &str) -> super::CogrpoConfig {
    toml::from_str(&format!(
        "iterations = 1\nsteps = 2\nreference = {{ kind = \"confidence\" }}\n{extra}"
    ))
    .unwrap()
}

#[test]
fn evaluation_samples_tasks_without_prompts_unless_told_otherwise() {
    // Greedy decoding of an empty prompt would score copies of one string.
    assert_eq!(c("").eval_temperature_for(0), 1.0);
    assert_eq!(c("").eval_temperature_for(16), 0.0);
    assert_eq!(c("eval_temperature = 0.0").eval_temperature_for(0), 0.0);
    assert_eq!(c("eval_temperature = 0.7").eval_temperature_for(16), 0.7);
}

#[test]
fn update_passes_default_by_device_and_a_set_value_wins() {
    use crate::sections::DeviceKind::{Cpu, Cuda};
    assert_eq!(c("").micro_batch_tokens_on(Cpu), 2048);
    assert_eq!(c("").micro_batch_tokens_on(Cuda), 32768);
    for set in [0, 512] {
        let cfg = c(&format!("micro_batch_tokens = {set}"));
        assert_eq!(cfg.micro_batch_tokens_on(Cpu), set);
        assert_eq!(cfg.micro_batch_tokens_on(Cuda), set);
    }
    // Unset stays unset when the config is written back (run folders).
    assert!(
        !toml::to_string(&c(""))
            .unwrap()
            .contains("micro_batch_tokens")
    );
}

/// `[cogrpo.lora]` reads PEFT's knobs with PEFT's defaults; bad values
/// and a LoRA that no arm trains are named by key.
#[test]
fn lora_keys_parse_and_bad_values_are_named() {
    use envs::Validate;
    let cfg = c("arms = [\"model\"]\n[lora]\nrank = 4\ntargets = [\"q\", \"v\"]");
    let lora = cfg.lora.clone().unwrap();
    assert_eq!((lora.rank, lora.alpha, lora.dropout), (4, 8.0, 0.0));
    assert_eq!(lora.targets, [mdm::LoraTarget::Q, mdm::LoraTarget::V]);
    assert!(cfg.problems().is_empty(), "{:?}", cfg.problems());
    assert!(c("").lora.is_none());
    let keys =
        |extra: &str| -> Vec<String> { c(extra).problems().into_iter().map(|p| p.key).collect() };
    assert_eq!(
        keys("arms = [\"model\"]\n[lora]\nrank = 0\ndropout = 0.1"),
        ["lora.rank", "lora.dropout"]
    );
    assert_eq!(
        keys("arms = [\"schedule\"]\n[schedule]\nkind = \"per_step\"\nlearn = [\"ratio\"]\n[lora]"),
        ["lora"]
    );
    assert!(toml::from_str::<super::CogrpoConfig>(
        "iterations = 1\nsteps = 2\nreference = { kind = \"confidence\" }\n[lora]\ntargets = [\"qkv\"]"
    )
    .is_err());
}

/// Fast-dLLM's threshold decides reveal counts, which the schedule arms
/// learn: a fixed threshold reference is for the model arm, a learned
/// one needs a reference threshold to start from; its range and sampler
/// kind are checked where every sampler's are.
#[test]
fn a_threshold_reference_is_learned_or_for_the_model_arm_only() {
    use envs::Validate;
    let keys = |arms: &str, threshold: f64, kind: &str, learn: &str| -> Vec<String> {
        let cfg: super::CogrpoConfig = toml::from_str(&format!(
            "iterations = 1\nsteps = 2\narms = {arms}\nreference = {{ kind = \"{kind}\", \
             threshold = {threshold} }}\n[schedule]\nkind = \"per_step\"\nlearn = {learn}"
        ))
        .unwrap();
        cfg.problems().into_iter().map(|p| p.key).collect()
    };
    let ratio = "[\"ratio\"]";
    assert!(keys("[\"model\"]", 0.9, "confidence", ratio).is_empty());
    assert_eq!(
        keys("[\"model\", \"joint\"]", 0.9, "confidence", ratio),
        ["reference.threshold"]
    );
    assert_eq!(
        keys("[\"model\"]", 1.5, "confidence", ratio),
        ["reference.threshold"]
    );
    assert_eq!(
        keys("[\"model\"]", 0.5, "first_hitting", ratio),
        ["reference.threshold"]
    );
    // A learned threshold: with the schedule arms, from a reference's.
    let threshold = "[\"ratio\", \"threshold\"]";
    assert!(keys("[\"model\", \"joint\"]", 0.9, "confidence", threshold).is_empty());
    assert_eq!(
        keys("[\"schedule\"]", 0.0, "confidence", threshold),
        ["reference.threshold"]
    );
    // A learned order picks positions itself; the threshold would not act.
    let with_order: super::CogrpoConfig = toml::from_str(
        "iterations = 1\nsteps = 2\narms = [\"schedule\"]\nreference = { kind = \
         \"confidence\", threshold = 0.9 }\n[schedule]\nkind = \"per_step\"\nlearn = \
         [\"threshold\"]\norder = true",
    )
    .unwrap();
    let keys: Vec<String> = with_order.problems().into_iter().map(|p| p.key).collect();
    assert_eq!(keys, ["schedule.order"]);
}

/// `[cogrpo.adversarial]`: every key defaults, bad values are named, and
/// it updates after every `update_every`-th iteration.
#[test]
fn adversarial_keys_default_are_checked_and_time_the_updates() {
    use envs::Validate;
    let on = c("arms = [\"model\"]\n[adversarial]");
    let a = on.adversarial.clone().unwrap();
    assert_eq!(a, super::AdversarialConfig::default());
    assert_eq!(a.reward, "digit_realism");
    assert!(on.problems().is_empty(), "{:?}", on.problems());
    assert!(c("").adversarial.is_none(), "frozen unless asked");
    let keys = |extra: &str| -> Vec<String> {
        c(&format!("arms = [\"model\"]\n[adversarial]\n{extra}"))
            .problems()
            .into_iter()
            .map(|p| p.key)
            .collect()
    };
    assert_eq!(
        keys("reward = \"digit_classifier\"\nsteps = 0\nbatch_size = 1\nmax_accuracy = 0.5"),
        [
            "adversarial.reward",
            "adversarial.steps",
            "adversarial.batch_size",
            "adversarial.max_accuracy"
        ]
    );
    let every3 = c("[adversarial]\nupdate_every = 3").adversarial.unwrap();
    let when: Vec<usize> = (0..9).filter(|&i| every3.updates_after(i)).collect();
    assert_eq!(when, [2, 5, 8]);
}

#[test]
fn keeping_the_best_checkpoint_needs_evaluation_during_training() {
    use envs::Validate;
    let keys = |extra: &str| -> Vec<String> {
        c(&format!("arms = [\"model\"]\n{extra}"))
            .problems()
            .into_iter()
            .map(|p| p.key)
            .collect()
    };
    assert_eq!(keys("keep_best = \"class_accuracy\""), ["keep_best"]);
    assert!(keys("keep_best = \"class_accuracy\"\neval_every = 5").is_empty());
}
