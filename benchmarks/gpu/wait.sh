#!/usr/bin/env bash
# GPU session, part 2: wait for gpu-best (both splits) up to $1 seconds, then collect logs and results.
set -u
OUT=${OUT:-/tmp/gpu-out}; mkdir -p "$OUT"
limit=${1:-500}; start=$SECONDS
while (( SECONDS - start < limit )); do
  [[ -f /tmp/gpu-best-kaggle.json && -f /tmp/gpu-best-standard.json ]] && break
  sleep 5
done
echo "waited $((SECONDS - start)) s; $(date +%T)"
for split in kaggle standard; do
  cp /tmp/gpu-best-$split.log "$OUT/" 2>/dev/null; cp /tmp/gpu-best-$split.json "$OUT/" 2>/dev/null
  echo "== $split"; tail -6 /tmp/gpu-best-$split.log
done
nvidia-smi --query-gpu=name,utilization.gpu,memory.used --format=csv
