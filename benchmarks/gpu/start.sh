#!/usr/bin/env bash
# GPU session, part 1 (run from the repository root on the GPU machine, with .device/mnist.npz
# carried: the 70,000 MNIST digits as an .npz, e.g. ~/.cache/digits/mnist/mnist-70k.npz compressed).
#   start.sh data    writes data/mnist-standard.npz (then run fast.sh, alone on the GPU, for timings)
#   start.sh launch  starts gpu-best in the background (setsid): the Kaggle split first, alone on
#                    the GPU so that its wall time is clean, then the standard split; wait.sh collects.
#                    GPU_BEST_ARGS adds accuracy.py flags to both, e.g. GPU_BEST_ARGS="--epochs 45".
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
# CUDA graphs for gpu-best only if they worked for `fast` (fast.sh) in this session.
graphs=false
grep -q "RESULT fast (graphs)" "$OUT/fast.log" 2>/dev/null && graphs=true
echo "gpu-best with cuda_graphs=$graphs"
export OMP_NUM_THREADS=2
# The standard split (60,000 rows, the ensemble target of 99.80%) with 8 members, to fit the session.
run_split() {
  python3 benchmarks/accuracy.py --preset gpu-best --seeds 1 --split "$1" ${2:+--members $2} --set cuda_graphs=$graphs \
    ${GPU_BEST_ARGS:-} \
    --mnist .device/mnist.npz --runs /tmp/runs-$1 --json /tmp/gpu-best-$1.json > /tmp/gpu-best-$1.log 2>&1
}
export -f run_split; export graphs GPU_BEST_ARGS
setsid nohup bash -c 'run_split kaggle; run_split standard 8' > /dev/null 2>&1 < /dev/null &
echo "gpu-best started: $(date +%T)"
