#!/usr/bin/env bash
# The digits experiment's further arms (README, "Digits: further arms"),
# each trained from a seed's pre-trained checkpoint of `cogrpo run -c
# experiments/digits-cogrpo.toml [--seed N]` with that run's reward models,
# at the main arms' budget (50 iterations x 16 prompts x 8 rollouts), one
# setting changed:
#   perstep_*  the per-step Gaussian policy instead of the network
#   order_*    plus a learned position order (Plackett-Luce)
#   t2_*       trained at T = 2 instead of 4
#   fh_*       reference sampler first-hitting (random order) at temperature 1
#              instead of confidence order
# Results: runs/digits-ablation/results.tsv and table.md (mean and range over
# the seeds). A (variant, seed) already in results.tsv is skipped, so an
# interrupted sweep continues; variants run in the order below, all seeds of
# one before the next.
#
#   scripts/digits-ablation.sh              # seeds 0 1 2, about 30 min per seed (estimated)
#   SEEDS="0" BIN=/tmp/cogrpo scripts/digits-ablation.sh
set -euo pipefail
cd "$(dirname "$0")/.."
SEEDS=${SEEDS:-"0 1 2"}
CONFIG=experiments/digits-cogrpo.toml
OUT=runs/digits-ablation
RESULTS="$OUT/results.tsv"
RUN_PREFIX=runs/digits-cogrpo
. scripts/lib/ablation.sh
resolve_bin
results_init

FH='cogrpo.reference={kind = "first_hitting", temperature = 1.0}'
for variant in perstep_schedule perstep_alternate order_schedule t2_schedule t2_alternate \
  fh_schedule fh_alternate t2_model; do
  for seed in $SEEDS; do
    case $variant in
      perstep_*) train_from_run "$variant" "${variant#*_}" "$seed" --set 'cogrpo.schedule.kind="per_step"' ;;
      order_*) train_from_run "$variant" "${variant#*_}" "$seed" --set cogrpo.schedule.order=true ;;
      t2_*) train_from_run "$variant" "${variant#*_}" "$seed" --set cogrpo.steps=2 ;;
      fh_*) train_from_run "$variant" "${variant#*_}" "$seed" --set "$FH" ;;
    esac
  done
done
results_table
