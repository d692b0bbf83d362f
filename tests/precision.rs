//! `--precision` / `run.precision` from the command line: recorded in the
//! run's config; `f32` a no-op on the CPU (float32 already), `bf16`
//! emulated there (so it changes the numbers); bad values named.
//! Its effect on a GPU is measured by scripts/gpu-check.sh (docs/gpu.md).

mod common;
use common::{cogrpo, run_fails, run_ok, set_out, text};

#[test]
fn precision_is_recorded_applied_on_the_cpu_and_bad_values_are_named() {
    let tmp = tempfile::tempdir().unwrap();
    let cfg = "experiments/smoke/sudoku4.toml";
    let loss = |name: &str, extra: &[&str]| -> f64 {
        let dir = tmp.path().join(name);
        let mut args = vec!["pretrain", "-c", cfg];
        let out = set_out(&dir);
        args.extend(["--set", out.as_str()]);
        args.extend(extra);
        run_ok(&args);
        let written = std::fs::read_to_string(dir.join("config.toml")).unwrap();
        let want = extra.last().map_or("tf32", |p| p);
        assert!(
            written.contains(&format!("precision = \"{want}\"")),
            "{written}"
        );
        let summary: serde_json::Value =
            serde_json::from_slice(&std::fs::read(dir.join("summary.json")).unwrap()).unwrap();
        summary["train"]["final_loss"].as_f64().unwrap()
    };
    let default = loss("default", &[]);
    assert_eq!(loss("f32", &["--precision", "f32"]), default);
    let bf16 = loss("bf16", &["--precision", "bf16"]);
    assert!(
        bf16 != default && (bf16 - default).abs() < 0.05 * default,
        "{bf16} vs {default}"
    );

    let o = run_fails(&["check", "-c", cfg, "--precision", "f16"], 2);
    assert!(
        text(&o).contains("tf32") && text(&o).contains("f32"),
        "{}",
        text(&o)
    );
    let o = cogrpo(&["check", "-c", cfg, "--set", "run.precision=\"f16\""]);
    assert_ne!(o.status.code(), Some(0));
    assert!(text(&o).contains("run.precision"), "{}", text(&o));
}
