#!/usr/bin/env bash
# GPU readiness in one command, on a machine with CUDA GPUs:
#   scripts/gpu_check.sh [OUT_DIR]         (default outputs/gpu_check; PYTHON=... to choose)
# 1. the CUDA tests (every test file's CUDA cases: pytest -m "" -k cuda);
# 2. the main job for 2 epochs on one GPU in 32-true, 16-mixed and bf16-mixed;
# 3. the same with DDP on every visible GPU (bf16-mixed; with one GPU, DDP on that one);
# 4. a table: images/s per GPU, step time, peak memory, MFU against the GPU's dense peak,
#    val/mAP; the last line is "gpu_check: PASS" or "gpu_check: FAIL (...)" (exit 0 / 1).
# Without a CUDA GPU it refuses (exit 2) before running anything.
set -uo pipefail
cd "$(dirname "$0")/.."
PYTHON=${PYTHON:-python3}
OUT=${1:-outputs/gpu_check}
EPOCHS=${EPOCHS:-2}

"$PYTHON" -m visdet.bench.gpu_check preflight || exit 2
mkdir -p "$OUT"
GPUS=$("$PYTHON" -c "import torch; print(torch.cuda.device_count())")

echo "== CUDA tests"
"$PYTHON" -m pytest -q -m "" -k cuda tests -p no:cacheprovider
echo $? > "$OUT/cuda_tests.rc"

"$PYTHON" -m visdet.bench.gpu_check flops "$OUT"

train() {  # name, trainer config, overrides...
  local name=$1 trainer=$2; shift 2
  echo "== $name"
  "$PYTHON" -m visdet train trainer="$trainer" trainer.max_epochs="$EPOCHS" \
    trainer.check_val_every_n_epoch="$EPOCHS" +callbacks/benchmark=default \
    callbacks.benchmark.every_n_steps=5 analysis=false test=false \
    hydra.run.dir="$OUT/$name" "$@" > "$OUT/$name.log" 2>&1 \
    || echo "   failed: see $OUT/$name.log"
}
for precision in 32-true 16-mixed bf16-mixed; do
  train "single_$precision" gpu trainer.precision="$precision"
done
train "ddp${GPUS}_bf16-mixed" ddp trainer.devices="$GPUS" trainer.precision=bf16-mixed

"$PYTHON" -m visdet.bench.gpu_check report "$OUT" | tee "$OUT/report.md"
exit "${PIPESTATUS[0]}"
