#!/usr/bin/env bash
# GPU session, part 2: wait up to $1 seconds for the accuracy runs that start.sh launched, copying
# their logs and results to $OUT as they grow (a call cut off by its time limit still brings back
# what ran).
set -u
OUT=${OUT:-/tmp/gpu-out}; mkdir -p "$OUT"
limit=${1:-500}; start=$SECONDS
# One archive of logs and results (at most 8 files come back from the device).
collect() { (cd /tmp && tar czf "$OUT/accuracy.tar.gz.part" $(ls acc-*.log acc-*.json 2>/dev/null) \
             && mv "$OUT/accuracy.tar.gz.part" "$OUT/accuracy.tar.gz") 2>/dev/null; }
while (( SECONDS - start < limit )) && [[ ! -f /tmp/acc-done ]]; do
  sleep 5; collect
done
collect
echo "waited $((SECONDS - start)) s; $(date +%T)"
for log in /tmp/acc-*.log; do echo "== $log"; tail -4 "$log"; done
nvidia-smi --query-gpu=name,utilization.gpu,memory.used --format=csv
