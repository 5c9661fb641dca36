"""Install tinyvae, with the top-level ``kernels/`` folder installed as ``tinyvae.kernels``."""

from setuptools import find_packages, setup

# nvidia-cuda-nvrtc-cu12: NVIDIA's runtime compiler as a wheel (no GPU needed), so the test suite compiles
# every CuPy kernel source on a machine without a GPU (tests/test_cuda_compile.py).
# mpi4py and the MPICH wheel (which provides mpiexec): data-parallel training (tinyvae/distributed.py); the
# tests run `mpiexec -n 2` (tests/test_distributed_mpi.py).
MPI_REQUIRES = ["mpi4py>=4", "mpich>=4.3"]
TEST_REQUIRES = ["pytest>=7", "hypothesis>=6.80", "nvidia-cuda-nvrtc-cu12>=12.4", *MPI_REQUIRES]
# CuPy for one CUDA major version, with the toolkit pieces it loads at run time (NVRTC, cuBLAS, cuRAND, ...)
# as wheels through CuPy's own `ctk` extra, so no system CUDA toolkit is needed; only the NVIDIA driver.
# Checked on a GPU with CuPy 14 (benchmarks/RESULTS.md), hence the upper bound.
GPU_CUDA12 = ["cupy-cuda12x[ctk]>=14,<15"]
GPU_CUDA13 = ["cupy-cuda13x[ctk]>=14,<15"]

setup(
    name="tinyvae",
    version="0.1.0",
    description="Variational autoencoders from scratch on NumPy, with a hand-written autodiff engine",
    long_description=open("README.md", encoding="utf-8").read(),
    long_description_content_type="text/markdown",
    python_requires=">=3.10",
    packages=find_packages(include=["tinyvae", "tinyvae.*"])
    + ["tinyvae.kernels", "tinyvae.kernels.unrouted"],
    package_dir={"tinyvae.kernels": "kernels"},
    package_data={"tinyvae": ["datasets/*.npz"]},  # the embedded MNIST 5k (see README, "Data")
    # tqdm: the live progress bar of `tinyvae train`.
    install_requires=["numpy>=1.24", "numba>=0.58", "matplotlib>=3.6", "tqdm>=4.60"],
    entry_points={"console_scripts": ["tinyvae = tinyvae.__main__:main"]},  # picks the BLAS kernels first
    extras_require={
        "test": TEST_REQUIRES,
        "gpu12": GPU_CUDA12,  # NVIDIA driver for CUDA 12 (>= 525)
        "gpu13": GPU_CUDA13,  # NVIDIA driver for CUDA 13 (>= 580)
        "gpu": GPU_CUDA12,  # the older name, kept: CUDA 12 drivers are the commoner
        "mpi": MPI_REQUIRES,
        "dev": TEST_REQUIRES + ["ruff==0.17.5"],  # pinned: a new ruff may format differently
    },
    license="MIT",
)
