"""What the benchmark scripts record about the machine they ran on."""

import platform


def cpu_model():
    """The processor's model name from /proc/cpuinfo (Linux), else what ``platform`` knows."""
    try:
        with open("/proc/cpuinfo") as info:
            return next(line.split(":", 1)[1].strip() for line in info if line.startswith("model name"))
    except (OSError, StopIteration):
        return platform.processor() or platform.machine()


def fresh_process_environment(env):
    """``env`` for a benchmark subprocess, with the OpenBLAS kernel choice the ``tinyvae`` command makes
    (tinyvae/blas_tuning.py): the worker imports NumPy first, and OpenBLAS reads the choice when NumPy loads
    it, so the parent decides. ``TINYVAE_BLAS_TUNING=0`` or an ``OPENBLAS_CORETYPE`` of your own wins."""
    from tinyvae import blas_tuning

    blas_tuning.apply(env, numpy_loaded=False, record=False)
    return env
