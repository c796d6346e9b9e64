#!/usr/bin/env bash
# GPU session, part 1 (run from the repository root on the GPU machine, with .device/mnist.npz
# carried: the 70,000 MNIST digits as an .npz, e.g. ~/.cache/digits/mnist/mnist-70k.npz compressed).
#   start.sh data    writes data/mnist-standard.npz (then run fast.sh, alone on the GPU, for timings)
#   start.sh launch  starts gpu-best on the Kaggle and the standard split in the background (setsid),
#                    for part 2 (wait.sh) to collect.
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
for split in kaggle standard; do
  setsid nohup python3 benchmarks/accuracy.py --preset gpu-best --seeds 1 --split $split --set cuda_graphs=$graphs \
    --mnist .device/mnist.npz --runs /tmp/runs-$split --json /tmp/gpu-best-$split.json \
    > /tmp/gpu-best-$split.log 2>&1 < /dev/null &
done
echo "gpu-best started: $(date +%T)"
