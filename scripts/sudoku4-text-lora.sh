#!/usr/bin/env bash
# The README's "LoRA over block-wise sampling" table: for each seed, the
# arms of experiments/sudoku4-text-lora.toml (base, tuned, model, schedule,
# joint, alternate; LoRA rank 8 on a frozen LLaDA-layout base, two blocks)
# and the same arms with full fine-tuning (the file without [cogrpo.lora],
# lr_model 1e-4), all from one base model. Results:
# runs/sudoku4-text-lora-sweep/results.tsv and table.md (mean and range
# over the seeds), and each run's wall time and peak RSS in resources.tsv.
#
#   scripts/sudoku4-text-lora.sh            # seeds 0 1 2
#   SEEDS="0" scripts/sudoku4-text-lora.sh  # one seed
#   BIN=/tmp/cogrpo scripts/sudoku4-text-lora.sh
#
# The base (runs/sudoku4-llada) is pre-trained and exported first if it is
# missing. A (variant, seed) already in results.tsv is skipped, so an
# interrupted sweep continues where it stopped.
set -euo pipefail
cd "$(dirname "$0")/.."
SEEDS=${SEEDS:-"0 1 2"}
CONFIG=experiments/sudoku4-text-lora.toml
OUT=runs/sudoku4-text-lora-sweep
RESULTS="$OUT/results.tsv"
. scripts/lib/ablation.sh
resolve_bin
results_init
[ -f "$OUT/resources.tsv" ] || printf 'variant\tseed\twall_s\tpeak_rss_kib\n' >"$OUT/resources.tsv"

if [ ! -f runs/sudoku4-llada/config.json ]; then
  "$BIN" pretrain -c experiments/sudoku4-prompts.toml --resume
  "$BIN" export -c experiments/sudoku4-prompts.toml --format hf --out runs/sudoku4-llada
fi

# Full fine-tuning: the same file without [cogrpo.lora], at full
# fine-tuning's learning rate.
FULL="$OUT/full.toml"
awk '/^\[cogrpo.lora\]/ { skip = 1; next } /^\[/ { skip = 0 } !skip' "$CONFIG" |
  sed 's/^lr_model = .*/lr_model = 1e-4/' >"$FULL"

for seed in $SEEDS; do
  for variant in lora full; do
    done_already "$variant" "$seed" && continue
    cfg=$CONFIG
    [ "$variant" = full ] && cfg=$FULL
    dir="$OUT/$variant-s$seed"
    rm -rf "$dir"
    start=$(date +%s)
    /usr/bin/time -v "$BIN" run -c "$cfg" --seed "$seed" --set run.out_dir="\"$dir\"" \
      >"$dir.out" 2>"$dir.err"
    rss=$(awk -F': ' '/Maximum resident set size/ { print $2 }' "$dir.err")
    printf '%s\t%s\t%s\t%s\n' "$variant" "$seed" "$(($(date +%s) - start))" "$rss" \
      >>"$OUT/resources.tsv"
    collect "$variant" "$seed" "$dir.out"
  done
done
results_table
cat "$OUT/resources.tsv"
