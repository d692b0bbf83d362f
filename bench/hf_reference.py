#!/usr/bin/env python3
"""Regenerates crates/mdm/tests/fixtures/hf: tiny random LLaDA and Dream
models written by the releases' own PyTorch code in their real layout
(config.json, two bfloat16 shards with an index), and their float32 logits
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


def compare(d, rows, theirs):
    model, shifted = load_exported(Path(d))
    ids = torch.tensor(json.loads(Path(rows).read_text()), dtype=torch.long)
    ours = logits_of(model, ids, shifted)
    got = json.loads(Path(theirs).read_text())
    b, n, v = got["shape"]
    cogrpo = torch.tensor(got["logits"], dtype=torch.float32).reshape(b, n, v)
    # The exported vocabulary ends with cogrpo's mask row (a zero head row).
    ours = ours[..., :v]
    rel = float((ours - cogrpo).abs().max() / ours.abs().max())
    print(f"{d}: {b}x{n} positions, {v} logits each; max |difference| / max |logit| = {rel:.2e}")
    return rel


def main():
    if len(sys.argv) == 5 and sys.argv[1] == "--compare":
        rel = compare(*sys.argv[2:])
        sys.exit(0 if rel < 1e-5 else 1)
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
    (OUT / "versions.json").write_text(json.dumps(
        {"torch": torch.__version__, "transformers": __import__("transformers").__version__}))


if __name__ == "__main__":
    main()
