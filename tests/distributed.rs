//! Data-parallel training across processes (issue 19's definition of
//! done): two processes on 127.0.0.1 train as one process with the same
//! global batch, bit for bit; a rank that dies stops the other with its
//! name; a checkpoint refuses to resume on another number of ranks.

mod common;

use std::collections::BTreeMap;
use std::net::TcpListener;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use common::{run_fails_saying, run_ok, set_out};

const CONFIG: &str = "tests/distributed.toml";

/// A base port with the three above it free (control, orchestrator and
/// one tensor service per node).
fn free_ports(count: u16) -> u16 {
    // Below Linux's ephemeral range (32768-60999), so that no outgoing
    // connection (of the test running beside this one) can take a port
    // between this check and the rank's bind.
    use rand::Rng;
    let mut rng = rand::rng();
    for _ in 0..200 {
        let base = rng.random_range(20000..32000);
        if (0..count).all(|i| TcpListener::bind(("0.0.0.0", base + i)).is_ok()) {
            return base;
        }
    }
    panic!("no {count} consecutive free ports");
}

/// `cogrpo <args> --nodes 2 --node-rank <rank>` with output to files.
fn spawn_rank(args: &[&str], rank: usize, port: u16, log: &Path) -> Child {
    let out = std::fs::File::create(log).expect("log file");
    Command::new(env!("CARGO_BIN_EXE_cogrpo"))
        .args(args)
        .args(["--nodes", "2", "--node-rank", &rank.to_string()])
        .args(["--coordinator", &format!("127.0.0.1:{port}")])
        .current_dir(env!("CARGO_MANIFEST_DIR"))
        .stdout(out.try_clone().expect("log file"))
        .stderr(out)
        .stdin(Stdio::null())
        .spawn()
        .expect("the binary starts")
}

/// Waits for `child` for at most `limit`; kills it past that.
fn wait_for(child: &mut Child, limit: Duration) -> Option<i32> {
    let start = Instant::now();
    while start.elapsed() < limit {
        if let Some(status) = child.try_wait().expect("waitable") {
            return status.code();
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    let _ = child.kill();
    None
}

fn read(path: &Path) -> String {
    std::fs::read_to_string(path).unwrap_or_default()
}

fn bytes(run: &Path, file: &str) -> Vec<u8> {
    std::fs::read(run.join(file)).unwrap_or_else(|e| panic!("{}: {e}", run.join(file).display()))
}

/// A safetensors file's tensors: name -> raw little-endian bytes (the
/// header's metadata map is written in no fixed order, so files of equal
/// tensors may differ byte for byte).
fn tensors(run: &Path, file: &str) -> BTreeMap<String, Vec<u8>> {
    let b = bytes(run, file);
    let n = u64::from_le_bytes(b[..8].try_into().expect("8 bytes")) as usize;
    let header: BTreeMap<String, serde_json::Value> =
        serde_json::from_slice(&b[8..8 + n]).expect("a safetensors header");
    let data = &b[8 + n..];
    header
        .into_iter()
        .filter(|(k, _)| k != "__metadata__")
        .map(|(k, v)| {
            let at = |i: usize| v["data_offsets"][i].as_u64().expect("offsets") as usize;
            (k, data[at(0)..at(1)].to_vec())
        })
        .collect()
}

#[test]
fn two_processes_train_bit_for_bit_as_one_process_on_two_threads() {
    let tmp = tempfile::tempdir().expect("temp dir");
    let single: PathBuf = tmp.path().join("single");
    let dist: PathBuf = tmp.path().join("dist");

    // One process, the global batch split over two threads.
    run_ok(&[
        "run",
        "-c",
        CONFIG,
        "--set",
        &set_out(&single),
        "--set",
        "run.threads=2",
    ]);

    // Two processes of one thread, the global batch split over the two.
    let port = free_ports(4);
    let out = set_out(&dist);
    let args = ["run", "-c", CONFIG, "--set", &out, "--set", "run.threads=1"];
    let logs = [tmp.path().join("rank0.log"), tmp.path().join("rank1.log")];
    let mut rank1 = spawn_rank(&args, 1, port, &logs[1]);
    let mut rank0 = spawn_rank(&args, 0, port, &logs[0]);
    let limit = Duration::from_secs(600);
    let (c0, c1) = (wait_for(&mut rank0, limit), wait_for(&mut rank1, limit));
    let (log0, log1) = (read(&logs[0]), read(&logs[1]));
    assert_eq!(c0, Some(0), "rank 0:\n{log0}\nrank 1:\n{log1}");
    assert_eq!(c1, Some(0), "rank 1:\n{log1}");

    // The pre-trained model, and the arm's model and schedule policy after
    // three Co-GRPO iterations (each stepped by the optimizer from the
    // summed gradients): bit for bit.
    for file in [
        "checkpoints/step-00000006/model.safetensors",
        "arms/joint/checkpoints/step-00000003/model.safetensors",
    ] {
        let (a, b) = (tensors(&single, file), tensors(&dist, file));
        assert_eq!(a.len(), 21, "{file}: every weight");
        for (name, t) in &a {
            assert!(b.get(name) == Some(t), "{file}: `{name}` differs");
        }
    }
    assert!(
        tensors(&dist, "checkpoints/step-00000006/model.safetensors")
            != tensors(
                &dist,
                "arms/joint/checkpoints/step-00000003/model.safetensors"
            ),
        "Co-GRPO moved the model"
    );
    let file = "arms/joint/checkpoints/step-00000003/schedule.mpk";
    assert!(bytes(&single, file) == bytes(&dist, file), "{file} differs");
    // One process with two ranks (`--devices 2`: burn-collective's local
    // all-reduce between two replicas) sums the same way.
    let local = tmp.path().join("local");
    run_ok(&[
        "run",
        "-c",
        CONFIG,
        "--set",
        &set_out(&local),
        "--set",
        "run.threads=1",
        "--devices",
        "2",
    ]);
    let file = "arms/joint/checkpoints/step-00000003/model.safetensors";
    assert!(
        tensors(&single, file) == tensors(&local, file),
        "--devices 2: {file} differs"
    );

    // Rank 0 reports; rank 1 only computes.
    assert!(log0.contains("report:"), "{log0}");
    assert!(
        !log1.contains("report:") && !log1.contains("pre-trained"),
        "{log1}"
    );

    // The checkpoint of two ranks does not resume on one.
    run_fails_saying(
        &[
            "pretrain",
            "-c",
            CONFIG,
            "--set",
            &out,
            "--set",
            "pretrain.steps=8",
            "--resume",
        ],
        2,
        "written by a run of 2 rank(s); this one has 1",
    );

    // On two ranks it resumes, as one process on two threads does.
    let more = "pretrain.steps=8";
    run_ok(&[
        "pretrain",
        "-c",
        CONFIG,
        "--set",
        &set_out(&single),
        "--set",
        "run.threads=2",
        "--set",
        more,
        "--resume",
    ]);
    let port = free_ports(4);
    let args = [
        "pretrain",
        "-c",
        CONFIG,
        "--set",
        &out,
        "--set",
        "run.threads=1",
        "--set",
        more,
        "--resume",
    ];
    let mut rank1 = spawn_rank(&args, 1, port, &logs[1]);
    let mut rank0 = spawn_rank(&args, 0, port, &logs[0]);
    let (c0, c1) = (wait_for(&mut rank0, limit), wait_for(&mut rank1, limit));
    assert_eq!(
        (c0, c1),
        (Some(0), Some(0)),
        "{}\n{}",
        read(&logs[0]),
        read(&logs[1])
    );
    let file = "checkpoints/step-00000008/model.safetensors";
    assert!(
        tensors(&single, file) == tensors(&dist, file),
        "resumed: {file} differs"
    );
}

#[test]
fn a_killed_rank_stops_the_other_within_60_s_naming_it() {
    let tmp = tempfile::tempdir().expect("temp dir");
    let run = tmp.path().join("run");
    let port = free_ports(4);
    let out = set_out(&run);
    let args = [
        "pretrain",
        "-c",
        CONFIG,
        "--set",
        &out,
        "--set",
        "run.threads=1",
        "--set",
        "pretrain.steps=1000000",
        "--set",
        "pretrain.log_every=5",
        "--set",
        "pretrain.checkpoint_every=5",
    ];
    let logs = [tmp.path().join("rank0.log"), tmp.path().join("rank1.log")];
    let mut rank0 = spawn_rank(&args, 0, port, &logs[0]);
    let mut rank1 = spawn_rank(&args, 1, port, &logs[1]);
    // Until the ranks train together (rank 0 logs its steps).
    let start = Instant::now();
    while !read(&logs[0]).contains("step     10/") {
        assert!(
            start.elapsed() < Duration::from_secs(300),
            "no training after 300 s:\n{}\n{}",
            read(&logs[0]),
            read(&logs[1])
        );
        assert!(
            rank0.try_wait().expect("waitable").is_none(),
            "{}",
            read(&logs[0])
        );
        std::thread::sleep(Duration::from_millis(50));
    }
    rank1.kill().expect("rank 1 is killed");
    let _ = rank1.wait();
    let killed = Instant::now();
    let code = wait_for(&mut rank0, Duration::from_secs(60));
    let log0 = read(&logs[0]);
    assert!(
        code.is_some(),
        "rank 0 still runs 60 s after rank 1 died:\n{log0}"
    );
    assert_eq!(code, Some(3), "{log0}");
    assert!(log0.contains("rank 1 was lost"), "{log0}");
    eprintln!(
        "rank 0 stopped {:?} after rank 1 was killed",
        killed.elapsed()
    );
    // Whatever rank 0 wrote is whole: no partial checkpoint, and the newest
    // one verifies (a resume on two ranks would start from it).
    let ckpts = run.join("checkpoints");
    let names: Vec<String> = std::fs::read_dir(&ckpts)
        .expect("checkpoints were written")
        .map(|e| e.expect("entry").file_name().to_string_lossy().into_owned())
        .collect();
    assert!(names.iter().all(|n| !n.contains("partial")), "{names:?}");
    assert!(names.iter().any(|n| n.starts_with("step-")), "{names:?}");
}
