#!/usr/bin/env bash
# The simplest baselines beside README's digits table, on each seed's
# pre-trained model from `cogrpo run -c experiments/digits-cogrpo.toml`: the
# first-hitting sampler (uniformly random order, Zheng et al. 2024) at
# temperature 1, without and with guidance 1, at T = 2, 4, 8, 16, scored as
# the arms are (the same 400 heldout prompts, reward models and
# evaluation classifier). Writes runs/digits-baselines-seed<N>/ and prints
# the table over the seeds.
#
#   scripts/digits-baselines.sh            # seeds 0 1 2
#   SEEDS="0" scripts/digits-baselines.sh
set -euo pipefail
cd "$(dirname "$0")/.."
SEEDS=${SEEDS:-"0 1 2"}
cargo build --release --quiet
outs=()
for seed in $SEEDS; do
  run=runs/digits-cogrpo$([ "$seed" = 0 ] || echo "-seed$seed")
  out=runs/digits-baselines-seed$seed
  [ -d "$run/models" ] || { echo "$run: run the experiment with --seed $seed first" >&2; exit 2; }
  ckpt=$(ls -d "$run"/checkpoints/step-* | tail -1)
  # The reward models of that run (digit_realism is trained against its
  # generator), so the rewards are the arms'.
  mkdir -p "$out"
  cp -r "$run/models" "$out/"
  target/release/cogrpo eval -c experiments/digits-cogrpo.toml --seed "$seed" \
    --checkpoint "$ckpt" --set run.out_dir="\"$out\"" --set 'eval.steps=[2, 4, 8, 16]' \
    --set 'eval.samplers=[{kind = "first_hitting", temperature = 1.0}, {kind = "first_hitting", temperature = 1.0, guidance = 1.0}]' \
    >"$out/eval.txt"
  outs+=("$out")
done
python3 scripts/seeds_table.py "${outs[@]}" --metrics class_accuracy frechet reward
