#!/usr/bin/env python3
"""Where the GPU time goes, from cubecl's per-kernel profile log.

cubecl writes one line per kernel launch when its profiling logger is on
(`cubecl.toml` in the working directory: `[profiling.logger]`, `level =
"basic"`, `file = PATH`; scripts/gpu-profile.sh step 3). This sums the
durations per kernel kind over the second half of the log (after warm-up),
leaving out launches over 20 ms (the first launch of each kernel includes
its compilation), and prints each kind's share.

  python3 bench/cubecl_profile.py profile.log
"""
import collections
import re
import sys

UNITS = {"ns": 1e-9, "µs": 1e-6, "ms": 1e-3, "s": 1.0}


def main():
    if len(sys.argv) != 2:
        sys.exit(__doc__)
    rows = []
    for line in open(sys.argv[1], encoding="utf-8"):
        parts = [p.strip() for p in line.strip().strip("|").split("|")]
        m = re.fullmatch(r"([\d.]+)(ns|µs|ms|s)", parts[0]) if parts else None
        if not m or len(parts) < 2:
            continue
        seconds = float(m.group(1)) * UNITS[m.group(2)]
        kind = parts[1]
        if kind == "MatmulEntry":  # the routine and loaders name the kernel
            kind += " " + " ".join(p for p in parts[2:] if "Family" in p or "Loading" in p)
        rows.append((seconds, kind))
    total = collections.defaultdict(lambda: [0, 0.0])
    for seconds, kind in rows[len(rows) // 2:]:
        if seconds <= 0.02:
            total[kind][0] += 1
            total[kind][1] += seconds
    whole = sum(t for _, t in total.values())
    print(f"{len(rows)} launches; the second half, without compilations: {whole:.3f} s")
    print(f"{'launches':>9} {'seconds':>8} {'share':>6}  kernel")
    for kind, (n, t) in sorted(total.items(), key=lambda kv: -kv[1][1])[:15]:
        print(f"{n:>9} {t:>8.3f} {100 * t / whole:>5.1f}%  {kind[:110]}")


if __name__ == "__main__":
    main()
