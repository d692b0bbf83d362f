//! The binary under hostile conditions (issue 15): two writers on one run
//! directory, damaged checkpoints, bad inputs. Each test names what it
//! guarantees; README's "Reliability" section lists them.

use std::path::Path;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

#[path = "reliability/bounded.rs"]
mod bounded;
mod common;
use common::{cogrpo, run_fails_saying, run_ok, run_ok_saying, set_out, text};

#[test]
fn a_second_writer_on_a_run_directory_is_refused_naming_the_first() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("run");
    let out = set_out(&dir);
    let config = "experiments/smoke/sudoku4.toml";
    let mut first = Command::new(env!("CARGO_BIN_EXE_cogrpo"))
        .args([
            "pretrain",
            "-c",
            config,
            "--set",
            &out,
            "--set",
            "pretrain.steps=1000000",
        ])
        .current_dir(env!("CARGO_MANIFEST_DIR"))
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    // Wait until the first has taken the lock and described itself.
    let lock = dir.join("lock");
    let started = Instant::now();
    while !std::fs::read_to_string(&lock).is_ok_and(|t| t.starts_with("pid ")) {
        assert!(
            started.elapsed() < Duration::from_secs(120),
            "the first writer never took the lock"
        );
        std::thread::sleep(Duration::from_millis(50));
    }
    let second = cogrpo(&[
        "pretrain",
        "-c",
        config,
        "--set",
        &out,
        "--set",
        "pretrain.steps=2",
    ]);
    let said = text(&second);
    first.kill().unwrap();
    first.wait().unwrap();
    assert!(!second.status.success(), "{said}");
    assert!(
        said.contains("in use by another process") && said.contains(&format!("pid {}", first.id())),
        "{said}"
    );
    // The lock dies with its holder: a killed run leaves no stale lock.
    let third = cogrpo(&[
        "pretrain",
        "-c",
        config,
        "--set",
        &out,
        "--set",
        "pretrain.steps=2",
        "--resume",
    ]);
    assert!(!text(&third).contains("in use"), "{}", text(&third));
}

/// Flips four bytes in the middle of `path`.
fn flip_bytes(path: &Path) {
    let mut bytes = std::fs::read(path).unwrap();
    let mid = bytes.len() / 2;
    for b in &mut bytes[mid..mid + 4] {
        *b ^= 0xa5;
    }
    std::fs::write(path, bytes).unwrap();
}

#[test]
fn a_damaged_checkpoint_is_refused_by_name_and_resume_falls_back_to_the_previous_good_one() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("run");
    let out = set_out(&dir);
    let config = "experiments/smoke/sudoku4.toml";
    run_ok(&["pretrain", "-c", config, "--set", &out]);
    let ckpts = dir.join("checkpoints");
    let (older, newest) = (ckpts.join("step-00000003"), ckpts.join("step-00000006"));
    assert!(newest.join("checksums.sha256").is_file());

    let eval = |dir: &Path| {
        let dir = dir.to_str().unwrap();
        let o = cogrpo(&["eval", "-c", config, "--set", &out, "--checkpoint", dir]);
        (o.status.code(), text(&o))
    };
    for file in ["model.safetensors", "optimizer.mpk"] {
        let damaged = tmp.path().join(format!("damaged-{file}"));
        copy_dir(&newest, &damaged);
        flip_bytes(&damaged.join(file));
        let (code, said) = eval(&damaged);
        assert_eq!(code, Some(2), "{said}");
        assert!(
            said.contains(&format!("{file} does not match its checksum")),
            "{said}"
        );
    }
    flip_bytes(&newest.join("model.safetensors"));
    let (code, said) = eval(&newest);
    assert_eq!(code, Some(2), "{said}");
    let previous = format!("the previous good checkpoint is {}", older.display());
    assert!(said.contains(&previous), "{said}");

    // What a killed writer leaves behind is swept by the next one.
    std::fs::create_dir(ckpts.join("step-00000009.partial-99999")).unwrap();
    std::fs::write(ckpts.join("latest.tmp-99999"), "x").unwrap();
    let said = text(&run_ok(&[
        "pretrain", "-c", config, "--set", &out, "--resume",
    ]));
    assert!(
        said.contains("trying the checkpoint before it") && said.contains("step 3"),
        "{said}"
    );
    assert!(!ckpts.join("step-00000009.partial-99999").exists());
    assert!(!ckpts.join("latest.tmp-99999").exists());
    let (code, said) = eval(&newest);
    assert_eq!(code, Some(0), "the rewritten step 6 verifies: {said}");
}

#[test]
fn resuming_under_a_changed_training_config_names_the_keys_unless_allowed() {
    let tmp = tempfile::tempdir().unwrap();
    let out = set_out(&tmp.path().join("run"));
    let config = "experiments/smoke/sudoku4.toml";
    let first_run = [
        "pretrain",
        "-c",
        config,
        "--set",
        &out,
        "--set",
        "pretrain.steps=3",
        "--set",
        "pretrain.warmup_steps=1",
    ];
    run_ok(&first_run);
    let base = [&first_run[..], &["--resume"]].concat();
    let changed = [
        &base[..],
        &["--set", "pretrain.lr=0.5", "--set", "pretrain.batch_size=4"],
    ]
    .concat();
    run_fails_saying(&changed, 2, "pretrain.batch_size, pretrain.lr changed");
    // Logging keys may change freely.
    run_ok(&[&base[..], &["--set", "pretrain.log_every=1"]].concat());
    run_ok_saying(
        &[&changed[..], &["--allow-config-change"]].concat(),
        "--allow-config-change",
    );
}

fn copy_dir(from: &Path, to: &Path) {
    std::fs::create_dir_all(to).unwrap();
    for e in std::fs::read_dir(from).unwrap() {
        let e = e.unwrap();
        std::fs::copy(e.path(), to.join(e.file_name())).unwrap();
    }
}

/// The flaky reward plugin of the rewards crate (built by `cargo test
/// --workspace`, which builds every package's binaries first).
fn fixture_plugin() -> String {
    let exe = Path::new(env!("CARGO_BIN_EXE_cogrpo")).with_file_name("cogrpo-reward-fixture");
    assert!(
        exe.is_file(),
        "{} is missing: run the suite with `cargo test --workspace` (or `cargo build -p rewards \
         --bins` first)",
        exe.display()
    );
    exe.display().to_string()
}

/// `[[rewards.terms]]` for the fixture plugin with `env` and `timeout_s`.
fn plugin_term(env: &str, timeout_s: f64) -> String {
    format!(
        "[[rewards.terms]]\nkind = \"subprocess\"\nname = \"flaky\"\ncommand = [\"{}\"]\n\
         timeout_s = {timeout_s}\nenv = {{ {env} }}\n",
        fixture_plugin()
    )
}

fn arm_state(dir: &Path) -> serde_json::Value {
    let ckpts = dir.join("arms/alternate/checkpoints");
    let latest = std::fs::read_to_string(ckpts.join("latest")).unwrap();
    serde_json::from_slice(&std::fs::read(ckpts.join(latest.trim()).join("state.json")).unwrap())
        .unwrap()
}

#[test]
fn a_flaky_plugin_never_stops_a_300_iteration_run_and_a_stopped_run_resumes_after_a_fix() {
    let tmp = tempfile::tempdir().unwrap();
    let smoke = std::fs::read_to_string(
        Path::new(env!("CARGO_MANIFEST_DIR")).join("experiments/smoke/sudoku4-cogrpo.toml"),
    )
    .unwrap();
    let write = |name: &str, term: &str| {
        let path = tmp.path().join(name);
        std::fs::write(&path, format!("{smoke}\n{term}")).unwrap();
        path.display().to_string()
    };
    let dir = tmp.path().join("run");
    let out = set_out(&dir);
    run_ok(&[
        "pretrain",
        "-c",
        "experiments/smoke/sudoku4-cogrpo.toml",
        "--set",
        &out,
    ]);
    let ckpt = dir.join("checkpoints/step-00000020").display().to_string();

    // 10% of requests fail, in ten ways; 300 iterations of 2 x 4 rollouts.
    let flaky = write(
        "flaky.toml",
        &plugin_term(
            "COGRPO_FIXTURE_FAULT_RATE = \"0.1\", COGRPO_FIXTURE_SEED = \"3\"",
            1.0,
        ),
    );
    let train = |config: &str, iterations: &str, extra: &[&str]| {
        let args = [
            &[
                "train",
                "-c",
                config,
                "--set",
                &out,
                "--arm",
                "alternate",
                "--checkpoint",
                &ckpt,
            ][..],
            &["--set", iterations, "--set", "cogrpo.checkpoint_every=50"],
            extra,
        ]
        .concat();
        cogrpo(&args)
    };
    let o = train(&flaky, "cogrpo.iterations=300", &[]);
    let said = text(&o);
    assert!(o.status.success(), "{said}");
    assert!(
        said.contains("reward `flaky`:") && said.contains("flaky restarts"),
        "{said}"
    );
    // The budget counts scored rollouts: 2400 drawn, less the items the
    // console said failed ("reward `flaky`: K of 8 items failed").
    let failed: u64 = said
        .split("reward `flaky`: ")
        .skip(1)
        .map(|rest| {
            rest.split(' ')
                .next()
                .and_then(|k| k.parse::<u64>().ok())
                .unwrap_or(0)
        })
        .sum();
    assert!(failed > 0, "{said}");
    let state = arm_state(&dir);
    assert_eq!(
        (state["iteration"].as_u64(), state["rollouts"].as_u64()),
        (Some(300), Some(2400 - failed))
    );

    // A plugin slower than its timeout fails every request: the run stops
    // at once with a checkpoint, counting no rollouts of the stopped
    // iteration; with the timeout fixed it resumes (a transport setting
    // may change) and ends with exactly the budget.
    let dir2 = tmp.path().join("run2");
    let out2 = set_out(&dir2);
    let slow = |timeout: f64| {
        write(
            &format!("slow-{timeout}.toml"),
            &plugin_term("COGRPO_FIXTURE_DELAY_S = \"0.3\"", timeout),
        )
    };
    let run2 = |config: &str, extra: &[&str]| {
        let args = [
            &[
                "train",
                "-c",
                config,
                "--set",
                &out2,
                "--arm",
                "alternate",
                "--checkpoint",
                &ckpt,
            ][..],
            &["--set", "cogrpo.iterations=3"],
            extra,
        ]
        .concat();
        cogrpo(&args)
    };
    let o = run2(&slow(0.05), &[]);
    assert!(!o.status.success(), "{}", text(&o));
    assert!(
        text(&o).contains("stopped") && text(&o).contains("timeout"),
        "{}",
        text(&o)
    );
    let o = run2(&slow(5.0), &["--resume"]);
    assert!(o.status.success(), "{}", text(&o));
    let ckpts = dir2.join("arms/alternate/checkpoints");
    let latest = std::fs::read_to_string(ckpts.join("latest")).unwrap();
    let state: serde_json::Value = serde_json::from_slice(
        &std::fs::read(ckpts.join(latest.trim()).join("state.json")).unwrap(),
    )
    .unwrap();
    assert_eq!(
        (state["iteration"].as_u64(), state["rollouts"].as_u64()),
        (Some(3), Some(24))
    );
}
