#!/usr/bin/env bash
# Time-to-99 on the GPU: `fast` as the preset says (CUDA graphs, bf16, channels-last, 10 seeds),
# then variants (fp32; batch 512 in bf16 and fp32), then where the time goes (profile of a graphed run).
set -u
export PYTHONPATH=$PWD/src PYTHONUNBUFFERED=1
OUT=${OUT:-/tmp/gpu-out}; mkdir -p "$OUT"
t2=benchmarks/time_to_99.py
fp32=(--set precision='"fp32"' --set channels_last=false)
b512=(--set batch_size=512 --set lr=0.015)
timeout 90 python3 $t2 --preset fast --seeds 10 --data data --json "$OUT/fast-graphs.json" 2>&1 | tee "$OUT/fast.log" | tail -4
timeout 60 python3 $t2 --preset fast --seeds 10 --data data "${fp32[@]}" \
  --json "$OUT/fast-graphs-fp32.json" 2>&1 | tee "$OUT/fast-fp32.log" | tail -2
timeout 60 python3 $t2 --preset fast --seeds 10 --data data "${b512[@]}" \
  --json "$OUT/fast-graphs-b512.json" 2>&1 | tee "$OUT/fast-b512.log" | tail -2
timeout 60 python3 $t2 --preset fast --seeds 10 --data data "${b512[@]}" "${fp32[@]}" \
  --json "$OUT/fast-graphs-b512-fp32.json" 2>&1 | tee "$OUT/fast-b512-fp32.log" | tail -2
timeout 150 python3 $t2 --preset fast --seeds 10 --data data --set compile=true \
  --json "$OUT/fast-graphs-compile.json" 2>&1 | tee "$OUT/fast-compile.log" | tail -2
timeout 60 python3 $t2 --preset fast --seeds 1 --data data --profile > "$OUT/fast-profile-graphs.log" 2>&1
grep -h RESULT "$OUT"/fast-profile-*.log
# At most 8 files come back from the device: everything but fast.log (start.sh reads it) in one archive.
(cd "$OUT" && tar czf fast-extra.tar.gz fast-*.log fast-*.json && rm -f fast-*.log fast-*.json)
