#!/usr/bin/env bash
# The digits arms with a realism discriminator that keeps learning
# (`[cogrpo.adversarial]`, README "Digits: a discriminator that keeps
# learning"), each trained from a seed's pre-trained checkpoint of `cogrpo
# run -c experiments/digits-cogrpo.toml [--seed N]` with that run's reward
# models, at the main arms' budget (50 iterations x 16 prompts x 8
# rollouts at T = 4). The discriminator starts as the run's frozen one and
# takes 8 Adam steps after every iteration (half real `train` digits, half
# from a replay of the last 1,024 rollouts) unless it already tells the
# iteration's rollouts apart with balanced accuracy above the cap. The
# final evaluation scores with the frozen reward models (the same judge for
# every arm) and the evaluation classifier.
#   adv_joint, adv_alternate       joint / alternate, cap 0.9 (the default)
#   adv70_joint, adv70_alternate   the same with the cap at 0.7 (a judge kept
#                                  from winning keeps its reward informative)
#   advfh_alternate                alternate over a first-hitting reference
#                                  (random order, temperature 1), cap 0.7
# Results: runs/digits-adversarial/results.tsv and table.md (mean and range
# over the seeds); a (variant, seed) already there is skipped.
#
#   scripts/digits-adversarial.sh            # seeds 0 1 2, every variant
#   SEEDS="0" VARIANTS="adv70_alternate" BIN=/tmp/cogrpo scripts/digits-adversarial.sh
set -euo pipefail
cd "$(dirname "$0")/.."
SEEDS=${SEEDS:-"0 1 2"}
CONFIG=experiments/digits-cogrpo.toml
OUT=runs/digits-adversarial
RESULTS="$OUT/results.tsv"
RUN_PREFIX=runs/digits-cogrpo
. scripts/lib/ablation.sh
resolve_bin
results_init

FH='cogrpo.reference={kind = "first_hitting", temperature = 1.0}'
for variant in ${VARIANTS:-adv_joint adv_alternate adv70_joint adv70_alternate advfh_alternate}; do
  for seed in $SEEDS; do
    arm=${variant#*_}
    case $variant in
      adv_*) train_from_run "$variant" "$arm" "$seed" --set 'cogrpo.adversarial={}' ;;
      adv70_*) train_from_run "$variant" "$arm" "$seed" --set 'cogrpo.adversarial={max_accuracy = 0.7}' ;;
      advfh_*) train_from_run "$variant" "$arm" "$seed" --set 'cogrpo.adversarial={max_accuracy = 0.7}' \
        --set "$FH" ;;
    esac
  done
done
results_table
