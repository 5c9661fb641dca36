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
import dataclasses
import hashlib
import io
import json
import math
import os
import pathlib
import platform
import signal
import sys
import threading
import time

import numpy

import tinyvae
from tinyvae import distributed, shapes
from tinyvae.autodiff import no_grad
from tinyvae.checkpoint import (
    CheckpointError,
    atomic_write_bytes,
    load_training_state,
    read_checkpoint,
    remove_stale_temporaries,
    save_checkpoint,
)
from tinyvae.rundir import RUN_FORMAT, RUN_FORMAT_VERSION

TRAINER_FILES = ("config.json", "metrics.jsonl", "metrics.csv", "last.npz", "best.npz")  # what fit writes
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
        "mpi_ranks": distributed.world().size,  # 1 unless started by mpiexec (tinyvae/distributed.py)
    }


def _weighted_means(summaries, world=None):
    """Mean of each quantity over batches, weighted by batch size: [(n, {name: mean}), ...] → {name: mean}.
    On several MPI ranks (``world``) the weighted sums and the counts are added up over ranks first, so every
    rank gets the means over all ranks' batches."""
    names = list(summaries[0][1]) if summaries else []
    sums = [sum(n * s[name] for n, s in summaries) for name in names]
    total = sum(n for n, _ in summaries)
    if world is not None and world.distributed:
        *sums, total = world.sum([*sums, total])
    return {name: float(value / total) for name, value in zip(names, sums, strict=True)}


def _labels_for(model, labels):
    return labels if model.conditional else None


def evaluate_split(model, data, batch_size, seed=EVALUATION_SEED, world=None):
    """Batch-size-weighted means of the loss, the ELBO and every term on ``data``, without gradients, with
    fixed noise (so epochs are comparable). The model is left in training mode.

    On several MPI ranks (``world``) each rank evaluates its shard of every batch and the weighted sums are
    added up over ranks, so every rank returns the means of the whole split."""
    world = world or distributed.World()
    rng = numpy.random.default_rng(seed)
    model.eval()
    summaries = []
    try:
        with no_grad():
            for x, labels in data.batches(batch_size, rng, shuffle=False):
                x, labels, model_rng = _shard(world, x, labels, rng)
                result = model.loss(x, model_rng, y=_labels_for(model, labels))
                summaries.append((len(x), result.summary()))
    finally:
        model.train()
    return _weighted_means(summaries, world)


def _shard(world, x, labels, rng):
    """This rank's part of a global batch: (x, labels, the generator the model draws from). One rank: all."""
    if not world.distributed:
        return x, labels, rng
    part = world.shard(len(x))
    shard_labels = None if labels is None else labels[part]
    return x[part], shard_labels, distributed.ShardedGenerator(rng, part, len(x))


def _diverged(model, epoch, step, result):
    """The error for a non-finite loss, naming the first non-finite term, gradient or parameter."""
    where = f"training diverged at epoch {epoch}, step {step}: the loss is {result.loss.item()}"
    # A non-finite parameter (left by the previous update) is the cause; a non-finite term the symptom.
    cause = _first_non_finite_parameter(model)
    if cause is not None:
        return TrainingDiverged(f"{where}; the first non-finite parameter is '{cause}'")
    for name, value in result.terms.items():
        if not numpy.isfinite(value).all():
            return TrainingDiverged(f"{where}; the first non-finite term is '{name}'")
    return TrainingDiverged(f"{where}; every term and parameter is finite, so look at the input batch")


def _all_finite(array):
    """Whether every element is finite, checked where the array lives (no copy off a GPU)."""
    return bool(tinyvae.backend.array_module(array).isfinite(array).all())


def _first_non_finite_parameter(model):
    for name, parameter in model.named_parameters():
        if not _all_finite(parameter.data):
            return name
    return None


def train_epoch(model, data, batch_size, optimizer, rng, epoch, progress=None, world=None):
    """One pass over ``data`` in shuffled minibatches; returns the weighted means of the batch summaries.

    On several MPI ranks (``world``) each rank takes its shard of every global batch, and one Allreduce per
    step sums the scaled gradients and the batch's summary (tinyvae/distributed.py), so every rank applies
    the same update and decides alike whether the loss is finite."""
    world = world or distributed.World()
    allreduce = distributed.GradientAllreduce(model.parameters(), world) if world.distributed else None
    model.train()
    summaries = []
    for step, (x, labels) in enumerate(data.batches(batch_size, rng), start=1):
        batch_count = len(x)
        x, labels, model_rng = _shard(world, x, labels, rng)
        optimizer.zero_grad()
        try:
            result = model.loss(x, model_rng, y=_labels_for(model, labels))
        except ValueError as error:  # e.g. the codebook search refuses a NaN code: divergence, if weights are
            cause = _first_non_finite_parameter(model)
            if cause is None:
                raise
            where = f"training diverged at epoch {epoch}, step {step}"
            raise TrainingDiverged(f"{where}: parameter '{cause}' is not finite ({error})") from None
        if allreduce is None:
            if not math.isfinite(result.loss.item()):
                raise _diverged(model, epoch, step, result)
            result.loss.backward()
            summary = result.summary()
        else:  # the backward first: the finiteness test needs the global loss, which comes with the gradients
            result.loss.backward()
            summary = allreduce(len(x) / batch_count, result.summary())
            if not math.isfinite(summary["loss"]):
                raise _diverged(model, epoch, step, result)
        optimizer.step()
        summaries.append((batch_count, summary))
        if progress is not None:
            progress.update(batch_count)
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
    world=None,
):
    """Train ``model`` for epochs ``start_epoch + 1 .. epochs``; returns the history (one dict per epoch).

    ``train`` and ``test`` are :class:`tinyvae.data.Dataset`-like (``batches(batch_size, rng, shuffle)``);
    ``rng`` drives shuffling, dynamic binarisation and the model's sampling. With ``run_dir`` the metrics and
    checkpoints are written there after every epoch. ``progress`` shows a tqdm bar with the live loss, ELBO
    and KL (and codes used for VQ); otherwise one line per epoch goes to ``log``.

    On several MPI ranks (``world``, see :mod:`tinyvae.distributed`) every rank trains its shards and rank 0
    alone writes ``run_dir``; after each epoch the ranks check that their weights are still identical.
    """
    world = world or distributed.World()
    history = list(history or [])
    if not world.is_root:
        run_dir = None  # rank 0 writes the run directory; the others hold the same model
    if run_dir is not None:
        os.makedirs(run_dir, exist_ok=True)
        # Left by a trainer killed while saving (never read); only the trainer's own files' temporaries.
        remove_stale_temporaries(run_dir, TRAINER_FILES)
    best = max((_score(row) for row in history), default=-math.inf)
    for epoch in range(start_epoch + 1, epochs + 1):
        start = time.perf_counter()
        model.start_epoch()
        bar = _progress_bar(len(train.x), epoch, epochs) if progress else None
        try:
            train_means = train_epoch(model, train, batch_size, optimizer, rng, epoch, bar, world)
        finally:
            if bar is not None:
                bar.close()
        try:
            test_means = evaluate_split(model, test, batch_size, world=world)
        except ValueError as error:  # as in train_epoch: a refusal caused by non-finite weights is divergence
            cause = _first_non_finite_parameter(model)
            if cause is None:
                raise
            where = f"training diverged in epoch {epoch}: parameter '{cause}' is not finite ({error})"
            raise TrainingDiverged(f"{where}; epoch {epoch} was not saved") from None
        row = {"epoch": epoch}
        row.update({f"train_{k}": v for k, v in train_means.items()})
        row.update({f"test_{k}": v for k, v in test_means.items()})
        row["seconds"] = time.perf_counter() - start
        problem = _non_finite_state(model, optimizer, row)
        if problem:  # never save it: last.npz must keep holding the last finite epoch
            raise TrainingDiverged(
                f"training diverged in epoch {epoch}: {problem}; epoch {epoch} was not saved"
            )
        if world.distributed:  # a hash of every weight: only worth its pass over them with ranks to compare
            world.check_same(f"the weights after epoch {epoch}", _weights_digest(model))
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
        # No rank starts the next epoch before rank 0 has saved this one: a rank failing early in the next
        # epoch ends the job (distributed.World.abort), and must not take this epoch's checkpoint with it.
        world.barrier()
        log(_epoch_line(row))
    return history


def _weights_digest(model):
    """A SHA-256 of every parameter's bytes: equal on every rank while the replicas agree."""
    digest = hashlib.sha256()
    for name, parameter in model.named_parameters():
        digest.update(name.encode())
        digest.update(tinyvae.backend.to_host(parameter.data).tobytes())
    return digest.hexdigest()


def _non_finite_state(model, optimizer, row):
    """What is not finite after an epoch (a parameter, an optimiser moment, a test metric), or None.
    The optimiser's arrays are read in place: copying them (state_dict) costs an extra pass every epoch."""
    cause = _first_non_finite_parameter(model)
    if cause is not None:
        return f"parameter '{cause}' is not finite"
    for name, value in optimizer.state_arrays():
        if value.dtype.kind == "f" and not _all_finite(value):
            return f"optimiser state '{name}' is not finite"
    for key, value in row.items():
        if isinstance(value, float) and not math.isfinite(value):
            return f"{key} is {value}"
    return None


INTERRUPT_SIGNALS = (signal.SIGINT, signal.SIGTERM, signal.SIGHUP)


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
    model, meta, optimizer_state = load_training_state(path, expected_model, expected_config)
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
        reason = f"the field {error} is missing" if isinstance(error, KeyError) else str(error)
        raise CheckpointError(
            f"checkpoint {path}: its training state (optimiser moments, RNG, epoch) does not fit: {reason}"
        ) from error
    return model, optimizer, rng, meta["history"], epoch


# ---------------------------------------------------------------------------------------------------------
# One run, as `tinyvae train` makes it: RunConfig → run(config) → the run directory


class RunConfigError(ValueError):
    """A RunConfig that cannot be run: the message names the field (as its command-line flag), the value
    and what was expected. Nothing was read, trained or written."""


# What a new run uses for the fields left None (a resumed run uses what it recorded instead).
RUN_DEFAULTS = {"model": "vae", "data": "mnist5k", "epochs": 30, "batch_size": 128, "lr": 1e-3, "seed": 0}
RESUME_MAY_CHANGE = ("epochs", "lr", "batch_size")  # a resume applies these and records the change
# Fields a run's model config takes from the run rather than from model_options.
RUN_SET_MODEL_FIELDS = ("x_dim", "z_dim", "hidden", "likelihood", "seed", "n_classes", "dtype")


def _flag_field(help_text, default=None):
    """A RunConfig field with its help text: the command line's --help is generated from these."""
    return dataclasses.field(default=default, metadata={"help": help_text})


@dataclasses.dataclass
class RunConfig:
    """One training run: each field is a flag of `tinyvae train` (``batch_size`` is ``--batch-size``), its
    help text the field's description.

    A field left None takes its default in a new run (:data:`RUN_DEFAULTS`, or the data's default for the
    model fields) and the recorded value in a resumed one. ``model_options`` holds the model's own config
    fields (``{"beta": 4.0}``, ``{"k": 10}``, ``{"ema": True}``: see each model's config class); each must
    be a field of the chosen model's config. :meth:`validate` checks everything that can be checked
    without data; :func:`run` runs it.
    """

    model: str | None = _flag_field("which model, a registered name (default vae)")
    data: str | None = _flag_field("dataset (default mnist5k, embedded)")
    epochs: int | None = _flag_field(
        "epochs in total; a resumed run continues up to this many (default 30; 300 on shapes)"
    )
    batch_size: int | None = _flag_field("minibatch size (default 128)")
    lr: float | None = _flag_field("Adam learning rate (default 1e-3)")
    seed: int | None = _flag_field("seeds the weights, shuffling and noise (default 0)")
    latent_dim: int | None = _flag_field("latent dimensions (default 20; 2 for 2-D toys, 10 on shapes)")
    hidden: tuple | None = _flag_field(
        "hidden layer sizes, e.g. 400 or 512,256 (default 400; 64,64 on toys; or the model's own)"
    )
    likelihood: str | None = _flag_field("decoder (default by dataset: gaussian on the 2-D toys)")
    pixels: str | None = _flag_field("pixel mode of the training split (default by likelihood)")
    # The model's own config fields, e.g. {"beta": 4.0}: on the command line, one flag each (--beta 4).
    model_options: dict = dataclasses.field(default_factory=dict)
    out: str | None = _flag_field("run directory (default runs/MODEL-DATA-seedSEED)")
    resume: bool = _flag_field(
        "continue the run in --out from its last.npz (--epochs, --lr, --batch-size may change)", False
    )
    overwrite: bool = _flag_field(
        "replace the tinyvae run in --out (only the files a run writes are removed)", False
    )
    data_dir: str | None = _flag_field("where the IDX files of mnist / fashion-mnist are")
    limit: int | None = _flag_field("use only the first N training examples (quick runs)")
    progress: bool = _flag_field(
        "a live progress bar on a terminal (--no-progress: one line per epoch)", True
    )
    plots: bool = _flag_field("draw the figures at the end (--no-plots: skip them)", True)

    # ----- checks -----
    def validate(self):
        """Refuse, with a :class:`RunConfigError`, any field a run could not use (before anything runs)."""
        from tinyvae import data, models

        def positive_int(name, value):
            if value is not None and not (_is_int(value) and value >= 1):
                raise RunConfigError(f"{_flag(name)}: expected a positive integer, got {value!r}")

        for name in ("epochs", "batch_size", "latent_dim", "limit"):
            positive_int(name, getattr(self, name))
        if self.lr is not None and not (_is_number(self.lr) and 0 < self.lr < math.inf):
            raise RunConfigError(f"--lr: expected a finite number > 0, got {self.lr!r}")
        if self.seed is not None and not (_is_int(self.seed) and 0 <= self.seed < 2**63):
            raise RunConfigError(f"--seed: expected a seed in 0 .. 2**63 - 1, got {self.seed!r}")
        if self.hidden is not None and not (
            isinstance(self.hidden, tuple | list)
            and self.hidden
            and all(_is_int(h) and h >= 1 for h in self.hidden)
        ):
            raise RunConfigError(
                f"--hidden: expected positive layer sizes like (400,) or (512, 256), got {self.hidden!r}"
            )
        choices = {
            "model": tuple(sorted(models.MODELS)),
            "data": data.DATASETS,
            "likelihood": ("bernoulli", "gaussian"),
            "pixels": data.PIXEL_MODES,
        }
        for name, allowed in choices.items():
            value = getattr(self, name)
            if value is not None and value not in allowed:
                raise RunConfigError(f"{_flag(name)}: expected one of {', '.join(allowed)}, got {value!r}")
        if self.resume and self.overwrite:
            raise RunConfigError("--resume and --overwrite contradict each other: choose one")
        if not isinstance(self.model_options, dict):
            raise RunConfigError(
                f"model_options: expected a dict of model config fields, got {self.model_options!r}"
            )
        if self.data_dir is not None and (self.data or RUN_DEFAULTS["data"]) in data.TOY_DATASETS:
            raise RunConfigError(f"--data-dir applies to mnist and fashion-mnist, not to --data {self.data}")
        if self.out is not None and not str(self.out).strip():
            raise RunConfigError("--out: expected a folder, got an empty path")
        if not self.resume:  # a resumed run's model is the recorded one: checked when it is read
            self.check_model_options(self.model or RUN_DEFAULTS["model"])
        return self

    def check_model_options(self, model_name):
        """Each key of ``model_options`` must be a field of that model's config, and not one a run sets."""
        from tinyvae import models

        model = models.MODELS[model_name]
        known = {field.name for field in dataclasses.fields(model.config_class)}
        for name in self.model_options:
            if name not in known or name in RUN_SET_MODEL_FIELDS:
                options = sorted(known - set(RUN_SET_MODEL_FIELDS))
                raise RunConfigError(
                    f"{_flag(name)} does not apply to --model {model.name} (its options: "
                    f"{', '.join(map(_flag, options)) or 'none'})"
                )

    def run_dir(self):
        """Where the run goes: ``out``, or runs/MODEL-DATA-seedSEED."""
        if self.out is not None:
            return str(self.out)
        values = {name: getattr(self, name) or RUN_DEFAULTS[name] for name in ("model", "data")}
        seed = RUN_DEFAULTS["seed"] if self.seed is None else self.seed
        return os.path.join("runs", f"{values['model']}-{values['data']}-seed{seed}")

    # ----- what a new run builds -----
    def new_settings(self):
        """The settings of a new run (None fields defaulted), without the model config."""
        from tinyvae import data

        chosen = {
            name: getattr(self, name) for name in ("model", "data", "epochs", "batch_size", "lr", "seed")
        }
        settings = {name: RUN_DEFAULTS[name] if value is None else value for name, value in chosen.items()}
        if self.epochs is None:  # some datasets train longer by default (the shapes: 300 epochs)
            settings["epochs"] = data.run_defaults(settings["data"]).get("epochs", settings["epochs"])
        settings.update(
            pixels=self.pixels,
            limit=self.limit,
            data_dir=None if self.data_dir is None else str(self.data_dir),
        )
        return settings

    def model_fields(self, settings, x_dim, n_classes):
        """The generic fields and model options a model's ``config_from_run`` receives."""
        from tinyvae import data, models

        toy = settings["data"] in data.TOY_DATASETS
        likelihood = self.likelihood or ("gaussian" if toy else "bernoulli")
        defaults = dict(models.MODELS[settings["model"]].run_defaults(toy))
        hidden = defaults.pop("hidden")
        fields = {
            "x_dim": int(x_dim),
            "z_dim": self.latent_dim or data.run_defaults(settings["data"]).get("latent_dim", 20),
            "hidden": tuple(self.hidden) if self.hidden else tuple(hidden),
            "likelihood": likelihood,
            "seed": settings["seed"],
            "n_classes": int(n_classes),
        }
        if likelihood == "gaussian":
            fields["gaussian_logvar"] = (
                None  # learn the decoder's variance: a fixed σ = 1 would blur everything
            )
        fields.update(defaults)
        fields.update(self.model_options)
        return fields

    # ----- what a resumed run may not change -----
    def resume_conflicts(self, settings):
        """'--flag value (recorded: value)' for every field set here that would change the recorded run."""
        recorded_model = settings["model_config"]
        wanted = {
            name: getattr(self, name) for name in ("model", "data", "seed", "pixels", "limit", "data_dir")
        }
        recorded = {name: settings[name] for name in wanted}
        wanted.update(
            z_dim=self.latent_dim, hidden=self.hidden, likelihood=self.likelihood, **self.model_options
        )
        recorded.update({name: recorded_model.get(name) for name in wanted if name not in recorded})
        conflicts = []
        for name, value in wanted.items():
            if value is None:
                continue
            value, found = _comparable(value), _comparable(recorded[name])
            if value != found:
                flag = "--latent-dim" if name == "z_dim" else _flag(name)
                shown = ",".join(map(str, value)) if isinstance(value, list) else value
                conflicts.append(f"{flag} {shown} (recorded: {found})")
        return conflicts


def _flag(name):
    return "--" + name.replace("_", "-")


def _is_int(value):
    return isinstance(value, int | numpy.integer) and not isinstance(value, bool)


def _is_number(value):
    return isinstance(value, int | float | numpy.integer | numpy.floating) and not isinstance(value, bool)


def _comparable(value):
    return list(value) if isinstance(value, tuple | list) else value


def load_splits(settings, rng=None, test=None):
    """The train and test splits a run's ``settings`` describe, with the pixels its decoder needs. ``test``:
    the test split if already read (it is read once when its pixel mode is the one needed)."""
    from tinyvae import data

    likelihood = settings["model_config"]["likelihood"]
    train_pixels = settings.get("pixels") or data.default_pixels(likelihood, "train")
    common = {"data_dir": settings.get("data_dir")}
    rng = numpy.random.default_rng(settings["seed"]) if rng is None else rng
    train = data.load_dataset(
        settings["data"], "train", pixels=train_pixels, rng=rng, n=settings.get("limit"), **common
    )
    test_pixels = data.default_pixels(likelihood, "test")
    if test is None or test.pixels != test_pixels:
        test = data.load_dataset(settings["data"], "test", pixels=test_pixels, **common)
    return train, test


def available_memory_bytes():
    """Memory a new process can use now: Linux's MemAvailable, else the physical memory, else None."""
    try:
        with open("/proc/meminfo", encoding="ascii") as meminfo:
            for line in meminfo:
                if line.startswith("MemAvailable:"):
                    return int(line.split()[1]) * 1024
    except (OSError, ValueError, IndexError):
        pass
    try:
        return os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES")
    except (ValueError, OSError, AttributeError):
        return None


def check_memory(needed, what, advice):
    """Refuse (RunConfigError) what would need more than half the memory available now. Half, because the
    estimate is rough and low rather than high (a hierarchical VAE estimated at 17 GiB was measured
    filling 20 GiB), and a run that fills memory takes the machine down with it."""
    available = available_memory_bytes()
    if available is not None and needed > 0.5 * available:
        raise RunConfigError(
            f"{what} would need about {needed / 2**30:,.1f} GiB, more than the "
            f"{available / 2**30:,.1f} GiB of memory available on this machine; {advice}"
        )


def build_model(config, settings):
    """The model of a new run and the test split read to size it (x_dim, classes), every refusal happening
    before anything is written."""
    from tinyvae import data, models

    likelihood = config.likelihood or ("gaussian" if settings["data"] in data.TOY_DATASETS else "bernoulli")
    probe = data.load_dataset(
        settings["data"],
        "test",
        pixels=data.default_pixels(likelihood, "test"),
        data_dir=settings["data_dir"],
    )
    cls = models.MODELS[settings["model"]]
    try:
        model_config = cls.config_from_run(config.model_fields(settings, probe.x.shape[1], probe.n_classes))
    except (ValueError, TypeError) as error:
        raise RunConfigError(str(error)) from error
    toy_points = (
        3 * model_config.x_dim * (settings["limit"] or 0) * 4 if settings["data"] in data.TOY_DATASETS else 0
    )
    check_memory(
        cls.estimated_training_bytes(model_config, settings["batch_size"]) + toy_points,
        "this model and batch",
        "choose smaller sizes (--hidden, --latent-dim, --codebook-size, --k, --components, --flow-steps, "
        "--batch-size, --limit)",
    )
    return cls(model_config), probe


class _Started:
    """What a run holds between its start and its end: the model, its optimiser and RNG, the data, the
    history so far, and the run directory's lock."""

    def __init__(self, **values):
        self.__dict__.update(values)


def _start_new_run(config, out):
    from tinyvae import optim, rundir

    config.check_model_options(config.model or RUN_DEFAULTS["model"])
    world = distributed.world()
    if world.is_root:  # the others would see the directory rank 0 has just made
        rundir.check_new_run_dir(out, config.overwrite)  # the quick refusals, before data and model are built
    settings = config.new_settings()
    model, probe = build_model(config, settings)
    settings["model_config"] = model.config.to_dict()
    train_data, test_data = load_splits(settings, test=probe)
    settings["train_examples"] = len(train_data.x)  # a resume checks that it continues on as many
    _check_data_parallel(world, model, settings["batch_size"], train_data, test_data)
    claim = None
    if world.is_root:  # the other ranks hold the same model and never touch the run directory
        claim = rundir.claim_new_run_dir(out, config.overwrite)
        try:
            write_run_config(out, settings)
        except BaseException:
            rundir.abandon_new_run(out, claim)
            raise
    return _Started(
        model=model, optimizer=optim.Adam(model.parameters(), lr=settings["lr"]),
        rng=numpy.random.default_rng(settings["seed"]), history=[], done=0, settings=settings,
        train_data=train_data, test_data=test_data, lock=claim and claim.lock, claim=claim,
        previous_config=None, world=world,
    )  # fmt: skip


def _start_resumed_run(config, out):
    from tinyvae import optim, rundir

    if not os.path.isfile(os.path.join(out, "last.npz")):
        raise RunConfigError(f"--resume: {out} has no last.npz to continue from")
    settings = rundir.read_settings(out)
    config.check_model_options(settings["model"])
    conflicts = config.resume_conflicts(settings)
    if conflicts:
        raise RunConfigError(
            "--resume continues the recorded run, and these flags would change what it is: "
            + "; ".join(conflicts)
            + ". Drop them, or start a new run in another --out (only "
            + ", ".join(map(_flag, RESUME_MAY_CHANGE))
            + " may change on resume)"
        )
    world = distributed.world()
    lock = rundir.RunLock(out, rundir.command_line()).acquire() if world.is_root else None
    try:
        model, optimizer, rng, history, done = resume(
            out,
            lambda p: optim.Adam(p, lr=settings["lr"]),
            expected_model=settings["model"],
            expected_config=settings["model_config"],
        )
        changed = {}
        for name in RESUME_MAY_CHANGE:
            value = getattr(config, name)
            if value is not None and value != settings[name]:
                changed[name] = [settings[name], value]
                settings[name] = value
        if settings["epochs"] < done:
            raise RunConfigError(
                f"--epochs {settings['epochs']}: the run in {out} has already finished epoch {done}; pass "
                f"--epochs above {done} to continue it"
            )
        optimizer.lr = settings["lr"]
        if settings["train_examples"] is None and settings["data"] == "shapes":
            # A shapes run made before the train split became the whole grid (2026-11-27) trained on the
            # first shapes.LEGACY_TRAIN_SIZE images of today's split: it continues on those.
            legacy = shapes.LEGACY_TRAIN_SIZE
            settings["limit"] = min(settings["limit"] or legacy, legacy)
        train_data, test_data = load_splits(settings)
        _check_same_training_data(out, settings, len(train_data.x))
        _check_data_parallel(world, model, settings["batch_size"], train_data, test_data)
        previous_config = None
        if changed and world.is_root:
            previous_config = rundir.record_resume(out, settings, done, changed)
    except BaseException:
        if lock is not None:
            lock.release()
        raise
    return _Started(
        model=model, optimizer=optimizer, rng=rng, history=history, done=done, settings=settings,
        train_data=train_data, test_data=test_data, lock=lock, claim=None, previous_config=previous_config,
        world=world,
    )  # fmt: skip


def _check_same_training_data(out, settings, found):
    """Refuse to resume on a training split of another size than the run recorded (its files replaced, or a
    tinyvae that cuts the split differently): the run would go on learning from other data."""
    recorded = settings["train_examples"]
    if recorded is not None and recorded != found:
        raise RunConfigError(
            f"--resume: the run in {out} trained on {recorded:,} examples of {settings['data']}, but its "
            f"training split now gives {found:,}; continuing would train on other data. Restore the data it "
            "was trained on, or start a new run in another --out"
        )


def _check_data_parallel(world, model, batch_size, train_data, test_data):
    """Refuse, before anything is written, what several MPI ranks cannot train as one process would: a model
    that couples the examples of a batch (it says why: ``Model.data_parallel_problem``), and batches that
    would leave a rank without examples."""
    if not world.distributed:
        return
    problem = model.data_parallel_problem()
    if problem:
        raise distributed.DistributedError(
            f"{model.name} cannot be trained on several ranks ({world.size} MPI ranks here): {problem}; "
            "train it as one process (without mpiexec)"
        )
    if batch_size < world.size:
        raise RunConfigError(
            f"--batch-size {batch_size} is smaller than the {world.size} MPI ranks: every rank needs at "
            f"least one example of each batch; use --batch-size {world.size} or more"
        )
    for split, data in (("training", train_data), ("test", test_data)):
        last = len(data.x) % batch_size
        if 0 < last < world.size:
            raise RunConfigError(
                f"the last batch of the {split} split has {last} example(s) ({len(data.x)} examples in "
                f"batches of {batch_size}), fewer than the {world.size} MPI ranks: choose a --batch-size "
                "that leaves no such tail (or none), or a --limit"
            )


def run(config, log=print):
    """Do what `tinyvae train` does for ``config`` (a :class:`RunConfig`): check it, load the data, build
    the model (or restore it with ``resume=True``), train with Adam, keep the run directory (config,
    metrics, checkpoints; see :mod:`tinyvae.rundir` for what it may touch) and draw the figures. Returns
    the run directory as a ``pathlib.Path``.

    How it can stop, each after undoing a new run that saved no checkpoint: :class:`RunConfigError`,
    ``RunDirError``, ``DataError`` and ``CheckpointError`` before anything is trained;
    :class:`TrainingDiverged`, ``OSError`` (a full disk) and ``KeyboardInterrupt`` during training. These
    three carry ``.kept``: a sentence saying which checkpoint holds the last finished epoch, or that none
    was kept.

    Started by ``mpiexec`` it trains on every rank (:mod:`tinyvae.distributed`). An exception on one rank
    leaves the others waiting in their next Allreduce, so whoever calls this under MPI ends the job on an
    error: the ``tinyvae`` command calls ``tinyvae.distributed.world().abort(message)``; a script should too.
    """
    from tinyvae import plots, rundir

    config.validate()
    out = config.run_dir()
    rundir.check_writable_location(out)
    start = _start_resumed_run(config, out) if config.resume else _start_new_run(config, out)
    if not start.world.is_root:
        log = _silent  # rank 0 reports for the job
    try:
        history = _fit_run(config, out, start, log)
        if config.plots and start.world.is_root:
            figure_rng = numpy.random.default_rng(start.settings["seed"])
            try:
                written = plots.plot_run(
                    start.model, start.train_data, start.test_data, out, figure_rng, history
                )
            except KeyboardInterrupt as stop:
                stop.kept = (
                    f"training had finished (the last epoch is saved in {os.path.join(out, 'last.npz')}); "
                    f"the figures are incomplete: `tinyvae plot {out}` draws them"
                )
                raise
            shown = f"the model after epoch {len(history)}, as saved in last.npz"
            log(f"figures of {shown}: {', '.join(os.path.basename(p) for p in written)}")
    finally:
        if start.lock is not None:
            start.lock.release()
    return pathlib.Path(out)


def _silent(*args, **kwargs):
    """The ``log`` of MPI ranks other than 0."""


def _fit_run(config, out, start, log):
    from tinyvae import rundir

    settings = start.settings
    log(f"run directory: {out}")
    if start.done:
        log(f"resuming {out} after epoch {start.done} of {settings['epochs']}")
    sizes = f"{len(start.train_data.x)} train / {len(start.test_data.x)} test examples"
    log(f"{start.model.name} on {settings['data']}: {sizes}")
    last = os.path.join(out, "last.npz")
    try:
        return fit(
            start.model,
            start.train_data,
            start.test_data,
            settings["epochs"],
            settings["batch_size"],
            start.optimizer,
            start.rng,
            run_dir=out,
            progress=config.progress and sys.stderr.isatty() and start.world.is_root,
            start_epoch=start.done,
            history=start.history,
            log=log,
            world=start.world,
        )
    except BaseException as stop:
        saved_nothing = _saved_epoch(last) in ("?", start.done)
        cleared = start.claim is not None and rundir.abandon_new_run(out, start.claim)
        if start.previous_config is not None and saved_nothing:  # a failed resume changes nothing
            atomic_write_bytes(os.path.join(out, rundir.CONFIG_NAME), start.previous_config)
        if isinstance(stop, TrainingDiverged | OSError | KeyboardInterrupt):
            stop.kept = _what_was_kept(stop, last, out, cleared)
        raise
    finally:
        if start.world.is_root and os.path.exists(last):  # the new run has a checkpoint: the old one can go
            rundir.drop_set_aside(out)


def _what_was_kept(stop, last, out, cleared):
    """The sentence a stopped run ends with: which file holds the last finished epoch, or that none does."""
    if isinstance(stop, KeyboardInterrupt):
        if cleared:
            return f"before the first epoch finished: nothing was saved, and {out} was cleared"
        return f"the last finished epoch is saved in {last}"
    if isinstance(stop, TrainingDiverged):
        if cleared:
            return "no checkpoint was saved before it diverged, so none is kept; try a smaller --lr"
        return f"the last good (finite) checkpoint is {last} (epoch {_saved_epoch(last)})"
    if cleared:
        return "no checkpoint was saved, so none is kept"
    return f"the last complete checkpoint is {last} (epoch {_saved_epoch(last)})"


def _saved_epoch(path):
    try:
        return read_checkpoint(path)[0].get("epoch", "?")
    except CheckpointError:
        return "?"
