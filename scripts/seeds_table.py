#!/usr/bin/env python3
"""Mean and range over seeds of a Co-GRPO experiment's evaluation.

Reads the `report.json` of each run directory (one per seed, written by
`cogrpo run`, with the fixed samplers evaluated beside the arms; or,
without one, the sampler sweep of its `summary.json`, written by `cogrpo
eval`, a sampler per row) and prints one markdown table per metric: a row
per arm or sampler, a column per evaluated step count, each cell
`mean (min-max)` over the runs. The metric `nfe` is the denoiser
evaluations per sample (the quality-per-NFE frontier reads each metric
against it).

    python3 scripts/seeds_table.py runs/digits-cogrpo runs/digits-cogrpo-seed1 \
        runs/digits-cogrpo-seed2 --metrics class_accuracy frechet reward

Standard library only.
"""

import argparse
import json
import math
import sys
from pathlib import Path

ARM_ORDER = ["base", "tuned", "model", "schedule", "joint", "alternate"]


def load(run: Path) -> dict:
    path = run / "report.json"
    if not path.exists() and (run / "summary.json").exists():
        summary = read(run / "summary.json")
        arms = {}
        for row in summary.get("eval", []):
            arms.setdefault(row["sampler"], {"eval": []})["eval"].append(row)
        return {"arms": arms, "seed": summary.get("seed", run.name)}
    report = read(path)
    for row in report.get("fixed_samplers", []):
        if row["sampler"] != "elbo":
            report["arms"].setdefault(row["sampler"], {"eval": []})["eval"].append(row)
    return report


def read(path: Path) -> dict:
    try:
        return json.loads(path.read_text())
    except OSError as e:
        sys.exit(f"{path}: {e.strerror} (has `cogrpo run` finished there?)")
    except json.JSONDecodeError as e:
        sys.exit(f"{path}: not JSON ({e})")


def values(reports: list, arm: str, metric: str, steps: int) -> list:
    out = []
    for r in reports:
        rows = r.get("arms", {}).get(arm, {}).get("eval", [])
        if metric == "nfe":
            # One NFE per (run, step count): every metric's row carries it.
            out += [row["nfe"] for row in rows if row["steps"] == steps][:1]
            continue
        out += [
            row["value"]
            for row in rows
            if row["metric"] == metric and row["steps"] == steps and row["value"] is not None
        ]
    return [v for v in out if not math.isnan(v)]


def cell(vs: list, digits: int) -> str:
    if not vs:
        return "-"
    mean = sum(vs) / len(vs)
    if len(vs) == 1:
        return f"{mean:.{digits}f}"
    return f"{mean:.{digits}f} ({min(vs):.{digits}f}-{max(vs):.{digits}f})"


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("runs", nargs="+", type=Path, help="run directories, one per seed")
    ap.add_argument("--metrics", nargs="+", default=["reward"])
    ap.add_argument("--digits", type=int, default=3, help="decimals in the cells")
    args = ap.parse_args()
    reports = [load(r) for r in args.runs]
    arms = [a for a in ARM_ORDER if any(a in r.get("arms", {}) for r in reports)]
    arms += sorted({a for r in reports for a in r.get("arms", {})} - set(arms))
    steps = sorted(
        {row["steps"] for r in reports for a in r.get("arms", {}).values() for row in a["eval"]}
    )
    seeds = ", ".join(str(r.get("seed")) for r in reports)
    for metric in args.metrics:
        print(f"\n{metric}, mean (min-max) over seeds {seeds}:\n")
        print("| arm | " + " | ".join(f"T = {t}" for t in steps) + " |")
        print("| --- |" + " --- |" * len(steps))
        for arm in arms:
            cells = [cell(values(reports, arm, metric, t), args.digits) for t in steps]
            print(f"| {arm} | " + " | ".join(cells) + " |")


if __name__ == "__main__":
    main()
