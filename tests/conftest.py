"""Shared test settings.

Hypothesis profiles: ``ci`` (selected when the CI environment variable is set) draws the same examples
on every run (``derandomize=True``), so a CI failure reproduces locally with ``HYPOTHESIS_PROFILE=ci``;
``dev`` (the default) draws fresh examples each run. Neither has a deadline: the first call of an op may
compile or allocate, and speed is measured in benchmarks/, never in tests.
"""

import os

# The suite runs on the CPU unless asked otherwise (TINYVAE_BACKEND=cupy pytest ... on a GPU machine): with
# CuPy installed and a GPU present, `auto` would pick CuPy and every engine-level test would get device arrays
# it was not written for. Set before tinyvae is imported; subprocesses the tests start inherit it.
os.environ.setdefault("TINYVAE_BACKEND", "cpu")

import pytest  # noqa: E402
from backends import CPU_BACKENDS, require_backend  # noqa: E402
from hypothesis import HealthCheck, settings  # noqa: E402

import tinyvae as tv  # noqa: E402

# The `backend` fixture below is function-scoped but holds no per-example state, so hypothesis may reuse it.
SUPPRESSED = [HealthCheck.too_slow, HealthCheck.function_scoped_fixture]
settings.register_profile(
    "ci", derandomize=True, deadline=None, max_examples=40, suppress_health_check=SUPPRESSED
)
settings.register_profile("dev", deadline=None, max_examples=40, suppress_health_check=SUPPRESSED)
settings.load_profile(os.environ.get("HYPOTHESIS_PROFILE", "ci" if os.environ.get("CI") else "dev"))


@pytest.fixture(params=CPU_BACKENDS)
def backend(request):
    """Run the test once under each CPU backend that can run here (skipped, with the reason, otherwise).

    The ops are the same code under every backend; what changes is the kernel behind them (the codebook
    search of F.vector_quantize, the Adam update), so the gradient checks that reach a kernel take this.
    """
    require_backend(request.param)
    previous = tv.backend.current()
    tv.backend.use(request.param)
    yield request.param
    tv.backend.use(previous)


@pytest.fixture
def drawn(monkeypatch):
    """The image arrays every figure of tinyvae.plots tiles, in the order drawn (``plots._mosaic`` is where
    images become a figure): the tests judge a figure by what it shows, not by its pixels being non-blank."""
    import numpy

    from tinyvae import plots

    captured = []
    real = plots._mosaic

    def recording(images, rows, cols, image_shape, pad=1):
        captured.append(numpy.asarray(images, dtype=numpy.float64))
        return real(images, rows, cols, image_shape, pad)

    monkeypatch.setattr(plots, "_mosaic", recording)
    return captured


@pytest.fixture
def saved(monkeypatch):
    """The Matplotlib Figures that tinyvae saves, in order (the figure object itself, so a test can read
    back the bars, points and lines it holds)."""
    from tinyvae import figures, plots

    captured = []
    real = figures.save_png

    def recording(figure, path):
        captured.append(figure)
        return real(figure, path)

    monkeypatch.setattr(figures, "save_png", recording)
    monkeypatch.setattr(plots, "_save", recording)
    return captured
