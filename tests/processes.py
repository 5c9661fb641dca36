"""Helpers for the tests that drive `tinyvae train` in another process."""

import time

import pytest


def wait_for(condition, process, timeout=60.0, pause=0.001):
    """Poll ``condition()`` every ``pause`` seconds (0: spin); fail if the process ends first or the
    timeout passes."""
    deadline = time.monotonic() + timeout
    while not condition():
        if process.poll() is not None:
            pytest.fail(f"training ended early with status {process.returncode}: {process.stderr.read()}")
        if time.monotonic() > deadline:
            process.kill()
            pytest.fail("timed out waiting for the training process")
        time.sleep(pause)
