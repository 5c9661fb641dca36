"""Checkpoints: one ``.npz`` of plain arrays plus a JSON header, written atomically, read without pickle.

Layout of a checkpoint file (``numpy.savez``, so any NumPy can open it with ``allow_pickle=False``):

* ``meta.json``: a uint8 array holding UTF-8 JSON: the format version, the model's name and config (so
  the model can be rebuilt), the epoch, the training RNG state, and anything the trainer adds;
* ``model/<name>``: the model's ``state_dict()`` arrays;
* ``optimizer/<name>``: the optimiser's ``state_dict()`` arrays.

Nothing in the file can run code when loaded, and a write never leaves a half-written checkpoint under
the final name: the arrays go to a temporary file in the same directory, which is flushed to disk and then
renamed over the old one (a rename within a directory is atomic on POSIX).
"""

from __future__ import annotations

import io
import json
import os
import tempfile
import zipfile
import zlib

import numpy

FORMAT = "tinyvae-checkpoint"
FORMAT_VERSION = 1
META_KEY = "meta.json"


class CheckpointError(ValueError):
    """A checkpoint that cannot be used: missing, truncated, corrupt, of another format or model."""


TEMPORARY_PREFIX = ".tmp-"  # the name of a file being written; never read as a checkpoint


def atomic_write_bytes(path, data):
    """Write ``data`` to ``path`` so that ``path`` holds either the old or the new content, never a mix.

    The bytes go to ``.tmp-<random><name>`` in the same directory first. On any exception (Ctrl-C included)
    that temporary is removed; a process killed outright (SIGKILL, power loss) can leave one behind, which
    nothing reads (loaders open fixed names such as ``last.npz``) and :func:`remove_stale_temporaries`
    deletes when training starts or resumes in that directory. The directory itself is fsynced after the
    rename, so the new name survives a power loss; the file gets the permissions a plain ``open`` would.
    """
    directory = os.path.dirname(os.path.abspath(path))
    handle, temporary = tempfile.mkstemp(
        dir=directory, prefix=TEMPORARY_PREFIX, suffix=os.path.basename(path)
    )
    try:
        os.fchmod(handle, 0o666 & ~_current_umask())  # mkstemp makes 0600 files; follow the umask instead
        with os.fdopen(handle, "wb") as file:
            file.write(data)
            file.flush()
            os.fsync(file.fileno())
        os.replace(temporary, path)
        _fsync_directory(directory)
    except BaseException:
        if os.path.exists(temporary):
            os.unlink(temporary)
        raise


def _current_umask():
    mask = os.umask(0)  # reading the umask means setting it; put it straight back
    os.umask(mask)
    return mask


def _fsync_directory(directory):
    """Flush a directory entry (the rename) to disk; a no-op where directories cannot be opened."""
    try:
        descriptor = os.open(directory, os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(descriptor)
    except OSError:
        pass
    finally:
        os.close(descriptor)


def remove_stale_temporaries(directory):
    """Delete the ``.tmp-*`` files that killed writers left in ``directory``; returns their names.

    Call it only where no other process is writing (a run directory when its training starts)."""
    removed = []
    for name in sorted(os.listdir(directory)):
        if name.startswith(TEMPORARY_PREFIX):
            try:
                os.unlink(os.path.join(directory, name))
                removed.append(name)
            except FileNotFoundError:
                pass
    return removed


def save_checkpoint(path, model, optimizer=None, **meta):
    """Write the model (and optimiser) state and ``meta`` (JSON-able values) to ``path`` atomically."""
    header = {
        "format": FORMAT,
        "format_version": FORMAT_VERSION,
        "model": model.name,
        "config": model.config.to_dict(),
        "model_steps": getattr(model, "training_steps", None),
        **meta,
    }
    arrays = {META_KEY: numpy.frombuffer(json.dumps(header).encode("utf-8"), dtype=numpy.uint8)}
    arrays.update({f"model/{k}": numpy.asarray(v) for k, v in model.state_dict().items()})
    if optimizer is not None:
        arrays.update({f"optimizer/{k}": numpy.asarray(v) for k, v in optimizer.state_dict().items()})
    buffer = io.BytesIO()
    numpy.savez(buffer, **arrays)
    atomic_write_bytes(path, buffer.getvalue())


def read_checkpoint(path):
    """``(meta, model_state, optimizer_state)`` from ``path``, or a :class:`CheckpointError` saying why."""
    if not os.path.isfile(path):
        raise CheckpointError(f"checkpoint {path}: no such file")
    try:
        with numpy.load(path, allow_pickle=False) as archive:
            arrays = {name: archive[name] for name in archive.files}
    except ValueError as error:  # includes "Object arrays cannot be loaded when allow_pickle=False"
        raise CheckpointError(
            f"checkpoint {path}: refused ({error}); checkpoints hold plain arrays only"
        ) from error
    # zipfile's damaged-archive errors: a bad header (BadZipFile), a flag bit read as "encrypted"
    # (RuntimeError), an unknown method or version (NotImplementedError), a corrupt deflate stream (zlib).
    except (
        OSError,
        EOFError,
        zipfile.BadZipFile,
        KeyError,
        RuntimeError,
        NotImplementedError,
        zlib.error,
    ) as error:
        raise CheckpointError(
            f"checkpoint {path}: unreadable, truncated or not a .npz file ({type(error).__name__}: {error})"
        ) from error
    if META_KEY not in arrays:
        raise CheckpointError(f"checkpoint {path}: no '{META_KEY}' header; not a tinyvae checkpoint")
    try:
        meta = json.loads(arrays.pop(META_KEY).tobytes().decode("utf-8"))
    except (UnicodeDecodeError, json.JSONDecodeError, RecursionError) as error:  # deep nesting: Recursion
        raise CheckpointError(f"checkpoint {path}: the '{META_KEY}' header is not valid JSON") from error
    if not isinstance(meta, dict):
        raise CheckpointError(
            f"checkpoint {path}: the '{META_KEY}' header is a JSON {type(meta).__name__}, not an object; "
            "not a tinyvae checkpoint"
        )
    if meta.get("format") != FORMAT:
        raise CheckpointError(f"checkpoint {path}: not a tinyvae checkpoint (format {meta.get('format')!r})")
    if meta.get("format_version") != FORMAT_VERSION:
        raise CheckpointError(
            f"checkpoint {path}: format version {meta.get('format_version')!r}, but this tinyvae reads "
            f"version {FORMAT_VERSION}"
        )
    model_state = {k[len("model/") :]: v for k, v in arrays.items() if k.startswith("model/")}
    optimizer_state = {k[len("optimizer/") :]: v for k, v in arrays.items() if k.startswith("optimizer/")}
    return meta, model_state, optimizer_state


# Config fields that size a model's arrays: each one, and each product of neighbouring layer widths, is
# the size of at least one saved array, so none can exceed the number of numbers in the file.
SIZE_FIELDS = ("x_dim", "z_dim", "hidden", "z_dims", "codebook_size", "code_dim", "latent_vectors")
SIZE_FIELDS += ("n_classes", "components", "flow_steps")


def _check_sizes_fit(path, config, state):
    """Refuse, before anything is allocated, a config whose layers could not match the arrays in the file.

    Building the model allocates its weights from the config alone, so a corrupt or hostile header asking
    for x_dim = 10**9 would exhaust memory long before the shapes are compared; a model whose first layers
    are larger than every number stored cannot be the one saved."""
    if not isinstance(config, dict):
        raise CheckpointError(f"checkpoint {path}: the header's 'config' is not a mapping of fields")
    stored = sum(int(numpy.size(array)) for array in state.values())
    sizes = {}
    for field in SIZE_FIELDS:
        value = config.get(field)
        values = value if isinstance(value, list | tuple) else [value]
        if all(isinstance(v, int) and not isinstance(v, bool) for v in values):
            sizes[field] = values
    chain = sizes.get("x_dim", []) + sizes.get("hidden", [])  # the encoder's first layers, in order
    products = [a * b for a, b in zip(chain, chain[1:], strict=False)]
    largest = max([v for values in sizes.values() for v in values] + products, default=0)
    if largest > max(stored, 1):
        raise CheckpointError(
            f"checkpoint {path}: its config asks for arrays of {largest} numbers but the file holds only "
            f"{stored}; the header does not describe these weights (corrupt or edited)"
        )


def load_model(path, expected_model=None):
    """Rebuild the model saved in ``path`` (its class from the name, its config from the header) and load
    its weights. ``expected_model`` (a name) refuses a checkpoint of another model type."""
    from tinyvae import models

    meta, model_state, _ = read_checkpoint(path)
    name = meta.get("model")
    if expected_model is not None and name != expected_model:
        raise CheckpointError(f"checkpoint {path}: holds a {name!r} model, expected {expected_model!r}")
    if not isinstance(name, str) or name not in models.MODELS:
        raise CheckpointError(f"checkpoint {path}: unknown model {name!r}; known: {sorted(models.MODELS)}")
    cls = models.MODELS[name]
    _check_sizes_fit(path, meta.get("config"), model_state)
    try:
        model = cls(cls.config_class.from_dict(meta["config"]))
        model.load_state_dict(model_state)
    except (KeyError, ValueError, TypeError) as error:
        raise CheckpointError(f"checkpoint {path}: does not fit a {name!r} model: {error}") from error
    steps = meta.get("model_steps")
    if steps is not None and hasattr(model, "training_steps"):
        if not isinstance(steps, int) or isinstance(steps, bool) or steps < 0:
            raise CheckpointError(f"checkpoint {path}: 'model_steps' must be an integer >= 0, got {steps!r}")
        model.training_steps = steps
    return model, meta
