#!/usr/bin/env bash
# Times the README's two quick-start commands as a new user meets them: a
# fresh clone, an empty cargo cache (so crate downloads count), the main job
# and then the tests. Run it on an idle machine; it takes 20-35 minutes on
# 2 cores and needs ~6 GB of disk under OUT.
#
#   scripts/fresh_clone_timing.sh [COMMIT] [OUT]
#
# COMMIT defaults to HEAD, OUT to /tmp/cogrpo-fresh-<commit>. Writes
# OUT/main.time and OUT/test.time (GNU time -v: "Elapsed (wall clock)",
# "Maximum resident set size") and prints both wall times. The test command
# is the README's (`TESTCMD` overrides it, to time an older commit whose
# README said otherwise).
set -euo pipefail

repo=$(cd "$(dirname "$0")/.." && pwd)
commit=$(git -C "$repo" rev-parse "${1:-HEAD}")
out=${2:-/tmp/cogrpo-fresh-${commit:0:8}}
testcmd=${TESTCMD:-cargo test --release --workspace}
command -v /usr/bin/time >/dev/null || { echo "needs GNU time (/usr/bin/time)" >&2; exit 2; }

rm -rf "$out"
mkdir -p "$out"
git clone -q "$repo" "$out/repo"
git -C "$out/repo" checkout -q "$commit"
export CARGO_HOME=$out/cargo-home
mkdir -p "$CARGO_HOME"

cd "$out/repo"
grep -m1 "model name" /proc/cpuinfo | sed 's/.*: /cpu: /' | tee "$out/machine"
echo "cores: $(nproc)" | tee -a "$out/machine"
/usr/bin/time -v -o "$out/main.time" \
    cargo run --release -- run --config experiments/sudoku4-cogrpo.toml >"$out/main.out" 2>"$out/main.err"
/usr/bin/time -v -o "$out/test.time" $testcmd >"$out/test.out" 2>"$out/test.err"

for f in main test; do
    echo "$f: $(grep 'Elapsed (wall clock)' "$out/$f.time" | awk '{print $NF}')" \
        "(build $(grep -m1 'Finished' "$out/$f.err" | sed 's/.* in //'))"
done
