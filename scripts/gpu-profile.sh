#!/usr/bin/env bash
# Where cogrpo's GPU time goes, next to PyTorch: matmul throughput through
# burn (TF32 and the float32-accurate split) and through PyTorch at the
# benchmark models' shapes; the 50M training step and Co-GRPO update
# (bench rows of bench/compare.py) with burn's default and its fullest
# autotuning; and cubecl's per-kernel profile of the 300M training step.
#
#   scripts/gpu-profile.sh BINARY MATMUL_PEAK [STRATEGIES]     # on the GPU machine
#
# BINARY: cogrpo built with --features cuda; MATMUL_PEAK and STRATEGIES: the
# examples (cargo build --release -p mdm --features cuda --example
# matmul_peak --example cuda_matmul_strategies); with STRATEGIES, step 4
# times cubek's matmul strategies one by one (docs/gpu.md).
# Work files land in $WORK (default /tmp/gpu-profile).
set -uo pipefail
cd "$(dirname "$0")/.."
BIN=${1:?cogrpo binary}
PEAK=${2:?matmul_peak binary}
STRATS=${3:-}
WORK=${WORK:-/tmp/gpu-profile}
PYTHON=${PYTHON:-python3}
mkdir -p "$WORK"
for d in /usr/local/cuda/lib64 /usr/local/cuda-*/lib64; do
  if ls "$d"/libnvrtc.so* >/dev/null 2>&1; then export LD_LIBRARY_PATH="$d:${LD_LIBRARY_PATH:-}"; break; fi
done
started=$SECONDS
step() { echo; echo "== $* (at $((SECONDS - started)) s)"; }

step "1. matmul throughput: burn TF32, burn split (f32), burn bf16, PyTorch TF32 and fp32"
timeout 60 "$PEAK" cuda
timeout 90 "$PEAK" cuda f32
timeout 60 "$PEAK" cuda bf16
timeout 60 "$PYTHON" bench/matmul_peak.py --precision tf32
timeout 60 "$PYTHON" bench/matmul_peak.py --precision fp32

# The 50M model of bench/compare.py at sequence 256.
M50=(--set model.d_model=512 --set model.n_layers=12 --set model.n_heads=8 --set model.d_ff=2048 --set task.seq_len=256)
M300=(--set model.d_model=1024 --set model.n_layers=20 --set model.n_heads=16 --set model.d_ff=4096 --set task.seq_len=256)
BENCH=(bench -c experiments/text.toml --device cuda --batch 16 --forward-batch 64 --steps 16 --train-steps 3
  --grpo-steps 4 --set pretrain.batch_size=16 --set run.threads=1)

step "2. 50M training step and Co-GRPO update (one pass per update on the GPU now)"
timeout 90 "$BIN" "${BENCH[@]}" "${M50[@]}"
step "2b. the same with 2048 tokens per update pass (the CPU default, used on the GPU before)"
timeout 90 "$BIN" "${BENCH[@]}" "${M50[@]}" --set cogrpo.micro_batch_tokens=2048 --set cogrpo.iterations=1 \
  --set cogrpo.steps=4 --set 'cogrpo.reference={kind="confidence"}' --set 'cogrpo.arms=["model"]' | grep -E "^(what|train|grpo)"
step "2c. the same with CUBECL_AUTOTUNE_LEVEL=full"
CUBECL_AUTOTUNE_LEVEL=full timeout 120 "$BIN" "${BENCH[@]}" "${M50[@]}"

step "3. cubecl's kernel profile of the 300M training step (batch 16 x 256)"
# cubecl reads cubecl.toml from the working directory: run from $WORK.
cat > "$WORK/cubecl.toml" <<TOML
[profiling.logger]
level = "basic"
file = "$WORK/profile.log"
append = false
TOML
root=$PWD
(cd "$WORK" && timeout 90 "$BIN" bench -c "$root/experiments/text.toml" --set task.data_dir=\"$root/data\" \
  --device cuda --batch 16 \
  --forward-batch 16 --steps 1 --train-steps 2 --grpo-steps 0 --set pretrain.batch_size=16 \
  --set run.threads=1 "${M300[@]}")
"$PYTHON" bench/cubecl_profile.py "$WORK/profile.log"
if [ -n "$STRATS" ]; then
  step "4. cubek's matmul strategies one by one (GFLOP/s; - = cannot run that shape)"
  timeout 240 "$STRATS"
fi
echo; echo "gpu-profile took $((SECONDS - started)) s"
