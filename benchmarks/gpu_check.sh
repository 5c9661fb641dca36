#!/usr/bin/env bash
# GPU verification of tinyvae's CuPy path, in at most ~8 minutes, writing one log.
#
#   bash benchmarks/gpu_check.sh [LOG]        (default LOG: gpu_check.log, or $OUT/gpu_check.log when $OUT is set)
#
# Run it from the repository root on a machine with an NVIDIA GPU and CuPy installed. It installs tinyvae
# without dependencies (the GPU machine may have no network), then:
#   1. the environment (nvidia-smi, CuPy, NVRTC, tinyvae's backend choice);
#   2. the kernel tests with CuPy present (each CuPy kernel against its NumPy reference) and the backend tests;
#   3. `TINYVAE_BACKEND=cupy tinyvae train` for vae, iwae, vqvae and cvae (2 epochs, with figures), then
#      evaluate, sample, reconstruct and interpolate on the VAE run;
#   4. the time of one epoch per model under cupy next to numba on the same machine.
# Every step runs under `timeout`, and a failing step is logged and does not stop the others.
set -u
cd "$(dirname "$0")/.."
log=${1:-${OUT:+$OUT/}gpu_check.log}
runs=$(mktemp -d)
export PYTHONUNBUFFERED=1 MPLBACKEND=Agg

step() {  # step SECONDS TITLE COMMAND...: run one step with a time limit, logging its output and status
    local limit=$1 title=$2
    shift 2
    echo "=== $title" | tee -a "$log"
    local start=$SECONDS
    timeout "$limit" "$@" >>"$log" 2>&1
    local status=$?
    echo "--- $title: exit $status in $((SECONDS - start)) s" | tee -a "$log"
}

: >"$log"
step 60 "environment" bash -c 'date -u; nvidia-smi --query-gpu=name,driver_version,memory.total --format=csv;
    python3 -c "import sys, numpy, cupy; print(sys.version); print(\"numpy\", numpy.__version__, \"cupy\", cupy.__version__);
import cupy.cuda.nvrtc as n; print(\"nvrtc\", n.getVersion())"'
step 120 "install (no dependencies)" python3 -m pip install --no-deps --no-build-isolation -q -e .
step 60 "tinyvae info (auto)" tinyvae info
step 300 "kernel and backend tests with CuPy" python3 -m pytest -q -rs -p no:cacheprovider \
    tests/test_backend.py tests/test_kernel_adam.py tests/test_kernel_bernoulli.py \
    tests/test_kernel_bernoulli_parts.py tests/test_kernel_codebook.py tests/test_kernel_gaussian.py \
    tests/test_kernel_logsumexp.py tests/test_kernel_relu.py
for model in vae iwae vqvae cvae; do
    step 120 "train $model under cupy (2 epochs, figures)" env TINYVAE_BACKEND=cupy \
        tinyvae train --model "$model" --epochs 2 --no-progress --out "$runs/$model"
done
step 120 "evaluate (cupy)" env TINYVAE_BACKEND=cupy tinyvae evaluate "$runs/vae" --k 100 --limit 200
step 60 "sample (cupy)" env TINYVAE_BACKEND=cupy tinyvae sample "$runs/vae"
step 60 "reconstruct (cupy)" env TINYVAE_BACKEND=cupy tinyvae reconstruct "$runs/vae"
step 60 "interpolate (cupy)" env TINYVAE_BACKEND=cupy tinyvae interpolate "$runs/vae"
for backend in numba cupy; do
    step 120 "one-epoch time, vae, $backend" env TINYVAE_BACKEND=$backend \
        tinyvae train --epochs 3 --no-plots --no-progress --out "$runs/time-$backend"
done
ls -R "$runs" | head -60 >>"$log"
echo "=== summary" | tee -a "$log"
grep -E '^--- ' "$log" | tee -a "$log.summary"
