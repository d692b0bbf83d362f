#!/usr/bin/env python3
"""How far each float32 mode's logits are from exact float32, for cogrpo and
PyTorch on the same weights and inputs.

The reference is cogrpo on the CPU (float32 matmuls, checked against PyTorch
on the CPU to ~1e-6 by tests/torch_reference.rs, and again here). On a GPU
every row is measured against it: cogrpo at --precision tf32 and f32,
PyTorch at fp32, tf32 and bf16 (autocast). This states the TF32 bound of
`cogrpo agree` against PyTorch's own TF32 mode.

  python3 bench/precision.py --cogrpo target/release/cogrpo --config experiments/sudoku4.toml \\
      --weights w.safetensors --heads 4 --seq 32 --device cuda

Prints one line per row, `max |x - ref| / max |ref|`; --json writes them.
"""
import argparse
import json
import os
import random
import subprocess
import sys
import tempfile

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, os.path.join(ROOT, "bench"))
from reference import load_file  # noqa: E402 (torch's safetensors reader, or the fallback)


def run(cmd):
    p = subprocess.run(cmd, capture_output=True, text=True, cwd=ROOT)
    if p.returncode != 0:
        sys.exit(f"command failed ({p.returncode}): {' '.join(cmd)}\n{p.stderr}")


def read(path):
    return json.load(open(path))["logits"]


def relative(x, ref):
    return max(abs(a - b) for a, b in zip(x, ref)) / max(abs(b) for b in ref)


def main():
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--cogrpo", required=True)
    p.add_argument("--config", required=True)
    p.add_argument("--weights", required=True, help="SMDM safetensors (`cogrpo export`)")
    p.add_argument("--heads", type=int, required=True)
    p.add_argument("--seq", type=int, required=True)
    p.add_argument("--rows", type=int, default=64)
    p.add_argument("--device", default="cuda", choices=["cpu", "cuda"])
    p.add_argument("--json", default=None)
    a = p.parse_args()
    vocab = load_file(a.weights)["transformer.wte.weight"].shape[0] - 1
    rng = random.Random(0)  # about half the positions masked (mask id = vocab)
    rows = [[vocab if rng.random() < 0.5 else rng.randrange(vocab) for _ in range(a.seq)] for _ in range(a.rows)]
    tmp = tempfile.mkdtemp(prefix="cogrpo-precision-")
    inp = os.path.join(tmp, "rows.json")
    json.dump(rows, open(inp, "w"))

    def ours(device, precision):
        out = os.path.join(tmp, f"cogrpo-{device}-{precision}.json")
        run([a.cogrpo, "logits", "-c", a.config, "--checkpoint", a.weights, "--input", inp, "--out", out,
             "--device", device, "--precision", precision])
        return read(out)

    def theirs(device, precision):
        out = os.path.join(tmp, f"torch-{device}-{precision}.json")
        run([sys.executable, os.path.join(ROOT, "bench/reference.py"), "logits", "--weights", a.weights,
             "--heads", str(a.heads), "--input", inp, "--out", out, "--device", device, "--precision", precision])
        return read(out)

    ref = ours("cpu", "f32")
    results = {"PyTorch cpu fp32": relative(theirs("cpu", "fp32"), ref)}
    if a.device == "cuda":
        for precision in ("f32", "tf32"):
            results[f"cogrpo cuda {precision}"] = relative(ours("cuda", precision), ref)
        for precision in ("fp32", "tf32", "bf16"):
            results[f"PyTorch cuda {precision}"] = relative(theirs("cuda", precision), ref)
    print(f"logits of {a.rows} rows x {a.seq} positions x {vocab}, against cogrpo on the CPU (float32):")
    for name, rel in results.items():
        print(f"  {name:<20} max |x - ref| / max |ref| = {rel:.3e}", flush=True)
    if a.json:
        json.dump(results, open(a.json, "w"), indent=1)


if __name__ == "__main__":
    main()
