"""Shared test settings.

Hypothesis profiles: ``ci`` (selected when the CI environment variable is set) draws the same examples
on every run (``derandomize=True``), so a CI failure reproduces locally with ``HYPOTHESIS_PROFILE=ci``;
``dev`` (the default) draws fresh examples each run. Neither has a deadline: the first call of an op may
compile or allocate, and speed is measured in benchmarks/, never in tests.
"""

import os

from hypothesis import HealthCheck, settings

settings.register_profile(
    "ci", derandomize=True, deadline=None, max_examples=40, suppress_health_check=[HealthCheck.too_slow]
)
settings.register_profile("dev", deadline=None, max_examples=40, suppress_health_check=[HealthCheck.too_slow])
settings.load_profile(os.environ.get("HYPOTHESIS_PROFILE", "ci" if os.environ.get("CI") else "dev"))
