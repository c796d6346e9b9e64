#!/usr/bin/env bash
# GPU session, part 1 (run from the repository root on the GPU machine, with .device/mnist.npz
# carried: the 70,000 MNIST digits as an .npz, e.g. ~/.cache/digits/mnist/mnist-70k.npz compressed).
#   start.sh data    writes data/mnist-standard.npz (then run fast.sh, alone on the GPU, for timings)
#   start.sh launch  starts the accuracy runs in the background (setsid), one after another: GPU_RUNS
#                    (below) lists them; wait.sh collects. GPU_BEST_ARGS adds accuracy.py flags to
#                    every run, e.g. GPU_BEST_ARGS="--epochs 45".
set -u
export PYTHONPATH=$PWD/src PYTHONUNBUFFERED=1 DIGITS_CACHE=/tmp/digits-cache DIGITS_MNIST_MIRRORS=
OUT=${OUT:-/tmp/gpu-out}; mkdir -p "$OUT" data
if [[ ${1:-data} == data ]]; then
nvidia-smi -L; python3 -c "import torch; print('torch', torch.__version__, torch.cuda.get_device_name(0))"
python3 - <<'PY'
import numpy as np
from digits.data.mnist import load_mnist
m = load_mnist([".device/mnist.npz"])
x_tr, y_tr, x_te, y_te = m.standard_split()
np.savez("data/mnist-standard.npz", x_train=x_tr, y_train=y_tr, x_test=x_te, y_test=y_te)
print("standard split ready:", x_tr.shape, x_te.shape)
PY
exit 0
fi
# CUDA graphs only if they worked for `fast` (fast.sh) in this session.
graphs=false
grep -q "RESULT fast (graphs)" "$OUT/fast.log" 2>/dev/null && graphs=true
# What to train: PRESET:SPLIT[:MEMBERS] items run one after another; items joined by "+" share the
# GPU at once. By default gpu-best on the Kaggle split alone (its wall time clean), then the record
# notebook's recipe (kaggle-record) on the same split, then gpu-best on the standard split with 8
# members. GPU_RUNS="gpu-best:kaggle+kaggle-record:kaggle" puts the two side by side in less time.
GPU_RUNS=${GPU_RUNS:-"gpu-best:kaggle kaggle-record:kaggle gpu-best:standard:8"}
echo "runs: $GPU_RUNS (cuda_graphs=$graphs)"
export OMP_NUM_THREADS=2
run_one() {  # run_one PRESET:SPLIT[:MEMBERS]
  local preset split members; IFS=: read -r preset split members <<< "$1"
  python3 benchmarks/accuracy.py --preset "$preset" --seeds 1 --split "$split" ${members:+--members $members} \
    --set cuda_graphs=$graphs ${GPU_BEST_ARGS:-} --mnist .device/mnist.npz --runs "/tmp/runs-$preset-$split" \
    --json "/tmp/acc-$preset-$split.json" > "/tmp/acc-$preset-$split.log" 2>&1
}
export -f run_one; export graphs GPU_BEST_ARGS GPU_RUNS
rm -f /tmp/acc-done
setsid nohup bash -c 'for group in $GPU_RUNS; do
                        for item in ${group//+/ }; do run_one "$item" & done; wait
                      done; touch /tmp/acc-done' > /dev/null 2>&1 < /dev/null &
echo "accuracy runs started: $(date +%T)"
