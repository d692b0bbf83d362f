#!/usr/bin/env python3
"""Regenerates crates/mdm/tests/fixtures/hf: tiny random LLaDA and Dream
models written by the releases' own PyTorch code in their real layout
(config.json, two bfloat16 shards with an index), a tiny SMDM model by
SMDM's own `lit_gpt` code in its release layout (one bfloat16 safetensors
file, no config), and their float32 logits
on a few token rows, so that `cargo test -p mdm` checks cogrpo's reading of
each architecture (`mdm::hf`) against the architecture's own forward pass,
without torch.

The modeling code is the releases' as the dllm repository carries it
(bench/hf_models/, Apache-2.0, see its README). Dream's logits are read
shifted, as its sampler reads them (`generation_utils.py`).

Needs bench/setup.sh's venv plus transformers:
  bench/.venv/bin/pip install transformers==4.57.0 (the version dllm pins; 5.x dropped what Dream's code imports)
  bench/.venv/bin/python bench/hf_reference.py

With --compare DIR ROWS LOGITS it instead loads a directory `cogrpo export
--format hf` wrote into its architecture's own code and compares that
forward on ROWS (a JSON list of token-id lists) with `cogrpo logits`' output
LOGITS, printing the largest relative difference:
  cogrpo logits -c EXP --model DIR --input rows.json --out logits.json
  bench/.venv/bin/python bench/hf_reference.py --compare DIR rows.json logits.json

With --peft DIR ADAPTER ROWS LOGITS it loads DIR the same way, puts the LoRA
adapters `cogrpo export --format peft` wrote to ADAPTER on it with PEFT's own
`PeftModel.from_pretrained`, and compares that forward with the LoRA arm's
`cogrpo logits` output (and, to show the adapters matter, the base's alone):
  bench/.venv/bin/pip install peft==0.18.0
  cogrpo logits -c EXP --checkpoint runs/EXP/arms/model --input rows.json --out logits.json
  bench/.venv/bin/python bench/hf_reference.py --peft DIR ADAPTER rows.json logits.json
"""

import json
import shutil
import sys
from pathlib import Path

import torch
from safetensors.torch import load_file, save_file

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "bench"))
OUT = ROOT / "crates/mdm/tests/fixtures/hf"
TOKENIZER = ROOT / "crates/text/tests/fixtures/bpe.tokenizer.json"

from hf_models.llada.configuration_llada import LLaDAConfig  # noqa: E402
from hf_models.llada.modeling_llada import (  # noqa: E402
    LLaDAModel, LLaDAModelLM, create_model_config_from_pretrained_config)
from hf_models.dream.configuration_dream import DreamConfig  # noqa: E402
from hf_models.dream.modeling_dream import DreamModel  # noqa: E402

VOCAB = 1024  # embedding rows; the tokenizer has 1000 ids
MASK = 1  # <|mdm_mask|> in the tokenizer


def llada():
    config = LLaDAConfig(
        d_model=32, n_heads=4, n_kv_heads=2, n_layers=2, mlp_hidden_size=48,
        vocab_size=VOCAB, embedding_size=VOCAB, max_sequence_length=64,
        rope_theta=500000.0, rms_norm_eps=1e-5, mask_token_id=MASK,
        weight_tying=False, include_bias=False, include_qkv_bias=False,
        block_type="llama", layer_norm_type="rms", activation_type="silu",
        rope=True, alibi=False, scale_logits=False, init_device="cpu",
        flash_attention=False, attention_dropout=0.0, residual_dropout=0.0,
        embedding_dropout=0.0, pad_token_id=0, eos_token_id=0, use_cache=False,
    )
    config.use_cache = False  # transformers 5 drops it from the kwargs
    # LLaDAModelLM.__init__ builds on "cuda" whatever the config says; build
    # the inner model on the CPU and hand it over.
    inner = create_model_config_from_pretrained_config(config)
    inner.init_device = "cpu"
    return LLaDAModelLM(config, model=LLaDAModel(inner, init_params=True)), False


def dream():
    config = DreamConfig(
        hidden_size=32, num_attention_heads=4, num_key_value_heads=2,
        num_hidden_layers=2, intermediate_size=48, vocab_size=VOCAB,
        max_position_embeddings=64, rope_theta=1000000.0, rms_norm_eps=1e-6,
        tie_word_embeddings=False, mask_token_id=MASK, hidden_act="silu",
        attn_implementation="sdpa", pad_token_id=0,
    )
    return DreamModel(config).float(), True


SMDM_DIR = ROOT / "bench/hf_models/smdm"


def smdm_code():
    """SMDM's own `lit_gpt` modules (bench/hf_models/smdm, unchanged), with
    the GPU-only libraries they import replaced by what they compute on the
    CPU. The package's `__init__` (which needs Lightning) is skipped; the
    stand-ins, each a few lines of documented math, are:
    - `xformers.ops.SwiGLU(d, ff, bias=False, _pack_weights=False)`:
      `w3(silu(w1 x) * w2 x)` with three Linear layers named w1, w2, w3
      (xformers' definition, whose names the checkpoints carry);
    - `rotary_emb.apply_rotary(x1, x2, cos, sin, o1, o2, conj)`: flash-attn's
      CUDA kernel, o1 = x1 cos - x2 sin, o2 = x1 sin + x2 cos (sin negated
      with conj);
    - `flash_attn`, `dropout_layer_norm`: imported, never called on the CPU
      in float32 (attention takes the code's own SDPA path; the norm is
      `rmsnorm.RMSNorm`, the same formula as the fused one);
    - `lightning_utilities`' RequirementCache: false (no flash-attn here);
    - `lit_gpt.utils.find_multiple`, `lit_gpt.model.LLaMAMLP`: the former's
      one line, the latter diffmodel's own class."""
    import importlib
    import types

    def module(name, **attrs):
        m = types.ModuleType(name)
        m.__dict__.update(attrs)
        sys.modules[name] = m
        return m

    class SwiGLU(torch.nn.Module):
        def __init__(self, d, ff, bias=False, _pack_weights=False):
            super().__init__()
            self.w1 = torch.nn.Linear(d, ff, bias=bias)
            self.w2 = torch.nn.Linear(d, ff, bias=bias)
            self.w3 = torch.nn.Linear(ff, d, bias=bias)

        def forward(self, x):
            return self.w3(torch.nn.functional.silu(self.w1(x)) * self.w2(x))

    def apply_rotary(x1, x2, cos, sin, o1, o2, conj):
        sin = -sin if conj else sin
        r1, r2 = x1 * cos - x2 * sin, x1 * sin + x2 * cos
        o1.copy_(r1)
        o2.copy_(r2)

    module("xformers")
    module("xformers.ops", SwiGLU=SwiGLU)
    module("rotary_emb", apply_rotary=apply_rotary)
    module("flash_attn", flash_attn_func=None)
    module("dropout_layer_norm")
    module("lightning_utilities")
    module("lightning_utilities.core")
    module("lightning_utilities.core.imports", RequirementCache=lambda *_: False)
    package = module("lit_gpt")
    package.__path__ = [str(SMDM_DIR)]
    module("lit_gpt.utils", find_multiple=lambda n, k: n if n % k == 0 else n + k - n % k)
    lit_model = package.model = module("lit_gpt.model")
    config = importlib.import_module("lit_gpt.config")
    diffmodel = importlib.import_module("lit_gpt.diffmodel")
    lit_model.LLaMAMLP = diffmodel.LLaMAMLP
    return config, diffmodel


def smdm():
    """A tiny TransEncoder in SMDM's table's form (LLaMA MLP, RMSNorm, no
    biases, full rotary) over the 1,000-id tokenizer, whose vocabulary
    lit-gpt pads to 1,024 (`padding_multiple` 64): the embedding has
    1,025 rows, the mask last."""
    config, diffmodel = smdm_code()
    cfg = config.Config(
        name="Diff_LLaMA_tiny", block_size=64, vocab_size=1000, padding_multiple=64,
        n_layer=2, n_head=4, n_embd=32, rotary_percentage=1.0,
        parallel_residual=False, bias=False, _norm_class="RMSNorm", norm_eps=1e-5,
        _mlp_class="LLaMAMLP", intermediate_size=48, n_query_groups=4,
    )
    model = diffmodel.TransEncoder(cfg)
    # SMDM builds the rotary table in bfloat16 for flash-attn's kernel; the
    # reference keeps it in float32 (the only change to its forward).
    model.rope_cache = diffmodel.build_rope_cache(
        seq_len=cfg.block_size, n_elem=cfg.head_size, dtype=torch.float32,
        device=torch.device("cpu"))
    return model, cfg


def write_smdm(ids):
    """SMDM's release layout: one bfloat16 safetensors file of the model's
    state dict, no config; the tokenizer beside it."""
    model, cfg = smdm()
    randomize(model, 33)
    out = OUT / "smdm"
    shutil.rmtree(out, ignore_errors=True)
    out.mkdir(parents=True)
    state = {k: v.to(torch.bfloat16).contiguous() for k, v in model.state_dict().items()}
    save_file(state, str(out / "mdm-tiny.safetensors"))
    shutil.copy(TOKENIZER, out / "tokenizer.json")
    back, _ = smdm()
    back.load_state_dict({k: v.float() for k, v in load_file(str(out / "mdm-tiny.safetensors")).items()})
    back.eval()
    smdm_ids = torch.where(ids == MASK, cfg.padded_vocab_size, ids)  # SMDM's mask is the last row
    with torch.no_grad():
        logits = back(smdm_ids).float()
    save_file({"input_ids": smdm_ids.to(torch.int64).contiguous(),
               "logits": logits.contiguous()}, str(out / "reference.safetensors"))
    print("smdm", "rows", cfg.padded_vocab_size + 1, "logits", tuple(logits.shape),
          "max |logit|", float(logits.abs().max()))


def randomize(model, seed):
    """Every parameter random (biases and norm gains too), so that each
    one's place in the layout changes the logits."""
    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for name, p in model.named_parameters():
            if p.dim() == 1:
                p.copy_(1.0 + 0.3 * torch.randn(p.shape, generator=g))
            else:
                p.copy_(0.25 * torch.randn(p.shape, generator=g))


def load_dir(model, out):
    """The shards under `out` into `model`, in float32 (from_pretrained would
    rebuild LLaDA on "cuda")."""
    index = json.loads((out / "model.safetensors.index.json").read_text())
    state = {}
    for shard in sorted(set(index["weight_map"].values())):
        state.update(load_file(str(out / shard)))
    model.load_state_dict({k: v.float() for k, v in state.items()}, strict=True)
    return model


def logits_of(model, ids, shifted):
    model.eval()
    with torch.no_grad():
        logits = model(ids).logits.float()
    if shifted:  # generation_utils.py: position i reads the output at i - 1
        logits = torch.cat([logits[:, :1], logits[:, :-1]], dim=1)
    return logits


def load_exported(d):
    """A model directory in LLaDA's or Dream's layout, in its own code."""
    cfg = json.loads((d / "config.json").read_text())
    if cfg.get("model_type") == "llada":
        config = LLaDAConfig(**cfg)
        config.use_cache = False
        inner = create_model_config_from_pretrained_config(config)
        inner.init_device = "cpu"
        model = LLaDAModelLM(config, model=LLaDAModel(inner, init_params=True))
        shifted = False
    else:
        model, shifted = DreamModel(DreamConfig(**cfg)), True
    files = sorted(d.glob("model*.safetensors"))
    state = {}
    for f in files:
        state.update(load_file(str(f)))
    model.load_state_dict({k: v.float() for k, v in state.items()}, strict=True)
    return model.float(), shifted


def relative_error(model, shifted, rows, theirs):
    """max |model - cogrpo| / max |model| over the logits of ROWS."""
    ids = torch.tensor(json.loads(Path(rows).read_text()), dtype=torch.long)
    ours = logits_of(model, ids, shifted)
    got = json.loads(Path(theirs).read_text())
    b, n, v = got["shape"]
    cogrpo = torch.tensor(got["logits"], dtype=torch.float32).reshape(b, n, v)
    # The exported vocabulary ends with cogrpo's mask row (a zero head row).
    ours = ours[..., :v]
    return float((ours - cogrpo).abs().max() / ours.abs().max()), f"{b}x{n} positions, {v} logits each"


def compare(d, rows, theirs):
    model, shifted = load_exported(Path(d))
    rel, what = relative_error(model, shifted, rows, theirs)
    print(f"{d}: {what}; max |difference| / max |logit| = {rel:.2e}")
    return rel


def compare_peft(d, adapter, rows, theirs):
    """The base in its own code with PEFT's adapters against cogrpo's arm."""
    from peft import PeftModel

    base, shifted = load_exported(Path(d))
    without, _ = relative_error(base, shifted, rows, theirs)
    model = PeftModel.from_pretrained(base, adapter).float()
    rel, what = relative_error(model, shifted, rows, theirs)
    print(f"{adapter} on {d}: {what}; max |difference| / max |logit| = {rel:.2e} "
          f"(the base without the adapters: {without:.2e}; peft {__import__('peft').__version__})")
    return rel, without


def main():
    if len(sys.argv) == 5 and sys.argv[1] == "--compare":
        rel = compare(*sys.argv[2:])
        sys.exit(0 if rel < 1e-5 else 1)
    if len(sys.argv) == 6 and sys.argv[1] == "--peft":
        rel, without = compare_peft(*sys.argv[2:])
        sys.exit(0 if rel < 1e-5 and without > 100 * rel else 1)
    torch.manual_seed(0)
    ids = torch.tensor([[5, MASK, 17, 300, MASK, 999, 2, 64],
                        [MASK, MASK, 40, 41, 42, MASK, 7, 8]], dtype=torch.long)
    for name, make in [("llada", llada), ("dream", dream)]:
        model, shifted = make()
        randomize(model, 32)
        out = OUT / name
        shutil.rmtree(out, ignore_errors=True)
        # bfloat16 in two shards with an index, as the releases ship.
        model.to(torch.bfloat16).save_pretrained(out, safe_serialization=True,
                                                 max_shard_size="100KB")
        shutil.copy(TOKENIZER, out / "tokenizer.json")
        # The reference reads the written files back in float32.
        back = load_dir(make()[0], out)
        logits = logits_of(back, ids, shifted)
        save_file({"input_ids": ids.to(torch.int64).contiguous(),
                   "logits": logits.contiguous()}, str(out / "reference.safetensors"))
        shards = sorted(p.name for p in out.glob("model-*.safetensors"))
        print(name, "shards", shards, "logits", tuple(logits.shape),
              "max |logit|", float(logits.abs().max()))
    write_smdm(ids)
    (OUT / "versions.json").write_text(json.dumps(
        {"torch": torch.__version__, "transformers": __import__("transformers").__version__}))


if __name__ == "__main__":
    main()
