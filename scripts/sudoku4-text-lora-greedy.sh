#!/usr/bin/env bash
# The ablation under the README's "LoRA over block-wise sampling" table:
# the schedule, joint and alternate arms learn the token temperature, which
# evaluation keeps (they sample where base, tuned's grid and model decode
# greedily). This re-judges every finished arm of scripts/sudoku4-text-lora.sh
# with `cogrpo.eval_learned_temperature = false` (greedy tokens, the rest of
# the learned schedule in mode), same test puzzles and step counts.
# Results: runs/sudoku4-text-lora-sweep/greedy.tsv and greedy.md (mean and
# range over the seeds), as variant/arm-greedy rows.
#
#   scripts/sudoku4-text-lora-greedy.sh     # after (or during) the sweep
#   BIN=/tmp/cogrpo scripts/sudoku4-text-lora-greedy.sh
#
# A (variant/arm, seed) already in greedy.tsv is skipped; a run without its
# report.json (not finished) is left for a later call.
set -euo pipefail
cd "$(dirname "$0")/.."
CONFIG=experiments/sudoku4-text-lora.toml
SWEEP=runs/sudoku4-text-lora-sweep
OUT=$SWEEP/greedy
RESULTS=$SWEEP/greedy.tsv
. scripts/lib/ablation.sh
resolve_bin
results_init

for run in "$SWEEP"/lora-s* "$SWEEP"/full-s*; do
  [ -f "$run/report.json" ] || continue
  name=$(basename "$run")
  variant=${name%-s*}
  seed=${name##*-s}
  cfg=$CONFIG
  [ "$variant" = full ] && cfg=$SWEEP/full.toml
  for arm in schedule joint alternate; do
    [ -d "$run/arms/$arm" ] || continue
    done_already "$variant/$arm-greedy" "$seed" && continue
    log="$OUT/$name-$arm.out"
    "$BIN" eval -c "$cfg" --seed "$seed" --arm "$run/arms/$arm" \
      --set run.out_dir="\"$OUT/$name-$arm\"" \
      --set cogrpo.eval_learned_temperature=false >"$log"
    collect "$variant/$arm-greedy" "$seed" "$log" "$arm"
  done
done
results_table >/dev/null
mv "$OUT/table.md" "$SWEEP/greedy.md"
cat "$SWEEP/greedy.md"
