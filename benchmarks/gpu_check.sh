#!/usr/bin/env bash
# GPU verification of tinyvae's CuPy path, in at most ~8 minutes, writing one log.
#
#   bash benchmarks/gpu_check.sh [LOG]        (default LOG: gpu_check.log, or $OUT/gpu_check.log when $OUT is set)
#
# Run it from the repository root on a machine with an NVIDIA GPU and CuPy installed. It installs tinyvae
# without dependencies (the GPU machine may have no network), then:
#   1. the environment (nvidia-smi, CuPy, NVRTC, tinyvae's backend choice: `auto` must pick cupy, by its probe);
#   2. the kernel tests with CuPy present (each CuPy kernel against its NumPy reference), the backend tests and
#      the NVRTC compile test (tests/test_cuda_compile.py);
#   3. `tinyvae train --device gpu` for vae, iwae, vqvae, cvae, hvae and the conv VAE (2 epochs, with
#      figures), then evaluate, sample, reconstruct and interpolate on the VAE run, and evaluate on the others;
#   4. benchmarks/gpu_bench.py: the VAE and IWAE steps and the codebook search against PyTorch on CUDA;
#   5. the time of an epoch of the VAE under cupy next to numba on the same machine.
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
from cupy_backends.cuda.libs import nvrtc; print(\"nvrtc\", nvrtc.getVersion())"'
step 120 "install (no dependencies)" python3 -m pip install --no-deps --no-build-isolation -q -e .
step 60 "tinyvae info (auto)" tinyvae info
step 300 "kernel, backend and compile tests with CuPy" env TINYVAE_BACKEND=cpu python3 -m pytest -q -rs \
    -p no:cacheprovider tests/test_backend.py tests/test_cuda_compile.py tests/test_kernel_*.py
for model in vae iwae vqvae cvae hvae; do
    step 120 "train $model on the GPU (2 epochs, figures)" \
        tinyvae train --device gpu --model "$model" --epochs 2 --no-progress --out "$runs/$model"
done
step 120 "train the conv VAE on the GPU (2 epochs, figures)" \
    tinyvae train --device gpu --arch conv --epochs 2 --no-progress --out "$runs/conv"
step 120 "evaluate vae (gpu)" tinyvae evaluate --device gpu "$runs/vae" --k 100 --limit 200
for model in iwae vqvae cvae hvae conv; do
    step 120 "evaluate $model (gpu)" tinyvae evaluate --device gpu "$runs/$model" --k 20 --limit 100
done
step 60 "sample (gpu)" tinyvae sample --device gpu "$runs/vae"
step 60 "reconstruct (gpu)" tinyvae reconstruct --device gpu "$runs/vae"
step 60 "interpolate (gpu)" tinyvae interpolate --device gpu "$runs/vae"
step 150 "GPU benchmarks against PyTorch CUDA" python3 benchmarks/gpu_bench.py --steps 30
for backend in numba cupy; do
    step 120 "epoch time, vae, $backend" env TINYVAE_BACKEND=$backend \
        tinyvae train --epochs 3 --no-plots --no-progress --out "$runs/time-$backend"
done
ls -R "$runs" | head -60 >>"$log"
echo "=== summary" | tee -a "$log"
grep -E '^--- ' "$log" | tee -a "$log.summary"
