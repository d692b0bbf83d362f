# Shared by the ablation sweeps (scripts/*-ablation.sh): one results file of
# `variant seed steps metric value` rows, filled from the evaluation tables
# that `cogrpo run`, `train` and `eval` print, resumable, and summarised as
# mean and range over the seeds. Source it after setting RESULTS and OUT.

# BIN: the binary to run. BIN=PATH runs one built earlier (a copy, so that
# rebuilding during a sweep cannot change it half way); by default the
# release build, built now.
resolve_bin() {
  if [ -z "${BIN:-}" ]; then
    cargo build --release --quiet
    BIN=target/release/cogrpo
  fi
}

# Starts RESULTS with its header unless it exists.
results_init() {
  mkdir -p "$OUT"
  [ -f "$RESULTS" ] || printf 'variant\tseed\tsteps\tmetric\tvalue\n' >"$RESULTS"
}

# The eval table's rows (sampler steps metric value n nfe wall_s) of one
# command's stdout, as results lines; the sampler column names the arm, or
# only rows of `arm` are kept and named `variant`.
collect() { # variant seed file [arm]
  awk -v variant="$1" -v seed="$2" -v arm="${4:-}" \
    'NF == 7 && $4 ~ /^[0-9.]+$/ && (arm == "" || $1 == arm) {
       name = (arm == "" ? variant "/" $1 : variant)
       printf "%s\t%s\t%s\t%s\t%s\n", name, seed, $2, $3, $4 }' "$3" >>"$RESULTS"
}

# Whether RESULTS already holds rows of `variant` (or `variant/ARM`) for seed.
done_already() { # variant seed
  awk -F'\t' -v v="$1" -v s="$2" \
    '($1 == v || index($1, v "/") == 1) && $2 == s { found = 1 } END { exit !found }' "$RESULTS"
}

# OUT/table.md: mean and range over the seeds of every (variant, steps,
# metric), printed too.
results_table() {
  awk -F'\t' 'NR > 1 {
      k = $1 "\t" $3 "\t" $4; n[k]++; s[k] += $5
      if (!(k in lo) || $5 < lo[k]) lo[k] = $5
      if (!(k in hi) || $5 > hi[k]) hi[k] = $5
    }
    END {
      for (k in n) { split(k, f, "\t")
        printf "| %s | %s | %s | %d | %.3f | %.3f-%.3f |\n", f[1], f[2], f[3], n[k], s[k] / n[k], lo[k], hi[k] }
    }' "$RESULTS" | sort >"$OUT/rows.md"
  {
    echo "| variant | steps | metric | seeds | mean | range |"
    echo "| --- | --- | --- | --- | --- | --- |"
    cat "$OUT/rows.md"
  } >"$OUT/table.md"
  rm "$OUT/rows.md"
  cat "$OUT/table.md"
}

# Trains arm `arm` as variant `variant` from seed `seed`'s pre-trained
# checkpoint of the run `$RUN_PREFIX[-seedN]` (made by `cogrpo run -c
# $CONFIG --seed N`), with that run's learned reward models (image tasks:
# digit_realism is trained against its generator), one setting changed by
# the `--set` arguments that follow; its rows go to RESULTS.
train_from_run() { # variant arm seed settings...
  local variant=$1 arm=$2 seed=$3
  shift 3
  done_already "$variant" "$seed" && return
  local run=$RUN_PREFIX$([ "$seed" = 0 ] || echo "-seed$seed")
  [ -d "$run/checkpoints" ] || { echo "$run: run the experiment with --seed $seed first" >&2; exit 2; }
  local ckpt out=$OUT/$variant-s$seed
  ckpt=$(ls -d "$run"/checkpoints/step-* | tail -1)
  rm -rf "$out"
  mkdir -p "$out"
  [ -d "$run/models" ] && cp -r "$run/models" "$out/"
  "$BIN" train -c "$CONFIG" --seed "$seed" --arm "$arm" --checkpoint "$ckpt" \
    --set run.out_dir="\"$out\"" "$@" >"$out.out"
  collect "$variant" "$seed" "$out.out" "$arm"
}
