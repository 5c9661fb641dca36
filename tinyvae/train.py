"""Training: ``fit`` runs epochs of minibatch updates, evaluates on the test split after each, and keeps a
run directory that can be inspected, plotted and resumed.

A run directory holds:

* ``config.json``: how the run was made (model config, training settings, versions, backend);
* ``metrics.jsonl`` and ``metrics.csv``: one row per epoch (train and test means of the loss, the ELBO and
  every term the model reports, and the epoch's seconds);
* ``last.npz`` (every epoch) and ``best.npz`` (best test ELBO so far): checkpoints with the model, the
  optimiser and the training RNG state (see :mod:`tinyvae.checkpoint`).

Every file is replaced atomically, so a run interrupted at any moment keeps its last good checkpoint.
Resuming (:func:`resume`) restores the model, the optimiser, the RNG and the history, so a run of 2 + 2
epochs gives the same numbers as a run of 4 on the same backend.
"""

from __future__ import annotations

import contextlib
import csv
import io
import json
import math
import os
import platform
import signal
import threading
import time

import numpy

import tinyvae
from tinyvae.autodiff import no_grad
from tinyvae.checkpoint import (
    CheckpointError,
    atomic_write_bytes,
    load_model,
    read_checkpoint,
    remove_stale_temporaries,
    save_checkpoint,
)
from tinyvae.rundir import RUN_FORMAT, RUN_FORMAT_VERSION

EVALUATION_SEED = 12345  # test-split noise (sampling z, dynamic pixels) is the same every epoch


class TrainingDiverged(RuntimeError):
    """The loss became NaN or infinite; the message says where, and the last good checkpoint is kept."""


def environment():
    """Versions and backend, recorded in config.json so a result can be traced to what produced it."""
    return {
        "tinyvae": tinyvae.__version__,
        "python": platform.python_version(),
        "machine": platform.machine(),
        "backend": tinyvae.backend.info(),
    }


def _weighted_means(summaries):
    """Mean of each quantity over batches, weighted by batch size: [(n, {name: mean}), ...] → {name: mean}."""
    total = sum(n for n, _ in summaries)
    names = summaries[0][1].keys() if summaries else []
    return {name: sum(n * s[name] for n, s in summaries) / total for name in names}


def _labels_for(model, labels):
    return labels if model.conditional else None


def evaluate_split(model, data, batch_size, seed=EVALUATION_SEED):
    """Batch-size-weighted means of the loss, the ELBO and every term on ``data``, without gradients, with
    fixed noise (so epochs are comparable). The model is left in training mode."""
    rng = numpy.random.default_rng(seed)
    model.eval()
    summaries = []
    try:
        with no_grad():
            for x, labels in data.batches(batch_size, rng, shuffle=False):
                result = model.loss(x, rng, y=_labels_for(model, labels))
                summaries.append((len(x), result.summary()))
    finally:
        model.train()
    return _weighted_means(summaries)


def _diverged(model, epoch, step, result):
    """The error for a non-finite loss, naming the first non-finite term, gradient or parameter."""
    where = f"training diverged at epoch {epoch}, step {step}: the loss is {result.loss.item()}"
    # A non-finite parameter (left by the previous update) is the cause; a non-finite term the symptom.
    for name, parameter in model.named_parameters():
        if not numpy.isfinite(parameter.numpy()).all():
            return TrainingDiverged(f"{where}; the first non-finite parameter is '{name}'")
    for name, value in result.terms.items():
        if not numpy.isfinite(value).all():
            return TrainingDiverged(f"{where}; the first non-finite term is '{name}'")
    return TrainingDiverged(f"{where}; every term and parameter is finite, so look at the input batch")


def train_epoch(model, data, batch_size, optimizer, rng, epoch, progress=None):
    """One pass over ``data`` in shuffled minibatches; returns the weighted means of the batch summaries."""
    model.train()
    summaries = []
    for step, (x, labels) in enumerate(data.batches(batch_size, rng), start=1):
        optimizer.zero_grad()
        result = model.loss(x, rng, y=_labels_for(model, labels))
        if not math.isfinite(result.loss.item()):
            raise _diverged(model, epoch, step, result)
        result.loss.backward()
        optimizer.step()
        summary = result.summary()
        summaries.append((len(x), summary))
        if progress is not None:
            progress.update(len(x))
            if step % 10 == 1:
                progress.set_postfix(_progress_fields(model, summary), refresh=False)
    return _weighted_means(summaries)


def _progress_fields(model, summary):
    fields = {k: f"{summary[k]:.2f}" for k in ("loss", "elbo", "kl") if k in summary}
    fields.update(model.progress_fields())  # e.g. the VQ-VAE: how many codes the epoch has used so far
    return fields


def _write_metrics(run_dir, history):
    atomic_write_bytes(
        os.path.join(run_dir, "metrics.jsonl"), "".join(json.dumps(row) + "\n" for row in history).encode()
    )
    columns = list(dict.fromkeys(key for row in history for key in row))
    text = io.StringIO()
    writer = csv.DictWriter(text, fieldnames=columns)
    writer.writeheader()
    writer.writerows(history)
    atomic_write_bytes(os.path.join(run_dir, "metrics.csv"), text.getvalue().encode())


def _score(row):
    """What 'best' means: the highest test ELBO, or the lowest test loss for a model without an ELBO."""
    return row["test_elbo"] if "test_elbo" in row else -row["test_loss"]


def fit(
    model,
    train,
    test,
    epochs,
    batch_size,
    optimizer,
    rng,
    run_dir=None,
    progress=True,
    log=print,
    start_epoch=0,
    history=None,
):
    """Train ``model`` for epochs ``start_epoch + 1 .. epochs``; returns the history (one dict per epoch).

    ``train`` and ``test`` are :class:`tinyvae.data.Dataset`-like (``batches(batch_size, rng, shuffle)``);
    ``rng`` drives shuffling, dynamic binarisation and the model's sampling. With ``run_dir`` the metrics and
    checkpoints are written there after every epoch. ``progress`` shows a tqdm bar with the live loss, ELBO
    and KL (and codes used for VQ); otherwise one line per epoch goes to ``log``.
    """
    history = list(history or [])
    if run_dir is not None:
        os.makedirs(run_dir, exist_ok=True)
        remove_stale_temporaries(run_dir)  # left by a process killed while saving; never read
    best = max((_score(row) for row in history), default=-math.inf)
    for epoch in range(start_epoch + 1, epochs + 1):
        start = time.perf_counter()
        model.start_epoch()
        bar = _progress_bar(len(train.x), epoch, epochs) if progress else None
        try:
            train_means = train_epoch(model, train, batch_size, optimizer, rng, epoch, bar)
        finally:
            if bar is not None:
                bar.close()
        test_means = evaluate_split(model, test, batch_size)
        row = {"epoch": epoch}
        row.update({f"train_{k}": v for k, v in train_means.items()})
        row.update({f"test_{k}": v for k, v in test_means.items()})
        row["seconds"] = time.perf_counter() - start
        problem = _non_finite_state(model, optimizer, row)
        if problem:  # never save it: last.npz must keep holding the last finite epoch
            raise TrainingDiverged(
                f"training diverged in epoch {epoch}: {problem}; epoch {epoch} was not saved"
            )
        history.append(row)
        if run_dir is not None:
            with interrupts_deferred():
                # Checkpoints first: metrics.jsonl never runs ahead of last.npz, whatever stops the writes.
                state = {"epoch": epoch, "rng": rng.bit_generator.state, "history": history}
                save_checkpoint(os.path.join(run_dir, "last.npz"), model, optimizer, **state)
                if _score(row) > best:
                    best = _score(row)
                    save_checkpoint(os.path.join(run_dir, "best.npz"), model, optimizer, **state)
                _write_metrics(run_dir, history)
        log(_epoch_line(row))
    return history


def _non_finite_state(model, optimizer, row):
    """What is not finite after an epoch (a parameter, an optimiser moment, a test metric), or None."""
    for name, parameter in model.named_parameters():
        if not numpy.isfinite(parameter.numpy()).all():
            return f"parameter '{name}' is not finite"
    for name, value in optimizer.state_dict().items():
        value = tinyvae.backend.to_host(value)
        if isinstance(value, numpy.ndarray) and value.dtype.kind == "f" and not numpy.isfinite(value).all():
            return f"optimiser state '{name}' is not finite"
    for key, value in row.items():
        if isinstance(value, float) and not math.isfinite(value):
            return f"{key} is {value}"
    return None


INTERRUPT_SIGNALS = (signal.SIGINT, signal.SIGTERM)


@contextlib.contextmanager
def interrupts_deferred():
    """Hold a Ctrl-C or SIGTERM that arrives inside the block until the block is done, then deliver it.

    An epoch's files are written together, so an interrupt lands before or after them, never halfway: no
    temporary is orphaned (a KeyboardInterrupt inside ``tempfile.mkstemp`` would lose its name) and no
    half-built archive object is left behind. The held signal is raised again once the previous handlers
    are back, so it then does whatever it would have done outside the block. SIGKILL cannot be held; the
    atomic writes cover that case. Only the main thread can install signal handlers; elsewhere the block
    runs as is.
    """
    if threading.current_thread() is not threading.main_thread():
        yield
        return
    received = []
    previous = {
        sig: signal.signal(sig, lambda signum, frame: received.append(signum)) for sig in INTERRUPT_SIGNALS
    }
    try:
        yield
    finally:
        for sig, handler in previous.items():
            signal.signal(sig, handler)
        for sig in dict.fromkeys(received):
            signal.raise_signal(sig)


def _progress_bar(total, epoch, epochs):
    from tqdm import tqdm

    return tqdm(total=total, desc=f"epoch {epoch}/{epochs}", unit="ex", leave=False, dynamic_ncols=True)


def _epoch_line(row):
    parts = [f"epoch {row['epoch']:>3}"]
    for key in ("train_loss", "train_elbo", "test_elbo", "test_loss", "test_kl"):
        if key in row and not (key == "test_loss" and "test_elbo" in row):
            parts.append(f"{key} {row[key]:.3f}")
    parts.append(f"{row['seconds']:.1f}s")
    return "  ".join(parts)


def write_run_config(run_dir, settings):
    """config.json: the run marker (see :mod:`tinyvae.rundir`), the training settings, the environment."""
    payload = {"format": RUN_FORMAT, "format_version": RUN_FORMAT_VERSION}
    payload.update(settings=settings, environment=environment())
    atomic_write_bytes(os.path.join(run_dir, "config.json"), json.dumps(payload, indent=2).encode())


def resume(run_dir, optimizer_factory, expected_model=None, expected_config=None):
    """Everything ``fit`` needs to continue the run in ``run_dir`` from its last checkpoint:
    ``(model, optimizer, rng, history, epoch)``. ``optimizer_factory(parameters)`` makes an optimiser of the
    run's kind, whose state is then loaded. ``expected_model`` (a name) refuses a checkpoint of another model,
    ``expected_config`` (a config or its dict) one of other dimensions or settings.
    A checkpoint that cannot continue a run (no optimiser state, no RNG state) is a CheckpointError."""
    path = os.path.join(run_dir, "last.npz")
    model, meta = load_model(path, expected_model=expected_model, expected_config=expected_config)
    _, _, optimizer_state = read_checkpoint(path)
    missing = [key for key in ("epoch", "rng", "history") if key not in meta]
    if missing or not optimizer_state:
        what = ", ".join(missing + ([] if optimizer_state else ["optimizer state"]))
        raise CheckpointError(f"checkpoint {path}: cannot resume a run from it, it lacks: {what}")
    optimizer = optimizer_factory(model.parameters())
    try:
        optimizer.load_state_dict(optimizer_state)
        rng = numpy.random.default_rng()
        rng.bit_generator.state = meta["rng"]
        epoch = int(meta["epoch"])
    except (KeyError, ValueError, TypeError) as error:
        raise CheckpointError(f"checkpoint {path}: its training state does not fit: {error}") from error
    return model, optimizer, rng, meta["history"], epoch
