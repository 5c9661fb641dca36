"""Pick OpenBLAS's kernel family before NumPy loads it, on the one CPU where we measured that it matters.

OpenBLAS (the BLAS inside NumPy's wheels) is built for many CPUs at once and chooses its matrix-multiply
kernels when the library is loaded, from the CPU it detects. On AMD Zen 4 (CPU family 25 with AVX-512) it
picks its ``SkylakeX`` kernels, written for Intel cores that execute 512-bit instructions at full width. Zen 4
executes them as two 256-bit halves, and OpenBLAS's ``Haswell`` (AVX2) kernels, with their blocking, are
faster there. Measured on a 2-vCPU Zen 4 (``python benchmarks/bench_blas_kernels.py``, results in
benchmarks/RESULTS.md), float32, fresh process per setting: the eleven GEMMs of one MLP VAE step, one thread,
0.70 → 0.64 ms at batch 16, 4.43 → 4.11 ms at batch 128, 17.0 → 16.3 ms at batch 512; the GEMMs of the
nearest-codebook search at (65536, 512, 64), two threads, 38.2 → 28.3 ms.

The choice is the environment variable ``OPENBLAS_CORETYPE``, read once, when NumPy is first imported. So
:func:`apply` must run before ``import numpy``. Who runs it:

* the ``tinyvae`` command and ``python -m tinyvae`` (tinyvae/__main__.py), before they import anything that
  imports NumPy;
* the benchmarks, for the worker processes they start (benchmarks/_machine.py);
* ``import tinyvae`` in your own script only if you ask, with ``TINYVAE_BLAS_TUNING=1`` (and only if tinyvae
  is imported before NumPy): importing a library should not change your process's environment.

Otherwise set ``OPENBLAS_CORETYPE=Haswell`` in the shell yourself. :func:`tinyvae.backend.info` (and
``tinyvae info``) reports what happened and which kernels OpenBLAS is using.

Rules, in order:
1. ``OPENBLAS_CORETYPE`` already set: keep it (your choice wins).
2. ``TINYVAE_BLAS_TUNING=0``: do nothing (the command and the benchmarks included).
3. NumPy already imported: too late to change anything; say so.
4. Zen 4 (vendor AuthenticAMD, family 25, ``avx512f`` flag): set ``OPENBLAS_CORETYPE=Haswell``.
5. Anything else: do nothing (no measurement says another choice is better).

This module imports nothing but the standard library, so that importing it cannot load NumPy.
"""

from __future__ import annotations

import os
import sys

ZEN4_CORETYPE = "Haswell"
_CPUINFO_PATH = "/proc/cpuinfo"

# What apply() did and why; read by tinyvae.backend.info().
decision = {
    "coretype": None,
    "reason": "not applied: import tinyvae leaves OpenBLAS's choice alone unless TINYVAE_BLAS_TUNING=1 "
    "(the tinyvae command applies it)",
    "numpy_was_loaded": None,
}


def _first_cpu_fields(cpuinfo_text: str) -> dict[str, str]:
    """The ``key: value`` fields of the first processor block of /proc/cpuinfo."""
    fields = {}
    for line in cpuinfo_text.splitlines():
        if not line.strip():
            if fields:
                break
            continue
        key, _, value = line.partition(":")
        fields[key.strip()] = value.strip()
    return fields


def coretype_for(cpuinfo_text: str) -> str | None:
    """The OpenBLAS core type to force on the CPU that ``cpuinfo_text`` describes; None keeps OpenBLAS's."""
    fields = _first_cpu_fields(cpuinfo_text)
    is_amd = fields.get("vendor_id") == "AuthenticAMD"
    is_family_25 = fields.get("cpu family") == "25"  # Zen 3 and Zen 4; only Zen 4 has AVX-512
    has_avx512 = "avx512f" in fields.get("flags", "").split()
    return ZEN4_CORETYPE if is_amd and is_family_25 and has_avx512 else None


def _read_cpuinfo() -> str:
    try:
        with open(_CPUINFO_PATH, encoding="utf-8", errors="replace") as file:
            return file.read()
    except OSError:  # not Linux: no rule applies
        return ""


def apply(
    environ=None, cpuinfo_text: str | None = None, numpy_loaded: bool | None = None, record: bool = True
) -> dict:
    """Set ``OPENBLAS_CORETYPE`` by the rules above, record the decision (unless ``record=False``), return it.

    By default it reads ``os.environ``, /proc/cpuinfo and ``sys.modules``. The benchmarks pass the environment
    of a process they are about to start (``numpy_loaded=False, record=False``), the tests fake the rest.
    """
    environ = os.environ if environ is None else environ
    numpy_loaded = "numpy" in sys.modules if numpy_loaded is None else numpy_loaded
    wanted = None
    if "OPENBLAS_CORETYPE" in environ:
        coretype, reason = environ["OPENBLAS_CORETYPE"], "OPENBLAS_CORETYPE was set before tinyvae"
    elif environ.get("TINYVAE_BLAS_TUNING", "1") == "0":
        coretype, reason = None, "TINYVAE_BLAS_TUNING=0: OpenBLAS chose its own kernels"
    else:
        wanted = coretype_for(_read_cpuinfo() if cpuinfo_text is None else cpuinfo_text)
        coretype, reason = None, "no tuning known for this CPU: OpenBLAS chose its own kernels"
    if wanted is not None and numpy_loaded:
        reason = (
            "NumPy was imported before tinyvae, so OpenBLAS had already chosen; for its faster kernels "
            f"on this CPU set OPENBLAS_CORETYPE={wanted}, or import tinyvae first with TINYVAE_BLAS_TUNING=1"
        )
    elif wanted is not None:
        environ["OPENBLAS_CORETYPE"] = coretype = wanted
        reason = (
            "AMD Zen 4: OpenBLAS's AVX2 kernels, measured 4-26% faster there (see tinyvae/blas_tuning.py)"
        )
    result = {"coretype": coretype, "reason": reason, "numpy_was_loaded": numpy_loaded}
    if record:
        decision.update(result)
    return result
