#!/usr/bin/env bash
# The model-family comparisons of README's Results ("Model families"): the
# MDM, the ARM and the ILM on the same backbone and budget, trained at once
# (one thread each, so the three share the machine alike), then evaluated.
#
#   scripts/families.sh star   # star-easy: 6000 x 128 graphs each (~1 h on 2 cores)
#   scripts/families.sh star-medium   # 2000 x 128 graphs each (~25 min)
#   scripts/families.sh star-hard     # 1200 x 64 graphs each (~40 min)
#   scripts/families.sh text   # Tiny Shakespeare: 1000 x 32 windows each (~40 min),
#                              # held-out bits per character and samples/s vs quality
#
# Runs go to runs/families-<task>-<family>; a finished run is reused.
# BIN=PATH runs a binary built earlier (see scripts/lib/ablation.sh).
set -euo pipefail
cd "$(dirname "$0")/.."
source scripts/lib/ablation.sh
resolve_bin
what=${1:?usage: scripts/families.sh star|star-medium|star-hard|text}

config() { # task family
  if [ "$2" = mdm ]; then echo "experiments/$1.toml"; else echo "experiments/$1-$2.toml"; fi
}

case "$what" in
star | star-medium | star-hard)
  task=star-easy
  [ "$what" != star ] && task=$what
  sets=(--set run.threads=1)
  ;;
text)
  task=text
  # 1000 steps, and the likelihoods on 200 held-out windows: the ILM's bound
  # runs the network once per inserted character.
  sets=(--set run.threads=1 --set pretrain.steps=1000 --set eval.max_examples=200)
  ;;
*)
  echo "unknown comparison: $what (star, star-medium, star-hard or text)" >&2
  exit 2
  ;;
esac

mkdir -p runs
for f in mdm arm ilm; do
  "$BIN" run -c "$(config $task $f)" --set run.name=families-$task-$f "${sets[@]}" \
    >runs/families-$task-$f.log 2>&1 &
done
wait
grep -h -A20 "^sampler " runs/families-$task-*.log

if [ "$what" = text ]; then
  # Quality against speed: the share of real words in 200 unconditional
  # samples at temperature 1 (the `words` reward), and the seconds it took;
  # the MDM at several step counts (its speed knob).
  for f in mdm arm ilm; do
    steps='[128]'
    [ $f = mdm ] && steps='[16,32,64,128]'
    "$BIN" eval -c "$(config text $f)" --set run.name=families-text-$f \
      --set run.out_dir=runs/families-text-$f-quality \
      --checkpoint runs/families-text-$f/checkpoints/latest \
      --set 'eval.samplers=[{kind="first_hitting",temperature=1.0}]' \
      --set "eval.steps=$steps" --set eval.max_examples=200 --set eval.nll_samples=0 \
      --set run.threads=1 2>&1 | grep -A10 "^sampler "
  done
fi
