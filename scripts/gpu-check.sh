#!/usr/bin/env bash
# The GPU check in one call, bounded in time: CPU/GPU agreement (logits
# and gradients) at each matmul precision (f32, tf32, bf16) and each mode's
# deviation next to PyTorch's (bench/precision.py), evaluation with the
# device-side draws, the Co-GRPO experiment end to end (all arms, reduced
# budget), a timing table (text at tf32 and bf16), cogrpo against PyTorch
# eager on the same GPU (bench/compare.py),
# and data-parallel pre-training (two processes on the GPU). Prints
# everything; exits non-zero if a check fails. Steps run in order of
# importance; one that would start past BUDGET seconds is skipped (and
# says so), so a bounded device lease still returns the log.
#
#   scripts/gpu-check.sh [BINARY]            # on the GPU machine (BINARY built with --features cuda)
#   DEVICE=cpu STEPS=20 ARM_PRETRAIN=20 ARM_ITERS=2 BATCHES=64 TEXT_BATCH=16 PYTHON=bench/.venv/bin/python \
#     CMP_SIZES=1M CMP_SEQS=64 scripts/gpu-check.sh target/release/cogrpo   # dry run on a CPU
#
# Work files land in $WORK (default /tmp/gpu-check): logs, run folders,
# mem.csv, precision.json, compare-$DEVICE.json.
set -uo pipefail
cd "$(dirname "$0")/.."

BIN=${1:-target/release/cogrpo}
DEVICE=${DEVICE:-cuda}
WORK=${WORK:-/tmp/gpu-check}
BUDGET=${BUDGET:-400}
STEPS=${STEPS:-300}
BATCHES=${BATCHES:-256 1024}
TEXT_BATCH=${TEXT_BATCH:-256}
# Step 4: the Co-GRPO experiment's pre-training steps and iterations per arm.
ARM_PRETRAIN=${ARM_PRETRAIN:-600}
ARM_ITERS=${ARM_ITERS:-100}
# Step 6: PyTorch's precision (tf32 matches burn-cuda's float32 matmuls),
# the model sizes and sequence lengths of the comparison, its time bound.
PYTHON=${PYTHON:-python3}
CMP_PRECISION=${CMP_PRECISION:-tf32}
CMP_SIZES=${CMP_SIZES:-10M,50M,300M}
CMP_SEQS=${CMP_SEQS:-256}
CMP_TIMEOUT=${CMP_TIMEOUT:-240}
mkdir -p "$WORK"
fail=0
started=$SECONDS
step() { echo; echo "== $* (at $((SECONDS - started)) s)"; }
due() { # due NAME: false (and says so) once the budget is spent
  if [ $((SECONDS - started)) -ge "$BUDGET" ]; then echo "SKIP $1: past the ${BUDGET} s budget"; return 1; fi
}
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
  ( while true; do nvidia-smi --query-gpu=memory.used --format=csv,noheader,nounits; sleep 0.5; done ) > "$WORK/mem.csv" 2>/dev/null &
  MEM_PID=$!
  trap 'kill $MEM_PID 2>/dev/null' EXIT
fi
"$BIN" --version

RUN="$WORK/sudoku4"
step "1. short pre-training on $DEVICE (sudoku4, $STEPS steps)"
check pretrain timeout 120 "$BIN" pretrain -c experiments/sudoku4.toml --device "$DEVICE" \
  --set run.out_dir="$RUN" --set pretrain.steps="$STEPS" --set pretrain.checkpoint_every=0 \
  --set pretrain.log_every=100 --set pretrain.warmup_steps=$((STEPS / 5)) --set run.threads=1
latest="$RUN/checkpoints/$(cat "$RUN/checkpoints/latest" 2>/dev/null)"

step "2. CPU and $DEVICE logits on that checkpoint, each matmul precision; PyTorch's modes beside them"
if [ "$DEVICE" = cuda ]; then
  for p in f32 tf32 bf16; do
    due "agree $p" && check "agree --precision $p" timeout 90 "$BIN" agree -c experiments/sudoku4.toml \
      --set run.out_dir="$RUN" --rows 256 --precision "$p"
  done
else
  echo "(dry run: no GPU to compare with)"
fi
if "$PYTHON" -c "import torch" 2>/dev/null; then
  check "export" "$BIN" export -c experiments/sudoku4.toml --checkpoint "$latest" --out "$WORK/sudoku4.safetensors"
  due precision.py && check precision.py timeout 150 "$PYTHON" bench/precision.py --cogrpo "$BIN" \
    --config experiments/sudoku4.toml --weights "$WORK/sudoku4.safetensors" --heads 4 --seq 32 \
    --device "$DEVICE" --json "$WORK/precision.json"
else
  echo "SKIP precision.py: $PYTHON cannot import torch"
fi

step "3. evaluation on $DEVICE: greedy and temperature-1 sampling (float64 draws on the device)"
due eval && check eval timeout 120 "$BIN" eval -c experiments/sudoku4.toml --device "$DEVICE" --set run.out_dir="$RUN" \
  --set 'eval.steps=[4,16]' --set eval.nll_samples=1 \
  --set 'eval.samplers=[{kind="confidence",temperature=0.0},{kind="first_hitting",temperature=1.0}]'
due sample && check sample timeout 60 "$BIN" sample -c experiments/sudoku4.toml --device "$DEVICE" --set run.out_dir="$RUN" \
  --prompt 3102200002100320 -n 4 --set sampler.kind=first_hitting --set sampler.temperature=1.0

step "4. the Co-GRPO experiment on $DEVICE (sudoku4-cogrpo: $ARM_PRETRAIN pre-training steps, every arm $ARM_ITERS iterations)"
if due cogrpo; then
  check cogrpo timeout 240 "$BIN" run -c experiments/sudoku4-cogrpo.toml --device "$DEVICE" \
    --set run.out_dir="$WORK/cogrpo" --set pretrain.steps="$ARM_PRETRAIN" --set pretrain.checkpoint_every=0 \
    --set pretrain.warmup_steps=$((ARM_PRETRAIN < 500 ? ARM_PRETRAIN / 5 : 100)) \
    --set cogrpo.iterations="$ARM_ITERS" --set cogrpo.checkpoint_every=0 --set run.threads=1
  sed -n '/^## Evaluation/,/^## Schedule/p' "$WORK/cogrpo/report.md" 2>/dev/null | head -14
fi

step "5. timing table on $DEVICE"
for b in $BATCHES; do
  due "bench $b" && check "bench sudoku4 batch $b" timeout 120 "$BIN" bench -c experiments/sudoku4.toml --device "$DEVICE" \
    --batch "$b" --steps 1,16 --train-steps 5 --set pretrain.batch_size="$b" --set run.threads=1
done
for p in tf32 bf16; do
  due "bench text $p" && check "bench text batch $TEXT_BATCH --precision $p" timeout 120 "$BIN" bench \
    -c experiments/text.toml --device "$DEVICE" --precision "$p" --batch "$TEXT_BATCH" --steps 16 \
    --train-steps 5 --set pretrain.batch_size="$TEXT_BATCH" --set run.threads=1
done

step "6. cogrpo against PyTorch eager on $DEVICE (bench/compare.py, PyTorch at $CMP_PRECISION, sizes $CMP_SIZES)"
if ! "$PYTHON" -c "import torch" 2>/dev/null; then
  echo "SKIP compare.py: $PYTHON cannot import torch"
elif due compare.py; then
  # Rows print as each size finishes, so a timeout still leaves the smaller sizes.
  check "compare.py" timeout "$CMP_TIMEOUT" "$PYTHON" bench/compare.py --cogrpo "$BIN" --device "$DEVICE" \
    --precision "$CMP_PRECISION" --sizes "$CMP_SIZES" --seqs "$CMP_SEQS" --steps 16 --train-steps 3 \
    --json "$WORK/compare-$DEVICE.json"
fi

step "7. data parallelism on $DEVICE: --devices over the GPUs there are, and 2 processes over 127.0.0.1"
NGPU=2
[ "$DEVICE" = cuda ] && NGPU=$(nvidia-smi -L 2>/dev/null | wc -l)
DP=(-c experiments/sudoku4.toml --device "$DEVICE" --set pretrain.steps="$STEPS"
  --set pretrain.warmup_steps=$((STEPS / 5)) --set pretrain.log_every=100
  --set pretrain.checkpoint_every=0 --set run.threads=1)
if [ "$NGPU" -ge 2 ]; then
  due "--devices" && check "pretrain --devices $NGPU" timeout 120 "$BIN" pretrain "${DP[@]}" \
    --set run.out_dir="$WORK/dp-devices" --devices "$NGPU"
else
  echo "(one GPU: --devices needs two; the two processes below share it)"
fi
if due "--nodes 2"; then
  PORT=$((30000 + RANDOM % 20000))
  timeout 120 "$BIN" pretrain "${DP[@]}" --set run.out_dir="$WORK/dp-nodes" \
    --nodes 2 --node-rank 1 --coordinator "127.0.0.1:$PORT" > "$WORK/dp-node1.log" 2>&1 &
  NODE1=$!
  check "pretrain --nodes 2 (node 0; node 1 logs to $WORK/dp-node1.log)" timeout 120 "$BIN" pretrain \
    "${DP[@]}" --set run.out_dir="$WORK/dp-nodes" --nodes 2 --node-rank 0 --coordinator "127.0.0.1:$PORT"
  check "pretrain --nodes 2 (node 1)" wait $NODE1
fi

if [ "$DEVICE" = cuda ]; then
  kill $MEM_PID 2>/dev/null
  peak=$(sort -n "$WORK/mem.csv" | tail -1)
  echo; echo "GPU memory used, peak while the checks ran: ${peak:-?} MiB"
fi
echo
echo "gpu-check took $((SECONDS - started)) s"
if [ $fail = 0 ]; then echo "gpu-check: ALL PASSED"; else echo "gpu-check: SOME CHECKS FAILED"; fi
exit $fail
