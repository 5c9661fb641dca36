"""What the benchmark scripts record about the machine they ran on, and the side-by-side step timing two of
them share (bench_iwae.py, bench_conv.py): one process per thread count, implementations alternating."""

import json
import os
import platform
import statistics
import subprocess
import sys
import time


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


def median_ms_alternating(steps_by_name, steps, block=5):
    """{name: median ms per call} of the step functions, after ``block`` warm-up calls each, timed in rounds
    of ``block`` calls per implementation whose order alternates round by round, so a slow spell of the
    machine falls on both sides alike."""
    for step in steps_by_name.values():
        for _ in range(block):
            step()
    times = {name: [] for name in steps_by_name}
    names = list(steps_by_name)
    for round_index in range(steps // block):
        for name in names if round_index % 2 == 0 else names[::-1]:
            for _ in range(block):
                start = time.perf_counter()
                steps_by_name[name]()
                times[name].append(time.perf_counter() - start)
    return {name: 1e3 * statistics.median(t) for name, t in times.items()}


def tinyvae_steps(make, x, rng):
    """{"tinyvae": step, "tinyvae-numpy": step}: one training step (loss, backward, Adam) of a model from
    ``make()`` → (model, optimizer) under the current backend, and of a second one under
    ``tv.backend.use("numpy")``, for the numba / NumPy ratio."""
    import tinyvae as tv

    def step_of(model, optimizer):
        optimizer.zero_grad()
        model.loss(x, rng).loss.backward()
        optimizer.step()

    model, optimizer = make()
    numpy_model, numpy_optimizer = make()

    def numpy_backend_step():
        previous = tv.backend.current()
        tv.backend.use("numpy")
        try:
            step_of(numpy_model, numpy_optimizer)
        finally:
            tv.backend.use(previous)

    return {"tinyvae": lambda: step_of(model, optimizer), "tinyvae-numpy": numpy_backend_step}


def print_step_rows(script, worker_args, threads):
    """For each thread count in ``threads`` ("1,2"), run ``script --worker *worker_args`` in a fresh process
    with OMP/OpenBLAS threads set before NumPy loads, read the JSON line of medians it prints (keys
    "tinyvae", "tinyvae-numpy" and, when PyTorch is installed, "torch"), and print one table row: threads,
    tinyvae ms, PyTorch ms, their ratio, the NumPy backend's ms and numba / NumPy."""
    for count in threads.split(","):
        env = fresh_process_environment(
            {**os.environ, "OMP_NUM_THREADS": count, "OPENBLAS_NUM_THREADS": count}
        )
        command = [sys.executable, script, "--worker", *map(str, worker_args)]
        out = subprocess.run(command, env=env, capture_output=True, text=True, check=True)
        ms = json.loads(out.stdout.strip().splitlines()[-1])
        torch_ms = ms.get("torch")
        ratio = "—" if torch_ms is None else f"{ms['tinyvae'] / torch_ms:.2f}×"
        torch_cell = "not installed" if torch_ms is None else f"{torch_ms:.1f}"
        backends = f"{ms['tinyvae-numpy']:.1f} | {ms['tinyvae'] / ms['tinyvae-numpy']:.2f}×"
        print(f"| {count} | {ms['tinyvae']:.1f} | {torch_cell} | {ratio} | {backends} |")
