"""Checkpoints: one ``.npz`` of plain arrays plus a JSON header, written atomically, read without pickle.

Layout of a checkpoint file (``numpy.savez``, so any NumPy can open it with ``allow_pickle=False``):

* ``meta.json``: a uint8 array holding UTF-8 JSON: the format version, the model's name and config (so
  the model can be rebuilt), the epoch, the training RNG state, and anything the trainer adds;
* ``model/<name>``: the model's ``state_dict()`` arrays;
* ``optimizer/<name>``: the optimiser's ``state_dict()`` arrays.

Nothing in the file can run code when loaded, and a write never leaves a half-written checkpoint under
the final name: the arrays go to a temporary file in the same directory, which is flushed to disk and then
renamed over the old one (a rename within a directory is atomic on POSIX). A write also never stores NaN
or infinity: :func:`save_checkpoint` raises :class:`NonFiniteStateError` instead and leaves the old file.

Loading trusts nothing the file says about itself. A ``.npy`` header declares a shape, and NumPy commits
that much memory before reading a byte, so a 6 MB file can ask for 6 GB (or 8 TB). The loader therefore
reads every member's header first and reads no data until (in this order):

1. each member's declared bytes equal the bytes the zip directory records for it, those records fit in
   the file, and the archive does not inflate by more than ``MAX_INFLATION`` (a compression bomb): memory
   is then bounded by the file's real size;
2. the JSON header (at most ``META_LIMIT`` bytes, the only data read so far) has fields of the right
   types, and no integer wider than the RNG state's 128 bits;
3. the config's layer sizes could describe the arrays declared (so building the model is bounded too);
4. every member is an array of the rebuilt model (or of its optimiser) in that array's shape and dtype.

After reading, every floating-point array must be finite. Any failure is a :class:`CheckpointError` whose
message names the file, the member or header field, what was found and what was expected.
"""

from __future__ import annotations

import dataclasses
import io
import json
import math
import os
import re
import zipfile
import zlib

import numpy
from numpy.lib import format as npy

from tinyvae.backend import to_host
from tinyvae.files import (  # noqa: F401  (re-exported: checkpoints are written with them)
    TEMPORARY_PREFIX,
    atomic_write_bytes,
    remove_stale_temporaries,
    temporary_of,
)

try:  # zipfile reads LZMA members when Python has lzma; its errors are not OSErrors
    from lzma import LZMAError
except ImportError:  # pragma: no cover - Python built without lzma: zipfile refuses those members itself
    LZMAError = OSError

__all__ = [
    "FORMAT",
    "FORMAT_VERSION",
    "META_KEY",
    "MAX_INFLATION",
    "META_LIMIT",
    "CheckpointError",
    "NonFiniteStateError",
    "TEMPORARY_PREFIX",
    "atomic_write_bytes",
    "remove_stale_temporaries",
    "save_checkpoint",
    "read_checkpoint",
    "load_model",
    "load_training_state",
]

FORMAT = "tinyvae-checkpoint"
FORMAT_VERSION = 1
META_KEY = "meta.json"

# tinyvae writes members uncompressed (numpy.savez); re-packed with numpy.savez_compressed, the default VAE
# shrinks 1.09:1 (random weights hardly deflate). A file inflating more than 16:1 is mostly zeros or
# forged; the allowance lets a tiny checkpoint of zero biases through. Memory is then bounded by about
# MAX_INFLATION times the file's size on disk, whatever its headers say.
MAX_INFLATION = 16
INFLATION_ALLOWANCE = 1 << 20  # bytes
# Bytes of JSON header: a run's history grows by about 1 kB an epoch, so 8 MB is thousands of epochs, while
# Python's objects for JSON take up to ~70 times the text (a list of empty objects): 8 MB stays under 600 MB.
META_LIMIT = 8 << 20
NPY_HEADER_LIMIT = 10_000  # bytes; NumPy's own max_header_size (its headers are about 128 bytes)
LARGEST_INTEGER = 2**128  # the widest integer tinyvae writes: the PCG64 state in ``rng``
LARGEST_COUNT = 2**63 - 1  # epochs and steps are counters that fit an int64


class CheckpointError(ValueError):
    """A checkpoint that cannot be used: missing, truncated, corrupt, forged, of another format or model."""


class NonFiniteStateError(CheckpointError):
    """``save_checkpoint`` refused to write a model or optimiser array holding NaN or infinite values; the
    file at the path is left as it was. A CheckpointError, so whatever reports checkpoint problems (the
    command line's exit status 2) reports this one too."""


# ---------------------------------------------------------------------------------------------------------
# Saving


def save_checkpoint(path, model, optimizer=None, **meta):
    """Write the model (and optimiser) state and ``meta`` (JSON-able values) to ``path`` atomically.

    Raises :class:`NonFiniteStateError`, writing nothing, when a model or optimiser array holds NaN or
    infinity: such a checkpoint could only be refused when loaded, and it would replace a good one."""
    # The file is written from host memory: a state array still on the GPU is copied here, by name.
    model_state = {key: to_host(value) for key, value in model.state_dict().items()}
    optimizer_state = {} if optimizer is None else optimizer.state_dict()
    optimizer_state = {key: to_host(value) for key, value in optimizer_state.items()}
    for part, state in (("model", model_state), ("optimizer", optimizer_state)):
        for key, value in state.items():
            problem = _non_finite(value)
            if problem:
                raise NonFiniteStateError(
                    f"checkpoint {path}: not written: {part} array '{key}' {problem}; a checkpoint holds "
                    "finite numbers only, so the file there (if any) is left as it was"
                )
    header = {
        "format": FORMAT,
        "format_version": FORMAT_VERSION,
        "model": model.name,
        "config": model.config.to_dict(),
        "model_steps": model.training_steps,
        **meta,
    }
    arrays = {META_KEY: numpy.frombuffer(json.dumps(header).encode("utf-8"), dtype=numpy.uint8)}
    arrays.update({f"model/{k}": numpy.asarray(v) for k, v in model_state.items()})
    arrays.update({f"optimizer/{k}": numpy.asarray(v) for k, v in optimizer_state.items()})
    buffer = io.BytesIO()
    numpy.savez(buffer, **arrays)
    atomic_write_bytes(path, buffer.getvalue())


def _non_finite(array):
    """'holds 3 NaN values' (and/or infinite ones) for a float array that is not all finite, else None."""
    if array.dtype.kind != "f" or numpy.isfinite(array).all():
        return None
    counts = ((int(numpy.isnan(array).sum()), "NaN"), (int(numpy.isinf(array).sum()), "infinite"))
    return "holds " + " and ".join(f"{n} {what} value{'' if n == 1 else 's'}" for n, what in counts if n)


# ---------------------------------------------------------------------------------------------------------
# Loading: the public functions


def read_checkpoint(path):
    """``(meta, model_state, optimizer_state)`` from ``path``, or a :class:`CheckpointError` saying why.

    The arrays are checked against the model the header describes (rebuilt for the purpose), so what is
    returned always fits it: the right names, shapes and dtypes, all finite."""
    meta, model_state, optimizer_state, _ = _load(path)
    return meta, model_state, optimizer_state


def load_model(path, expected_model=None, expected_config=None):
    """Rebuild the model saved in ``path`` (its class from the name, its config from the header) and load
    its weights. ``expected_model`` (a name) refuses a checkpoint of another model type.

    ``expected_config`` (a ModelConfig, or its fields as in a run's ``config.json``) refuses a checkpoint
    of the same model with other settings: the model is built from it, and the message names the first
    array whose shape differs (a latent size of 20 where 10 was expected) and the config fields that do."""
    model, meta, _ = load_training_state(path, expected_model, expected_config)
    return model, meta


def load_training_state(path, expected_model=None, expected_config=None):
    """What :func:`load_model` returns, and the optimiser's state from the same single read (checked against
    the same model): ``(model, meta, optimizer_state)``. Resuming a run needs all three."""
    meta, model_state, optimizer_state, model = _load(path, expected_model, expected_config)
    try:  # the names, shapes and dtypes are checked already; this guards a model's own extra rules
        model.load_state_dict(model_state)
    except (KeyError, ValueError, TypeError) as error:
        raise CheckpointError(f"checkpoint {path}: does not fit a {model.name!r} model: {error}") from error
    steps = meta.get("model_steps")
    if steps is not None:
        model.training_steps = steps
    return model, meta, optimizer_state


# zipfile's damaged-archive errors: a bad header (BadZipFile), a flag bit read as "encrypted"
# (RuntimeError), an unknown method or version (NotImplementedError), a corrupt deflate, bzip2 or lzma
# stream (zlib.error, OSError, LZMAError), data ending early (EOFError, or NumPy's ValueError). Every reader
# of an .npz that tinyvae writes (checkpoints, the code prior) turns these into its own clear error.
DAMAGED_ARCHIVE_ERRORS = (
    OSError,
    EOFError,
    ValueError,
    zipfile.BadZipFile,
    RuntimeError,
    NotImplementedError,
    zlib.error,
    LZMAError,
)


def _load(path, expected_model=None, expected_config=None):
    """Everything both public loaders need: ``(meta, model_state, optimizer_state, model)``, the model
    built (from ``expected_config`` when given) but not yet loaded. Checks run cheapest first and no
    member's data is read before every header has passed (see the module docstring)."""
    if not os.path.isfile(path):
        found = (
            "no such file"
            if not os.path.lexists(path)
            else "not a regular file (a folder, a device, a pipe?)"
        )
        raise CheckpointError(f"checkpoint {path}: {found}")
    try:
        with zipfile.ZipFile(path) as archive:
            members = _read_member_headers(path, archive)
            _check_inflation(path, members, os.path.getsize(path))
            meta = _read_meta(path, archive, members)
            model = _build_checked_model(path, meta, members, expected_model, expected_config)
            arrays = {k: _read_array(path, archive, k, m) for k, m in members.items() if k != META_KEY}
    except CheckpointError:
        raise
    except DAMAGED_ARCHIVE_ERRORS as error:
        raise CheckpointError(
            f"checkpoint {path}: unreadable, truncated or not a .npz file ({type(error).__name__}: {error})"
        ) from error
    _check_values(path, arrays)
    model_state = {k[len("model/") :]: v for k, v in arrays.items() if k.startswith("model/")}
    optimizer_state = {k[len("optimizer/") :]: v for k, v in arrays.items() if k.startswith("optimizer/")}
    return meta, model_state, optimizer_state, model


# ---------------------------------------------------------------------------------------------------------
# Step 1: the members' .npy headers, read without their data


@dataclasses.dataclass(frozen=True)
class _Member:
    """What a member's .npy header declares, and where the archive keeps it."""

    info: zipfile.ZipInfo
    shape: tuple
    dtype: numpy.dtype
    nbytes: int  # the data the header declares: prod(shape) * itemsize, a Python int (never overflows)

    def describe(self):
        return f"shape {_show(self.shape)} {self.dtype} ({_size(self.nbytes)})"


def _read_member_headers(path, archive):
    """{key: _Member} for every member, keyed as ``numpy.load`` names them (without ``.npy``); refuses a
    member that is not a plain array or whose header does not match the bytes stored for it."""
    members = {}
    for info in archive.infolist():
        if not info.filename.endswith(".npy"):
            raise CheckpointError(
                f"checkpoint {path}: member '{_clip(info.filename)}' is not a .npy array; checkpoints hold "
                "plain arrays only"
            )
        key = info.filename[: -len(".npy")]
        if key in members:  # zipfile would silently read the last one; which one was meant is unknown
            raise CheckpointError(f"checkpoint {path}: member '{_clip(key)}' appears twice in the archive")
        with archive.open(info) as stream:
            shape, dtype, offset = _read_npy_header(path, key, stream)
        if dtype.hasobject:
            raise CheckpointError(
                f"checkpoint {path}: refused '{_clip(key)}' (dtype {dtype}: loading it would unpickle Python "
                "objects); checkpoints hold plain arrays only"
            )
        member = _Member(info, shape, dtype, math.prod(shape) * dtype.itemsize)
        # A header that lies about its shape is caught here: the zip directory records the member's real
        # (uncompressed) size, and NumPy would allocate the declared size before finding the data short.
        if min(shape, default=0) < 0 or offset + member.nbytes != info.file_size:
            raise CheckpointError(
                f"checkpoint {path}: member '{_clip(key)}' declares {member.describe()} but the archive "
                f"holds {_size(info.file_size - offset)} of data for it; its .npy header is corrupt or forged"
            )
        members[key] = member
    return members


def _read_npy_header(path, key, stream):
    """``(shape, dtype, header length)`` from the start of a .npy stream, reading at most
    ``NPY_HEADER_LIMIT`` bytes of it. The length is checked before the header is read: NumPy's own reader
    reads all of a declared length (up to 4 GB in format 2.0) before comparing it with its limit."""
    start = _read_exactly(stream, len(npy.MAGIC_PREFIX) + 2)  # magic string, then the format version
    if not start.startswith(npy.MAGIC_PREFIX):
        raise CheckpointError(
            f"checkpoint {path}: member '{_clip(key)}' is not a .npy array; checkpoints hold plain arrays "
            "only"
        )
    version = (start[-2], start[-1])
    readers = {(1, 0): npy.read_array_header_1_0, (2, 0): npy.read_array_header_2_0}
    if version not in readers:  # 3.0 only adds UTF-8 field names, i.e. structured dtypes, never ours
        raise CheckpointError(
            f"checkpoint {path}: member '{_clip(key)}' is a .npy file of format version "
            f"{version[0]}.{version[1]}; checkpoints use 1.0 or 2.0"
        )
    length_bytes = _read_exactly(stream, 2 if version == (1, 0) else 4)
    length = int.from_bytes(length_bytes, "little")
    if length > NPY_HEADER_LIMIT:
        raise CheckpointError(
            f"checkpoint {path}: member '{_clip(key)}' has a .npy header of {length} bytes, over the "
            f"{NPY_HEADER_LIMIT} NumPy allows; it is corrupt or forged"
        )
    header = io.BytesIO(start + length_bytes + _read_exactly(stream, length))
    try:
        shape, _, dtype = readers[npy.read_magic(header)](header, max_header_size=NPY_HEADER_LIMIT)
    except (ValueError, TypeError, SyntaxError, RecursionError, MemoryError, OverflowError) as error:
        raise CheckpointError(
            f"checkpoint {path}: member '{_clip(key)}' has an unreadable .npy header ({_clip(str(error))})"
        ) from error
    return shape, dtype, header.tell()


def _read_exactly(stream, n):
    data = stream.read(n)
    if len(data) != n:
        raise EOFError(f"a member ends after {len(data)} of the {n} header bytes expected")
    return data


def _check_inflation(path, members, file_size):
    """Refuse a compression bomb before inflating it (see ``MAX_INFLATION``). The compressed sizes are
    what the zip directory claims, so they must fit in the file: entries that share their data (the
    overlapping-entry bomb) or claim more than exists would otherwise pass as incompressible."""
    inflated = sum(m.info.file_size for m in members.values())
    compressed = sum(m.info.compress_size for m in members.values())
    if compressed > file_size:
        raise CheckpointError(
            f"checkpoint {path}: its zip directory claims {_size(compressed)} of stored data but the file "
            f"is {_size(file_size)}; the entries overlap or are forged"
        )
    if inflated > MAX_INFLATION * compressed + INFLATION_ALLOWANCE:
        largest = max(members, key=lambda k: members[k].info.file_size)
        raise CheckpointError(
            f"checkpoint {path}: its arrays would inflate from {_size(compressed)} to {_size(inflated)} "
            f"({inflated // max(compressed, 1)}:1), most of it member '{_clip(largest)}' declaring "
            f"{members[largest].describe()}; tinyvae writes arrays uncompressed and weights hardly deflate "
            f"(over {MAX_INFLATION}:1 is refused), so this is a compression bomb, not a checkpoint"
        )


def _read_array(path, archive, key, member):
    """The member's data, once its header has passed every check (allow_pickle stays False regardless)."""
    with archive.open(member.info) as stream:
        array = npy.read_array(stream, allow_pickle=False, max_header_size=NPY_HEADER_LIMIT)
        stream.read(1)  # reaching the end makes zipfile compare the CRC: damaged data is not loaded
    if array.shape != member.shape or array.dtype != member.dtype:  # the file changed since step 1
        raise CheckpointError(f"checkpoint {path}: member '{_clip(key)}' changed while it was being read")
    return array


# ---------------------------------------------------------------------------------------------------------
# Step 2: the JSON header


class _HugeInteger:
    """Stands in for a JSON integer too long to parse (Python refuses over 4300 digits), so the field
    holding it can be named; real integers that wide are refused as well."""

    def __init__(self, digits):
        self.digits = digits

    def __repr__(self):
        return f"<an integer of {self.digits} digits>"


def _parse_int(text):
    digits = len(text.lstrip("-"))
    return int(text) if digits <= 40 else _HugeInteger(digits)  # 2**128 has 39 digits


def _is_int(value):
    return isinstance(value, int) and not isinstance(value, bool)


def _is_count(value):
    return _is_int(value) and 0 <= value <= LARGEST_COUNT


def _is_number(value):
    return _is_int(value) or isinstance(value, float)


# The fields tinyvae itself writes: save_checkpoint's and the trainer's (tinyvae.train.fit, read back by
# tinyvae.train.resume). {field: (required, check, what it must be)}; other fields are kept as they are.
HEADER_FIELDS = {
    "model": (True, lambda v: isinstance(v, str), "a model name (a string)"),
    "config": (True, lambda v: isinstance(v, dict), "an object of the model's config fields"),
    "model_steps": (False, lambda v: v is None or _is_count(v), "null or an integer from 0 to 2**63 - 1"),
    "epoch": (False, _is_count, "an integer from 0 to 2**63 - 1"),
    "rng": (False, lambda v: isinstance(v, dict), "a NumPy bit generator state (an object)"),
    "history": (
        False,
        lambda v: (
            isinstance(v, list)
            and all(isinstance(row, dict) and all(map(_is_number, row.values())) for row in v)
        ),
        "a list of objects of numbers (one per epoch)",
    ),
}


def _read_meta(path, archive, members):
    """The JSON header as a dict whose fields have been checked (``HEADER_FIELDS``)."""
    if META_KEY not in members:
        raise CheckpointError(f"checkpoint {path}: no '{META_KEY}' header; not a tinyvae checkpoint")
    member = members[META_KEY]
    if member.dtype != numpy.uint8 or len(member.shape) != 1 or member.nbytes > META_LIMIT:
        raise CheckpointError(
            f"checkpoint {path}: the '{META_KEY}' header is {member.describe()}; expected UTF-8 bytes (a "
            f"1-D uint8 array) of at most {_size(META_LIMIT)}"
        )
    text = _read_array(path, archive, META_KEY, member).tobytes()
    try:
        meta = json.loads(text.decode("utf-8"), parse_int=_parse_int)
    except (UnicodeDecodeError, ValueError, RecursionError) as error:  # deep nesting: RecursionError
        raise CheckpointError(f"checkpoint {path}: the '{META_KEY}' header is not valid JSON") from error
    if not isinstance(meta, dict):
        raise CheckpointError(
            f"checkpoint {path}: the '{META_KEY}' header is a JSON {type(meta).__name__}, not an object; "
            "not a tinyvae checkpoint"
        )
    _check_json_values(path, meta)
    if meta.get("format") != FORMAT:
        raise CheckpointError(
            f"checkpoint {path}: not a tinyvae checkpoint (format {_show(meta.get('format'))})"
        )
    version = meta.get("format_version")
    if not _is_int(version) or version != FORMAT_VERSION:
        raise CheckpointError(
            f"checkpoint {path}: format version {_show(version)}, but this tinyvae reads version "
            f"{FORMAT_VERSION}"
        )
    for field, (required, check, expected) in HEADER_FIELDS.items():
        if (field in meta or required) and not check(meta.get(field)):
            got = _show(meta[field]) if field in meta else "nothing (the field is missing)"
            raise CheckpointError(f"checkpoint {path}: header field '{field}' must be {expected}, got {got}")
    _check_config_fields(path, meta["config"], "header field 'config.")
    return meta


def _check_json_values(path, meta):
    """Refuse integers wider than any tinyvae writes (``LARGEST_INTEGER``; arithmetic on them fails far
    from here) and non-finite numbers in the config, naming the field. Iterative: JSON may nest deeply."""
    pending = [(key, value) for key, value in meta.items()]
    while pending:
        where, value = pending.pop()
        if isinstance(value, dict):
            pending.extend((f"{where}.{key}", item) for key, item in value.items())
        elif isinstance(value, list):
            pending.extend((f"{where}[{i}]", item) for i, item in enumerate(value))
        elif isinstance(value, _HugeInteger) or (_is_int(value) and abs(value) >= LARGEST_INTEGER):
            size = value.digits if isinstance(value, _HugeInteger) else len(str(abs(value)))
            raise CheckpointError(
                f"checkpoint {path}: header field '{_clip(where)}' holds an integer of {size} digits; "
                f"tinyvae writes none wider than {len(str(LARGEST_INTEGER))} digits (corrupt or edited)"
            )
        elif where.startswith("config.") and isinstance(value, float) and not math.isfinite(value):
            raise CheckpointError(
                f"checkpoint {path}: header field '{_clip(where)}' is {value}; a config holds finite numbers"
            )


# ---------------------------------------------------------------------------------------------------------
# Step 3: a model the config describes, built only if its size is explained by the arrays declared

# Config fields that size a model's arrays: each one, and each product of neighbouring layer widths, is
# the size of at least one saved array, so none can exceed the number of numbers in the file.
SIZE_FIELDS = ("x_dim", "z_dim", "hidden", "z_dims", "codebook_size", "code_dim", "latent_vectors")
SIZE_FIELDS += ("n_classes", "components", "flow_steps")


def _check_config_fields(path, config, prefix):
    """Size fields must be integers, lists of integers or null, as tinyvae writes them: the configs convert
    what they are given (``hidden: [1e9]`` becomes 10**9, ``"44"`` becomes (4, 4)), which the size check
    would not see."""
    for field in SIZE_FIELDS:
        value = config.get(field)
        if not (value is None or _is_int(value) or isinstance(value, list) and all(map(_is_int, value))):
            raise CheckpointError(
                f"checkpoint {path}: {prefix}{field}' must be an integer or a list of integers, "
                f"got {_show(value)}"
            )


def _check_sizes_fit(path, cls, config, members, whose="its config"):
    """Refuse, before anything is allocated, a config whose layers could not match the arrays in the file.

    Building the model allocates its weights from the config alone, so a corrupt or hostile header asking
    for x_dim = 10**9 would exhaust memory long before the shapes are compared; a model larger than all the
    numbers the file declares (declarations bounded by its size on disk) cannot be the one saved. The
    model class says how small a model of this config can be (``Model.size_lower_bounds``)."""
    stored = sum(math.prod(m.shape) for key, m in members.items() if key.startswith("model/"))
    largest, total = cls.size_lower_bounds(config)
    if largest > max(stored, 1):
        raise CheckpointError(
            f"checkpoint {path}: {whose} asks for arrays of {largest} numbers but the file holds only "
            f"{stored}; the header does not describe these weights (corrupt or edited)"
        )
    if total > max(stored, 1):
        raise CheckpointError(
            f"checkpoint {path}: {whose} asks for at least {total} numbers in all but the file holds only "
            f"{stored}; the header does not describe these weights (corrupt or edited)"
        )


def _build_checked_model(path, meta, members, expected_model, expected_config):
    """The model the checkpoint must fit, built once its size is bounded, with every member checked
    against it (names, shapes, dtypes) before any data is read."""
    from tinyvae import models
    from tinyvae.models.base import ModelConfig

    name = meta["model"]
    if expected_model is not None and name != expected_model:
        raise CheckpointError(f"checkpoint {path}: holds a {name!r} model, expected {expected_model!r}")
    if name not in models.MODELS:
        raise CheckpointError(f"checkpoint {path}: unknown model {name!r}; known: {sorted(models.MODELS)}")
    cls = models.MODELS[name]
    config = _make_config(path, name, cls, meta["config"])
    whose, differences = "its config", []
    if expected_config is not None:
        wanted = expected_config.to_dict() if isinstance(expected_config, ModelConfig) else expected_config
        if not isinstance(wanted, dict):
            raise TypeError(f"load_model: expected_config must be a ModelConfig or a dict, got {wanted!r}")
        _check_config_fields(path, wanted, "the expected config's field '")
        failure = "was given an expected config that is not valid for"
        wanted = _make_config(path, name, cls, wanted, failure).to_dict()
        found = config.to_dict()
        differences = [
            f"{k} {found.get(k)!r} (expected {v!r})" for k, v in wanted.items() if found.get(k) != v
        ]
        if differences:  # build what the caller expects; the arrays then show where the two differ
            config, whose = cls.config_class.from_dict(wanted), "the expected config"
    _check_sizes_fit(path, cls, config, members, whose)
    try:
        model = cls(config)
    except (KeyError, ValueError, TypeError, OverflowError) as error:
        raise CheckpointError(f"checkpoint {path}: does not fit a {name!r} model: {error}") from error
    mismatch = _first_misfit(model, members)
    if mismatch or differences:
        where = "does not fit the expected" if differences else "does not fit a"
        because = f"its config differs in {', '.join(differences)}" if differences else ""
        raise CheckpointError(
            f"checkpoint {path}: {where} {name!r} model: " + "; ".join(filter(None, [mismatch, because]))
        )
    return model


def _make_config(path, name, cls, fields, failure="does not fit"):
    """The config object; its own validation (ranges, names) phrased as the checkpoint's problem."""
    try:
        return cls.config_class.from_dict(fields)
    except (KeyError, ValueError, TypeError, OverflowError) as error:
        raise CheckpointError(f"checkpoint {path}: {failure} a {name!r} model: {error}") from error


# ---------------------------------------------------------------------------------------------------------
# Step 4: every member an array of the model or its optimiser, in its shape and dtype

OPTIMIZER_KEY = re.compile(r"([A-Za-z_]+)\.(0|[1-9][0-9]{0,8})")  # "<slot>.<parameter index>", e.g. "m.3"


def _first_misfit(model, members):
    """The first way the members differ from what ``model`` saves (a phrase), or None. Uses only the
    headers, so an array of the wrong size is refused before it is read."""
    expected = {k: (v.shape, v.dtype) for k, v in model.state_dict().items()}
    parameters = dict(model.named_parameters())
    state = {k[len("model/") :]: m for k, m in members.items() if k.startswith("model/")}
    others = [k for k in members if k != META_KEY and not k.startswith(("model/", "optimizer/"))]
    if others:
        return (
            f"unexpected arrays {_keys(others)} (a checkpoint holds 'meta.json', 'model/…' and 'optimizer/…')"
        )
    missing, unexpected = sorted(set(expected) - set(state)), sorted(set(state) - set(expected))
    if missing or unexpected:
        parts = [f"missing keys {_keys(missing)}"] if missing else []
        parts += [f"unexpected keys {_keys(unexpected)}"] if unexpected else []
        return "; ".join(parts)
    for key, (shape, dtype) in expected.items():
        member, what = state[key], "the parameter" if key in parameters else "the model's buffer"
        if member.shape != shape:
            return (
                f"'{key}' has shape {_show(member.shape)} in the state but {what} has shape {shape} "
                f"(the file declares {member.dtype}, {_size(member.nbytes)}; nothing was read)"
            )
        if not _dtype_fits(member.dtype, dtype):
            return f"model array '{key}' has dtype {member.dtype} but {what} is {_dtype_name(dtype)}"
    return _optimizer_misfit(
        model, {k[len("optimizer/") :]: m for k, m in members.items() if k.startswith("optimizer/")}
    )


def _optimizer_misfit(model, state):
    """The optimiser's arrays (tinyvae.optim.Optimizer.state_dict): ``steps``, an integer, and one buffer
    per parameter and slot (``m.3``: Adam's first moment of parameter 3), shaped like the parameter."""
    if not state:
        return None  # saved without an optimiser; resume says so
    names, params = zip(*model.named_parameters(), strict=True)
    unexpected = [k for k in state if k != "steps" and not _is_slot(k, len(params))]
    if unexpected:
        return f"unexpected optimizer keys {_keys(sorted(unexpected))}"
    steps = state.get("steps")
    if steps is None or steps.shape != () or steps.dtype.kind not in "iu":
        got = "nothing" if steps is None else steps.describe()
        return f"optimizer array 'steps' must be a single integer (the update count), got {got}"
    for key, member in state.items():
        if key == "steps":
            continue
        i = int(OPTIMIZER_KEY.fullmatch(key).group(2))
        if member.shape != params[i].shape:
            return (
                f"optimizer array '{key}' has shape {_show(member.shape)} but parameter {i} ('{names[i]}') "
                f"has shape {params[i].shape} (the file declares {_size(member.nbytes)}; nothing was read)"
            )
        if not _dtype_fits(member.dtype, params[i].dtype):
            return (
                f"optimizer array '{key}' has dtype {member.dtype} but the parameters are {params[i].dtype}"
            )
    return None


def _is_slot(key, n_params):
    match = OPTIMIZER_KEY.fullmatch(key)
    return match is not None and int(match.group(2)) < n_params


def _dtype_fits(found, expected):
    """Floats must be the model's own float type (any byte order); integer buffers (VQ-VAE's counters)
    any integer type, since their width varies by platform; anything else (bool) exactly."""
    if expected.kind == "f":
        return found.kind == "f" and found.itemsize == expected.itemsize
    if expected.kind in "iu":
        return found.kind in "iu"
    return found == expected


def _dtype_name(dtype):
    return "an integer array" if dtype.kind in "iu" else str(dtype)


# ---------------------------------------------------------------------------------------------------------
# After reading: the values


def _check_values(path, arrays):
    """Weights, buffers and optimiser moments must be finite; the step count an integer >= 0."""
    for key, array in arrays.items():
        problem = _non_finite(array)
        if problem:
            part, name = key.split("/", 1)
            raise CheckpointError(
                f"checkpoint {path}: {part} array '{name}' {problem}; a checkpoint holds finite numbers only "
                "(tinyvae never writes such a file: corrupt or edited)"
            )
    steps = arrays.get("optimizer/steps")
    if steps is not None and not 0 <= int(steps) <= LARGEST_COUNT:
        raise CheckpointError(
            f"checkpoint {path}: optimizer array 'steps' is {int(steps)}; expected a count from 0 to "
            f"{LARGEST_COUNT}"
        )


# ---------------------------------------------------------------------------------------------------------
# Message helpers


def _clip(text, limit=80):
    """Names and values from a hostile file can be megabytes long; messages show the start."""
    text = str(text)
    return text if len(text) <= limit else text[: limit - 1] + "…"


def _show(value):
    return _clip(repr(value))


def _keys(keys, limit=10):
    shown = [_clip(k, 40) for k in keys[:limit]]
    return f"{shown}" + (f" and {len(keys) - limit} more" if len(keys) > limit else "")


def _size(n):
    """'64 bytes', '6.0 GB (6000000000 bytes)'."""
    if n < 10_000:
        return f"{n} bytes"
    if n >= 10**18:  # a forged shape's product can have thousands of digits
        return f"over an exabyte (a {n.bit_length()}-bit number of bytes)"
    units = (("PB", 10**15), ("TB", 10**12), ("GB", 10**9), ("MB", 10**6), ("kB", 10**3))
    unit, scale = next((unit, scale) for unit, scale in units if n >= scale)
    return f"{n / scale:.1f} {unit} ({n} bytes)"
