"""Install tinyvae, with the top-level ``kernels/`` folder installed as ``tinyvae.kernels``."""

from setuptools import find_packages, setup

TEST_REQUIRES = ["pytest>=7", "hypothesis>=6.80"]

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
        "gpu": ["cupy-cuda12x>=13"],
        "dev": TEST_REQUIRES + ["ruff==0.17.5"],  # pinned: a new ruff may format differently
    },
    license="MIT",
)
