#!/usr/bin/env bash
# Why does co-optimization lose on Sudoku? The ablation of README's table
# "Sudoku at 2 steps: ablation": for each seed, the main run (base, model,
# schedule, joint, alternate, tuned) and then single arms trained from the
# same pre-trained checkpoint with one setting changed. Every arm has the
# budget of the main run (300 iterations x 16 prompts x 8 rollouts) unless
# its name says otherwise. Results: runs/sudoku-ablation/results.tsv and
# runs/sudoku-ablation/table.md (mean and range over the seeds).
#
#   scripts/sudoku-ablation.sh            # seeds 0 1 2
#   SEEDS="0" scripts/sudoku-ablation.sh  # one seed
#   BIN=/tmp/cogrpo scripts/sudoku-ablation.sh
#
# About 25 minutes per seed on 2 cores. A variant already in results.tsv is
# skipped, so an interrupted sweep continues where it stopped.
set -euo pipefail
cd "$(dirname "$0")/.."
SEEDS=${SEEDS:-"0 1 2"}
CONFIG=experiments/sudoku4-cogrpo.toml
OUT=runs/sudoku-ablation
RESULTS="$OUT/results.tsv"
. scripts/lib/ablation.sh
resolve_bin
results_init

for seed in $SEEDS; do
  dir=runs/sudoku4-cogrpo$([ "$seed" = 0 ] || echo "-seed$seed")
  if ! done_already main "$seed"; then
    "$BIN" run -c "$CONFIG" --seed "$seed" >"$OUT/main-s$seed.out"
    collect main "$seed" "$OUT/main-s$seed.out"
  fi
  ckpt=$(ls -d "$dir"/checkpoints/step-* | tail -1)
  train() { # variant arm settings...
    local variant=$1 arm=$2
    shift 2
    done_already "$variant" "$seed" && return
    rm -rf "$OUT/$variant-s$seed"
    "$BIN" train -c "$CONFIG" --seed "$seed" --arm "$arm" --checkpoint "$ckpt" \
      --set run.out_dir="\"$OUT/$variant-s$seed\"" "$@" >"$OUT/$variant-s$seed.out"
    collect "$variant" "$seed" "$OUT/$variant-s$seed.out" "$arm"
  }
  # The alternation period (the paper's K) and each factor's share of it.
  train alternate_k2 alternate --set cogrpo.alternate_every=2
  train alternate_k50 alternate --set cogrpo.alternate_every=50
  train alternate_model25 alternate --set cogrpo.alternate_every=5 \
    --set cogrpo.alternate_every_schedule=15
  # Twice the budget: as many schedule iterations as the schedule arm.
  train alternate_600it alternate --set cogrpo.iterations=600
  # A faster model: does the schedule chase a moving model?
  train alternate_lr3e-4 alternate --set cogrpo.lr_model=3e-4
  # Fresh prompts for groups whose rewards are all equal.
  train alternate_resample2 alternate --set cogrpo.resample_rounds=2
  # Reveal counts over the 8 blanks only (the givens start revealed).
  train prefill_schedule schedule --set task.prefill_givens=true
  train prefill_alternate alternate --set task.prefill_givens=true
  if ! done_already prefill_base "$seed"; then
    "$BIN" eval -c "$CONFIG" --seed "$seed" --checkpoint "$ckpt" \
      --set run.out_dir="\"$OUT/prefill_base-s$seed\"" --set task.prefill_givens=true \
      --set 'eval.steps=[2, 4]' --set 'eval.samplers=[{kind = "confidence", temperature = 0.0}]' \
      >"$OUT/prefill_base-s$seed.out"
    collect prefill_base "$seed" "$OUT/prefill_base-s$seed.out"
  fi
done

results_table
