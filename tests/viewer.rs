//! What a user sees of a Co-GRPO run: the rollout dumps, `cogrpo samples`,
//! `cogrpo view` opened in a real browser (headless Chromium), and the
//! TensorBoard events read back by TensorBoard's own reader. The browser and
//! TensorBoard tests need `chromium` and Python's `tensorboard` (`.ci/run`
//! installs both); without them they are compiled ignored (see build.rs).

mod common;

use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::OnceLock;

use cogrpo_eval::dumps::{self, DumpKind};
use common::{cogrpo, run_fails_saying, run_ok, set_out, text};

const CFG: &str = "experiments/smoke/sudoku4-cogrpo.toml";

/// One smoke run shared by the tests of this file: 4 iterations of every
/// arm, dumps and validations every 2 iterations (2 groups of 4),
/// evaluation at T = 2 and 4, and first-hitting evaluated beside the arms.
fn run() -> &'static Path {
    static RUN: OnceLock<(tempfile::TempDir, PathBuf)> = OnceLock::new();
    &RUN.get_or_init(|| {
        let tmp = tempfile::tempdir().unwrap();
        let dir = tmp.path().join("run");
        run_ok(&[
            "run",
            "-c",
            CFG,
            "--set",
            &set_out(&dir),
            "--set",
            "cogrpo.dump_every=2",
            "--set",
            "cogrpo.eval_every=2",
            "--set",
            "eval.samplers=[{kind = \"first_hitting\"}]",
            "--set",
            "eval.steps=[2, 4]",
        ]);
        (tmp, dir)
    })
    .1
}

#[test]
fn every_arm_dumps_its_rollouts_and_samples_prints_them() {
    let dir = run();
    let report: serde_json::Value =
        serde_json::from_slice(&std::fs::read(dir.join("report.json")).unwrap()).unwrap();
    let reported: Vec<String> = report["arms"]
        .as_object()
        .unwrap()
        .keys()
        .cloned()
        .collect();
    assert_eq!(dumps::arms(dir), reported, "one dump file per reported arm");
    // The fixed sampler is reported beside the arms and on the frontier.
    let fixed = report["fixed_samplers"].as_array().unwrap();
    assert!(
        fixed
            .iter()
            .any(|r| r["sampler"] == "first_hitting" && r["steps"] == 4),
        "{fixed:?}"
    );
    let md = std::fs::read_to_string(dir.join("report.md")).unwrap();
    assert!(md.contains("| first_hitting | "), "{md}");
    assert!(md.contains("](frontier.png)") && dir.join("frontier.png").is_file());
    let records = dumps::read(&dumps::path(dir, "joint")).unwrap();
    let train: Vec<_> = records
        .iter()
        .filter(|r| r.kind == DumpKind::Train)
        .collect();
    let eval: Vec<_> = records
        .iter()
        .filter(|r| r.kind == DumpKind::Eval)
        .collect();
    // Iterations 2 and 4, 2 groups of 4 rollouts each.
    assert_eq!(train.len(), 2 * 2 * 4);
    assert_eq!(
        train
            .iter()
            .map(|r| r.iteration)
            .collect::<std::collections::BTreeSet<_>>(),
        [2, 4].into()
    );
    // Evaluation: 2 x 4 test examples at each of T = 2 and 4.
    assert_eq!(eval.len(), 2 * 8);
    for r in &train {
        // Every answer position is written exactly once over the episode.
        let mut written: Vec<usize> = r
            .trajectory
            .iter()
            .flat_map(|s| s.positions.clone())
            .collect();
        written.sort_unstable();
        assert_eq!(written, (0..r.answer_len).collect::<Vec<_>>(), "{r:?}");
        assert_eq!(r.trajectory.len(), r.steps);
        assert_eq!(r.completion.chars().count(), r.answer_len);
        assert!(r.advantage.is_some() && r.reward.is_some(), "{r:?}");
        assert!(r.rewards.contains_key("valid_cells"));
        // The joint arm learns the reveal ratio: each step but the last says it.
        assert!(r.trajectory[0].schedule.contains_key("ratio"), "{r:?}");
    }
    // Advantages are centred within each group.
    for g in train.chunks(4) {
        let sum: f64 = g.iter().map(|r| r.advantage.unwrap()).sum();
        assert!(sum.abs() < 1e-4, "{sum}");
    }

    let o = run_ok(&[
        "samples",
        dir.to_str().unwrap(),
        "--arm",
        "joint",
        "--kind",
        "train",
        "-n",
        "2",
        "--steps",
    ]);
    let out = text(&o);
    assert_eq!(
        out.matches("== joint | train | iteration 4").count(),
        2,
        "{out}"
    );
    assert!(out.contains("  step 1: "), "{out}");
    let o = cogrpo(&[
        "samples",
        dir.to_str().unwrap(),
        "--arm",
        "joint",
        "--iteration",
        "3",
    ]);
    assert!(
        text(&o).contains("no dumped rollout matches (dumped iterations: 2, 4)"),
        "{}",
        text(&o)
    );
    run_fails_saying(
        &["samples", dir.to_str().unwrap(), "--arm", "sideways"],
        1,
        "arms with dumps here: alternate, base",
    );
}

/// Headless Chromium with the flags this machine's closed network needs.
fn chromium(profile: &Path, args: &[&str]) -> std::process::Output {
    let program = std::env::var("COGRPO_CHROMIUM").unwrap_or_else(|_| "chromium".into());
    Command::new(program)
        .args([
            "--headless",
            "--no-sandbox",
            "--disable-gpu",
            "--disable-quic",
            "--no-first-run",
            "--disable-background-networking",
            "--disable-component-update",
            "--disable-sync",
            "--hide-scrollbars",
            &format!("--user-data-dir={}", profile.display()),
            "--virtual-time-budget=5000",
        ])
        .args(args)
        .output()
        .expect("chromium runs")
}

/// The part of `dom` from `start` to the next `end`.
fn section<'a>(dom: &'a str, start: &str, end: &str) -> &'a str {
    let from = dom
        .find(start)
        .unwrap_or_else(|| panic!("no {start} in the DOM"));
    let rest = &dom[from..];
    &rest[..rest.find(end).unwrap_or(rest.len())]
}

#[test]
#[cfg_attr(
    not(has_chromium),
    ignore = "needs chromium (Debian: apt-get install chromium)"
)]
fn the_viewer_replays_a_trajectory_in_chromium() {
    let dir = run();
    run_ok(&["view", dir.to_str().unwrap()]);
    let page = dir.join("view.html");
    let url = format!("file://{}", page.display());
    let tmp = tempfile::tempdir().unwrap();

    // The DOM after the page's script ran: the newest dump (evaluation at
    // T = 4) replayed to its last step, four examples of 16 cells each.
    let o = chromium(&tmp.path().join("p1"), &["--dump-dom", &url]);
    let dom = String::from_utf8_lossy(&o.stdout);
    assert!(
        dom.contains("id=\"rollouts\""),
        "no replay in the DOM:\n{dom}"
    );
    assert_eq!(
        dom.matches("class=\"cell revealed").count(),
        4 * 16,
        "{dom}"
    );
    assert_eq!(dom.matches("class=\"cell masked").count(), 0);
    assert!(
        dom.contains("<td><span class=\"swatch\""),
        "no evaluation table"
    );
    assert!(
        dom.contains("Training curves (per iteration)"),
        "no training curves"
    );
    assert!(
        dom.contains("Schedule per step") && dom.contains("<svg"),
        "no schedule"
    );
    assert!(!dom.contains("id=\"no-dumps\""));
    // Sudoku replays as 4 x 4 grids with its 2 x 2 boxes drawn.
    assert_eq!(dom.matches("class=\"canvas grid\"").count(), 4, "{dom}");
    assert!(dom.contains("box-right") && dom.contains("box-below"));
    // The frontier: a panel per quality metric (solved, d1_cell_accuracy,
    // valid_cells), the fixed sampler among its curves.
    let frontier = section(&dom, "id=\"frontier-panels\"", "id=\"curves\"");
    assert_eq!(frontier.matches("<svg").count(), 3, "{frontier}");
    assert!(frontier.contains("first_hitting"), "{frontier}");
    // The smoothing control and the validation curves beside the training
    // curves (validated at iterations 2 and 4, T = 2 and 4).
    assert!(dom.contains("id=\"smoothing\""));
    let validation = section(&dom, "id=\"validation-panels\"", "id=\"schedule\"");
    assert!(
        validation.contains("d1_cell_accuracy@2") && validation.contains("valid_cells@4"),
        "{validation}"
    );

    // A screenshot of the requested size with ink on it.
    let shot = tmp.path().join("view.png");
    let o = chromium(
        &tmp.path().join("p2"),
        &[
            "--window-size=1000,800",
            &format!("--screenshot={}", shot.display()),
            &url,
        ],
    );
    assert!(shot.is_file(), "no screenshot: {}", text(&o));
    let decoder = png::Decoder::new(std::io::BufReader::new(std::fs::File::open(&shot).unwrap()));
    let mut reader = decoder.read_info().unwrap();
    let mut buf = vec![0; reader.output_buffer_size().unwrap()];
    let info = reader.next_frame(&mut buf).unwrap();
    assert_eq!((info.width, info.height), (1000, 800));
    let px = info.color_type.samples();
    let inked = buf[..info.buffer_size()]
        .chunks(px)
        .filter(|p| p[..3].iter().any(|&c| c < 200))
        .count();
    let share = inked as f64 / (1000.0 * 800.0);
    assert!(
        share > 0.01,
        "the screenshot is nearly blank ({share:.4} inked)"
    );

    // A run without dumps says so.
    let bare = tmp.path().join("bare");
    std::fs::create_dir_all(&bare).unwrap();
    std::fs::copy(dir.join("report.json"), bare.join("report.json")).unwrap();
    run_ok(&["view", bare.to_str().unwrap()]);
    let url = format!("file://{}", bare.join("view.html").display());
    let o = chromium(&tmp.path().join("p3"), &["--dump-dom", &url]);
    let dom = String::from_utf8_lossy(&o.stdout);
    assert!(
        dom.contains("id=\"no-dumps\"") && dom.contains("no rollout dumps"),
        "{dom}"
    );
    assert!(
        dom.contains("<td><span class=\"swatch\""),
        "the evaluation table still shows"
    );
}

#[test]
#[cfg_attr(
    not(has_tensorboard),
    ignore = "needs Python's tensorboard (pip install tensorboard)"
)]
fn tensorboard_reads_back_the_text_and_scalars() {
    let dir = run();
    let o = Command::new("python3")
        .arg(Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/tensorboard_readback.py"))
        .arg(dir)
        .output()
        .unwrap();
    assert!(o.status.success(), "{}", text(&o));
    // The README's one-liner reads the dumps.
    let dump = dumps::path(dir, "alternate");
    let o = Command::new("python3")
        .args([
            "-c",
            &format!(
                "import gzip, json; r = [json.loads(l) for l in gzip.open('{}')]; print(len(r), r[0]['completion'])",
                dump.display()
            ),
        ])
        .output()
        .unwrap();
    assert!(o.status.success(), "{}", text(&o));
    let n = dumps::read(&dump).unwrap().len();
    assert!(text(&o).starts_with(&format!("{n} ")), "{}", text(&o));
}

#[test]
fn run_says_its_plan_quiet_keeps_only_results_and_completions_print() {
    let tmp = tempfile::tempdir().unwrap();
    let cfg = "experiments/smoke/sudoku4.toml";
    let dir = tmp.path().join("a");
    let o = run_ok(&["run", "-c", cfg, "--set", &set_out(&dir)]);
    let said = String::from_utf8_lossy(&o.stderr);
    // The plan `check` prints, the output folder and how to watch it.
    assert!(
        said.contains("  model     ") && said.contains("  pretrain  "),
        "{said}"
    );
    assert!(
        said.contains(&format!(
            "watch     tensorboard --logdir {}",
            dir.join("tb").display()
        )),
        "{said}"
    );
    assert!(said.contains("step "), "progress lines by default: {said}");

    let dir = tmp.path().join("b");
    let o = run_ok(&["-q", "run", "-c", cfg, "--set", &set_out(&dir)]);
    let said = String::from_utf8_lossy(&o.stderr);
    assert!(
        said.trim().is_empty(),
        "-q leaves only warnings and errors: {said}"
    );
    // Results still go to stdout.
    assert!(
        String::from_utf8_lossy(&o.stdout).contains("solved"),
        "{}",
        text(&o)
    );

    let o = run_ok(&["completions", "bash"]);
    let script = String::from_utf8_lossy(&o.stdout);
    assert!(
        script.contains("_cogrpo()") && script.contains("samples"),
        "{script}"
    );
}
