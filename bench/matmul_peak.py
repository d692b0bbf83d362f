#!/usr/bin/env python3
"""PyTorch's float32 matmul throughput on the GPU, at the shapes of
`cargo run --release -p mdm --features cuda --example matmul_peak -- cuda`:
best of 5 after a warm-up, --precision fp32 (full float32) or tf32.

  python3 bench/matmul_peak.py --precision tf32
"""
import argparse
import time

import torch

p = argparse.ArgumentParser(description=__doc__)
p.add_argument("--precision", choices=["fp32", "tf32"], default="tf32")
a = p.parse_args()
torch.backends.cuda.matmul.allow_tf32 = a.precision == "tf32"
print(f"PyTorch {torch.__version__} on {torch.cuda.get_device_name()}, {a.precision} matmuls")
print(f"{'shape (m x k) @ (k x n)':<30} {'GFLOP/s':>10}")
shapes = [(n, n, n) for n in (1024, 4096, 8192)]
for d, ff in [(288, 1152), (512, 2048), (1024, 4096)]:
    shapes += [(4096, d, d), (4096, d, ff), (4096, ff, d)]
for m, k, n in shapes:
    x = torch.rand(m, k, device="cuda")
    y = torch.rand(k, n, device="cuda")
    (x @ y)[0, 0].item()
    best = float("inf")
    for _ in range(5):
        t = time.perf_counter()
        (x @ y)[0, 0].item()
        best = min(best, time.perf_counter() - t)
    print(f"{f'{m} x {k} @ {k} x {n}':<30} {2 * m * k * n / best / 1e9:>10.1f}", flush=True)
