#!/usr/bin/env bash
# GPU check of issue 13's additions, in about 3 minutes: the attention ops on CuPy against NumPy
# (benchmarks/gpu_ops_check.py), then `TINYVAE_BACKEND=cupy` training of the diffusion model (ring and
# digits, no figures: the figure path's host/device crossings are issue 19's) and of a VQ-VAE with
# train-prior and sample. Each step is time-limited and logged; a failing step does not stop the others.
#
#   bash benchmarks/gpu_check_priors.sh [LOG]      (default: $OUT/gpu_check_priors.log or gpu_check_priors.log)
set -u
cd "$(dirname "$0")/.."
log=${1:-${OUT:+$OUT/}gpu_check_priors.log}
runs=$(mktemp -d)
export PYTHONUNBUFFERED=1 MPLBACKEND=Agg
step() {
    local limit=$1 title=$2
    shift 2
    echo "=== $title" | tee -a "$log"
    local start=$SECONDS
    timeout "$limit" "$@" >>"$log" 2>&1
    echo "--- $title: exit $? in $((SECONDS - start)) s" | tee -a "$log"
}
: >"$log"
step 120 "install (no dependencies)" python3 -m pip install --no-deps --no-build-isolation -q -e .
step 60 "attention ops: CuPy against NumPy" python3 benchmarks/gpu_ops_check.py
train=(env TINYVAE_BACKEND=cupy tinyvae train --epochs 2 --no-progress --no-plots)
step 120 "diffusion on ring (cupy)" "${train[@]}" --model diffusion --data ring --steps 200 --out "$runs/ring"
step 120 "diffusion on mnist5k (cupy)" "${train[@]}" --model diffusion --steps 200 --out "$runs/digits"
step 60 "sample diffusion (cupy)" env TINYVAE_BACKEND=cupy tinyvae sample "$runs/ring" --n 16
# k-means++ seeding still mixes host and device arrays (issue 19): seeded at random here.
step 120 "vqvae, 4 latent vectors (cupy)" "${train[@]}" --model vqvae --latent-vectors 4 --no-kmeans-init \
    --out "$runs/vq"
step 120 "train-prior (cupy)" env TINYVAE_BACKEND=cupy tinyvae train-prior "$runs/vq" --epochs 2
step 60 "sample from the prior (cupy)" env TINYVAE_BACKEND=cupy tinyvae sample "$runs/vq" --n 16
echo "=== summary" | tee -a "$log"
grep -E '^--- ' "$log"
