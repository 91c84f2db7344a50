#!/usr/bin/env bash
# One command for the day a GPU is lent (<= 8 min on one GPU): every trainer at fp16/bf16/amp, CasPL_Boost
# and PromptSRC (1000 classes) memory and images/s, TRAIN.COMPILE on/off, a 1-GPU torchrun (nccl).
# Without CUDA it runs end to end with tiny shapes and lists what it skipped. Report: output/gpu_check/.
# Usage: scripts/gpu_check.sh [--out DIR] [--trainers CoOp,...] [--steps N] [--device cpu|cuda]
set -euo pipefail
cd "$(dirname "$0")/.."
PYTHON="${PYTHON:-python}"
exec "$PYTHON" -m caspl.bench.gpu_check "$@"
