//! The digits task's learned models: the reward model loads by name through
//! the reward registry and prefers a real digit of the prompted class to
//! noise; the evaluation classifier is trained on images neither the reward
//! model nor the generator saw.

mod common;

use std::collections::HashSet;

use cogrpo_vision::registry::reward_set;
use cogrpo_vision::store::{ModelCard, model_dir};
use cogrpo_vision::{ModelRole, load_or_train};
use common::{config, scribble};
use envs::Task;
use envs::digits::{DigitSplit, Digits};
use envs::seeding::stream;
use rewards::{RewardItem, RolloutCost};

/// One generation of cost 1 NFE per item.
fn costs(n: usize) -> Vec<RolloutCost> {
    vec![
        RolloutCost {
            nfe: 1.0,
            wall_s: 0.0,
            answer_len: 64
        };
        n
    ]
}

#[test]
fn the_reward_model_loads_by_name_and_prefers_a_real_digit_to_noise() {
    let out = tempfile::tempdir().unwrap();
    let cfg = config(out.path());
    let task = Digits::load(&cfg.task.data_dir, cfg.task.data_seed, 17).unwrap();
    // Real heldout digits (never seen by the reward model), and uniform noise
    // under the same prompts.
    let real: Vec<_> = task.test_examples()[..40].to_vec();
    let mut rng = stream(&[7]);
    let items: Vec<RewardItem> = real
        .iter()
        .map(|e| RewardItem::new(e, 0, &e.answer, task.vocab()))
        .chain(
            real.iter()
                .map(|e| RewardItem::new(e, 1, &scribble(&mut rng, 1.0), task.vocab())),
        )
        .collect();
    let costs = costs(items.len());
    let score = |set: &rewards::RewardSet| -> (f64, f64) {
        let scored = set.score(&items, &costs).unwrap();
        let mean = |r: std::ops::Range<usize>| {
            r.clone()
                .map(|i| scored.total(i).unwrap() as f64)
                .sum::<f64>()
                / r.len() as f64
        };
        (mean(0..40), mean(40..80))
    };
    // The config names no reward: the task's default, the learned classifier.
    let set = reward_set(&cfg, "digits").unwrap();
    assert_eq!(set.names(), ["digit_classifier"]);
    let (real_mean, noise_mean) = score(&set);
    assert!(real_mean > 0.8, "p(class | real digit) = {real_mean}");
    assert!(
        noise_mean < 0.5 * real_mean,
        "noise {noise_mean} vs real {real_mean}"
    );
    // Saved with its card, and loaded (not retrained) the second time.
    let card_path = model_dir(&cfg, ModelRole::Reward.name()).join("model.json");
    let card: ModelCard =
        serde_json::from_str(&std::fs::read_to_string(&card_path).unwrap()).unwrap();
    assert_eq!(card.training.trained_on, "train");
    assert!(card.accuracy_unseen > 0.9, "{card:?}");
    let modified = std::fs::metadata(&card_path).unwrap().modified().unwrap();
    let again = score(&reward_set(&cfg, "digits").unwrap());
    assert_eq!(again, (real_mean, noise_mean));
    assert_eq!(
        std::fs::metadata(&card_path).unwrap().modified().unwrap(),
        modified
    );
}

#[test]
fn the_evaluation_classifier_never_saw_the_reward_models_images() {
    let out = tempfile::tempdir().unwrap();
    let cfg = config(out.path());
    let eval = load_or_train(&cfg, ModelRole::Evaluation).unwrap();
    assert_eq!(eval.card.training.trained_on, "heldout");
    assert!(eval.card.accuracy_unseen > 0.9, "{:?}", eval.card);
    let task = Digits::load(&cfg.task.data_dir, cfg.task.data_seed, 17).unwrap();
    let rows = |s: DigitSplit| -> HashSet<u64> { task.examples(s).iter().map(|e| e.id).collect() };
    // The reward model and the generator learn from `train` only.
    assert!(rows(DigitSplit::Heldout).is_disjoint(&rows(DigitSplit::Train)));
    assert_eq!(
        (0..1000)
            .map(|i| task.train_example(i).id)
            .collect::<HashSet<_>>(),
        rows(DigitSplit::Train)
    );
}

#[test]
fn a_served_reward_model_scores_as_it_does_in_process() {
    let out = tempfile::tempdir().unwrap();
    let cfg = config(out.path());
    let task = Digits::load(&cfg.task.data_dir, cfg.task.data_seed, 17).unwrap();
    let items: Vec<RewardItem> = task.test_examples()[..12]
        .iter()
        .enumerate()
        .map(|(i, e)| {
            // Real digits, some under another class's prompt.
            let mut shown = e.clone();
            if i % 3 == 0 {
                shown.prompt = task.test_examples()[i + 1].prompt.clone();
            }
            RewardItem::new(&shown, 0, &e.answer, task.vocab())
        })
        .collect();
    let costs = costs(items.len());
    let totals = |set: &rewards::RewardSet| -> Vec<f32> {
        let scored = set.score(&items, &costs).unwrap();
        (0..items.len()).map(|i| scored.total(i).unwrap()).collect()
    };
    let in_process = totals(&reward_set(&cfg, "digits").unwrap());

    // The same model behind `rewards::serve`, reached through an HTTP term.
    let registry = cogrpo_vision::registry::registry(&cfg, "digits").unwrap();
    let reward = registry.builtin("digits", "digit_classifier").unwrap();
    let served: rewards::serve::Served = std::sync::Arc::new(
        [("digit_classifier".to_string(), reward)]
            .into_iter()
            .collect(),
    );
    let runtime = tokio::runtime::Runtime::new().unwrap();
    let listener = runtime
        .block_on(tokio::net::TcpListener::bind("127.0.0.1:0"))
        .unwrap();
    let url = format!("http://{}/", listener.local_addr().unwrap());
    runtime.spawn(rewards::serve::serve(listener, served, 1 << 20));
    let mut http_cfg = cfg.clone();
    http_cfg.rewards = toml::from_str(&format!(
        "[[terms]]\nkind = \"http\"\nname = \"digit_classifier\"\nurl = \"{url}\"\nmax_batch = 5\n"
    ))
    .unwrap();
    let over_http = totals(&reward_set(&http_cfg, "digits").unwrap());
    assert_eq!(over_http, in_process);
    assert!(in_process.iter().any(|&s| s < 0.5) && in_process.iter().any(|&s| s > 0.5));
}

#[test]
fn the_realism_reward_learns_real_digits_against_generated_ones_and_loads_by_name() {
    let out = tempfile::tempdir().unwrap();
    let mut cfg = config(out.path());
    cfg.rewards =
        toml::from_str("[[terms]]\nkind = \"builtin\"\nname = \"digit_realism\"\n").unwrap();
    // Not trained yet: a clear error, nothing written.
    let err = reward_set(&cfg, "digits").err().unwrap().to_string();
    assert!(err.contains("digit_realism is trained against"), "{err}");
    // A "generator" that scatters ink at random, as an untrained MDM does.
    let mut rng = stream(&[11]);
    let generated: Vec<Vec<u32>> = (0..400).map(|_| scribble(&mut rng, 0.3)).collect();
    let trained = cogrpo_vision::realism::load_or_train(&cfg, &generated).unwrap();
    assert!(trained.card.accuracy_unseen > 0.95, "{:?}", trained.card);
    let task = Digits::load(&cfg.task.data_dir, cfg.task.data_seed, 17).unwrap();
    let mut fresh = stream(&[12]);
    let items: Vec<RewardItem> = task.test_examples()[..20]
        .iter()
        .map(|e| RewardItem::new(e, 0, &e.answer, task.vocab()))
        .chain(
            task.test_examples()[..20]
                .iter()
                .map(|e| RewardItem::new(e, 1, &scribble(&mut fresh, 0.3), task.vocab())),
        )
        .collect();
    let costs = costs(items.len());
    let set = reward_set(&cfg, "digits").unwrap();
    assert_eq!(set.names(), ["digit_realism"]);
    let scored = set.score(&items, &costs).unwrap();
    let mean = |r: std::ops::Range<usize>| {
        r.clone().map(|i| scored.total(i).unwrap()).sum::<f32>() / r.len() as f32
    };
    assert!(
        mean(0..20) > 0.9 && mean(20..40) < 0.1,
        "real {} generated {}",
        mean(0..20),
        mean(20..40)
    );
}
