#!/usr/bin/env bash
# Star graphs shrunk until the families converge on a CPU (issue 36): the
# MDM, the ILM and the ARM on the same backbone and budget, per variant and
# seed, each pre-trained from scratch by `cogrpo run -c
# experiments/<variant>.toml --seed S --set model.family=F` (one thread,
# so that two runs share the 2 cores alike), then evaluated greedily on the
# variant's 5000 test graphs. Extra `--set` settings (a recipe: steps,
# batch, lr, model size) follow the defaults of the experiment file and are
# given as SETS.
#
# Results: runs/star-shrunk/results.tsv (`variant/family seed steps metric
# value`, the MDM at each evaluated step count, ILM and ARM greedy) and
# table.md (mean and range over the seeds); a (variant/family, seed)
# already there is skipped, so an interrupted sweep resumes.
#
#   scripts/star-shrunk.sh                         # star-tiny, 3 families, seeds 0 1 2
#   VARIANTS="star-small" FAMILIES="mdm ilm" SEEDS="0" scripts/star-shrunk.sh
#   SETS="--set pretrain.steps=6000" OUT=runs/star-shrunk-6k scripts/star-shrunk.sh
set -euo pipefail
cd "$(dirname "$0")/.."
SEEDS=${SEEDS:-"0 1 2"}
OUT=${OUT:-runs/star-shrunk}
RESULTS="$OUT/results.tsv"
. scripts/lib/ablation.sh
resolve_bin
results_init

read -r -a extra <<<"${SETS:-}"
for variant in ${VARIANTS:-star-tiny}; do
  for family in ${FAMILIES:-mdm ilm arm}; do
    for seed in $SEEDS; do
      name=$variant/$family
      done_already "$name" "$seed" && continue
      out=$OUT/$variant-$family-s$seed
      "$BIN" run -c "experiments/$variant.toml" --seed "$seed" \
        --set "model.family=\"$family\"" --set run.threads=1 \
        --set run.out_dir="\"$out\"" "${extra[@]}" >"$out.out" 2>"$out.err"
      collect "$name" "$seed" "$out.out"
    done
  done
done
results_table
