"""Run directories: what makes a folder a tinyvae run, which files a run owns, and one writer at a time.

A user points ``--out`` at a folder; tinyvae must never delete or mix anything it did not write there.
Three rules keep that promise:

* **A run says it is one.** ``config.json`` carries ``"format": "tinyvae-run"``; a folder whose
  config.json does not parse, or does not say so, is not a run, and ``--overwrite`` refuses it.
* **A run owns a fixed set of names** (:data:`RUN_FILES`: config, metrics, checkpoints, evaluation,
  figures, the lock, and the ``.tmp-*`` temporaries of an interrupted save). Replacing a run removes those
  and nothing else; an unknown file or a sub-folder inside makes ``--overwrite`` refuse, listing what would
  be lost, rather than guess.
* **One writer per run directory.** ``train`` (new, ``--resume`` or ``--overwrite``) holds an exclusive
  ``flock`` on ``.tinyvae.lock`` inside the run for as long as it runs. The operating system drops the lock
  when the process ends however it ends, so a crashed trainer never leaves a lock that blocks the next one.
  Read-only commands (evaluate, sample, plot, ...) take no lock and may run beside a trainer.
"""

from __future__ import annotations

import json
import os
import sys

from tinyvae.checkpoint import TEMPORARY_PREFIX

try:
    import fcntl
except ImportError:  # not POSIX: runs are not locked (documented in the README)
    fcntl = None

RUN_FORMAT = "tinyvae-run"
RUN_FORMAT_VERSION = 1
CONFIG_NAME = "config.json"
LOCK_NAME = ".tinyvae.lock"
CHECKPOINT_NAMES = ("last.npz", "best.npz")
FIGURE_NAMES = (
    "reconstructions.png",
    "class_conditional.png",
    "samples.png",
    "latent_scatter.png",
    "manifold.png",
    "interpolation.png",
    "training_curves.png",
    "kl_per_dimension.png",
    "codebook_usage.png",
    "posterior.png",
)
RUN_FILES = frozenset(
    (
        CONFIG_NAME,
        LOCK_NAME,
        "metrics.jsonl",
        "metrics.csv",
        "evaluation.json",
        *CHECKPOINT_NAMES,
        *FIGURE_NAMES,
    )
)


class RunDirError(Exception):
    """A run directory that cannot be used as asked: printed as a one-line error, nothing is changed."""


# ---------------------------------------------------------------- what a run is


def read_config(run_dir):
    """The parsed ``config.json`` of ``run_dir`` (a dict with ``settings`` and ``environment``).

    Raises :class:`RunDirError` naming the problem when the file is missing, unreadable, not JSON, not an
    object, or not marked as a tinyvae run. Runs written before the marker existed (tinyvae 0.1.0 before
    issue 10) are recognised by their ``environment.tinyvae`` version and ``settings`` object.
    """
    path = os.path.join(run_dir, CONFIG_NAME)
    if not os.path.isfile(path):
        raise RunDirError(
            f"{run_dir} is not a tinyvae run directory (no config.json); make one with `tinyvae train`"
        )
    try:
        with open(path, encoding="utf-8") as file:
            payload = json.load(file)
    except (OSError, UnicodeDecodeError, ValueError) as error:  # ValueError: JSON, and over-long integers
        raise RunDirError(f"{path} cannot be read as JSON ({type(error).__name__}: {error})") from None
    if not isinstance(payload, dict):
        raise RunDirError(f"{path} must hold a JSON object, found {type(payload).__name__}")
    if not _marked_as_run(payload):
        raise RunDirError(
            f'{path} was not written by tinyvae (expected "format": "{RUN_FORMAT}"); '
            "this folder is not a tinyvae run directory"
        )
    if not isinstance(payload.get("settings"), dict):
        raise RunDirError(
            f"{path}: 'settings' must be a JSON object, found {_json_type(payload.get('settings'))}"
        )
    return payload


def _marked_as_run(payload):
    if payload.get("format") == RUN_FORMAT:
        return True
    environment = payload.get("environment")  # the layout before the marker
    return (
        "format" not in payload
        and isinstance(payload.get("settings"), dict)
        and isinstance(environment, dict)
        and isinstance(environment.get("tinyvae"), str)
    )


def _json_type(value):
    return "nothing" if value is None else type(value).__name__


def is_run_file(name):
    """Whether a run writes files called ``name`` (the fixed names, and its save temporaries)."""
    return name in RUN_FILES or name.startswith(TEMPORARY_PREFIX)


def foreign_entries(run_dir):
    """The entries of ``run_dir`` a run never writes (unknown files, sub-folders, links), sorted."""
    foreign = []
    for entry in sorted(os.scandir(run_dir), key=lambda e: e.name):
        if not is_run_file(entry.name) or entry.is_symlink() or not entry.is_file(follow_symlinks=False):
            foreign.append(entry.name + ("/" if entry.is_dir(follow_symlinks=False) else ""))
    return foreign


def remove_run_files(run_dir):
    """Remove the files a run wrote in ``run_dir`` (never the lock held by this process, never anything
    else). Call it holding the lock, after :func:`foreign_entries` found nothing foreign."""
    for entry in os.scandir(run_dir):
        if entry.name != LOCK_NAME and is_run_file(entry.name) and entry.is_file(follow_symlinks=False):
            os.unlink(entry.path)


# ---------------------------------------------------------------- where a run may go


def check_writable_location(out, flag="--out"):
    """Refuse an ``--out`` that could never hold a run, before anything is read, trained or written.

    Returns the absolute path. Refused: an existing file, a path under a file, a symbolic link (a run is
    replaced file by file, and doing that through a link would touch whatever it points at), a folder or
    parent that this user cannot write.
    """
    absolute = os.path.abspath(out)
    if os.path.islink(out):
        raise RunDirError(
            f"{flag} {out} is a symbolic link (to {os.path.realpath(out)}); give the real folder instead"
        )
    if os.path.exists(absolute) and not os.path.isdir(absolute):
        raise RunDirError(f"{flag} {out} is an existing file; a run directory must be a folder")
    existing = absolute
    while not os.path.exists(existing):  # the deepest part of the path that exists
        existing = os.path.dirname(existing)
    if not os.path.isdir(existing):
        raise RunDirError(f"{flag} {out} lies under {existing}, which is a file, not a folder")
    if not os.access(existing, os.W_OK | os.X_OK):
        what = "the run directory" if existing == absolute else "its parent folder"
        raise RunDirError(f"{flag} {out}: {what} {existing} is not writable by this user")
    return absolute


# ---------------------------------------------------------------- one writer


class RunLock:
    """An exclusive lock on a run directory, held from :meth:`acquire` until :meth:`release` or exit.

    ``flock`` locks belong to the open file: the kernel drops them when the process dies, so a stale lock
    file (left by a crash or SIGKILL) blocks nobody. The file holds the holder's pid and command so that a
    refused writer can say who is writing.
    """

    def __init__(self, run_dir, command):
        self.path = os.path.join(run_dir, LOCK_NAME)
        self.run_dir = run_dir
        self.command = command
        self._file = None

    def acquire(self):
        if fcntl is None:
            return self
        try:
            file = open(self.path, "a+", encoding="utf-8")
        except OSError as error:
            raise RunDirError(f"cannot lock run directory {self.run_dir}: {error.strerror}") from None
        try:
            fcntl.flock(file.fileno(), fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError:
            file.seek(0)
            holder = file.read().strip() or "unknown"
            file.close()
            pid, _, command = holder.partition(" ")
            raise RunDirError(
                f"run directory {self.run_dir} is in use by process {pid} ({command or 'tinyvae'}); "
                "one writer at a time: wait for it to finish, or use another --out"
            ) from None
        file.seek(0)
        file.truncate()
        file.write(f"{os.getpid()} {self.command}\n")
        file.flush()
        self._file = file
        return self

    def release(self):
        if self._file is not None:
            fcntl.flock(self._file.fileno(), fcntl.LOCK_UN)
            self._file.close()
            self._file = None

    def __enter__(self):
        return self.acquire()

    def __exit__(self, *exc_info):
        self.release()


def command_line():
    """This process's command, for the lock file ("tinyvae train --out runs/a")."""
    return " ".join(["tinyvae", *sys.argv[1:]])[:200]


# ---------------------------------------------------------------- the settings a run records

LEGACY_DEFAULTS = {"batch_size": 128}  # runs made before batch_size was recorded trained with 128


def _is_int(value):
    return isinstance(value, int) and not isinstance(value, bool)


def _is_number(value):
    return isinstance(value, int | float) and not isinstance(value, bool)


_SETTING_RULES = {  # field: (check, what it must be)
    "model": (lambda v: isinstance(v, str), "a model name (a string)"),
    "data": (lambda v: isinstance(v, str), "a dataset name (a string)"),
    "epochs": (lambda v: _is_int(v) and v >= 1, "a positive integer"),
    "batch_size": (lambda v: _is_int(v) and v >= 1, "a positive integer"),
    "lr": (lambda v: _is_number(v) and 0 < v < float("inf"), "a finite number > 0"),
    "seed": (lambda v: _is_int(v) and 0 <= v < 2**63, "an integer in 0 .. 2**63 - 1"),
    "pixels": (lambda v: v is None or isinstance(v, str), "null or a pixel mode (a string)"),
    "limit": (lambda v: v is None or (_is_int(v) and v >= 1), "null or a positive integer"),
    "data_dir": (lambda v: v is None or isinstance(v, str), "null or a folder (a string)"),
    "model_config": (
        lambda v: isinstance(v, dict) and isinstance(v.get("likelihood"), str),
        "an object with the model's config (including 'likelihood')",
    ),
}


def validate_settings(settings, path):
    """The run's settings, checked field by field (legacy defaults filled in); a RunDirError names the
    first missing or mistyped field, the value found and what it must be."""
    from tinyvae import models

    settings = {**LEGACY_DEFAULTS, **settings}
    for field, (check, expected) in _SETTING_RULES.items():
        if field not in settings:
            raise RunDirError(f"{path}: settings.{field} is missing; expected {expected}")
        if not check(settings[field]):
            raise RunDirError(f"{path}: settings.{field} is {settings[field]!r}; expected {expected}")
    if settings["model"] not in models.MODELS:
        raise RunDirError(
            f"{path}: settings.model is {settings['model']!r}; "
            f"expected one of {', '.join(sorted(models.MODELS))}"
        )
    return settings


def read_settings(run_dir):
    """The validated settings of the run in ``run_dir`` (read_config, then validate_settings)."""
    payload = read_config(run_dir)
    return validate_settings(payload["settings"], os.path.join(run_dir, CONFIG_NAME))


# ---------------------------------------------------------------- making, taking and undoing a new run


def check_new_run_dir(out, overwrite):
    """Refuse, changing nothing, a new run in ``out`` that would mix with or delete something: an existing
    non-empty folder needs ``overwrite``, and must then be a tinyvae run holding nothing but run files.
    Returns whether there is an old run to replace."""
    occupied = os.path.isdir(out) and [name for name in os.listdir(out) if name != LOCK_NAME]
    if not occupied:
        return False
    if not overwrite:
        raise RunDirError(
            f"run directory {out} already exists; pass --resume to continue it or --overwrite to start over"
        )
    try:
        read_config(out)
    except RunDirError as error:
        raise RunDirError(f"--overwrite refused: {error}; nothing was deleted") from None
    foreign = foreign_entries(out)
    if foreign:
        shown = ", ".join(foreign[:10]) + (f" and {len(foreign) - 10} more" if len(foreign) > 10 else "")
        raise RunDirError(
            f"--overwrite refused: {out} holds files a tinyvae run does not write, which would be lost: "
            f"{shown}; move them out first. Nothing was deleted"
        )
    return True


def claim_new_run_dir(out, overwrite):
    """Make or take ``out`` for a new run and lock it; returns (lock, created). Under the lock the folder
    is checked again (another writer may have filled it since) and the old run's files are removed."""
    created = not os.path.isdir(out)
    try:
        os.makedirs(out, exist_ok=True)
    except OSError as error:
        raise RunDirError(f"cannot create run directory {out}: {error.strerror}") from None
    try:
        lock = RunLock(out, command_line()).acquire()
    except RunDirError:
        if created:
            remove_if_empty(out)
        raise
    try:
        if check_new_run_dir(out, overwrite):
            remove_run_files(out)
    except BaseException:
        lock.release()
        raise
    return lock, created


def remove_if_empty(folder):
    try:
        os.rmdir(folder)
    except OSError:  # not empty (another process's files), or already gone: leave it
        pass


def abandon_new_run(run_dir, lock, created):
    """Undo a new run that saved no checkpoint, so that the same command can simply be run again: remove
    the files it wrote, its lock, and the folder if it made it. Returns False (and changes nothing) when
    a checkpoint exists."""
    if os.path.exists(os.path.join(run_dir, "last.npz")):
        return False
    remove_run_files(run_dir)
    lock.release()
    lock_path = os.path.join(run_dir, LOCK_NAME)
    if os.path.exists(lock_path):
        os.unlink(lock_path)
    if created:
        remove_if_empty(run_dir)
    return True


def record_resume(run_dir, settings, done, changed):
    """config.json after a resume: the settings now in force, and which ones changed after which epoch."""
    from tinyvae.checkpoint import atomic_write_bytes

    payload = read_config(run_dir)
    payload["settings"] = settings
    payload.setdefault("resumes", []).append({"after_epoch": done, "changed": changed})
    atomic_write_bytes(os.path.join(run_dir, CONFIG_NAME), json.dumps(payload, indent=2).encode())
