#!/usr/bin/env bash
# Time-to-99 on the GPU: `fast` with CUDA graphs (10 seeds) and with the eager loop (3 seeds).
set -u
export PYTHONPATH=$PWD/src PYTHONUNBUFFERED=1
OUT=${OUT:-/tmp/gpu-out}; mkdir -p "$OUT"
timeout 240 python3 benchmarks/time_to_99.py --preset fast --seeds 10 --data data --json "$OUT/fast-graphs.json" 2>&1 | tee "$OUT/fast.log" | tail -25
timeout 90 python3 benchmarks/time_to_99.py --preset fast --seeds 3 --eager --data data --json "$OUT/fast-eager.json" 2>&1 | tail -8
