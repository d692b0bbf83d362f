//! What the binary's end-to-end tests share: run `cogrpo`, read what it said.
#![allow(dead_code)]

use std::path::{Path, PathBuf};
use std::process::{Command, Output};

/// LLaDA-8B-Instruct's published `config.json`, its shape keys.
pub const LLADA_8B_CONFIG: &str = r#"{"architectures": ["LLaDAModelLM"], "model_type": "llada",
    "activation_type": "silu", "block_type": "llama", "d_model": 4096,
    "embedding_size": 126464, "layer_norm_type": "rms", "mask_token_id": 126336,
    "max_sequence_length": 4096, "mlp_hidden_size": 12288, "n_heads": 32,
    "n_kv_heads": 32, "n_layers": 32, "rms_norm_eps": 1e-05, "rope_theta": 500000.0,
    "vocab_size": 126464, "weight_tying": false}"#;

/// `--set`s of a model small enough for a test to train in seconds.
pub const TINY_MODEL: [&str; 8] = [
    "--set",
    "model.d_model=32",
    "--set",
    "model.n_layers=1",
    "--set",
    "model.n_heads=2",
    "--set",
    "model.d_ff=64",
];

/// Short runs of experiments/sudoku4-prompts.toml (with [`TINY_MODEL`]).
pub const SHORT_PROMPTS: [&str; 16] = [
    "--set",
    "model.n_kv_heads=1",
    "--set",
    "pretrain.steps=4",
    "--set",
    "pretrain.batch_size=4",
    "--set",
    "pretrain.warmup_steps=1",
    "--set",
    "pretrain.checkpoint_every=0",
    "--set",
    "eval.max_examples=4",
    "--set",
    "eval.batch_size=4",
    "--set",
    "eval.steps=[4]",
];

/// `args` then `more`.
pub fn with<'a>(args: &[&'a str], more: &[&'a str]) -> Vec<&'a str> {
    args.iter().chain(more).copied().collect()
}

pub fn cogrpo(args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_cogrpo"))
        .args(args)
        .current_dir(env!("CARGO_MANIFEST_DIR"))
        .output()
        .expect("the binary runs")
}

/// Runs `cogrpo args` and asserts that it succeeded, showing the command
/// and what it said if not.
pub fn run_ok(args: &[&str]) -> Output {
    let o = cogrpo(args);
    assert!(
        o.status.success(),
        "cogrpo {} failed ({}):\n{}",
        args.join(" "),
        o.status,
        text(&o)
    );
    o
}

/// Runs `cogrpo args` and asserts that it exited with status `code`
/// (2: bad config or input, 1: other errors), showing what it said if not.
pub fn run_fails(args: &[&str], code: i32) -> Output {
    let o = cogrpo(args);
    assert_eq!(
        o.status.code(),
        Some(code),
        "cogrpo {}: expected exit status {code}:\n{}",
        args.join(" "),
        text(&o)
    );
    o
}

/// [`run_ok`], and that what it said (stdout and stderr) contains `needle`.
pub fn run_ok_saying(args: &[&str], needle: &str) -> String {
    let said = text(&run_ok(args));
    assert!(
        said.contains(needle),
        "cogrpo {} did not say {needle:?}:\n{said}",
        args.join(" ")
    );
    said
}

/// [`run_fails`], and that what it said contains `needle`.
pub fn run_fails_saying(args: &[&str], code: i32, needle: &str) -> String {
    let said = text(&run_fails(args, code));
    assert!(
        said.contains(needle),
        "cogrpo {} did not say {needle:?}:\n{said}",
        args.join(" ")
    );
    said
}

/// A temporary folder holding run folder `name`, and `cogrpo <command> -c
/// <config>` run into that folder (asserted to succeed).
pub fn fresh_run(command: &str, config: &str, name: &str) -> (tempfile::TempDir, PathBuf, Output) {
    let tmp = tempfile::tempdir().expect("a temporary folder");
    let dir = out_dir(&tmp, name);
    let o = run_ok(&[command, "-c", config, "--set", &set_out(&dir)]);
    (tmp, dir, o)
}

/// stdout then stderr.
pub fn text(o: &Output) -> String {
    format!(
        "{}{}",
        String::from_utf8_lossy(&o.stdout),
        String::from_utf8_lossy(&o.stderr)
    )
}

pub fn set_out(dir: &Path) -> String {
    format!("run.out_dir={}", dir.display())
}

pub fn out_dir(tmp: &tempfile::TempDir, name: &str) -> PathBuf {
    tmp.path().join(name)
}

pub fn summary(dir: &Path) -> serde_json::Value {
    serde_json::from_slice(&std::fs::read(dir.join("summary.json")).unwrap()).unwrap()
}

pub fn report(dir: &Path) -> serde_json::Value {
    serde_json::from_slice(&std::fs::read(dir.join("report.json")).unwrap()).unwrap()
}

/// An experiment file `dir/name.toml` over the Sudoku prompts (chat
/// template, 32 answer tokens, the Sudoku verifiers) whose model is
/// `source`, with no `[pretrain]`, writing into `dir/name`; `rest` adds
/// its `[eval]` and `[cogrpo]` sections.
pub fn sudoku_prompts_experiment(dir: &Path, name: &str, source: &Path, rest: &str) -> String {
    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    let toml = format!(
        r#"[run]
name = "{name}"
out_dir = {out:?}

[task]
kind = "prompts"
prompts = {prompts:?}
chat_template = true
gen_length = 32
verifiers = "sudoku4"

[model]
source = {source:?}

{rest}"#,
        out = dir.join(name),
        prompts = root.join("data/prompts/sudoku4"),
    );
    let path = dir.join(format!("{name}.toml"));
    std::fs::write(&path, toml).unwrap();
    path.to_str().unwrap().to_string()
}

/// A Python interpreter that can import torch and safetensors.
pub fn torch_python() -> Option<PathBuf> {
    let candidates = [
        std::env::var_os("COGRPO_TORCH_PYTHON").map(PathBuf::from),
        Some(Path::new(env!("CARGO_MANIFEST_DIR")).join("bench/.venv/bin/python")),
        Some(PathBuf::from("python3")),
    ];
    candidates.into_iter().flatten().find(|py| {
        Command::new(py)
            .args(["-c", "import torch, safetensors"])
            .output()
            .is_ok_and(|o| o.status.success())
    })
}

/// The logits a `cogrpo logits --out` file holds, flattened.
pub fn read_logits(path: &Path) -> Vec<f64> {
    let v: serde_json::Value = serde_json::from_slice(&std::fs::read(path).unwrap()).unwrap();
    v["logits"]
        .as_array()
        .unwrap()
        .iter()
        .map(|x| x.as_f64().unwrap())
        .collect()
}

/// Experiment files whose `model.source` is another experiment's output,
/// with the file that produces it (`pretrain` then `export --format hf`).
pub const PRODUCED_BY: [(&str, &str); 1] =
    [("runs/sudoku4-llada", "experiments/sudoku4-prompts.toml")];

/// `experiment`'s `model.source` when it names a run output that a fresh
/// checkout lacks: then `check` needs that output made first.
pub fn missing_source(experiment: &Path) -> Option<String> {
    let table: toml::Table = toml::from_str(&std::fs::read_to_string(experiment).unwrap()).unwrap();
    let source = table.get("model")?.get("source")?.as_str()?.to_string();
    let on_disk = Path::new(env!("CARGO_MANIFEST_DIR")).join(&source).exists();
    (!on_disk && source.starts_with("runs/")).then_some(source)
}

/// What [`PRODUCED_BY`] names for `source`, made small (a tiny model, four
/// steps) under `tmp`: the same layout, so `check` reads it as it would
/// the real one.
pub fn produce(source: &str, tmp: &Path) -> PathBuf {
    let Some((_, producer)) = PRODUCED_BY.iter().find(|(s, _)| *s == source) else {
        panic!("model.source {source} is a run output no experiment in PRODUCED_BY makes");
    };
    let out = set_out(&tmp.join("pre"));
    let base = with(
        &with(&["-c", producer, "--set", &out], &TINY_MODEL),
        &SHORT_PROMPTS,
    );
    run_ok(&with(&["pretrain"], &base));
    let dir = tmp.join(source);
    run_ok(&with(
        &["export", "--format", "hf", "--out", dir.to_str().unwrap()],
        &base,
    ));
    dir
}
