#!/usr/bin/env python3
"""The training side of the README's "LoRA over block-wise sampling" table:
for every finished run of scripts/sudoku4-text-lora.sh, each trained arm's
mean training reward over its last 10 iterations (from the arm's
state.json history) and its median update tokens/s (TensorBoard's
cogrpo/update_tokens_per_s; needs the `tensorboard` Python package), then
the mean and range over the seeds.

    python3 scripts/sudoku4-text-lora-training.py
"""
import glob
import json
import os
import statistics
from collections import defaultdict

from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

SWEEP = "runs/sudoku4-text-lora-sweep"


def last_checkpoint(arm_dir):
    ckpts = os.path.join(arm_dir, "checkpoints")
    with open(os.path.join(ckpts, "latest")) as f:
        return os.path.join(ckpts, f.read().strip(), "state.json")


def arm_numbers(run, arm):
    with open(last_checkpoint(os.path.join(run, "arms", arm))) as f:
        history = json.load(f)["history"]
    reward = statistics.mean(h["reward_mean"] for h in history[-10:])
    ea = EventAccumulator(os.path.join(run, "tb", arm))
    ea.Reload()
    tag = "cogrpo/update_tokens_per_s"  # the model update's; absent for `schedule`
    speeds = [e.value for e in ea.Scalars(tag)] if tag in ea.Tags()["scalars"] else []
    return reward, statistics.median(speeds) if speeds else float("nan")


def main():
    rows = defaultdict(list)
    for run in sorted(glob.glob(os.path.join(SWEEP, "*-s[0-9]*"))):
        if not os.path.isfile(os.path.join(run, "report.json")):
            continue
        variant = os.path.basename(run).rsplit("-s", 1)[0]
        for arm in ("model", "schedule", "joint", "alternate"):
            if os.path.isdir(os.path.join(run, "arms", arm)):
                rows[(variant, arm)].append(arm_numbers(run, arm))
    print("| variant | arm | seeds | training reward (last 10) | update tokens/s (median) |")
    print("| --- | --- | --- | --- | --- |")
    for (variant, arm), values in sorted(rows.items()):
        rewards = [r for r, _ in values]
        speeds = [s for _, s in values if s == s]
        speed = f"{statistics.mean(speeds):,.0f} ({min(speeds):,.0f}-{max(speeds):,.0f})" if speeds else "-"
        print(
            f"| {variant} | {arm} | {len(values)} | {statistics.mean(rewards):.3f} "
            f"({min(rewards):.3f}-{max(rewards):.3f}) | {speed} |"
        )


if __name__ == "__main__":
    main()
