#!/usr/bin/env bash
# The GPU check in one call: CPU/GPU agreement on one checkpoint, a short
# pre-training and evaluation on the device, float64 sampling, a timing
# table with GPU memory, data-parallel pre-training (several GPUs of the
# machine, two processes on one), and cogrpo against PyTorch eager on the
# same device (bench/compare.py). Prints everything; exits non-zero if a check fails.
#
#   scripts/gpu-check.sh [BINARY]            # on the GPU machine (BINARY built with --features cuda)
#   DEVICE=cpu STEPS=20 BATCHES=64 TEXT_BATCH=16 PYTHON=bench/.venv/bin/python CMP_SIZES=1M CMP_SEQS=64 \
#     scripts/gpu-check.sh target/release/cogrpo   # dry run on a CPU
#
# Outputs land in $OUT (default /tmp/gpu-check): logs, run folders, mem.csv.
set -uo pipefail
cd "$(dirname "$0")/.."

BIN=${1:-target/release/cogrpo}
DEVICE=${DEVICE:-cuda}
OUT=${OUT:-/tmp/gpu-check}
STEPS=${STEPS:-300}
BATCHES=${BATCHES:-256 1024}
TEXT_BATCH=${TEXT_BATCH:-256}
# Step 7: PyTorch's precision (tf32 matches burn-cuda's float32 matmuls),
# the model sizes and sequence lengths of the comparison, its time bound.
PYTHON=${PYTHON:-python3}
CMP_PRECISION=${CMP_PRECISION:-tf32}
CMP_SIZES=${CMP_SIZES:-10M,50M,300M}
CMP_SEQS=${CMP_SEQS:-256}
CMP_TIMEOUT=${CMP_TIMEOUT:-420}
mkdir -p "$OUT"
fail=0
step() { echo; echo "== $*"; }
check() { # check NAME CMD...: runs CMD, records pass/fail
  local name=$1; shift
  if "$@"; then echo "PASS $name"; else echo "FAIL $name (exit $?)"; fail=1; fi
}

if [ "$DEVICE" = cuda ]; then
  # libnvrtc (kernels are compiled at run time) from the CUDA toolkit.
  for d in /usr/local/cuda/lib64 /usr/local/cuda-*/lib64 /usr/local/cuda/targets/x86_64-linux/lib; do
    if ls "$d"/libnvrtc.so* >/dev/null 2>&1; then export LD_LIBRARY_PATH="$d:${LD_LIBRARY_PATH:-}"; break; fi
  done
  if [ -z "${LD_LIBRARY_PATH:-}" ]; then
    lib=$(find /usr /opt -name 'libnvrtc.so*' 2>/dev/null | head -1)
    [ -n "$lib" ] && export LD_LIBRARY_PATH="$(dirname "$lib")"
  fi
  echo "LD_LIBRARY_PATH=${LD_LIBRARY_PATH:-}"
  nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv,noheader
  # GPU memory in use, sampled twice a second while the checks run.
  ( while true; do nvidia-smi --query-gpu=memory.used --format=csv,noheader,nounits; sleep 0.5; done ) > "$OUT/mem.csv" 2>/dev/null &
  MEM_PID=$!
  trap 'kill $MEM_PID 2>/dev/null' EXIT
fi
"$BIN" --version

RUN="$OUT/sudoku4"
step "1. short pre-training on $DEVICE (sudoku4, $STEPS steps)"
check pretrain timeout 180 "$BIN" pretrain -c experiments/sudoku4.toml --device "$DEVICE" \
  --set run.out_dir="$RUN" --set pretrain.steps="$STEPS" --set pretrain.checkpoint_every=0 \
  --set pretrain.log_every=100 --set pretrain.warmup_steps=$((STEPS / 5)) --set run.threads=1

step "2. CPU and $DEVICE logits on the same checkpoint (relative error < 1e-3)"
if [ "$DEVICE" = cuda ]; then
  check agree timeout 120 "$BIN" agree -c experiments/sudoku4.toml --set run.out_dir="$RUN" --rows 256
else
  echo "(dry run: no GPU to compare with; the CPU side is exercised by step 3)"
fi

step "3. evaluation on $DEVICE: greedy and temperature-1 sampling (float64 draws)"
# Categorical draws always happen on the host in float64 (logits of the
# positions being revealed are gathered to the host first), on every backend:
# there is no float32 device path to fall back from.
echo "sampler: categorical draws in float64 on the host (policy::categorical), device computes logits"
check eval timeout 150 "$BIN" eval -c experiments/sudoku4.toml --device "$DEVICE" --set run.out_dir="$RUN" \
  --set 'eval.steps=[4,16]' --set eval.nll_samples=1 \
  --set 'eval.samplers=[{kind="confidence",temperature=0.0},{kind="first_hitting",temperature=1.0}]'
check sample timeout 60 "$BIN" sample -c experiments/sudoku4.toml --device "$DEVICE" --set run.out_dir="$RUN" \
  --prompt 3102200002100320 -n 4 --set sampler.kind=first_hitting --set sampler.temperature=1.0

step "4. Co-GRPO on $DEVICE (alternate arm from step 1's checkpoint, 20 iterations of 32 x 8 rollouts)"
latest="$RUN/checkpoints/$(cat "$RUN/checkpoints/latest" 2>/dev/null)"
check cogrpo timeout 240 "$BIN" train -c experiments/sudoku4-cogrpo.toml --device "$DEVICE" --arm alternate \
  --checkpoint "$latest" --set run.out_dir="$OUT/cogrpo" --set cogrpo.iterations=20 \
  --set cogrpo.alternate_every=5 --set cogrpo.prompts_per_iteration=32 --set cogrpo.log_every=5 \
  --set run.threads=1

step "5. timing table on $DEVICE"
for b in $BATCHES; do
  check "bench sudoku4 batch $b" timeout 120 "$BIN" bench -c experiments/sudoku4.toml --device "$DEVICE" \
    --batch "$b" --steps 1,16 --train-steps 5 --set pretrain.batch_size="$b" --set run.threads=1
done
check "bench text batch $TEXT_BATCH" timeout 120 "$BIN" bench -c experiments/text.toml --device "$DEVICE" \
  --batch "$TEXT_BATCH" --steps 16 --train-steps 5 --set pretrain.batch_size="$TEXT_BATCH" --set run.threads=1

step "6. data parallelism on $DEVICE: --devices over the GPUs there are, and 2 processes over 127.0.0.1"
NGPU=2
[ "$DEVICE" = cuda ] && NGPU=$(nvidia-smi -L 2>/dev/null | wc -l)
DP=(-c experiments/sudoku4.toml --device "$DEVICE" --set pretrain.steps="$STEPS"
  --set pretrain.warmup_steps=$((STEPS / 5)) --set pretrain.log_every=100
  --set pretrain.checkpoint_every=0 --set run.threads=1)
if [ "$NGPU" -ge 2 ]; then
  check "pretrain --devices $NGPU" timeout 240 "$BIN" pretrain "${DP[@]}" \
    --set run.out_dir="$OUT/dp-devices" --devices "$NGPU"
else
  echo "(one GPU: --devices needs two; the two processes below share it)"
fi
PORT=$((30000 + RANDOM % 20000))
timeout 240 "$BIN" pretrain "${DP[@]}" --set run.out_dir="$OUT/dp-nodes" \
  --nodes 2 --node-rank 1 --coordinator "127.0.0.1:$PORT" > "$OUT/dp-node1.log" 2>&1 &
NODE1=$!
check "pretrain --nodes 2 (node 0; node 1 logs to $OUT/dp-node1.log)" timeout 240 "$BIN" pretrain \
  "${DP[@]}" --set run.out_dir="$OUT/dp-nodes" --nodes 2 --node-rank 0 --coordinator "127.0.0.1:$PORT"
check "pretrain --nodes 2 (node 1)" wait $NODE1

step "7. cogrpo against PyTorch eager on $DEVICE (bench/compare.py, PyTorch at $CMP_PRECISION, sizes $CMP_SIZES)"
if "$PYTHON" -c "import torch" 2>/dev/null; then
  check "compare.py" timeout "$CMP_TIMEOUT" "$PYTHON" bench/compare.py --cogrpo "$BIN" --device "$DEVICE" \
    --precision "$CMP_PRECISION" --sizes "$CMP_SIZES" --seqs "$CMP_SEQS" --steps 16 --train-steps 3 \
    --json "$OUT/compare-$DEVICE.json"
else
  echo "SKIP compare.py: $PYTHON cannot import torch"
fi

if [ "$DEVICE" = cuda ]; then
  kill $MEM_PID 2>/dev/null
  peak=$(sort -n "$OUT/mem.csv" | tail -1)
  echo; echo "GPU memory used, peak while the checks ran: ${peak:-?} MiB"
fi
echo
if [ $fail = 0 ]; then echo "gpu-check: ALL PASSED"; else echo "gpu-check: SOME CHECKS FAILED"; fi
exit $fail
