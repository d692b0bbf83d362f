//! Numerical agreement with the PyTorch reference (`bench/reference.py`):
//! the same SMDM-layout weights give the same logits, and the same loss
//! gives the same gradients, within 1e-4 relative.
//! It needs PyTorch (about 5 GB of wheels), which `cargo test` does not
//! install, so it is `#[ignore]`d and shows as ignored; run it with
//! `bench/setup.sh` (makes `bench/.venv`) or `COGRPO_TORCH_PYTHON` set, then
//! `cargo test --test torch_reference -- --ignored`. Asked for and not
//! found, it fails.

mod common;

use std::path::Path;
use std::process::Command;

use common::{read_logits, torch_python};

fn root() -> &'static Path {
    Path::new(env!("CARGO_MANIFEST_DIR"))
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
        let (a, b) = (read_logits(&ours), read_logits(&theirs));
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

/// Gradients of the mean masked cross-entropy through the CPU's fused
/// kernels (`Autodiff<Flex>`) against PyTorch's autograd, per weight in
/// SMDM's layout: max |ours - torch| / max |torch| below 1e-4. Odd sizes:
/// 3 heads of 10, d_ff 52, 70 positions (two attention blocks, the second
/// partial).
#[test]
#[ignore = "needs PyTorch: run bench/setup.sh, then cargo test --test torch_reference -- --ignored"]
fn gradients_agree_with_the_pytorch_reference() {
    use burn::backend::{Autodiff, Flex};
    use burn::module::{AutodiffModule, ModuleMapper, Param};
    use burn::optim::GradientsParams;
    use burn::prelude::*;
    use mdm::{Denoiser, DenoiserConfig};
    type Ad = Autodiff<Flex>;

    let py = torch_python().expect(
        "no Python with torch and safetensors: run bench/setup.sh or set COGRPO_TORCH_PYTHON",
    );
    let tmp = tempfile::tempdir().unwrap();
    let dev = Default::default();
    let (vocab, layers, rows, len) = (65usize, 2usize, 3usize, 70usize);
    let model = DenoiserConfig::new(vocab, 30, layers, 3, 52, len).init::<Ad>(5, &dev);
    let weights = tmp.path().join("w.safetensors");
    mdm::smdm::export(&model.valid(), &weights).unwrap();

    let clean: Vec<u32> = (0..rows * len)
        .map(|i| ((i % len) * 7 + (i / len) * 13) as u32 % vocab as u32)
        .collect();
    let masked = |i: usize| (i % len + i / len).is_multiple_of(3);
    let input: Vec<u32> = (0..rows * len)
        .map(|i| if masked(i) { vocab as u32 } else { clean[i] })
        .collect();
    let n_masked = (0..rows * len).filter(|&i| masked(i)).count() as f32;
    let weight: Vec<f32> = (0..rows * len)
        .map(|i| if masked(i) { 1.0 / n_masked } else { 0.0 })
        .collect();
    let targets: Vec<i32> = clean.iter().map(|&t| t as i32).collect();
    let logits = model.forward(Denoiser::<Ad>::input(&input, rows, len, &dev));
    let loss = mdm::loss::weighted_cross_entropy(
        logits,
        Tensor::from_data(TensorData::new(targets, [rows, len]), &dev),
        Tensor::from_data(TensorData::new(weight, [rows, len]), &dev),
    )
    .sum();
    let grads = GradientsParams::from_grads(loss.backward(), &model);

    /// Each weight replaced by its gradient, so that the SMDM export lays
    /// the gradients out as it lays out the weights.
    struct ToGradient(GradientsParams);
    impl ModuleMapper<Flex> for ToGradient {
        fn map_float<const D: usize>(
            &mut self,
            p: Param<Tensor<Flex, D>>,
        ) -> Param<Tensor<Flex, D>> {
            let (id, t, mapper) = p.consume();
            let g = self
                .0
                .get::<Flex, D>(id)
                .expect("every weight has a gradient");
            assert_eq!(g.dims(), t.dims());
            Param::from_mapped_value(id, g, mapper)
        }
    }
    let ours = tmp.path().join("grads.safetensors");
    mdm::smdm::export(&model.valid().map(&mut ToGradient(grads)), &ours).unwrap();

    let write = |name: &str, v: &[u32]| {
        let rows: Vec<&[u32]> = v.chunks(len).collect();
        let path = tmp.path().join(name);
        std::fs::write(&path, serde_json::to_vec(&rows).unwrap()).unwrap();
        path
    };
    let o = Command::new(&py)
        .args(["bench/reference.py", "grads", "--heads", "3", "--weights"])
        .arg(&weights)
        .arg("--input")
        .arg(write("rows.json", &input))
        .arg("--targets")
        .arg(write("clean.json", &clean))
        .arg("--compare")
        .arg(&ours)
        .current_dir(root())
        .output()
        .unwrap();
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    let errors: serde_json::Map<String, serde_json::Value> =
        serde_json::from_slice(&o.stdout).unwrap();
    assert_eq!(errors.len(), 3 + 7 * layers, "{errors:?}");
    for (name, e) in &errors {
        let e = e.as_f64().unwrap();
        assert!(e < 1e-4, "{name}: relative gradient error {e:e}");
    }
    eprintln!("gradients vs PyTorch, max relative error per weight: {errors:?}");
}
