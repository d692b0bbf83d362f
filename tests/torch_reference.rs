//! Numerical agreement with the PyTorch reference (`bench/reference.py`):
//! the same SMDM-layout weights give the same logits within 1e-4 relative.
//! It needs PyTorch (about 5 GB of wheels), which `cargo test` does not
//! install, so it is `#[ignore]`d and shows as ignored; run it with
//! `bench/setup.sh` (makes `bench/.venv`) or `COGRPO_TORCH_PYTHON` set, then
//! `cargo test --test torch_reference -- --ignored`. Asked for and not
//! found, it fails.

use std::path::{Path, PathBuf};
use std::process::Command;

fn root() -> &'static Path {
    Path::new(env!("CARGO_MANIFEST_DIR"))
}

/// A Python interpreter that can import torch and safetensors.
fn torch_python() -> Option<PathBuf> {
    let candidates = [
        std::env::var_os("COGRPO_TORCH_PYTHON").map(PathBuf::from),
        Some(root().join("bench/.venv/bin/python")),
        Some(PathBuf::from("python3")),
    ];
    candidates.into_iter().flatten().find(|py| {
        Command::new(py)
            .args(["-c", "import torch, safetensors"])
            .output()
            .is_ok_and(|o| o.status.success())
    })
}

fn logits(path: &Path) -> Vec<f64> {
    let v: serde_json::Value = serde_json::from_slice(&std::fs::read(path).unwrap()).unwrap();
    v["logits"]
        .as_array()
        .unwrap()
        .iter()
        .map(|x| x.as_f64().unwrap())
        .collect()
}

#[test]
#[ignore = "needs PyTorch: run bench/setup.sh, then cargo test --test torch_reference -- --ignored"]
fn logits_agree_with_the_pytorch_reference() {
    let py = torch_python().expect(
        "no Python with torch and safetensors: run bench/setup.sh or set COGRPO_TORCH_PYTHON",
    );
    let bin = env!("CARGO_BIN_EXE_cogrpo");
    let tmp = tempfile::tempdir().unwrap();
    let cfg = "experiments/smoke/text.toml";
    // Two shapes: the smoke model, and a deeper one with 4 heads.
    for (i, sets) in [
        vec![],
        vec![
            "model.d_model=64",
            "model.n_layers=3",
            "model.n_heads=4",
            "model.d_ff=96",
        ],
    ]
    .iter()
    .enumerate()
    {
        let heads = if sets.is_empty() { "2" } else { "4" };
        let set_args: Vec<&str> = sets.iter().flat_map(|s| ["--set", s]).collect();
        let w = tmp.path().join(format!("w{i}.safetensors"));
        let run = |args: &[&str]| {
            let o = Command::new(bin)
                .args(args)
                .args(&set_args)
                .current_dir(root())
                .output()
                .unwrap();
            assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
        };
        run(&[
            "export",
            "-c",
            cfg,
            "--init",
            "--seed",
            "3",
            "--out",
            w.to_str().unwrap(),
        ]);
        // 3 rows of 32 (the smoke text length), masks (id 65) mixed in.
        let rows: Vec<Vec<u32>> = (0..3u32)
            .map(|r| {
                (0..32u32)
                    .map(|p| {
                        if (p + r) % 3 == 0 {
                            65
                        } else {
                            (p * 7 + r * 13) % 65
                        }
                    })
                    .collect()
            })
            .collect();
        let input = tmp.path().join("rows.json");
        std::fs::write(&input, serde_json::to_vec(&rows).unwrap()).unwrap();
        let ours = tmp.path().join("ours.json");
        run(&[
            "logits",
            "-c",
            cfg,
            "--checkpoint",
            w.to_str().unwrap(),
            "--input",
            input.to_str().unwrap(),
            "--out",
            ours.to_str().unwrap(),
        ]);
        let theirs = tmp.path().join("theirs.json");
        let o = Command::new(&py)
            .args(["bench/reference.py", "logits", "--weights"])
            .arg(&w)
            .args(["--heads", heads, "--input"])
            .arg(&input)
            .arg("--out")
            .arg(&theirs)
            .current_dir(root())
            .output()
            .unwrap();
        assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
        let (a, b) = (logits(&ours), logits(&theirs));
        assert_eq!(a.len(), 3 * 32 * 65);
        assert_eq!(a.len(), b.len());
        let max_abs = b.iter().fold(0.0f64, |m, x| m.max(x.abs()));
        let diff = a
            .iter()
            .zip(&b)
            .fold(0.0f64, |m, (x, y)| m.max((x - y).abs()));
        assert!(max_abs > 1e-3, "logits are not trivially zero");
        assert!(
            diff <= 1e-4 * max_abs,
            "shape {i}: max |diff| {diff} vs max |logit| {max_abs}"
        );
    }
}
