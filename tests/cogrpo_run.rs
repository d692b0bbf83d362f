//! End-to-end tests of `cogrpo run` with a `[cogrpo]` section: every arm
//! trained and reported, and `eval`/`sample` reproducing the report.

use std::path::Path;

mod common;
use common::{
    cogrpo, fresh_run, report, run_fails_saying, run_ok, run_ok_saying, set_out, summary, text,
};

#[test]
fn cogrpo_smoke_run_trains_every_arm_and_writes_the_report() {
    let cfg = "experiments/smoke/sudoku4-cogrpo.toml";
    let (_tmp, dir, _) = fresh_run("run", cfg, "cogrpo");
    let report = report(&dir);
    assert_eq!(report["task"], "sudoku4");
    assert_eq!(report["budget"]["rollouts"], 4 * 2 * 4);
    for arm in ["base", "model", "schedule", "joint", "alternate"] {
        let a = &report["arms"][arm];
        let eval = a["eval"]
            .as_array()
            .unwrap_or_else(|| panic!("{arm}: {report}"));
        // 3 Sudoku metrics at 2 step counts.
        assert_eq!(eval.len(), 6, "{arm}");
        for row in eval {
            assert!(row["steps"] == 2 || row["steps"] == 4);
            let v = row["value"].as_f64().unwrap();
            assert!((0.0..=1.0).contains(&v), "{arm}: {row}");
            assert_eq!(row["nfe"].as_f64().unwrap(), row["steps"].as_f64().unwrap());
            assert!(row["metric"].is_string());
        }
        assert!(a["wall_s"].as_f64().unwrap() > 0.0);
        if arm != "base" {
            assert_eq!(a["rollouts"], 32, "{arm}");
        }
    }
    let md = std::fs::read_to_string(dir.join("report.md")).unwrap();
    assert!(
        md.contains("## Evaluation") && md.contains("| alternate |"),
        "{md}"
    );
    for png in ["reward_curves.png", "schedule.png", "accuracy_vs_steps.png"] {
        let bytes = std::fs::read(dir.join(png)).unwrap();
        assert_eq!(&bytes[..8], b"\x89PNG\r\n\x1a\n", "{png}");
    }
    for arm in ["model", "schedule", "joint", "alternate"] {
        let ckpt = dir.join(format!("arms/{arm}/checkpoints/step-00000004"));
        for f in [
            "model.safetensors",
            "optimizer.mpk",
            "schedule.mpk",
            "schedule_optimizer.mpk",
            "state.json",
        ] {
            assert!(ckpt.join(f).is_file(), "{arm}: {f}");
        }
    }

    eval_and_sample_agree_with_the_report(cfg, &dir, &report);

    // `train` refuses to overwrite an arm; a second `run` reuses everything.
    run_fails_saying(
        &[
            "train",
            "-c",
            cfg,
            "--set",
            &set_out(&dir),
            "--arm",
            "joint",
        ],
        1,
        "nothing was overwritten",
    );
    let o = cogrpo(&[
        "train",
        "-c",
        cfg,
        "--set",
        &set_out(&dir),
        "--arm",
        "sideways",
    ]);
    assert!(
        text(&o).contains("expected one of model, schedule, joint, alternate"),
        "{}",
        text(&o)
    );
    run_ok_saying(
        &["run", "-c", cfg, "--set", &set_out(&dir)],
        "reusing the finished arm `alternate`",
    );

    // A resumed arm with a larger budget continues from its checkpoint.
    run_ok_saying(
        &[
            "train",
            "-c",
            cfg,
            "--set",
            &set_out(&dir),
            "--arm",
            "model",
            "--resume",
            "--set",
            "cogrpo.iterations=6",
        ],
        "resuming arm `model` at iteration 4",
    );
    assert!(
        dir.join("arms/model/checkpoints/step-00000006/state.json")
            .is_file()
    );
}

/// `cogrpo eval` with the reference sampler at the arms' evaluation
/// temperature prints the numbers of the report's `base` arm (one generation
/// step and one evaluation loop serve both); `eval --arm` reproduces an
/// arm's report rows with its learned schedule, `sample --arm` samples with
/// it, and an arm trained under another config is refused.
fn eval_and_sample_agree_with_the_report(cfg: &str, dir: &Path, report: &serde_json::Value) {
    let value = |rows: &serde_json::Value, steps: u64, metric: &str| {
        rows.as_array()
            .unwrap()
            .iter()
            .find(|r| r["steps"] == steps && r["metric"] == metric)
            .map(|r| (r["value"].as_f64().unwrap(), r["nfe"].as_f64().unwrap()))
            .unwrap_or_else(|| panic!("no {metric} at {steps} in {rows}"))
    };
    run_ok(&[
        "eval",
        "-c",
        cfg,
        "--set",
        &set_out(dir),
        "--set",
        "eval.samplers=[{kind=\"confidence\", temperature=0.0}]",
        "--set",
        "eval.steps=[2,4]",
    ]);
    let evaluated = summary(dir)["eval"].clone();
    for steps in [2, 4] {
        for metric in ["solved", "d1_cell_accuracy", "valid_cells"] {
            assert_eq!(
                value(&evaluated, steps, metric),
                value(&report["arms"]["base"]["eval"], steps, metric),
                "{metric} at {steps} steps"
            );
        }
    }

    let arm = dir.join("arms/schedule");
    let o = run_ok(&[
        "eval",
        "-c",
        cfg,
        "--set",
        &set_out(dir),
        "--arm",
        arm.to_str().unwrap(),
    ]);
    for r in report["arms"]["schedule"]["eval"].as_array().unwrap() {
        let line = format!(
            "{:<34} {:>6} {:<18} {:>9.4}",
            "schedule",
            r["steps"].as_u64().unwrap(),
            r["metric"].as_str().unwrap(),
            r["value"].as_f64().unwrap()
        );
        assert!(text(&o).contains(&line), "{line}\n{}", text(&o));
    }
    let o = run_ok(&[
        "sample",
        "-c",
        cfg,
        "--set",
        &set_out(dir),
        "--arm",
        arm.to_str().unwrap(),
        "--prompt",
        "3102200002100320",
    ]);
    let line = text(&o);
    assert!(line.contains("arm `schedule`"), "{line}");
    let completion = line
        .lines()
        .find_map(|l| l.strip_prefix("3102200002100320 -> "))
        .unwrap_or_else(|| panic!("{line}"));
    assert_eq!(
        completion.chars().filter(char::is_ascii_digit).count(),
        16,
        "{line}"
    );
    let o = cogrpo(&[
        "eval",
        "-c",
        cfg,
        "--set",
        &set_out(dir),
        "--set",
        "cogrpo.lr_model=0.5",
        "--arm",
        arm.to_str().unwrap(),
    ]);
    assert!(
        text(&o).contains("written under another config: cogrpo.lr_model changed"),
        "{}",
        text(&o)
    );
}

#[test]
fn digits_smoke_run_reports_image_metrics_the_tuned_schedule_and_sample_grids() {
    let cfg = "experiments/smoke/digits-cogrpo.toml";
    let (_tmp, dir, _) = fresh_run("run", cfg, "digits");
    let report = report(&dir);
    for arm in ["base", "tuned", "alternate"] {
        let eval = report["arms"][arm]["eval"]
            .as_array()
            .unwrap_or_else(|| panic!("{arm}: {report}"));
        let metrics: Vec<&str> = eval.iter().map(|r| r["metric"].as_str().unwrap()).collect();
        assert_eq!(
            metrics,
            [
                "class_accuracy",
                "frechet",
                "duplicate_rate",
                "pairwise_distance",
                "reward"
            ],
            "{arm}"
        );
        // A row per prompt (10 classes), 3 samples each (30 test examples).
        let png = std::fs::read(dir.join(format!("samples_{arm}_T2.png"))).unwrap();
        let (w, h, _) = cogrpo_vision::images::read_gray_png(&png).unwrap();
        assert_eq!((w, h), (4 + 3 * (8 * 4 + 4), 4 + 10 * (8 * 4 + 4)), "{arm}");
    }
    // The realism discriminator learned real `train` digits against the
    // pre-trained generator's answers to the 901 `train` prompts at each
    // evaluated step count (one here).
    let card: serde_json::Value = serde_json::from_slice(
        &std::fs::read(dir.join("models/digit_realism/model.json")).unwrap(),
    )
    .unwrap();
    assert_eq!(card["generated"]["count"], 901, "{card}");
    assert!(card["accuracy_unseen"].as_f64().unwrap() > 0.9, "{card}");
    // 1 reveal curve x 1 temperature x 2 re-mask x 2 guidance on the 179
    // validation prompts.
    let grid = std::fs::read_to_string(dir.join("tuned_grid.tsv")).unwrap();
    assert_eq!(grid.lines().count(), 1 + 4, "{grid}");
    assert_eq!(report["arms"]["tuned"]["rollouts"], 4 * 179);
    let md = std::fs::read_to_string(dir.join("report.md")).unwrap();
    assert!(
        md.contains("`tuned` = the pre-trained model under the best fixed schedule"),
        "{md}"
    );
    assert!(md.contains("![alternate samples at T = 2"), "{md}");

    // `sample` shows images in the terminal and writes a grid.
    let png = dir.join("sevens.png");
    let o = run_ok(&[
        "sample",
        "-c",
        cfg,
        "--set",
        &set_out(&dir),
        "--prompt",
        "7",
        "-n",
        "3",
        "--png",
        png.to_str().unwrap(),
    ]);
    assert_eq!(text(&o).matches('┌').count(), 3, "{}", text(&o));
    let (w, h, _) = cogrpo_vision::images::read_gray_png(&std::fs::read(&png).unwrap()).unwrap();
    assert_eq!((w, h), (4 + 3 * 36, 4 + 36));
    run_fails_saying(
        &[
            "sample",
            "-c",
            cfg,
            "--set",
            &set_out(&dir),
            "--prompt",
            "12",
        ],
        2,
        "class 0..9",
    );
}
