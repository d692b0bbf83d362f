//! Issue 37, the last findings of fault injection: no read of a device or
//! FIFO, no work size that never finishes, TensorBoard with every step once
//! after a kill, write errors that name the OS error, the device the build
//! lacks refused by `check`, and state values past the config's bounds
//! refused. (An HTTP error reply under 503 is not retried: the rewards
//! crate's `http_plugin_batches_retries_and_reports_every_failure_kind`.)

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use protobuf::Message;
use sha2::Digest;
use tensorboard_proto::event::Event;

use crate::common::{run_fails_saying, run_ok, run_ok_saying, set_out, text};

const SMOKE: &str = "experiments/smoke/sudoku4.toml";

#[test]
#[cfg(unix)]
fn devices_fifos_and_folders_where_a_file_belongs_are_refused_at_once() {
    let tmp = tempfile::tempdir().unwrap();
    let fifo = tmp.path().join("fifo");
    let made = Command::new("mkfifo").arg(&fifo).status().unwrap();
    assert!(made.success());
    let folder = tmp.path().to_str().unwrap();
    let fifo = fifo.to_str().unwrap();
    for config in ["/dev/zero", fifo, folder] {
        run_fails_saying(&["check", "-c", config], 2, "not a regular file");
    }
    // Before this, `eval --checkpoint /dev/zero` read the device until the
    // OOM killer came; a FIFO blocked for ever.
    for checkpoint in ["/dev/zero", fifo] {
        let said = run_fails_saying(
            &["eval", "-c", SMOKE, "--checkpoint", checkpoint],
            2,
            "not a regular file",
        );
        assert!(said.contains(checkpoint), "{said}");
    }
}

#[test]
fn work_sizes_past_their_caps_are_refused_naming_the_key_and_check_says_the_work() {
    let cases = [
        ("eval.steps=[100000000]", "`eval.steps`"),
        ("eval.steps=[9223372036854775807]", "`eval.steps`"),
        ("eval.nll_samples=9223372036854775807", "`eval.nll_samples`"),
        ("eval.samplers.0.steps=1048577", "`eval.samplers[0].steps`"),
    ];
    for (set, key) in cases {
        let said = run_fails_saying(&["check", "-c", SMOKE, "--set", set], 2, key);
        assert!(
            said.contains("1048576") || said.contains("0..=4096"),
            "{said}"
        );
    }
    let sampler = [
        "check",
        "-c",
        SMOKE,
        "--set",
        "sampler.kind=\"confidence\"",
        "--set",
        "sampler.steps=9223372036854775807",
    ];
    run_fails_saying(&sampler, 2, "`sampler.steps`");
    // At the caps, accepted: the work is said. Smoke: 40 examples at 4
    // sweep points (1 + 16 + 1 + 16 forwards a batch of 40) and 2 ELBO
    // samples (80 rows, 2 forwards).
    run_ok_saying(
        &["check", "-c", SMOKE],
        "evaluation 240 rows, at most 36 batched forwards",
    );
    let at_caps = run_ok(&[
        "check",
        "-c",
        SMOKE,
        "--set",
        "eval.steps=[1048576]",
        "--set",
        "eval.nll_samples=4096",
    ]);
    // Steps past the answer length cost no forward: 2 samplers x 16 +
    // 4096 ELBO samples of one 40-row batch.
    assert!(
        text(&at_caps).contains("at most 4128 batched forwards"),
        "{}",
        text(&at_caps)
    );
}

#[test]
#[cfg_attr(
    feature = "cuda",
    ignore = "this build has CUDA: the refusal is for builds without it"
)]
fn check_refuses_cuda_on_a_build_without_it_as_pretrain_does() {
    let check = ["check", "-c", SMOKE, "--set", "run.device=\"cuda\""];
    run_fails_saying(&check, 2, "built without CUDA support");
    let tmp = tempfile::tempdir().unwrap();
    let out = set_out(&tmp.path().join("run"));
    let pretrain = ["pretrain", "-c", SMOKE, "--device", "cuda", "--set", &out];
    run_fails_saying(&pretrain, 2, "--features cuda");
}

/// Every event of every file in `dir`: (tag, step) -> how many times.
fn event_counts(dir: &Path) -> BTreeMap<(String, i64), usize> {
    let mut counts = BTreeMap::new();
    for entry in std::fs::read_dir(dir).unwrap() {
        let path = entry.unwrap().path();
        if !path.is_file() {
            continue;
        }
        let bytes = std::fs::read(&path).unwrap();
        let mut at = 0;
        while at + 12 <= bytes.len() {
            let len = u64::from_le_bytes(bytes[at..at + 8].try_into().unwrap()) as usize;
            let event = Event::parse_from_bytes(&bytes[at + 12..at + 12 + len]).unwrap();
            for value in event.get_summary().get_value() {
                let key = (value.get_tag().to_string(), event.get_step());
                *counts.entry(key).or_default() += 1;
            }
            at += 12 + len + 4;
        }
        assert_eq!(at, bytes.len(), "{} ends in a torn record", path.display());
    }
    counts
}

/// Waits (up to 60 s) until an event of a step after `step` is on disk in
/// `dir`, reading while the writer writes (a torn last record is not yet
/// there).
fn wait_for_events_past(dir: &Path, step: i64) {
    let past = || -> bool {
        let Ok(entries) = std::fs::read_dir(dir) else {
            return false;
        };
        entries.flatten().any(|entry| {
            let bytes = std::fs::read(entry.path()).unwrap_or_default();
            let mut at = 0;
            while at + 12 <= bytes.len() {
                let len = u64::from_le_bytes(bytes[at..at + 8].try_into().unwrap()) as usize;
                let Some(record) = bytes.get(at + 12..at + 12 + len) else {
                    return false;
                };
                match Event::parse_from_bytes(record) {
                    Ok(e) if e.get_step() > step => return true,
                    Ok(_) => at += 12 + len + 4,
                    Err(_) => return false,
                }
            }
            false
        })
    };
    let start = std::time::Instant::now();
    while !past() {
        assert!(
            start.elapsed() < Duration::from_secs(60),
            "no event after step {step} reached {} in 60 s",
            dir.display()
        );
        std::thread::sleep(Duration::from_millis(20));
    }
}

/// The step of the checkpoint `latest` names in `ckpts`, once there is one
/// at `at_least` or later.
fn wait_for_checkpoint(ckpts: &Path, at_least: usize) -> usize {
    let started = Instant::now();
    loop {
        let step = std::fs::read_to_string(ckpts.join("latest"))
            .ok()
            .and_then(|n| n.trim().strip_prefix("step-")?.parse().ok());
        if let Some(step) = step.filter(|&s| s >= at_least) {
            return step;
        }
        assert!(
            started.elapsed() < Duration::from_secs(120),
            "no checkpoint"
        );
        std::thread::sleep(Duration::from_millis(5));
    }
}

#[test]
fn after_kill_9_between_checkpoints_and_a_resume_tensorboard_has_every_step_once() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("run");
    let out = set_out(&dir);
    let long = [
        "pretrain",
        "-c",
        SMOKE,
        "--set",
        &out,
        "--set",
        "pretrain.steps=1000000",
        "--set",
        "pretrain.checkpoint_every=200",
    ];
    let mut first = Command::new(env!("CARGO_BIN_EXE_cogrpo"))
        .args(long)
        .current_dir(env!("CARGO_MANIFEST_DIR"))
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let checkpointed = wait_for_checkpoint(&dir.join("checkpoints"), 200);
    // Past the checkpoint, short of the next: some events flushed, some not
    // (waiting for them on disk rather than for a fixed time, which a
    // loaded machine may not reach).
    wait_for_events_past(&dir.join("tb"), checkpointed as i64);
    first.kill().unwrap(); // SIGKILL
    first.wait().unwrap();
    let resumed_at = wait_for_checkpoint(&dir.join("checkpoints"), 200);
    let end = resumed_at + 150;
    let steps = format!("pretrain.steps={end}");
    let resume = [
        "pretrain",
        "-c",
        SMOKE,
        "--set",
        &out,
        "--set",
        &steps,
        "--set",
        "pretrain.checkpoint_every=200",
        "--resume",
    ];
    let said = run_ok_saying(&resume, &format!("at step {resumed_at} ("));
    assert!(said.contains("TensorBoard: dropped"), "{said}");

    let counts = event_counts(&dir.join("tb"));
    let loss: Vec<i64> = counts
        .iter()
        .filter(|((tag, _), _)| tag == "pretrain/loss")
        .map(|((_, step), &n)| {
            assert_eq!(n, 1, "pretrain/loss at step {step} is logged {n} times");
            *step
        })
        .collect();
    assert_eq!(
        loss,
        (1..=end as i64).collect::<Vec<_>>(),
        "every step, once"
    );
    let hparams = counts
        .iter()
        .filter(|((tag, _), _)| tag.starts_with("_hparams_"))
        .map(|(_, n)| n)
        .sum::<usize>();
    assert_eq!(hparams, 1, "one hyperparameter record");
}

/// A small file-size limit (bash's `ulimit -f`, in KiB; SIGXFSZ ignored so that
/// the write fails with EFBIG instead of killing the process) around
/// `cogrpo args`.
#[cfg(unix)]
fn cogrpo_with_file_limit(kib: usize, args: &[&str]) -> std::process::Output {
    let script = format!("trap '' XFSZ; ulimit -f {kib}; exec \"$0\" \"$@\"");
    Command::new("bash")
        .arg("-c")
        .arg(script)
        .arg(env!("CARGO_BIN_EXE_cogrpo"))
        .args(args)
        .current_dir(env!("CARGO_MANIFEST_DIR"))
        .output()
        .unwrap()
}

#[test]
#[cfg(unix)]
fn a_checkpoint_write_that_fails_names_the_file_and_the_os_error_and_loses_nothing() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("run");
    let out = set_out(&dir);
    run_ok(&["pretrain", "-c", SMOKE, "--set", &out]);
    // 60 KiB: the weights (43 KB) fit, the optimizer's moments (86 KB) do not.
    let args = pretrain_resume(&out, "pretrain.steps=9");
    let o = cogrpo_with_file_limit(60, &args);
    let said = text(&o);
    assert!(!o.status.success(), "{said}");
    assert!(
        said.contains("optimizer.mpk") && said.contains("os error 27"),
        "the OS error (EFBIG, as ENOSPC on a full disk) is named: {said}"
    );
    assert!(!said.contains("MessagePack"), "{said}");
    // The checkpoint before the failure is whole, and the run continues.
    let step6 = dir.join("checkpoints/step-00000006");
    let eval = [
        "eval",
        "-c",
        SMOKE,
        "--set",
        &out,
        "--checkpoint",
        step6.to_str().unwrap(),
    ];
    run_ok(&eval);
    run_ok_saying(&args, "at step 6 (");
}

/// `pretrain --resume` of the smoke config into `out` with `steps`.
fn pretrain_resume<'a>(out: &'a str, steps: &'a str) -> [&'a str; 8] {
    [
        "pretrain", "-c", SMOKE, "--set", out, "--set", steps, "--resume",
    ]
}

/// Sets `state.json`'s `key` to `value` in checkpoint `dir` and writes
/// its checksum again, as someone editing a checkpoint by hand would.
fn edit_state(dir: &Path, key: &str, value: serde_json::Value) {
    let path = dir.join("state.json");
    let mut state: serde_json::Value =
        serde_json::from_slice(&std::fs::read(&path).unwrap()).unwrap();
    state[key] = value;
    let bytes = serde_json::to_vec_pretty(&state).unwrap();
    std::fs::write(&path, &bytes).unwrap();
    let digest: String = sha2::Sha256::digest(&bytes)
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect();
    let sums = dir.join("checksums.sha256");
    let rehashed: String = std::fs::read_to_string(&sums)
        .unwrap()
        .lines()
        .map(|l| match l.ends_with("  state.json") {
            true => format!("{digest}  state.json\n"),
            false => format!("{l}\n"),
        })
        .collect();
    std::fs::write(sums, rehashed).unwrap();
}

#[test]
fn state_values_past_the_configs_bounds_are_refused_like_a_damaged_file() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("run");
    let out = set_out(&dir);
    run_ok(&["pretrain", "-c", SMOKE, "--set", &out]);
    let resume = pretrain_resume(&out, "pretrain.steps=12");
    let newest: PathBuf = dir.join("checkpoints/step-00000006");
    let pristine = std::fs::read(newest.join("state.json")).unwrap();
    let sums = std::fs::read(newest.join("checksums.sha256")).unwrap();
    let cases = [
        (
            "step",
            serde_json::json!(u64::MAX),
            "records step 18446744073709551615",
        ),
        (
            "step",
            serde_json::json!(3),
            "records step 3, but the folder is",
        ),
        ("wall_s", serde_json::json!(-1.0), "records wall_s = -1"),
        ("ranks", serde_json::json!(0), "records ranks = 0"),
    ];
    for (key, value, says) in cases {
        edit_state(&newest, key, value);
        let said = run_fails_saying(&resume, 2, says);
        assert!(said.contains("state.json"), "{said}");
        std::fs::write(newest.join("state.json"), &pristine).unwrap();
        std::fs::write(newest.join("checksums.sha256"), &sums).unwrap();
    }
    // A checkpoint past the run's length: refused, naming how to go on.
    let shorter = pretrain_resume(&out, "pretrain.steps=4");
    run_fails_saying(&shorter, 2, "past this run's 4 steps");
    run_ok_saying(&resume, "at step 6 (");
}
