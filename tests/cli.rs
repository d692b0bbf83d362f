//! End-to-end tests of the `cogrpo` binary on the smoke configs.

use std::path::{Path, PathBuf};

mod common;
use common::{
    LLADA_8B_CONFIG, TINY_MODEL, fresh_run, missing_source, out_dir, produce, run_fails,
    run_fails_saying, run_ok, run_ok_saying, set_out, summary, text, with,
};

#[test]
fn every_experiment_config_checks() {
    let mut files: Vec<PathBuf> = Vec::new();
    for dir in ["experiments", "experiments/smoke"] {
        for e in std::fs::read_dir(Path::new(env!("CARGO_MANIFEST_DIR")).join(dir)).unwrap() {
            let p = e.unwrap().path();
            if p.extension().is_some_and(|x| x == "toml") {
                files.push(p);
            }
        }
    }
    assert!(files.len() >= 4, "{files:?}");
    let tmp = tempfile::tempdir().unwrap();
    for f in files {
        let mut args = vec![
            "check".to_string(),
            "--config".into(),
            f.display().to_string(),
        ];
        if let Some(source) = missing_source(&f) {
            let made = produce(&source, tmp.path());
            args.extend(["--set".into(), format!("model.source={}", made.display())]);
        }
        let args: Vec<&str> = args.iter().map(String::as_str).collect();
        let o = run_ok(&args);
        assert!(text(&o).contains("OK"));
    }
}

#[test]
fn config_errors_name_the_key_and_exit_with_2() {
    run_fails_saying(
        &[
            "check",
            "-c",
            "experiments/smoke/sudoku4.toml",
            "--set",
            "model.d_modl=3",
        ],
        2,
        "model.d_modl",
    );
    run_fails_saying(
        &[
            "pretrain",
            "-c",
            "experiments/smoke/sudoku4.toml",
            "--set",
            "pretrain.batch_size=0",
        ],
        2,
        "`pretrain.batch_size`: must lie in 1..=",
    );
    run_fails_saying(
        &["check", "-c", "experiments/does-not-exist.toml"],
        2,
        "does-not-exist.toml",
    );
    let o = run_fails(
        &[
            "check",
            "-c",
            "experiments/smoke/sudoku4.toml",
            "--set",
            "task.data_dir=/nope",
        ],
        2,
    );
    assert!(
        text(&o).contains("/nope") && text(&o).contains("task.data_dir"),
        "{}",
        text(&o)
    );
}

#[test]
fn sudoku_smoke_pretrain_eval_sample_and_resume() {
    let cfg = "experiments/smoke/sudoku4.toml";
    let (_tmp, dir, _) = fresh_run("pretrain", cfg, "sudoku");
    let s = summary(&dir);
    assert_eq!(s["command"], "pretrain");
    assert_eq!(s["task"], "sudoku4");
    assert_eq!(s["train"]["steps"], 6);
    assert!(s["train"]["final_loss"].as_f64().unwrap().is_finite());
    assert!(s["train"]["wall_s"].as_f64().unwrap() > 0.0);
    assert!(dir.join("config.toml").is_file());
    assert!(
        dir.join("checkpoints/step-00000006/model.safetensors")
            .is_file()
    );
    assert!(
        dir.join("checkpoints/step-00000003/optimizer.mpk")
            .is_file()
    );
    let events: Vec<_> = std::fs::read_dir(dir.join("tb"))
        .unwrap()
        .map(|e| e.unwrap().path())
        .collect();
    assert!(
        events
            .iter()
            .any(|p| std::fs::metadata(p).unwrap().len() > 100),
        "{events:?}"
    );

    // A second pretrain without --resume refuses and keeps the checkpoint.
    run_fails_saying(
        &["pretrain", "-c", cfg, "--set", &set_out(&dir)],
        1,
        "--resume",
    );
    assert!(
        dir.join("checkpoints/step-00000006/model.safetensors")
            .is_file()
    );

    // Resume with more steps continues from step 6.
    run_ok_saying(
        &[
            "pretrain",
            "-c",
            cfg,
            "--set",
            &set_out(&dir),
            "--set",
            "pretrain.steps=8",
            "--resume",
        ],
        "at step 6",
    );
    assert_eq!(summary(&dir)["train"]["steps"], 8);

    let o = run_ok(&[
        "eval",
        "-c",
        cfg,
        "--set",
        &set_out(&dir),
        "--set",
        "pretrain.steps=8",
    ]);
    let s = summary(&dir);
    assert_eq!(s["command"], "eval");
    assert_eq!(s["train"]["steps"], 8, "eval keeps the training summary");
    let rows = s["eval"].as_array().unwrap();
    // 2 samplers x 2 step counts x 3 verifiers + the ELBO row.
    assert_eq!(rows.len(), 13);
    for r in rows {
        for k in ["sampler", "steps", "metric", "value", "n"] {
            assert!(!r[k].is_null(), "{k} missing in {r}");
        }
    }
    let solved16 = rows
        .iter()
        .find(|r| {
            r["sampler"] == "confidence(temp=0)" && r["steps"] == 16 && r["metric"] == "solved"
        })
        .unwrap();
    assert_eq!(solved16["n"], 40);
    assert_eq!(solved16["nfe"], 16.0);
    assert!(text(&o).contains("d1_cell_accuracy"));

    let o = run_ok(&[
        "sample",
        "-c",
        cfg,
        "--set",
        &set_out(&dir),
        "--set",
        "pretrain.steps=8",
        "--prompt",
        "3102200002100320",
        "-n",
        "2",
    ]);
    let lines: Vec<&str> = std::str::from_utf8(&o.stdout).unwrap().lines().collect();
    assert_eq!(lines.len(), 2, "{lines:?}");
    assert!(
        lines
            .iter()
            .all(|l| l.starts_with("3102200002100320 -> ") && l.len() == 36),
        "{lines:?}"
    );
    run_fails_saying(
        &[
            "sample",
            "-c",
            cfg,
            "--set",
            &set_out(&dir),
            "--prompt",
            "31x2",
        ],
        2,
        "31x2",
    );
}

#[test]
fn text_smoke_run_reports_bits_per_token_and_samples() {
    let cfg = "experiments/smoke/text.toml";
    let (_tmp, dir, _) = fresh_run("run", cfg, "text");
    let s = summary(&dir);
    assert_eq!(s["command"], "run");
    let row = &s["eval"][0];
    assert_eq!(row["metric"], "bits_per_token");
    let bits = row["value"].as_f64().unwrap();
    // An untrained model sits near log2(65) = 6.02 bits; allow for noise.
    assert!(bits > 3.0 && bits < 8.0, "{bits}");
    // `run` again reuses the finished pre-training.
    run_ok_saying(&["run", "-c", cfg, "--set", &set_out(&dir)], "reusing");
    let o = run_ok(&[
        "sample",
        "-c",
        cfg,
        "--set",
        &set_out(&dir),
        "--prompt",
        "ROMEO:",
        "-n",
        "1",
    ]);
    let out = String::from_utf8_lossy(&o.stdout);
    assert!(out.contains("ROMEO:"), "{out}");
}

/// Every benchmark task runs end to end (tiny model, a few steps) and
/// reports its own metrics in the table and in `summary.json`.
#[test]
fn every_task_runs_and_reports_its_metrics() {
    let tmp = tempfile::tempdir().unwrap();
    let cases = [
        ("countdown", vec!["solved", "countdown"]),
        ("star-easy", vec!["exact_match", "prefix_credit"]),
        ("star-medium", vec!["exact_match", "prefix_credit"]),
        ("star-hard", vec!["exact_match", "prefix_credit"]),
        (
            "reversal",
            vec![
                "contains_reference",
                "dtn_same",
                "dtn_reverse",
                "ntd_same",
                "ntd_reverse",
            ],
        ),
    ];
    for (task, metrics) in cases {
        let dir = out_dir(&tmp, task);
        let cfg = format!("experiments/{task}.toml");
        let out = set_out(&dir);
        let head = with(&["run", "-c", &cfg, "--set", &out], &TINY_MODEL);
        let o = run_ok(&with(
            &head,
            &[
                "--set",
                "pretrain.steps=2",
                "--set",
                "pretrain.batch_size=4",
                "--set",
                "pretrain.checkpoint_every=0",
                "--set",
                "pretrain.warmup_steps=1",
                "--set",
                "eval.max_examples=8",
                "--set",
                "eval.batch_size=8",
                "--set",
                "eval.steps=[2]",
                "--set",
                "eval.nll_samples=1",
            ],
        ));
        let s = summary(&dir);
        assert_eq!(s["task"], task);
        let rows = s["eval"].as_array().unwrap();
        for m in &metrics {
            let row = rows
                .iter()
                .find(|r| r["metric"] == *m)
                .unwrap_or_else(|| panic!("{task}: no {m} row"));
            let v = row["value"].as_f64().unwrap();
            assert!((0.0..=1.0).contains(&v), "{task} {m} = {v}");
            assert!(row["n"].as_u64().unwrap() >= 2, "{task} {m}");
            assert!(text(&o).contains(m), "{task}: the table shows {m}");
        }
    }
}

#[test]
fn an_exported_smdm_file_evaluates_like_its_checkpoint() {
    let cfg = "experiments/smoke/sudoku4.toml";
    let (tmp, dir, _) = fresh_run("pretrain", cfg, "export");
    let file = tmp.path().join("smdm.safetensors");
    run_ok_saying(
        &[
            "export",
            "-c",
            cfg,
            "--set",
            &set_out(&dir),
            "--out",
            file.to_str().unwrap(),
        ],
        "SMDM layout",
    );
    let out = set_out(&dir);
    let eval = |extra: &[&str]| {
        let mut args = vec!["eval", "-c", cfg, "--set", out.as_str()];
        args.extend_from_slice(extra);
        run_ok(&args);
        summary(&dir)["eval"].clone()
    };
    let native = eval(&[]);
    let smdm = eval(&["--checkpoint", file.to_str().unwrap()]);
    let values = |v: &serde_json::Value| -> Vec<f64> {
        v.as_array()
            .unwrap()
            .iter()
            .map(|r| r["value"].as_f64().unwrap())
            .collect()
    };
    assert_eq!(values(&native), values(&smdm));

    hf_export_computes_what_the_smdm_file_computes(cfg, &dir, &tmp.path().join("llada"), &file);
    // A file for another shape is refused, naming the tensor.
    run_fails_saying(
        &[
            "eval",
            "-c",
            cfg,
            "--set",
            &set_out(&dir),
            "--set",
            "model.d_ff=32",
            "--checkpoint",
            file.to_str().unwrap(),
        ],
        2,
        "mlp.swiglu.w1.weight` has shape [64, 32], the config needs [32, 32]",
    );
}

/// The same checkpoint exported as a Hugging Face directory in LLaDA's
/// layout (bfloat16 storage) into `hf_dir`: `inspect` reads it, and it
/// computes what the SMDM export `file` computes, within bfloat16's rounding
/// of the weights.
fn hf_export_computes_what_the_smdm_file_computes(
    cfg: &str,
    dir: &Path,
    hf_dir: &Path,
    file: &Path,
) {
    let out = set_out(dir);
    let hf_out = hf_dir.to_str().unwrap();
    let said = run_ok_saying(
        &[
            "export", "-c", cfg, "--set", &out, "--format", "hf", "--dtype", "bf16", "--out",
            hf_out,
        ],
        "LLaDA layout",
    );
    assert!(said.contains("mask token 5"), "{said}");
    run_ok_saying(&["inspect", hf_out], "architecture  LLaDA");
    type B = burn::backend::Flex;
    let dev = Default::default();
    let hf = mdm::hf::HfModel::open(hf_dir).unwrap();
    let from_hf = hf.load::<B>(None, &dev).unwrap();
    let from_smdm = mdm::smdm::import::<B>(&hf.config.denoiser, file, &dev).unwrap();
    let len = hf.config.denoiser.max_len;
    let tokens: Vec<u32> = (0..len as u32)
        .map(|i| [5, 1, 2, 3, 4][i as usize % 5])
        .collect();
    let logits = |m: &mdm::Denoiser<B>| -> Vec<f32> {
        m.forward(mdm::Denoiser::<B>::input(&tokens, 1, len, &dev))
            .into_data()
            .to_vec()
            .unwrap()
    };
    let (a, b) = (logits(&from_hf), logits(&from_smdm));
    let scale = b.iter().fold(0f32, |m, x| m.max(x.abs()));
    let diff = a
        .iter()
        .zip(&b)
        .fold(0f32, |m, (x, y)| m.max((x - y).abs()));
    assert!(diff / scale < 0.05, "bf16 export off by {diff} of {scale}");
}

/// The ARM and the ILM go through the same commands as the MDM; each
/// checkpoint records its family and refuses to load as another; only the
/// ILM fills gaps of unknown length.
#[test]
fn arm_and_ilm_pretrain_evaluate_sample_and_keep_to_their_family() {
    let tmp = tempfile::tempdir().unwrap();
    let cfg = "experiments/smoke/text.toml";
    let family = |f: &str| format!("model.family=\"{f}\"");
    let arm = out_dir(&tmp, "arm");
    run_ok(&[
        "run",
        "-c",
        cfg,
        "--set",
        &set_out(&arm),
        "--set",
        &family("arm"),
    ]);
    // The ARM's likelihood is exact: an untrained one sits near log2(65).
    let row = &summary(&arm)["eval"][0];
    assert_eq!(row["sampler"], "nll");
    let bits = row["value"].as_f64().unwrap();
    assert!(bits > 4.0 && bits < 8.0, "{bits}");
    let o = run_ok(&[
        "sample",
        "-c",
        cfg,
        "--set",
        &set_out(&arm),
        "--set",
        &family("arm"),
        "--prompt",
        "ROMEO:",
        "-n",
        "2",
    ]);
    assert_eq!(
        String::from_utf8_lossy(&o.stdout).matches("ROMEO:").count(),
        2
    );

    // An ARM checkpoint does not load as an ILM (exit 2: bad input).
    run_fails_saying(
        &[
            "eval",
            "-c",
            cfg,
            "--set",
            &set_out(&arm),
            "--set",
            &family("ilm"),
        ],
        2,
        "holds an ARM model",
    );
    // Nor does --infill work without an ILM.
    run_fails_saying(
        &[
            "sample",
            "-c",
            cfg,
            "--set",
            &set_out(&arm),
            "--set",
            &family("arm"),
            "--infill",
            "ROMEO:<gap>JULIET:",
        ],
        1,
        "--infill needs an ILM",
    );

    let ilm = out_dir(&tmp, "ilm");
    run_ok(&[
        "run",
        "-c",
        cfg,
        "--set",
        &set_out(&ilm),
        "--set",
        &family("ilm"),
    ]);
    let o = run_ok(&[
        "sample",
        "-c",
        cfg,
        "--set",
        &set_out(&ilm),
        "--set",
        &family("ilm"),
        "--infill",
        "ROMEO:\n<gap>\nJULIET:",
        "-n",
        "3",
    ]);
    let out = String::from_utf8_lossy(&o.stdout);
    let fills: Vec<&str> = out.split("--- infill ").skip(1).collect();
    assert_eq!(fills.len(), 3, "{out}");
    for f in fills {
        let body = f.split_once("---\n").unwrap().1.trim_end_matches('\n');
        assert!(
            body.starts_with("ROMEO:\n") && body.ends_with("\nJULIET:"),
            "{body:?}"
        );
    }
    // A family cannot run Co-GRPO.
    run_fails_saying(
        &[
            "check",
            "-c",
            "experiments/smoke/sudoku4-cogrpo.toml",
            "--set",
            &family("ilm"),
        ],
        2,
        "Co-GRPO trains MDMs",
    );
}

/// `cogrpo inspect` reads a released model's config alone: LLaDA-8B's
/// published shape counts 8.0B parameters; a directory it cannot read is
/// bad input (exit 2) naming the file and key.
#[test]
fn inspect_describes_a_model_directory_from_its_config() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("LLaDA-8B-Instruct");
    std::fs::create_dir_all(&dir).unwrap();
    std::fs::write(dir.join("config.json"), LLADA_8B_CONFIG).unwrap();
    let d = dir.to_str().unwrap();
    let out = run_ok_saying(&["inspect", d], "8.0B (8015581184)");
    assert!(out.contains("architecture  LLaDA"), "{out}");
    assert!(out.contains("mask token    126336"), "{out}");
    assert!(out.contains("none (config.json only)"), "{out}");
    assert!(out.contains("tokenizer     none"), "{out}");
    // Its tokenizer and chat template (the byte-level BPE the tokenizer
    // agreement test uses, LLaDA's template).
    let fixtures = Path::new(env!("CARGO_MANIFEST_DIR")).join("crates/text/tests/fixtures");
    std::fs::copy(
        fixtures.join("bpe.tokenizer.json"),
        dir.join("tokenizer.json"),
    )
    .unwrap();
    let template = "{% for m in messages %}<|start_header_id|>{{ m.role }}<|end_header_id|>\\n\\n\
                    {{ m.content | trim }}<|eot_id|>{% endfor %}{% if add_generation_prompt %}\
                    <|start_header_id|>assistant<|end_header_id|>\\n\\n{% endif %}";
    let tokenizer_config =
        |t: &str| format!(r#"{{"bos_token": "<|endoftext|>", "chat_template": "{t}"}}"#);
    std::fs::write(
        dir.join("tokenizer_config.json"),
        tokenizer_config(template),
    )
    .unwrap();
    let out = run_ok_saying(&["inspect", d], "BPE, ByteLevel (1000 ids, 10 special");
    assert!(
        out.contains(r#"<|start_header_id|>user<|end_header_id|>\n\nWhat is 2 + 2?<|eot_id|><|start_header_id|>assistant"#),
        "{out}"
    );
    std::fs::write(
        dir.join("tokenizer_config.json"),
        tokenizer_config("{{ raise_exception('no') }}"),
    )
    .unwrap();
    run_fails_saying(&["inspect", d], 2, "fails to render");
    std::fs::remove_file(dir.join("tokenizer_config.json")).unwrap();
    std::fs::write(
        dir.join("config.json"),
        LLADA_8B_CONFIG
            .replace("126464", "500")
            .replace("126336", "499"),
    )
    .unwrap();
    run_fails_saying(&["inspect", d], 2, "the tokenizer has 1000 ids");
    std::fs::write(
        dir.join("config.json"),
        LLADA_8B_CONFIG
            .replace("\"llada\"", "\"gpt2\"")
            .replace("LLaDAModelLM", "GPT2LMHeadModel"),
    )
    .unwrap();
    run_fails_saying(&["inspect", d], 2, "`model_type` is \"gpt2\"");
    run_fails_saying(&["inspect", "no/such/dir"], 2, "config.json");
}
