#!/usr/bin/env bash
# GPU session, part 2: wait for gpu-best (both splits) up to $1 seconds, copying the logs and
# results to $OUT as they grow (a call cut off by its time limit still brings back what ran).
set -u
OUT=${OUT:-/tmp/gpu-out}; mkdir -p "$OUT"
limit=${1:-500}; start=$SECONDS
# One archive of logs and results (at most 8 files come back from the device).
collect() { (cd /tmp && tar czf "$OUT/gpu-best.tar.gz.part" $(ls gpu-best-*.log gpu-best-*.json 2>/dev/null) \
             && mv "$OUT/gpu-best.tar.gz.part" "$OUT/gpu-best.tar.gz") 2>/dev/null; }
while (( SECONDS - start < limit )); do
  [[ -f /tmp/gpu-best-kaggle.json && -f /tmp/gpu-best-standard.json ]] && break
  sleep 5; collect
done
collect
echo "waited $((SECONDS - start)) s; $(date +%T)"
for split in kaggle standard; do echo "== $split"; tail -6 /tmp/gpu-best-$split.log 2>/dev/null; done
nvidia-smi --query-gpu=name,utilization.gpu,memory.used --format=csv
