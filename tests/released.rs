//! The released-model path end to end on the CPU: a small LLaDA-shaped
//! model trained here on the text Sudoku prompts (BPE tokenizer, LLaDA's
//! chat template), exported in LLaDA's layout, and read back as a model
//! directory by `sample`, `logits`, `eval` and `run`; and the bad inputs of
//! that path, each refused with exit 2 naming the file and key.

mod common;

use std::path::Path;

use common::*;

/// A tiny model and short runs of experiments/sudoku4-prompts.toml.
const SMALL: [&str; 24] = [
    "--set",
    "model.d_model=32",
    "--set",
    "model.n_layers=1",
    "--set",
    "model.n_heads=2",
    "--set",
    "model.n_kv_heads=1",
    "--set",
    "model.d_ff=64",
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

const CONFIG: &str = "experiments/sudoku4-prompts.toml";

fn with<'a>(head: &[&'a str], tail: &[&'a str]) -> Vec<&'a str> {
    head.iter().chain(tail).copied().collect()
}

/// The completion lines (`-> ...`) `cogrpo sample` printed.
fn completions(o: &std::process::Output) -> Vec<String> {
    text(o)
        .lines()
        .filter(|l| l.trim_start().starts_with("->"))
        .map(str::to_string)
        .collect()
}

/// An experiment file that names `model` as its model and has no
/// `[model]` or `[pretrain]` section: Co-GRPO from the directory as it is.
fn released_experiment(dir: &Path, model: &Path, out: &Path) -> std::path::PathBuf {
    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    let toml = format!(
        r#"[run]
name = "from-dir"
out_dir = {out:?}

[task]
kind = "prompts"
prompts = {prompts:?}
chat_template = true
gen_length = 32
verifiers = "sudoku4"

[model]
source = {model:?}

[eval]
max_examples = 4
batch_size = 4

[cogrpo]
iterations = 2
prompts_per_iteration = 2
group_size = 2
steps = 4
arms = ["model", "alternate"]
reference = {{ kind = "confidence", temperature = 1.0 }}
alternate_every = 1
eval_steps = [4]
log_every = 1

[cogrpo.schedule]
kind = "per_step"
learn = ["ratio"]
"#,
        prompts = root.join("data/prompts/sudoku4"),
    );
    let path = dir.join("from-dir.toml");
    std::fs::write(&path, toml).unwrap();
    path
}

#[test]
fn a_model_trained_on_text_exports_to_llada_and_loads_back_by_directory() {
    let tmp = tempfile::tempdir().unwrap();
    let run = out_dir(&tmp, "run");
    let out = set_out(&run);
    let base = with(&["-c", CONFIG, "--set", &out], &SMALL);
    run_ok(&with(&["pretrain"], &base));
    let ckpt = run.join("checkpoints/latest");
    let ckpt = ckpt.to_str().unwrap();
    let llada = tmp.path().join("llada");
    let llada = llada.to_str().unwrap();
    let said = run_ok_saying(
        &with(&["export", "--format", "hf", "--out", llada], &base),
        "LLaDA layout",
    );
    assert!(said.contains("mask token 1000"), "{said}");
    for file in [
        "config.json",
        "model.safetensors",
        "tokenizer.json",
        "tokenizer_config.json",
    ] {
        assert!(Path::new(llada).join(file).is_file(), "{file} exported");
    }

    // The directory computes what the checkpoint computes: the same logits
    // (float32 export) and so the same samples.
    let rows = tmp.path().join("rows.json");
    let ids: Vec<Vec<u32>> = (0..2)
        .map(|r| (0..175).map(|i| (i * 37 + r * 11) % 1001).collect())
        .collect();
    std::fs::write(&rows, serde_json::to_vec(&ids).unwrap()).unwrap();
    let logits = |flag: &str, source: &str, name: &str| {
        let path = tmp.path().join(name);
        let args = [
            "logits",
            flag,
            source,
            "--input",
            rows.to_str().unwrap(),
            "--out",
            path.to_str().unwrap(),
        ];
        run_ok(&with(&args, &base));
        std::fs::read(path).unwrap()
    };
    assert_eq!(
        logits("--checkpoint", ckpt, "a.json"),
        logits("--model", llada, "b.json")
    );
    let sample = |flag: &str, source: &str| {
        let o = run_ok(&with(
            &["sample", flag, source, "-n", "2", "--seed", "5"],
            &base,
        ));
        completions(&o)
    };
    let from_dir = sample("--model", llada);
    assert_eq!(from_dir.len(), 2);
    assert_eq!(sample("--checkpoint", ckpt), from_dir);
    run_ok_saying(
        &with(&["eval", "--model", llada], &base),
        "d1_cell_accuracy",
    );

    // An experiment file naming the directory: the Co-GRPO arms from it.
    let arms = tmp.path().join("arms");
    let exp = released_experiment(tmp.path(), Path::new(llada), &arms);
    run_ok_saying(&["check", "-c", exp.to_str().unwrap()], "OK");
    run_ok(&["run", "-c", exp.to_str().unwrap()]);
    let report = report(&arms);
    assert_eq!(report["task"], "prompts");
    for arm in ["base", "model", "alternate"] {
        let eval = report["arms"][arm]["eval"]
            .as_array()
            .unwrap_or_else(|| panic!("{arm}: {report}"));
        assert!(
            eval.iter().any(|r| r["metric"] == "solved"),
            "{arm} is scored by the Sudoku verifiers: {report}"
        );
    }
}

#[test]
fn bad_prompt_sets_and_contradicting_model_keys_exit_2_naming_file_and_key() {
    let tmp = tempfile::tempdir().unwrap();
    let check = |extra: &[&str], needle: &str| {
        run_fails_saying(&with(&["check", "-c", CONFIG], extra), 2, needle);
    };
    // A line without a prompt, named by file and line.
    let bad = tmp.path().join("bad");
    std::fs::create_dir(&bad).unwrap();
    std::fs::write(
        bad.join("train.jsonl"),
        "{\"prompt\": \"a\"}\n{\"answer\": \"b\"}\n",
    )
    .unwrap();
    std::fs::write(bad.join("test.jsonl"), "{\"prompt\": \"a\"}\n").unwrap();
    let prompts = format!("task.prompts={:?}", bad.display().to_string());
    check(
        &["--set", &prompts],
        "train.jsonl:2: no string field \"prompt\"",
    );
    // An answer longer than the generation.
    check(
        &["--set", "task.gen_length=4"],
        "more than task.gen_length = 4",
    );
    // A chat template asked for where the tokenizer has none.
    let bare = tmp.path().join("bare");
    std::fs::create_dir(&bare).unwrap();
    std::fs::copy(
        "data/tokenizers/shakespeare-bpe/tokenizer.json",
        bare.join("tokenizer.json"),
    )
    .unwrap();
    let tokenizer = format!("task.tokenizer={:?}", bare.display().to_string());
    check(&["--set", &tokenizer], "no chat template");
    check(&["--set", "task.verifiers=\"chess\""], "task.verifiers");
    // A model directory that is not one, and [model] keys it contradicts.
    let empty = format!("model.source={:?}", tmp.path().display().to_string());
    check(&["--set", &empty], "config.json");
    let out = set_out(&out_dir(&tmp, "run"));
    let base = with(&["-c", CONFIG, "--set", &out], &SMALL);
    run_ok(&with(&["pretrain"], &base));
    let llada = tmp.path().join("llada");
    run_ok(&with(
        &["export", "--format", "hf", "--out", llada.to_str().unwrap()],
        &base,
    ));
    let model = llada.to_str().unwrap();
    run_fails_saying(
        &with(&["check", "--model", model], &base[..2]),
        2,
        "`model.d_model`: 64 here, but",
    );
    let mut args = with(&["sample", "--model", model], &base);
    args.extend(["--set", "model.n_layers=3"]);
    let contradiction = run_fails_saying(&args, 2, "`model.n_layers`: 3 here");
    assert!(contradiction.contains("says 1"), "{contradiction}");
}
