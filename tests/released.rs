//! The released-model path end to end on the CPU: a small LLaDA-shaped
//! model trained here on the text Sudoku prompts (BPE tokenizer, LLaDA's
//! chat template), exported in LLaDA's layout, and read back as a model
//! directory by `sample`, `logits`, `eval` and `run`; and the bad inputs of
//! that path, each refused with exit 2 naming the file and key.

mod common;

use std::path::Path;

use common::*;

const CONFIG: &str = "experiments/sudoku4-prompts.toml";

/// `cogrpo <command> -c experiments/sudoku4-prompts.toml` into `out`, with
/// a tiny model and short runs.
fn small(out: &str) -> Vec<&str> {
    with(
        &with(&["-c", CONFIG, "--set", out], &TINY_MODEL),
        &SHORT_PROMPTS,
    )
}

/// The completion lines (`-> ...`) `cogrpo sample` printed.
fn completions(o: &std::process::Output) -> Vec<String> {
    text(o)
        .lines()
        .filter(|l| l.trim_start().starts_with("->"))
        .map(str::to_string)
        .collect()
}

/// Co-GRPO from the model as it is: a few iterations of two arms.
const ARMS: &str = r#"[eval]
max_examples = 4
batch_size = 4

[cogrpo]
iterations = 2
prompts_per_iteration = 2
group_size = 2
steps = 4
arms = ["model", "alternate"]
reference = { kind = "confidence", temperature = 1.0 }
alternate_every = 1
eval_steps = [4]
log_every = 1

[cogrpo.schedule]
kind = "per_step"
learn = ["ratio"]
"#;

#[test]
fn a_model_trained_on_text_exports_to_llada_and_loads_back_by_directory() {
    let tmp = tempfile::tempdir().unwrap();
    let run = out_dir(&tmp, "run");
    let out = set_out(&run);
    let base = small(&out);
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
    let exp = sudoku_prompts_experiment(tmp.path(), "arms", Path::new(llada), ARMS);
    run_ok_saying(&["check", "-c", &exp], "OK");
    run_ok(&["run", "-c", &exp]);
    let report = report(&tmp.path().join("arms"));
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
    let base = small(&out);
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

/// A directory in LLaDA's own layout (the committed agreement fixture: 1,024
/// embedding rows, a 1,000-id tokenizer, `<|mdm_mask|>` = 1 inside the
/// vocabulary) read as the model of a prompts task: the 24 rows no token
/// reaches are padding (their logits are the padding logit), and `sample`
/// and `eval` run on it.
#[test]
fn a_released_directory_keeps_its_padding_rows_out_of_sampling() {
    let tmp = tempfile::tempdir().unwrap();
    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    let prompts = tmp.path().join("prompts");
    std::fs::create_dir(&prompts).unwrap();
    for (split, n) in [("train", 6), ("test", 3)] {
        let lines: Vec<String> = (0..n)
            .map(|i| format!(r#"{{"prompt": "Count to {i}:", "answer": "{i}"}}"#))
            .collect();
        std::fs::write(prompts.join(format!("{split}.jsonl")), lines.join("\n")).unwrap();
    }
    let toml = format!(
        r#"[run]
name = "fixture"
out_dir = {out:?}
[task]
kind = "prompts"
prompts = {prompts:?}
tokenizer = {tokenizer:?}
gen_length = 8
[model]
source = {model:?}
[eval]
max_examples = 3
batch_size = 3
nll_samples = 2
"#,
        out = tmp.path().join("run"),
        tokenizer = root.join("data/tokenizers/shakespeare-bpe"),
        model = root.join("crates/mdm/tests/fixtures/hf/llada"),
    );
    let exp = tmp.path().join("fixture.toml");
    std::fs::write(&exp, toml).unwrap();
    let exp = exp.to_str().unwrap();
    run_ok_saying(&["check", "-c", exp], "none: the weights of");
    let rows = tmp.path().join("rows.json");
    std::fs::write(&rows, "[[5, 1024, 17, 300, 1024, 999, 2, 64]]").unwrap();
    let out = tmp.path().join("logits.json");
    let (rows, out_path) = (rows.to_str().unwrap(), out.to_str().unwrap());
    run_ok(&["logits", "-c", exp, "--input", rows, "--out", out_path]);
    let got: serde_json::Value = serde_json::from_slice(&std::fs::read(&out).unwrap()).unwrap();
    assert_eq!(got["shape"], serde_json::json!([1, 8, 1024]));
    let logits: Vec<f64> = got["logits"]
        .as_array()
        .unwrap()
        .iter()
        .map(|x| x.as_f64().unwrap())
        .collect();
    for row in logits.chunks(1024) {
        assert!(row[1000..].iter().all(|&x| x == -1.0e4), "padding rows");
        assert!(row[..1000].iter().all(|&x| x.abs() < 1.0e3), "token rows");
    }
    run_ok(&["sample", "-c", exp, "-n", "2"]);
    let said = text(&run_ok(&["eval", "-c", exp]));
    assert!(said.contains("elbo"), "the answers' likelihood: {said}");
}

/// A model in SMDM's released layout (one lit-gpt safetensors file, no
/// config; the tokenizer beside it): its shape is read off the tensors, the
/// head count from SMDM's table or, for a shape the table does not list,
/// from `model.n_heads`; it computes what the checkpoint it came from does.
#[test]
fn an_smdm_file_is_a_model_source_with_its_shape_read_off_the_tensors() {
    let tmp = tempfile::tempdir().unwrap();
    let out = set_out(&out_dir(&tmp, "run"));
    let mut base = small(&out);
    base.extend(["--set", "model.n_kv_heads=2"]); // SMDM has no GQA
    run_ok(&with(&["pretrain"], &base));
    let dir = tmp.path().join("smdm");
    std::fs::create_dir(&dir).unwrap();
    let file = dir.join("mdm-tiny.safetensors");
    let file = file.to_str().unwrap();
    run_ok(&with(&["export", "--out", file], &base));
    for name in ["tokenizer.json", "tokenizer_config.json"] {
        std::fs::copy(
            format!("data/tokenizers/shakespeare-bpe/{name}"),
            dir.join(name),
        )
        .unwrap();
    }
    let eval = "[eval]\nmax_examples = 2\nbatch_size = 2\nsteps = [4]\n";
    let exp = sudoku_prompts_experiment(tmp.path(), "from-smdm", Path::new(file), eval);
    let exp = exp.as_str();
    run_fails_saying(&["check", "-c", exp], 2, "set model.n_heads");
    let heads = ["--set", "model.n_heads=2"];
    run_ok_saying(
        &with(&["check", "-c", exp], &heads),
        "d_model 32, 1 layers, 2 heads",
    );
    let rows = tmp.path().join("rows.json");
    std::fs::write(&rows, "[[1000, 5, 17, 300, 1000, 999, 2, 64]]").unwrap();
    let logits = |args: &[&str], name: &str| {
        let path = tmp.path().join(name);
        let io = [
            "--input",
            rows.to_str().unwrap(),
            "--out",
            path.to_str().unwrap(),
        ];
        run_ok(&with(&with(&["logits"], args), &io));
        std::fs::read(path).unwrap()
    };
    let ckpt = tmp.path().join("run/checkpoints/latest");
    let from_ckpt = logits(
        &with(&base, &["--checkpoint", ckpt.to_str().unwrap()]),
        "a.json",
    );
    assert_eq!(from_ckpt, logits(&with(&["-c", exp], &heads), "b.json"));
    run_ok(&with(&["sample", "-c", exp, "-n", "1"], &heads));
}

/// `check --model` on a directory holding only LLaDA-8B-Instruct's
/// published `config.json` (its shape keys): the parameter count and the
/// memory plan, before any weight exists; the 236 GiB Co-GRPO plan is
/// refused on a machine without that memory unless `--force`.
#[test]
fn check_plans_a_config_only_llada_8b_directory() {
    let tmp = tempfile::tempdir().unwrap();
    std::fs::write(tmp.path().join("config.json"), LLADA_8B_CONFIG).unwrap();
    let model = tmp.path().to_str().unwrap();
    let args = [
        "check",
        "-c",
        "experiments/released/sudoku4.toml",
        "--model",
        model,
        "--set",
        "task.tokenizer=\"data/tokenizers/shakespeare-bpe\"",
        "--force",
    ];
    let said = run_ok_saying(&args, "8.0B parameters");
    // Full fine-tuning of 8B float32 weights with AdamW: far past 100 GiB.
    let peak: f64 = said
        .split("peak about ")
        .nth(1)
        .and_then(|rest| rest.split(' ').next())
        .and_then(|n| n.parse().ok())
        .unwrap_or_else(|| panic!("no peak in {said}"));
    assert!(peak > 100.0, "{said}");
    assert!(said.contains("none: the weights of"), "{said}");
}
