#!/usr/bin/env bash
# Pre-training under each matmul precision, several seeds: the loss curve,
# the held-out bound and the solve rate of `experiments/sudoku4.toml` with
# float32 matmuls (`--precision tf32`, float32 on the CPU) against autocast's
# bfloat16 matmuls (`--precision bf16`, emulated on the CPU). Every model is
# evaluated with float32 matmuls, so only training's precision differs.
#
#   scripts/precision-pretrain.sh [BINARY]          # SEEDS="0 1 2" PRECISIONS="tf32 bf16" STEPS=2000
#
# Runs land in $WORK (default runs/precision-pretrain); prints one table.
set -euo pipefail
cd "$(dirname "$0")/.."
BIN=${1:-target/release/cogrpo}
WORK=${WORK:-runs/precision-pretrain}
SEEDS=${SEEDS:-0 1 2}
PRECISIONS=${PRECISIONS:-tf32 bf16}
STEPS=${STEPS:-2000}
DEVICE=${DEVICE:-cpu}
mkdir -p "$WORK"
run() { # run LOG CMD...: appends CMD's output to LOG; on failure shows it and stops
  local log=$1; shift
  if ! "$@" >> "$log" 2>&1; then tail -20 "$log"; echo "failed: $*" >&2; exit 1; fi
}
rows=()
for seed in $SEEDS; do
  for p in $PRECISIONS; do
    dir="$WORK/$p-seed$seed"
    log="$WORK/$p-seed$seed.log"
    : > "$log"
    start=$SECONDS
    run "$log" "$BIN" pretrain -c experiments/sudoku4.toml --device "$DEVICE" --seed "$seed" --precision "$p" \
      --set run.out_dir=\""$dir"\" --set pretrain.steps="$STEPS" --set pretrain.checkpoint_every=0 \
      --set pretrain.warmup_steps=$((STEPS < 500 ? STEPS / 5 : 100))
    wall=$((SECONDS - start))
    run "$log" "$BIN" eval -c experiments/sudoku4.toml --device "$DEVICE" --seed "$seed" --precision tf32 \
      --set run.out_dir=\""$dir"\" --set 'eval.steps=[2,16]'
    curve=$(grep -E '^step +[0-9]+/' "$log" | awk '{print $4}' | paste -sd/ -)
    final=$(grep -oE 'final loss [0-9.]+' "$log" | awk '{print $3}')
    bits=$(grep -E '^elbo ' "$log" | awk '{print $4}' | head -1)
    s2=$(grep -E '^confidence\(temp=0\) +2 solved' "$log" | awk '{print $4}')
    s16=$(grep -E '^confidence\(temp=0\) +16 solved' "$log" | awk '{print $4}')
    rows+=("| $seed | $p | $curve | $final | $bits | $s2 | $s16 | $wall |")
  done
done
echo "| seed | precision | loss every log_every steps | final loss | bits/token | solved @2 | solved @16 | pre-training s |"
echo "|---|---|---|---|---|---|---|---|"
printf '%s\n' "${rows[@]}"
