//! LoRA on a released model's terms, end to end through the binary: a small
//! LLaDA-layout directory (trained and exported here) as the frozen base of
//! a LoRA arm, its adapters written in PEFT's format and merged back into
//! LLaDA's layout; and (ignored without PyTorch and `peft`) PEFT's own
//! loading of those adapters onto LLaDA's PyTorch code.

mod common;

use std::path::{Path, PathBuf};
use std::process::Command;

use common::*;

const CONFIG: &str = "experiments/sudoku4-prompts.toml";

/// Co-GRPO with rank-2 adapters, a learning rate high enough that two
/// iterations move the adapters visibly.
const LORA_ARM: &str = r#"[eval]
max_examples = 4
batch_size = 4

[cogrpo]
iterations = 2
prompts_per_iteration = 2
group_size = 4
steps = 4
arms = ["model"]
reference = { kind = "confidence", temperature = 1.0 }
lr_model = 3e-2
eval_steps = [4]
log_every = 1

[cogrpo.lora]
rank = 2
alpha = 4.0
"#;

/// What [`lora_arm`] made.
struct LoraArm {
    _tmp: tempfile::TempDir,
    dir: PathBuf,
    /// The base: a directory in LLaDA's layout.
    llada: String,
    /// The experiment file over it.
    exp: String,
    /// The trained arm's folder.
    arm: String,
}

/// Pre-trains a tiny LLaDA-shaped model on the text Sudoku, exports it in
/// LLaDA's layout and trains a LoRA arm on that directory.
fn lora_arm() -> LoraArm {
    lora_arm_with("")
}

/// [`lora_arm`] with `more` appended to `[cogrpo.lora]`.
fn lora_arm_with(more: &str) -> LoraArm {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().to_path_buf();
    let out = set_out(&dir.join("pre"));
    let base = with(
        &with(&["-c", CONFIG, "--set", &out], &TINY_MODEL),
        &SHORT_PROMPTS,
    );
    run_ok(&with(&["pretrain"], &base));
    let llada = dir.join("llada").to_str().unwrap().to_string();
    run_ok(&with(&["export", "--format", "hf", "--out", &llada], &base));
    let arm = format!("{LORA_ARM}{more}");
    let exp = sudoku_prompts_experiment(&dir, "lora", Path::new(&llada), &arm);
    run_ok(&["train", "-c", &exp, "--arm", "model"]);
    let arm = dir.join("lora/arms/model").to_str().unwrap().to_string();
    LoraArm {
        _tmp: tmp,
        dir,
        llada,
        exp,
        arm,
    }
}

impl LoraArm {
    /// `cogrpo export` of the arm as `format` to `out`, plus `extra`.
    fn export<'a>(&'a self, format: &'a str, out: &'a str, extra: &[&'a str]) -> Vec<&'a str> {
        let args = [
            "export",
            "-c",
            &self.exp,
            "--checkpoint",
            &self.arm,
            "--format",
            format,
            "--out",
            out,
        ];
        with(&args, extra)
    }

    fn path(&self, name: &str) -> String {
        self.dir.join(name).to_str().unwrap().to_string()
    }

    /// `cogrpo logits` of `flag source` on fixed rows, as JSON bytes.
    fn logits(&self, flag: &str, source: &str, name: &str) -> String {
        let rows = self.path("rows.json");
        let ids: Vec<Vec<u32>> = (0..2)
            .map(|r| (0..175).map(|i| (i * 37 + r * 11) % 1001).collect())
            .collect();
        std::fs::write(&rows, serde_json::to_vec(&ids).unwrap()).unwrap();
        let out = self.path(name);
        run_ok(&[
            "logits", "-c", &self.exp, flag, source, "--input", &rows, "--out", &out,
        ]);
        out
    }
}

/// max |a - b| / max |a|.
fn relative(a: &[f64], b: &[f64]) -> f64 {
    assert_eq!(a.len(), b.len());
    let scale = a.iter().fold(0f64, |m, x| m.max(x.abs()));
    a.iter().zip(b).fold(0f64, |m, (x, y)| m.max((x - y).abs())) / scale
}

#[test]
fn a_lora_arm_exports_peft_adapters_and_a_merged_llada_directory() {
    let t = lora_arm();
    let ckpt = PathBuf::from(&t.arm).join("checkpoints/latest");
    let latest = std::fs::read_to_string(&ckpt).unwrap();
    let ckpt = PathBuf::from(&t.arm)
        .join("checkpoints")
        .join(latest.trim());
    assert!(
        ckpt.join("adapters.safetensors").is_file(),
        "{}",
        ckpt.display()
    );
    assert!(!ckpt.join("model.safetensors").exists());

    // PEFT's format, named for LLaDA's modules.
    let adapter = t.path("adapter");
    run_ok_saying(
        &t.export("peft", &adapter, &[]),
        "PEFT's format for LLaDA's layout",
    );
    let config: serde_json::Value = serde_json::from_slice(
        &std::fs::read(Path::new(&adapter).join("adapter_config.json")).unwrap(),
    )
    .unwrap();
    assert_eq!(config["peft_type"], "LORA");
    assert_eq!(config["r"], 2);
    assert_eq!(config["lora_alpha"], 4.0);
    assert_eq!(
        config["target_modules"],
        r"model\.transformer\.blocks\.\d+\.(q_proj|k_proj|v_proj|attn_out|ff_proj|up_proj|ff_out)"
    );
    let names =
        mdm::hf::tensor_shapes(&Path::new(&adapter).join("adapter_model.safetensors")).unwrap();
    assert_eq!(names.len(), 7 * 2, "one layer, seven projections, A and B");
    assert_eq!(
        names["base_model.model.model.transformer.blocks.0.q_proj.lora_A.weight"],
        vec![2, 32]
    );
    // k_proj: the tiny model's 2 heads keep all of d_model.
    assert_eq!(
        names["base_model.model.model.transformer.blocks.0.ff_out.lora_B.weight"],
        vec![32, 2]
    );

    // A layout without a place for adapters: merge them or write them apart.
    let unmerged = t.path("unmerged");
    run_fails_saying(&t.export("hf", &unmerged, &[]), 1, "--format peft");
    assert!(!Path::new(&unmerged).exists(), "nothing written");

    // Merged into LLaDA's layout, the directory computes what the arm does.
    let merged = t.path("merged");
    run_ok(&t.export("hf", &merged, &["--merge"]));
    let arm = read_logits(Path::new(&t.logits("--checkpoint", &t.arm, "arm.json")));
    let folded = read_logits(Path::new(&t.logits("--model", &merged, "merged.json")));
    let base = read_logits(Path::new(&t.logits("--model", &t.llada, "base.json")));
    let (err, moved) = (relative(&arm, &folded), relative(&arm, &base));
    assert!(err < 1e-5, "merged vs adapters: {err:e}");
    assert!(
        moved > 100.0 * err.max(1e-7),
        "the adapters matter: {moved:e}"
    );
}

/// With the base stored in bfloat16 the arm trains over it and merges into
/// a float32 LLaDA directory that computes what the arm does.
#[test]
fn a_lora_arm_over_a_bfloat16_base_merges_into_what_it_computes() {
    let t = lora_arm_with("base_dtype = \"bf16\"\n");
    let said = text(&run_ok(&["check", "-c", &t.exp]));
    assert!(said.contains("stored in bfloat16"), "{said}");
    let merged = t.path("merged");
    run_ok(&t.export("hf", &merged, &["--merge"]));
    let arm = read_logits(Path::new(&t.logits("--checkpoint", &t.arm, "arm.json")));
    let folded = read_logits(Path::new(&t.logits("--model", &merged, "merged.json")));
    let err = relative(&arm, &folded);
    assert!(err < 1e-5, "merged vs adapters over a bf16 base: {err:e}");
}

/// PEFT's own `PeftModel.from_pretrained` puts the exported adapters on
/// LLaDA's PyTorch code, which then computes the arm's logits within 1e-5
/// relative (and the base alone does not).
#[test]
#[ignore = "needs PyTorch, transformers and peft: run bench/setup.sh, pip install transformers==4.57.0 peft==0.18.0, then cargo test --test lora -- --ignored"]
fn peft_loads_the_adapters_onto_lladas_own_code() {
    let py = torch_python().expect(
        "no Python with torch and safetensors: run bench/setup.sh or set COGRPO_TORCH_PYTHON",
    );
    let t = lora_arm();
    let adapter = t.path("adapter");
    run_ok(&t.export("peft", &adapter, &[]));
    let logits = t.logits("--checkpoint", &t.arm, "arm.json");
    let o = Command::new(&py)
        .args(["bench/hf_reference.py", "--peft", &t.llada, &adapter])
        .arg(t.path("rows.json"))
        .arg(&logits)
        .current_dir(env!("CARGO_MANIFEST_DIR"))
        .output()
        .unwrap();
    let said = format!(
        "{}{}",
        String::from_utf8_lossy(&o.stdout),
        String::from_utf8_lossy(&o.stderr)
    );
    assert!(o.status.success(), "{said}");
    eprintln!("{said}");
}
