#!/usr/bin/env bash
# Data parallelism on one machine, four ways, at the same global batch:
# pre-training tokens/s and Co-GRPO seconds per iteration of
#   1 process x 1 thread                      (the baseline)
#   1 process x 2 threads                     (run.threads = 2)
#   2 processes x 1 thread                    (--nodes 2, over 127.0.0.1)
#   1 process x 2 ranks                       (--devices 2, burn's local all-reduce)
# Usage: scripts/distributed-throughput.sh [CONFIG]   (default: the sudoku4
# Co-GRPO experiment; a config without [cogrpo] measures pre-training only).
# STEPS and ITERS set the lengths. Numbers for
# docs/distributed.md; they depend on the machine's cores and memory.
set -euo pipefail
cd "$(dirname "$0")/.."
cargo build --release --quiet
BIN=target/release/cogrpo
CFG=${1:-experiments/sudoku4-cogrpo.toml}
STEPS=${STEPS:-200}
ITERS=${ITERS:-10}
OUT=$(mktemp -d)
trap 'rm -rf "$OUT"' EXIT
PORT=$((30000 + RANDOM % 20000))

HAS_COGRPO=0
grep -q '^\[cogrpo\]' "$CFG" && HAS_COGRPO=1

common() { # out_dir threads
  echo --set "run.out_dir=\"$1\"" --set "run.threads=$2" \
    --set "pretrain.steps=$STEPS" --set pretrain.checkpoint_every=0 --set pretrain.warmup_steps=1
  ((HAS_COGRPO)) && echo --set "cogrpo.iterations=$ITERS" --set cogrpo.checkpoint_every=0
  return 0
}

# One way: pre-train, then one Co-GRPO arm from that checkpoint.
# $1 name, $2 threads per rank, rest: distributed flags (a {RANK} is the node rank).
way() {
  local name=$1 threads=$2; shift 2
  local dir="$OUT/$name" nodes=1
  [[ " $* " == *" --nodes 2 "* ]] && nodes=2
  local jobs=(pretrain)
  ((HAS_COGRPO)) && jobs+=("train --arm model")
  for job in "${jobs[@]}"; do
    PORT=$((PORT + 4))
    for ((r = nodes - 1; r >= 0; r--)); do
      local flags=("${@//\{RANK\}/$r}")
      [[ $nodes == 2 ]] && flags+=(--coordinator "127.0.0.1:$PORT")
      # shellcheck disable=SC2046
      if ((r > 0)); then
        $BIN $job -c "$CFG" $(common "$dir" "$threads") "${flags[@]}" > "$dir.$r.log" 2>&1 &
      else
        $BIN $job -c "$CFG" $(common "$dir" "$threads") "${flags[@]}" > "$dir.$r.log" 2>&1 ||
          { cat "$dir.$r.log"; exit 1; }
      fi
    done
    wait
    grep -hE "^pre-trained|^arm " "$dir.0.log" | sed "s/^/$name: /"
  done
}

echo "$CFG: $STEPS pre-training steps (warm-up 1)$( ((HAS_COGRPO)) && echo ", $ITERS Co-GRPO iterations (arm model)")"
way "1x1-thread" 1
way "1x2-threads" 2
way "2-processes" 1 --nodes 2 --node-rank "{RANK}"
way "1x2-devices" 1 --devices 2
