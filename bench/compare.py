#!/usr/bin/env python3
"""cogrpo against the PyTorch reference, side by side in one run.

For every model size and sequence length: random weights exported by
`cogrpo export --init` (SMDM layout) are loaded by both; the table reports
the logits' agreement, forward throughput, the training step (ELBO, backward,
AdamW), the samplers' throughput, each process's peak memory, and every row
as the ratio cogrpo / PyTorch (above 1: cogrpo is faster).

  bench/setup.sh && bench/.venv/bin/python bench/compare.py            # 1M and 10M
  bench/.venv/bin/python bench/compare.py --sizes 1M,10M,50M --seqs 64,256 --steps 16,64,256
  python3 bench/compare.py --device cuda --precision tf32 --sizes 10M,50M,300M   # on a GPU

--device cuda runs both sides on the GPU: cogrpo with a `--features cuda`
build, and PyTorch eager. --precision sets both sides' matmuls:
- fp32: float32 matmuls (cogrpo --precision f32);
- tf32: TF32 tensor cores, burn-cuda 0.21's default for float32 matmuls;
- bf16: autocast, cogrpo --precision bf16.
"""
import argparse
import json
import os
import random
import subprocess
import sys
import tempfile

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
SIZES = {  # d_model, layers, heads, d_ff (vocabulary: Tiny Shakespeare's 65 characters)
    "1M": (128, 4, 4, 512),
    "10M": (288, 8, 6, 1152),
    "50M": (512, 12, 8, 2048),
    "300M": (1024, 20, 16, 4096),
}


def run(cmd):
    """Runs cmd in the repository root; returns its stdout, exits on failure."""
    p = subprocess.run(cmd, capture_output=True, text=True, cwd=ROOT)
    if p.returncode != 0:
        sys.exit(f"command failed ({p.returncode}): {' '.join(cmd)}\n{p.stderr}")
    return p.stdout


def peak_rss(cmd):
    """Runs cmd; returns (stdout, peak resident memory in MiB) via GNU time."""
    if not os.path.exists("/usr/bin/time"):
        return run(cmd), float("nan")
    with tempfile.NamedTemporaryFile("r", suffix=".rss") as f:
        out = run(["/usr/bin/time", "-f", "%M", "-o", f.name] + cmd)
        return out, int(f.read().strip().splitlines()[-1]) / 1024


def show(r):
    ratio = "" if r["ratio"] is None else f"{r['ratio']:.2f}"
    if r["what"].startswith("logits"):
        vals = f"{r['cogrpo']:.2e} | rel {r['torch']:.2e}"
    else:
        vals = f"{r['cogrpo']:.0f} | {r['torch']:.0f}"
    print(f"| {r['size']} | {r['params']} | {r['seq']} | {r['what']} | {r['batch'] or ''} | "
          f"{r['steps'] or ''} | {vals} | {ratio} |", flush=True)


def cogrpo_sets(size, seq):
    d, layers, heads, ff = SIZES[size]
    return ["--set", f"model.d_model={d}", "--set", f"model.n_layers={layers}", "--set", f"model.n_heads={heads}",
            "--set", f"model.d_ff={ff}", "--set", f"task.seq_len={seq}"]


def main():
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--cogrpo", default=os.path.join(ROOT, "target/release/cogrpo"))
    p.add_argument("--sizes", default="1M,10M")
    p.add_argument("--seqs", default="64,256")
    p.add_argument("--forward-batches", default="1,16,64")
    p.add_argument("--train-batch", type=int, default=16)
    p.add_argument("--train-steps", type=int, default=3)
    p.add_argument("--sample-batch", type=int, default=16)
    p.add_argument("--steps", default="16,64")
    p.add_argument("--grpo-steps", type=int, default=4, help="steps per trajectory of the Co-GRPO update row")
    p.add_argument("--json", default=None, help="also write the rows here")
    p.add_argument("--device", default="cpu", choices=["cpu", "cuda"])
    p.add_argument("--precision", default="fp32", choices=["fp32", "tf32", "bf16"],
                   help="PyTorch's matmul precision (--device cuda)")
    a = p.parse_args()
    # Both sides at the same matmul precision: PyTorch's fp32 / tf32 / bf16
    # autocast are cogrpo's --precision f32 / tf32 / bf16.
    ours_precision = {"fp32": "f32", "tf32": "tf32", "bf16": "bf16"}[a.precision]
    ref_dev = ["--device", a.device, "--precision", a.precision]
    dev = ["--device", a.device, "--precision", ours_precision]
    if not os.path.exists(a.cogrpo):
        sys.exit(f"{a.cogrpo} not found: cargo build --release first")
    py = sys.executable
    ref = os.path.join(ROOT, "bench/reference.py")
    cfg = os.path.join(ROOT, "experiments/text.toml")
    rows = []
    tmp = tempfile.mkdtemp(prefix="cogrpo-compare-")
    print("| size | params | seq | what | batch | steps | cogrpo | PyTorch | cogrpo / PyTorch |")
    print("|---|---|---|---|---|---|---|---|---|", flush=True)
    shown = 0
    for size in a.sizes.split(","):
        heads = SIZES[size][2]
        for seq in [int(s) for s in a.seqs.split(",")]:
            w = os.path.join(tmp, f"{size}-{seq}.safetensors")
            out = run([a.cogrpo, "export", "-c", cfg, "--init", "--out", w] + cogrpo_sets(size, seq))
            params = int(out.split("(")[1].split()[0])
            # Agreement: 4 rows, about half the positions masked.
            rng = random.Random(seq)
            rows_in = [[65 if rng.random() < 0.5 else rng.randrange(65) for _ in range(seq)] for _ in range(4)]
            inp = os.path.join(tmp, "rows.json")
            json.dump(rows_in, open(inp, "w"))
            run([a.cogrpo, "logits", "-c", cfg, "--checkpoint", w, "--input", inp,
                 "--out", os.path.join(tmp, "ours.json")] + dev + cogrpo_sets(size, seq))
            run([py, ref, "logits", "--weights", w, "--heads", str(heads), "--input", inp,
                 "--out", os.path.join(tmp, "theirs.json")] + ref_dev)
            ours = json.load(open(os.path.join(tmp, "ours.json")))["logits"]
            theirs = json.load(open(os.path.join(tmp, "theirs.json")))["logits"]
            diff = max(abs(x - y) for x, y in zip(ours, theirs))
            rel = diff / max(abs(y) for y in theirs)
            rows.append({"size": size, "params": params, "seq": seq, "what": "logits max |diff| (rel)",
                         "batch": 4, "steps": 0, "cogrpo": diff, "torch": rel, "ratio": None})
            # Timing, each side in its own process.
            common = dict(size=size, params=params, seq=seq)
            ours_out, ours_rss = peak_rss(
                [a.cogrpo, "bench", "-c", cfg, "--json", "--batch", str(a.sample_batch), "--forward-batch",
                 a.forward_batches, "--steps", a.steps, "--train-steps", str(a.train_steps),
                 "--grpo-steps", str(a.grpo_steps), "--set", f"pretrain.batch_size={a.train_batch}"]
                + dev + cogrpo_sets(size, seq))
            theirs_out, theirs_rss = peak_rss(
                [py, ref, "bench", "--weights", w, "--heads", str(heads), "--seq", str(seq), "--batch",
                 str(a.sample_batch), "--forward-batch", a.forward_batches, "--train-batch", str(a.train_batch),
                 "--train-steps", str(a.train_steps), "--grpo-steps", str(a.grpo_steps), "--steps", a.steps]
                + ref_dev)
            ours_rows = [json.loads(l) for l in ours_out.splitlines() if l.startswith("{")]
            theirs_rows = [json.loads(l) for l in theirs_out.splitlines() if l.startswith('{"what"')]
            key = lambda r: (r["what"].split(" ")[0].split("(")[0], r["batch"], r["steps"] if not r["what"].startswith("train") else 0)
            theirs_by = {key(r): r for r in theirs_rows}
            for r in ours_rows:
                t = theirs_by.get(key(r))
                if t is None:
                    continue
                rows.append({**common, "what": key(r)[0], "batch": r["batch"], "steps": key(r)[2],
                             "cogrpo": r["tokens_per_s"], "torch": t["tokens_per_s"],
                             "ratio": r["tokens_per_s"] / t["tokens_per_s"]})
            rows.append({**common, "what": "peak RSS MiB", "batch": 0, "steps": 0, "cogrpo": ours_rss,
                         "torch": theirs_rss, "ratio": None})
            for r in rows[shown:]:
                show(r)
            shown = len(rows)
    if a.json:
        json.dump(rows, open(a.json, "w"), indent=1)


if __name__ == "__main__":
    main()
