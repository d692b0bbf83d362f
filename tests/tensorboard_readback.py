"""Reads a Co-GRPO smoke run's TensorBoard events back with TensorBoard's own
reader and checks what a user would see (tests/viewer.rs runs it).

    python3 tests/tensorboard_readback.py RUN_DIR

Checks: every scalar is finite; the last step's reveal ratio is not logged
(that step reveals everything left, so it has no ratio); update throughput
appears only for iterations that updated the model; each arm has its
evaluation scalars; the resolved config and sample completions are text
records TensorBoard decodes, and the hyperparameters are an HParams record.
"""

import math
import sys
from pathlib import Path

from tensorboard.backend.event_processing.event_accumulator import EventAccumulator
from tensorboard.plugins.hparams import plugin_data_pb2


def load(folder):
    acc = EventAccumulator(str(folder), size_guidance={"scalars": 0, "tensors": 0})
    acc.Reload()
    return acc


def text(acc, tag):
    return [t.tensor_proto.string_val[0].decode() for t in acc.Tensors(tag)]


def main(run):
    tb = Path(run) / "tb"
    steps = 2  # cogrpo.steps of experiments/smoke/sudoku4-cogrpo.toml
    failures = []
    for arm in ["model", "schedule", "joint", "alternate"]:
        acc = load(tb / arm)
        scalars = acc.Tags()["scalars"]
        for tag in scalars:
            for e in acc.Scalars(tag):
                if not math.isfinite(e.value):
                    failures.append(f"{arm}: {tag} at step {e.step} is {e.value}")
        if f"cogrpo/schedule/ratio/step_{steps - 1}" in scalars:
            failures.append(f"{arm}: the last step's ratio is logged")
        if arm in ("joint", "schedule") and f"cogrpo/schedule/ratio/step_0" not in scalars:
            failures.append(f"{arm}: the learned ratio of step 0 is missing")
        updates = len(acc.Scalars("cogrpo/update_tokens_per_s")) if "cogrpo/update_tokens_per_s" in scalars else 0
        expected = {"model": 4, "joint": 4, "schedule": 0}.get(arm)
        if expected is not None and updates != expected:
            failures.append(f"{arm}: update_tokens_per_s logged {updates} times, expected {expected}")
        for t in (2, 4):
            if f"eval/solved@T{t}" not in scalars:
                failures.append(f"{arm}: no eval/solved@T{t} (has {sorted(scalars)})")
        tensors = acc.Tags()["tensors"]
        for tag in ("config", "samples", "eval/samples"):
            if tag not in tensors:
                failures.append(f"{arm}: no text record `{tag}` (has {tensors})")
        if "config" in tensors and "[cogrpo]" not in text(acc, "config")[0]:
            failures.append(f"{arm}: the config text lacks [cogrpo]")
        if "samples" in tensors and "| completion |" not in text(acc, "samples")[0]:
            failures.append(f"{arm}: the samples text is not the completions table")
        tag = "_hparams_/session_start_info"
        if tag not in tensors:
            failures.append(f"{arm}: no hparams record")
        else:
            data = plugin_data_pb2.HParamsPluginData.FromString(acc.SummaryMetadata(tag).plugin_data.content)
            hp = data.session_start_info.hparams
            if hp["cogrpo.group_size"].number_value != 4 or hp["task.kind"].string_value != "sudoku4":
                failures.append(f"{arm}: hparams read back wrong: {dict(hp)}")
    base = load(tb / "base")
    if "eval/solved@T2" not in base.Tags()["scalars"]:
        failures.append("base: no evaluation scalars")
    if failures:
        print("\n".join(failures))
        sys.exit(1)
    print("tensorboard read-back OK")


if __name__ == "__main__":
    main(sys.argv[1])
