#!/usr/bin/env python3
"""cogrpo against the PyTorch reference, side by side in one run.

For every model size and sequence length: random weights exported by
`cogrpo export --init` (SMDM layout) are loaded by both; the table reports
the logits' agreement, forward throughput, the training step (ELBO, backward,
AdamW), the samplers' throughput, each process's peak memory, and every row
as the ratio cogrpo / PyTorch (above 1: cogrpo is faster). Above the rows:
the CPU (model, family/model, the SIMD flags that choose the kernels,
caches), and each side's float32 matmul GFLOP/s at a 1024^3 square and the
model's MLP projections of 1024 rows, so that a table says what it was
measured on.

  bench/setup.sh && bench/.venv/bin/python bench/compare.py            # 1M and 10M
  bench/.venv/bin/python bench/compare.py --sizes 1M,10M,50M --seqs 64,256 --steps 16,64,256
  bench/.venv/bin/python bench/compare.py --sizes 10M,50M --seqs 64,256 --steps 16 --repeat 3

On a shared VM both sides' throughput moves by 10-50% between runs (one
run's PyTorch forward: 6.2k tokens/s, the next one's 9.5k): --repeat runs
everything again and closes with each row's range.
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
    if r["what"] == "machine":
        return
    ratio = "" if r["ratio"] is None else f"{r['ratio']:.2f}"
    if r["what"].startswith("logits"):
        vals = f"{r['cogrpo']:.2e} | rel {r['torch']:.2e}"
    else:
        vals = f"{r['cogrpo']:.0f} | {r['torch']:.0f}"
    print(f"| {r['size']} | {r['params']} | {r['seq']} | {r['what']} | {r['batch'] or ''} | "
          f"{r['steps'] or ''} | {vals} | {ratio} |", flush=True)


def summary(rows):
    """Each timed row's range over the repetitions: cogrpo, PyTorch and their
    ratio as min-max (the spread between runs on a shared VM is itself a
    result)."""
    groups = {}
    for r in rows:
        if r["ratio"] is not None:
            groups.setdefault((r["size"], r["seq"], r["what"], r["batch"], r["steps"]), []).append(r)
    print(f"\nRanges over {max(r.get('rep', 0) for r in rows) + 1} repetitions:\n")
    print("| size | seq | what | batch | steps | cogrpo | PyTorch | cogrpo / PyTorch |")
    print("|---|---|---|---|---|---|---|---|")
    span = lambda v, f: f"{f(min(v))}-{f(max(v))}" if len(v) > 1 else f(v[0])
    for (size, seq, what, batch, steps), rs in groups.items():
        print(f"| {size} | {seq} | {what} | {batch or ''} | {steps or ''} | "
              f"{span([r['cogrpo'] for r in rs], lambda x: f'{x:.0f}')} | "
              f"{span([r['torch'] for r in rs], lambda x: f'{x:.0f}')} | "
              f"{span([r['ratio'] for r in rs], lambda x: f'{x:.2f}')} |")


def machine_rows(common, ours_out, theirs_out, show_cpu):
    """Each side's measured matmul GFLOP/s at the same shapes (cogrpo bench's
    and reference.py's `machine` lines) as rows; the CPU once, above them."""
    find = lambda out: next((json.loads(l)["machine"] for l in out.splitlines() if l.startswith('{"machine"')), None)
    ours, theirs = find(ours_out), find(theirs_out)
    if ours is None or theirs is None:
        return []
    if show_cpu:
        cpu = ours["cpu"]
        caches = ", ".join(f"L{c['level']} {c['size_kib']} KiB / {c['shared_by']} thr"
                           for c in cpu["caches"] if c["kind"] != "Instruction")
        print(f"| CPU: {cpu['model_name']} ({cpu['vendor']} family {cpu['family']} model {cpu['model']}), "
              f"{cpu['threads']} threads; {' '.join(cpu['flags'])}; {caches}; torch {theirs['torch']}, "
              f"{theirs['threads']} threads |||||||||", flush=True)
    rows = [{**common, "what": "machine", "batch": 0, "steps": 0, "cogrpo": ours, "torch": theirs, "ratio": None}]
    for o, t in zip(ours["matmul"], theirs["matmul"]):
        m, k, n = o["shape"]
        rows.append({**common, "what": f"matmul GFLOP/s {m} x {k} @ {k} x {n}", "batch": 0, "steps": 0,
                     "cogrpo": o["gflops"], "torch": t["gflops"], "ratio": o["gflops"] / t["gflops"]})
    return rows


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
    p.add_argument("--repeat", type=int, default=1,
                   help="measure everything this many times (each side alternating with the other); "
                        "a summary then gives every row's range")
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
    for rep in range(a.repeat):
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
                common = dict(size=size, params=params, seq=seq, rep=rep)
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
                ours_rows = [json.loads(l) for l in ours_out.splitlines() if l.startswith('{"what"')]
                theirs_rows = [json.loads(l) for l in theirs_out.splitlines() if l.startswith('{"what"')]
                rows += machine_rows(common, ours_out, theirs_out, show_cpu=not shown)
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
    if a.repeat > 1:
        summary(rows)
    if a.json:
        json.dump(rows, open(a.json, "w"), indent=1)


if __name__ == "__main__":
    main()
