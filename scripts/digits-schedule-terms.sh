#!/usr/bin/env bash
# The schedule factor's regularisers and the cost of steps, measured on
# digits (README "Digits: the schedule's KL, its entropy and a cost on
# NFE"). Each variant trains one arm from a seed's pre-trained checkpoint of
# `cogrpo run -c experiments/digits-cogrpo.toml [--seed N]` with that run's
# reward models, at the main arms' budget (50 iterations x 16 prompts x 8
# rollouts at T = 4, frozen discriminator), one setting changed, evaluated
# as the main arms are (T = 2, 4, 8, 16; T = 1 would change the reward: the
# realism discriminator is trained on samples at every evaluation T):
#   ks01_joint, ks1_joint      joint, cogrpo.beta_schedule = 0.1 / 1
#                              (KL of the schedule to the reference schedule)
#   ent001_joint, ent01_joint  joint, cogrpo.entropy_schedule = 0.01 / 0.1
#                              (a bonus on the schedule policy's entropy)
#   ks1adv_joint               joint, beta_schedule = 1 and the realism
#                              discriminator learning against the arm's
#                              rollouts (`[cogrpo.adversarial]`, cap 0.7;
#                              scripts/digits-adversarial.sh)
#   advbest_alternate          alternate with the discriminator learning
#                              (cap 0.9) and the checkpoint chosen by
#                              Frechet distance on the validation split
#                              (cogrpo.eval_every = 10, keep_best =
#                              "frechet"): model selection that never sees
#                              the test prompts
#   nfe4_alternate             alternate, rewards.cost.nfe = 4: the reward
#                              less 4 x NFE / 64 (at the reference's 7 NFE
#                              per image at T = 4, 0.44 of a reward of at
#                              most 2); the learned reveal ratio may reveal
#                              every pixel before step 4 and skip the rest
#   ctrl_joint                 joint unchanged: on the machine that made
#                              runs/digits-cogrpo it reproduces that run's
#                              joint rows exactly (the controls are then
#                              the main runs' rows); on another CPU it is
#                              the control to compare with
# Results: runs/digits-schedule-terms/results.tsv and table.md (mean and
# range over the seeds); a (variant, seed) already there is skipped.
#
#   scripts/digits-schedule-terms.sh          # seeds 0 1 2, every variant
#   SEEDS="0" VARIANTS="ks1_joint" BIN=/tmp/cogrpo scripts/digits-schedule-terms.sh
set -euo pipefail
cd "$(dirname "$0")/.."
SEEDS=${SEEDS:-"0 1 2"}
CONFIG=experiments/digits-cogrpo.toml
OUT=runs/digits-schedule-terms
RESULTS="$OUT/results.tsv"
RUN_PREFIX=runs/digits-cogrpo
. scripts/lib/ablation.sh
resolve_bin
results_init

for variant in ${VARIANTS:-ctrl_joint ks01_joint ks1_joint ent001_joint ent01_joint ks1adv_joint advbest_alternate nfe4_alternate}; do
  for seed in $SEEDS; do
    arm=${variant#*_}
    case $variant in
      ctrl_*) set_one='cogrpo.beta_schedule=0.0' ;;
      ks01_*) set_one='cogrpo.beta_schedule=0.1' ;;
      ks1_*) set_one='cogrpo.beta_schedule=1.0' ;;
      ks1adv_*) set_one='cogrpo.beta_schedule=1.0' ;;
      advbest_*) set_one='cogrpo.eval_every=10' ;;
      ent001_*) set_one='cogrpo.entropy_schedule=0.01' ;;
      ent01_*) set_one='cogrpo.entropy_schedule=0.1' ;;
      nfe4_*) set_one='rewards.cost.nfe=4.0' ;;
      *) echo "unknown variant $variant" >&2; exit 2 ;;
    esac
    extra=()
    case $variant in
      *adv_*) extra=(--set 'cogrpo.adversarial={max_accuracy = 0.7}') ;;
      advbest_*) extra=(--set 'cogrpo.adversarial={}' --set 'cogrpo.keep_best="frechet"') ;;
    esac
    train_from_run "$variant" "$arm" "$seed" --set "$set_one" "${extra[@]}"
  done
done
results_table
