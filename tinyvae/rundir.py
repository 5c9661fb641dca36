"""Run directories: what makes a folder a tinyvae run, which files a run owns, and one writer at a time.

A user points ``--out`` at a folder; tinyvae must never delete or mix anything it did not write there.
Three rules keep that promise:

* **A run says it is one.** ``config.json`` carries ``"format": "tinyvae-run"``; a folder whose
  config.json does not parse, or does not say so, is not a run, and ``--overwrite`` refuses it.
* **A run owns a fixed set of names** (:data:`RUN_FILES`: config, metrics, checkpoints, evaluation,
  figures, the code prior of ``tinyvae train-prior``, the lock, and the ``.tmp-*`` temporaries of an
  interrupted save). Replacing a run removes those
  and nothing else; an unknown file or a sub-folder inside makes ``--overwrite`` refuse, listing what would
  be lost, rather than guess.
* **One writer per run directory.** ``train`` (new, ``--resume`` or ``--overwrite``) holds an exclusive
  ``flock`` on ``.tinyvae.lock`` inside the run for as long as it runs. The operating system drops the lock
  when the process ends however it ends, so a crashed trainer never leaves a lock that blocks the next one.
  ``train-prior`` holds the same lock while it fits and saves ``code_prior.npz``: a prior fitted while the
  run trains would describe codes the next epoch changes, so each refuses while the other runs.
  Read-only commands (evaluate, sample, plot, ...) take no lock and may run beside a trainer.
"""

from __future__ import annotations

import errno
import json
import os
import sys

from tinyvae.checkpoint import temporary_of

try:
    import fcntl
except ImportError:  # not POSIX: runs are not locked (documented in the README)
    fcntl = None

RUN_FORMAT = "tinyvae-run"
RUN_FORMAT_VERSION = 1
CONFIG_NAME = "config.json"
LOCK_NAME = ".tinyvae.lock"
CHECKPOINT_NAMES = ("last.npz", "best.npz")
PRIOR_NAME = "code_prior.npz"  # the transformer prior over a VQ-VAE's codes (`tinyvae train-prior`)
FIGURE_NAMES = (
    "reconstructions.png",
    "class_conditional.png",
    "samples.png",
    "latent_scatter.png",
    "manifold.png",
    "interpolation.png",
    "traversal.png",
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
        PRIOR_NAME,
        *FIGURE_NAMES,
    )
)
# Where --overwrite puts the old run's files until the new run has saved its first checkpoint: a new run
# that fails before that gives them back, so an old run is never lost to a new one that produced nothing.
REPLACED_NAME = ".tinyvae-replaced"


class RunDirError(Exception):
    """A run directory that cannot be used as asked: printed as a one-line error, nothing is changed."""


# ---------------------------------------------------------------- what a run is


def read_config(run_dir):
    """The parsed ``config.json`` of ``run_dir`` (a dict with ``settings`` and ``environment``).

    Raises :class:`RunDirError` naming the problem when the file is missing, unreadable, not JSON, not an
    object, or not marked as a tinyvae run. Runs written before the marker existed (the first releases of
    tinyvae 0.1.0) are recognised by their ``environment.tinyvae`` version and ``settings`` object.
    """
    path = os.path.join(run_dir, CONFIG_NAME)
    if not os.path.isfile(path):
        raise RunDirError(
            f"{run_dir} is not a tinyvae run directory (no config.json); make one with `tinyvae train`"
        )
    try:
        with open(path, encoding="utf-8") as file:
            payload = json.load(file)
    except (OSError, UnicodeDecodeError, ValueError, RecursionError) as error:
        reason = f"{type(error).__name__}: {error}"
        if isinstance(error, ValueError) and "integer string conversion" in str(error):
            reason = (
                "it holds an integer thousands of digits long"  # Python's own limit, not the user's concern
            )
        elif isinstance(error, RecursionError):
            reason = "it is nested too deeply"
        raise RunDirError(f"{path} cannot be read as JSON ({reason})") from None
    if not isinstance(payload, dict):
        raise RunDirError(f"{path} must hold a JSON object, found {type(payload).__name__}")
    version = payload.get("format_version", RUN_FORMAT_VERSION)
    if payload.get("format") == RUN_FORMAT and version != RUN_FORMAT_VERSION:
        raise RunDirError(
            f"{path}: run format version {version!r}, but this tinyvae reads version {RUN_FORMAT_VERSION}"
        )
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


def run_file_names():
    """The names a run writes: :data:`RUN_FILES` and every registered model's own figures
    (``Model.figure_names``)."""
    from tinyvae import models

    return RUN_FILES.union(*(cls.figure_names for cls in models.MODELS.values()))


def is_run_file(name, names=None):
    """Whether a run writes files called ``name``: the fixed names, and the temporaries its atomic writes
    make of them (``.tmp-`` + 8 random characters + the name; a user's ``.tmp-notes.txt`` is not one).
    ``names``: :func:`run_file_names`, when a caller asks about a whole folder (it is looked up once)."""
    names = run_file_names() if names is None else names
    return name in names or temporary_of(name, names)


def foreign_entries(run_dir):
    """The entries of ``run_dir`` a run never writes (unknown files, sub-folders, links), sorted, each
    with what makes it foreign where its name alone does not say."""
    foreign, names = [], run_file_names()
    for entry in sorted(os.scandir(run_dir), key=lambda e: e.name):
        if entry.is_symlink():
            foreign.append(f"{entry.name} (a symbolic link)")
        elif entry.is_dir(follow_symlinks=False):
            foreign.append(entry.name + "/")
        elif not is_run_file(entry.name, names) or not entry.is_file(follow_symlinks=False):
            foreign.append(entry.name)
    return foreign


def run_files(run_dir):
    """The run files in ``run_dir`` that a new run replaces (all but the lock)."""
    names = run_file_names()
    return sorted(
        entry.name
        for entry in os.scandir(run_dir)
        if entry.name != LOCK_NAME and is_run_file(entry.name, names) and entry.is_file(follow_symlinks=False)
    )


def remove_run_files(run_dir):
    """Remove the files a run wrote in ``run_dir`` (never the lock, never anything else). Call it holding
    the lock, after :func:`foreign_entries` found nothing foreign."""
    for name in run_files(run_dir):
        os.unlink(os.path.join(run_dir, name))


def set_aside_run_files(run_dir):
    """Move the old run's files into ``RUN/.tinyvae-replaced/`` (renames: nothing is copied or lost), so a
    new run starts clean but can still give them back (:func:`restore_set_aside`). If one cannot be moved
    (a file the system will not let go), the ones moved so far are put back and a RunDirError says which."""
    aside = os.path.join(run_dir, REPLACED_NAME)
    os.mkdir(aside)
    moved = []
    try:
        for name in run_files(run_dir):
            os.rename(os.path.join(run_dir, name), os.path.join(aside, name))
            moved.append(name)
    except OSError as error:
        for name in moved:
            os.rename(os.path.join(aside, name), os.path.join(run_dir, name))
        os.rmdir(aside)
        raise RunDirError(
            f"--overwrite refused: cannot move {error.filename} aside ({error.strerror}); the old run is "
            "left as it was"
        ) from None


def restore_set_aside(run_dir):
    """Give the old run's files back (the new run ended before its first checkpoint)."""
    aside = os.path.join(run_dir, REPLACED_NAME)
    if os.path.isdir(aside):
        for name in os.listdir(aside):
            os.replace(os.path.join(aside, name), os.path.join(run_dir, name))
        os.rmdir(aside)


def drop_set_aside(run_dir):
    """Delete the old run's files for good (the new run has saved a checkpoint). Only run files are in
    there: :func:`set_aside_run_files` moved nothing else."""
    aside = os.path.join(run_dir, REPLACED_NAME)
    if os.path.isdir(aside):
        names = run_file_names()
        for name in os.listdir(aside):
            if is_run_file(name, names):
                os.unlink(os.path.join(aside, name))
        os.rmdir(aside)


# ---------------------------------------------------------------- where a run may go


def check_writable_location(out, flag="--out"):
    """Refuse an ``--out`` that could never hold a run, before anything is read, trained or written.

    Returns the absolute path. Refused: an existing file, a path under a file, a symbolic link (a run is
    replaced file by file, and doing that through a link would touch whatever it points at), a folder or
    parent that this user cannot write.
    """
    absolute = os.path.abspath(out)
    out = os.path.normpath(out)  # "link/" and "link/." name the link itself
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
        try:  # O_NOFOLLOW: a link planted at the lock's name must not make us write through it
            descriptor = os.open(self.path, os.O_RDWR | os.O_CREAT | os.O_NOFOLLOW, 0o666)
        except OSError as error:
            what = (
                "is a symbolic link" if error.errno == errno.ELOOP else f"cannot be opened ({error.strerror})"
            )
            raise RunDirError(f"cannot lock run directory {self.run_dir}: {self.path} {what}") from None
        file = os.fdopen(descriptor, "r+", encoding="utf-8")
        try:
            fcntl.flock(file.fileno(), fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError:
            file.seek(0)
            holder = file.read().strip()
            file.close()
            pid, _, command = holder.partition(" ")
            who = f"process {pid} ({command or 'tinyvae'})" if holder else "another process (just starting)"
            raise RunDirError(
                f"run directory {self.run_dir} is in use by {who}; "
                "one writer at a time: wait for it to finish, or use another --out"
            ) from None
        try:
            file.seek(0)
            file.truncate()
            file.write(f"{os.getpid()} {self.command}\n")
            file.flush()
        except OSError as error:  # a full disk
            file.close()
            raise RunDirError(f"cannot lock run directory {self.run_dir}: {error.strerror}") from None
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

# Runs made before batch_size was recorded trained with 128; before train_examples was, the count is unknown.
LEGACY_DEFAULTS = {"batch_size": 128, "train_examples": None}


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
    "train_examples": (lambda v: v is None or (_is_int(v) and v >= 1), "null or a positive integer"),
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


class NewRunClaim:
    """A new run's hold on its folder: the lock, the folders it made (deepest last), and whether the lock
    file was there before; :func:`abandon_new_run` undoes exactly this."""

    def __init__(self, lock, made, lock_existed):
        self.lock, self.made, self.lock_existed = lock, made, lock_existed


def claim_new_run_dir(out, overwrite):
    """Make or take ``out`` for a new run and lock it; returns a :class:`NewRunClaim`. Under the lock the
    folder is checked again (another writer may have filled it since) and an old run's files are set
    aside (:func:`set_aside_run_files`), to be dropped once the new run has a checkpoint."""
    made, missing = [], os.path.abspath(out)
    while not os.path.exists(missing):
        made.insert(0, missing)
        missing = os.path.dirname(missing)
    try:
        os.makedirs(out, exist_ok=True)
    except OSError as error:
        raise RunDirError(f"cannot create run directory {out}: {error.strerror}") from None
    lock_existed = os.path.lexists(os.path.join(out, LOCK_NAME))
    try:
        lock = RunLock(out, command_line()).acquire()
    except RunDirError:
        _remove_empty(made)
        raise
    try:
        if check_new_run_dir(out, overwrite):
            set_aside_run_files(out)
    except BaseException:
        lock.release()
        raise
    return NewRunClaim(lock, made, lock_existed)


def _remove_empty(folders):
    """Remove the folders (deepest last in the list) that are empty; stop at the first that is not."""
    for folder in reversed(folders):
        try:
            os.rmdir(folder)
        except OSError:  # not empty (another process's files), or already gone: leave it and its parents
            return


def abandon_new_run(run_dir, claim):
    """Undo a new run that saved no checkpoint, so that the same command can simply be run again: remove
    the files it wrote, give back the old run it was replacing, drop its lock file and the folders it made.
    Returns False (and changes nothing) when a checkpoint exists."""
    if os.path.exists(os.path.join(run_dir, "last.npz")):
        return False
    remove_run_files(run_dir)
    restore_set_aside(run_dir)
    claim.lock.release()
    lock_path = os.path.join(run_dir, LOCK_NAME)
    if not claim.lock_existed and os.path.exists(lock_path):
        os.unlink(lock_path)
    _remove_empty(claim.made)
    return True


def record_resume(run_dir, settings, done, changed):
    """config.json after a resume: the settings now in force, and which ones changed after which epoch.
    Returns the file's previous bytes, for a resume that fails before its first epoch to put back."""
    from tinyvae.checkpoint import atomic_write_bytes

    path = os.path.join(run_dir, CONFIG_NAME)
    with open(path, "rb") as file:
        previous = file.read()
    payload = read_config(run_dir)
    resumes = payload.get("resumes", [])
    if not isinstance(resumes, list):
        raise RunDirError(f"{path}: 'resumes' must be a list of changes, found {_json_type(resumes)}")
    payload["settings"] = settings
    payload["resumes"] = [*resumes, {"after_epoch": done, "changed": changed}]
    atomic_write_bytes(path, json.dumps(payload, indent=2).encode())
    return previous
