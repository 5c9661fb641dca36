"""Hostile and broken checkpoint files (issue "Reliability II"): each is refused with a CheckpointError that
names the file, the member or header field, what was found and what was expected, and none of them makes
the loader allocate what its headers declare. Each memory test builds its file here and measures the peak
of traced allocations (NumPy reports its array buffers to tracemalloc) while the file is refused.

The other side: save_checkpoint never writes NaN or infinity (NonFiniteStateError), and every model's real
checkpoint, integer buffers included, still loads.
"""

import contextlib
import io
import json
import os
import re
import struct
import tracemalloc
import zipfile

import numpy
import pytest
from numpy.lib import format as npy

import tinyvae as tv
from tinyvae import checkpoint, models
from tinyvae.checkpoint import CheckpointError

FIRST_WEIGHT = "encoder.net.layers.0.weight"  # (4, 3) in the small VAE below
MB = 10**6


def small_vae(**fields):
    return models.build("vae", **{"x_dim": 4, "z_dim": 2, "hidden": (3,), **fields})


def trained(model):
    """The model and an Adam that has taken one step, so the checkpoint holds its moments ``m.*``, ``v.*``."""
    optimizer = tv.optim.Adam(model.parameters(), lr=1e-2)
    x = numpy.random.default_rng(0).uniform(size=(8, model.config.x_dim)).round().astype(numpy.float32)
    model.loss(x, numpy.random.default_rng(1)).loss.backward()
    optimizer.step()
    return model, optimizer


def save_good(folder, model=None, name="good.npz"):
    model, optimizer = trained(model or small_vae())
    path = folder / name
    checkpoint.save_checkpoint(
        str(path), model, optimizer, epoch=1, history=[{"epoch": 1, "test_elbo": -2.0}]
    )
    return path


def arrays_of(path):
    with numpy.load(path) as archive:
        arrays = {k: archive[k] for k in archive.files}
    return json.loads(arrays.pop("meta.json").tobytes()), arrays


def header_array(text):
    return numpy.frombuffer(text.encode(), dtype=numpy.uint8)


def rewrite(folder, edit_meta=None, edit_arrays=None, model=None, header_text=None):
    """A copy of a real checkpoint with its header and/or arrays changed (written with numpy.savez)."""
    meta, arrays = arrays_of(save_good(folder, model))
    if edit_meta:
        edit_meta(meta)
    if edit_arrays:
        edit_arrays(arrays)
    text = json.dumps(meta) if header_text is None else header_text(json.dumps(meta))
    path = folder / "bad.npz"
    numpy.savez(path, **{"meta.json": header_array(text)}, **arrays)
    return path


def npy_header(shape, descr, version=(1, 0)):
    """The bytes a .npy file starts with, declaring ``shape`` and ``descr`` (nothing checks them here)."""
    buffer = io.BytesIO()
    header = {"descr": descr, "fortran_order": False, "shape": shape}
    (npy.write_array_header_1_0 if version == (1, 0) else npy.write_array_header_2_0)(buffer, header)
    return buffer.getvalue()


def with_member(folder, key, payload):
    """A real checkpoint with member ``key`` replaced (or added) by the raw bytes ``payload``, stored."""
    good = save_good(folder)
    path = folder / "hostile.npz"
    with zipfile.ZipFile(good) as source, zipfile.ZipFile(path, "w") as target:
        for item in source.namelist():
            if item != key + ".npy":
                target.writestr(item, source.read(item))
        target.writestr(key + ".npy", payload)
    return path


@contextlib.contextmanager
def peak_allocation():
    """{"peak": bytes}: the most memory traced at once inside the block, above what was traced before."""
    tracemalloc.start()
    before = tracemalloc.get_traced_memory()[0]
    result = {}
    try:
        yield result
    finally:
        result["peak"] = tracemalloc.get_traced_memory()[1] - before
        tracemalloc.stop()


def refused(path, load=checkpoint.read_checkpoint, **options):
    """The message of the CheckpointError that loading ``path`` raises; it must start with the file's name."""
    with pytest.raises(CheckpointError) as error:
        load(str(path), **options)
    message = str(error.value)
    assert message.startswith(f"checkpoint {path}: "), message
    return message


# ---------------------------------------------------------------------------------------------------------
# 1. Bounded memory: headers are checked before any data is read


def test_a_header_declaring_a_terabyte_over_64_bytes_is_refused_without_allocating(tmp_path):
    """A member whose header declares shape (10**12,) float64 with 64 bytes of data behind it: NumPy would
    try to allocate 8 TB (a raw MemoryError); the loader compares the declaration with the zip entry's
    real size first."""
    payload = npy_header((10**12,), "<f8") + bytes(64)
    path = with_member(tmp_path, "model/" + FIRST_WEIGHT, payload)
    with peak_allocation() as memory:
        message = refused(path, checkpoint.load_model)
    assert memory["peak"] < 10 * MB, memory
    assert (
        f"member 'model/{FIRST_WEIGHT}' declares shape (1000000000000,) float64 "
        "(8.0 TB (8000000000000 bytes)) but the archive holds 64 bytes of data for it" in message
    )


def test_a_compression_bomb_is_refused_without_inflating_it(tmp_path):
    """600 MB of zeros deflated to about 2.6 MB, under an honest header: the archive would inflate over
    200:1, so it is refused from the zip directory alone, with the member's declared shape, dtype and size."""
    path = tmp_path / "bomb.npz"
    count = 150_000_000  # float32: 600 MB
    with zipfile.ZipFile(save_good(tmp_path)) as source:
        members = {item: source.read(item) for item in source.namelist()}
    with zipfile.ZipFile(path, "w", zipfile.ZIP_DEFLATED, compresslevel=1) as target:
        for item, data in members.items():
            if item != f"model/{FIRST_WEIGHT}.npy":
                target.writestr(item, data)
        with target.open(f"model/{FIRST_WEIGHT}.npy", "w", force_zip64=True) as member:
            member.write(npy_header((count,), "<f4"))
            zeros = bytes(1 << 22)
            for start in range(0, count * 4, len(zeros)):
                member.write(zeros[: count * 4 - start])
    assert os.path.getsize(path) < 4 * MB
    with peak_allocation() as memory:
        message = refused(path)
    assert memory["peak"] < 50 * MB, memory
    assert "its arrays would inflate from " in message and " to 600.0 MB (" in message
    assert f"member 'model/{FIRST_WEIGHT}' declaring shape (150000000,) float32 (600.0 MB" in message
    assert "compression bomb" in message


def test_an_array_the_config_does_not_explain_is_refused_before_it_is_read(tmp_path):
    """An honest, uncompressed 8 MB member where the model built from the header has a (4, 3) weight:
    refused from its header (the message says so), so the 8 MB are never allocated."""
    path = with_member(tmp_path, "model/" + FIRST_WEIGHT, npy_header((2_000_000,), "<f4") + bytes(8 * MB))
    with peak_allocation() as memory:
        message = refused(path, checkpoint.load_model)
    assert memory["peak"] < 4 * MB, memory
    assert (
        f"does not fit a 'vae' model: '{FIRST_WEIGHT}' has shape (2000000,) in the state but the parameter "
        "has shape (4, 3) (the file declares float32, 8.0 MB (8000000 bytes); nothing was read)" in message
    )


def test_an_unexpected_large_member_is_refused_before_it_is_read(tmp_path):
    """A member no model array or optimiser buffer accounts for is refused by name, unread."""
    path = with_member(tmp_path, "model/extra", npy_header((2_000_000,), "<f4") + bytes(8 * MB))
    with peak_allocation() as memory:
        message = refused(path)
    assert memory["peak"] < 4 * MB, memory
    assert "does not fit a 'vae' model: unexpected keys ['extra']" in message


def test_a_config_far_larger_than_the_file_is_refused_before_the_model_is_built(tmp_path):
    """50 hidden layers of 1000 ask for 50 million weights (200 MB); the file declares about 10**6 numbers,
    so the model is never built. (Each layer alone, 10**6 numbers, would pass a per-array check.)"""

    def add_filler(arrays):
        arrays["model/filler"] = numpy.zeros(10**6, dtype=numpy.uint8)

    path = rewrite(tmp_path, lambda m: m["config"].__setitem__("hidden", [1000] * 50), add_filler)
    with peak_allocation() as memory:
        message = refused(path, checkpoint.load_model)
    assert memory["peak"] < 20 * MB, memory
    assert "its config asks for at least 49006000 numbers in all but the file holds only 1000056" in message


def test_sizes_forged_in_the_zip_directory_are_refused_before_the_model_is_built(tmp_path):
    """The zip directory's sizes are claims too. Here a weight's header, the directory's sizes for it and
    the config all agree on a (10**7, 3) weight (120 MB, so a 250 MB model), but the file is a few kB:
    the compressed sizes claimed must fit in the file, so nothing is allocated."""
    rows, name = 10_000_000, f"model/{FIRST_WEIGHT}.npy".encode()
    source = rewrite(tmp_path, lambda meta: meta["config"].__setitem__("x_dim", rows))
    path = tmp_path / "forged.npz"
    with zipfile.ZipFile(source) as archive, zipfile.ZipFile(path, "w") as target:
        for item in archive.namelist():
            target.writestr(item, archive.read(item))
    data = bytearray(path.read_bytes())
    old_header = npy_header((4, 3), "<f4")
    grown = old_header.replace(b"(4, 3)", f"({rows}, 3)".encode())
    new_header = grown.replace(b" " * (len(grown) - len(old_header)) + b"\n", b"\n")  # same length
    start = data.index(old_header, data.index(name))  # the weight's local entry: its name, then its data
    data[start : start + len(old_header)] = new_header
    # Its central directory record ("PK\1\2"): the compressed and full sizes at bytes 20 and 24, the name
    # at byte 46.
    records = (m.start() for m in re.finditer(b"PK\x01\x02", data))
    record = next(i for i in records if data[i + 46 : i + 46 + len(name)] == name)
    claimed = len(new_header) + rows * 3 * 4
    data[record + 20 : record + 28] = struct.pack("<II", claimed, claimed)
    path.write_bytes(bytes(data))
    with peak_allocation() as memory:
        message = refused(path, checkpoint.load_model)
    assert memory["peak"] < 20 * MB, memory
    assert "its zip directory claims 120.0 MB (" in message and "of stored data but the file is" in message


@pytest.mark.parametrize(
    "payload, message",
    [
        (
            npy_header((3,), "<f4", (2, 0))[:8] + (2**32 - 1).to_bytes(4, "little"),
            "a .npy header of 4294967295",
        ),
        (b"PK not numpy at all", "is not a .npy array; checkpoints hold plain arrays only"),
        (
            npy_header((3,), "<f4")[:6] + b"\x03\x00" + bytes(20),
            "format version 3.0; checkpoints use 1.0 or 2.0",
        ),
        (npy_header((3,), "<f4").replace(b"'shape'", b"'shope'"), "has an unreadable .npy header"),
        (npy_header((-3,), "<f4"), r"declares shape (-3,) float32 (-12 bytes) but the archive holds 0 bytes"),
    ],
    ids=["4 GB header", "not npy", "npy 3.0", "bad header keys", "negative shape"],
)
def test_malformed_members_are_refused_by_name(tmp_path, payload, message):
    path = with_member(tmp_path, "model/" + FIRST_WEIGHT, payload)
    text = refused(path)
    assert f"member 'model/{FIRST_WEIGHT}'" in text and message in text


def test_a_member_that_appears_twice_is_refused(tmp_path):
    """zipfile would silently read the last copy; which one was meant cannot be known."""
    path = save_good(tmp_path)
    with zipfile.ZipFile(path, "a") as archive, pytest.warns(UserWarning, match="Duplicate name"):
        archive.writestr(f"model/{FIRST_WEIGHT}.npy", npy_header((4, 3), "<f4") + bytes(48))
    assert f"member 'model/{FIRST_WEIGHT}' appears twice in the archive" in refused(path)


# ---------------------------------------------------------------------------------------------------------
# 2. The JSON header: huge integers and malformed fields


def put(meta, path, value):
    """meta[path[0]][path[1]]... = value, making the objects on the way that are missing."""
    *parents, last = path
    for step in parents:
        meta = meta.setdefault(step, {}) if isinstance(meta, dict) else meta[step]
    meta[last] = value


@pytest.mark.parametrize(
    "field, path, digits",
    [
        ("epoch", ["epoch"], 5000),
        ("config.seed", ["config", "seed"], 60),
        ("history[0].epoch", ["history", 0, "epoch"], 41),
        ("rng.state.state", ["rng", "state", "state"], 5000),
    ],
)
def test_huge_integers_in_the_header_are_refused_naming_the_field(tmp_path, field, path, digits):
    """A 5000-digit integer is past Python's int() limit (a raw ValueError before); a 41-digit one parses
    but is wider than anything tinyvae writes (the 128-bit RNG state has 39). Both name the field."""
    file = rewrite(
        tmp_path,
        lambda meta: put(meta, path, "HUGE"),
        header_text=lambda text: text.replace('"HUGE"', "9" * digits),
    )
    assert f"header field '{field}' holds an integer of {digits} digits" in refused(file)


MALFORMED_FIELDS = {
    "model a number": ("model", 7, "header field 'model' must be a model name (a string), got 7"),
    "config a list": ("config", [4, 2], "header field 'config' must be an object of the model's config"),
    "model_steps negative": (
        "model_steps",
        -1,
        "'model_steps' must be null or an integer from 0 to 2**63 - 1, got -1",
    ),
    "model_steps a string": (
        "model_steps",
        "3",
        "'model_steps' must be null or an integer from 0 to 2**63 - 1, got '3'",
    ),
    "epoch a float": ("epoch", 1.5, "header field 'epoch' must be an integer from 0 to 2**63 - 1, got 1.5"),
    "epoch a bool": ("epoch", True, "header field 'epoch' must be an integer from 0 to 2**63 - 1, got True"),
    "epoch past int64": (
        "epoch",
        2**63,
        "header field 'epoch' must be an integer from 0 to 2**63 - 1, got 9223372036854775808",
    ),
    "rng a string": ("rng", "seed", "header field 'rng' must be a NumPy bit generator state"),
    "history an object": ("history", {"a": 1}, "header field 'history' must be a list of objects of numbers"),
    "history of strings": (
        "history",
        [{"test_elbo": "high"}],
        "'history' must be a list of objects of numbers",
    ),
    "format_version true": ("format_version", True, "format version True, but this tinyvae reads version 1"),
    "hidden a string": (
        "config.hidden",
        "44",
        "header field 'config.hidden' must be an integer or a list of",
    ),
    "hidden of floats": (
        "config.hidden",
        [1e9],
        "'config.hidden' must be an integer or a list of integers, got",
    ),
    "x_dim a float": ("config.x_dim", 4.0, "header field 'config.x_dim' must be an integer or a list"),
    "x_dim a bool": ("config.x_dim", True, "header field 'config.x_dim' must be an integer or a list"),
    "logvar NaN": ("config.gaussian_logvar", float("nan"), "header field 'config.gaussian_logvar' is nan"),
    "beta infinite": ("config.beta", float("inf"), "header field 'config.beta' is inf"),
}


@pytest.mark.parametrize("case", list(MALFORMED_FIELDS))
def test_malformed_header_fields_are_refused_naming_the_field(tmp_path, case):
    field, value, message = MALFORMED_FIELDS[case]

    def plant(meta):
        holder = meta["config"] if field.startswith("config.") else meta
        holder[field.removeprefix("config.")] = value

    path = rewrite(tmp_path, plant)
    assert message in refused(path, checkpoint.load_model)


def test_a_missing_required_field_is_named(tmp_path):
    path = rewrite(tmp_path, lambda meta: meta.pop("config"))
    assert "header field 'config' must be an object of the model's config fields, got nothing" in refused(
        path
    )


# ---------------------------------------------------------------------------------------------------------
# 3. Values and dtypes


@pytest.mark.parametrize(
    "member, poison, message",
    [
        (f"model/{FIRST_WEIGHT}", [numpy.nan] * 3, f"model array '{FIRST_WEIGHT}' holds 3 NaN values"),
        ("optimizer/m.0", [numpy.inf], "optimizer array 'm.0' holds 1 infinite value"),
        ("optimizer/v.1", [numpy.nan, -numpy.inf], "optimizer array 'v.1' holds 1 NaN value and 1 infinite"),
    ],
    ids=["weight NaN", "moment inf", "moment both"],
)
def test_non_finite_weights_and_moments_are_refused_naming_the_array(tmp_path, member, poison, message):
    def spoil(arrays):
        arrays[member].flat[: len(poison)] = poison

    path = rewrite(tmp_path, edit_arrays=spoil)
    assert message in refused(path)
    assert message in refused(path, checkpoint.load_model)


def as_dtype(dtype):
    """A (4, 3) array of ``dtype``, standing in for the float32 weight."""
    return numpy.zeros((4, 3), dtype=dtype)


BAD_DTYPES = {
    "complex64": (as_dtype(numpy.complex64), "has dtype complex64 but the parameter is float32"),
    "complex128": (as_dtype(numpy.complex128), "has dtype complex128 but the parameter is float32"),
    "unicode": (numpy.full((4, 3), "abc"), "has dtype <U3 but the parameter is float32"),
    "bytes": (numpy.full((4, 3), b"abc"), "has dtype |S3 but the parameter is float32"),
    "datetime": (as_dtype("datetime64[ns]"), "has dtype datetime64[ns] but the parameter is float32"),
    "timedelta": (as_dtype("timedelta64[s]"), "has dtype timedelta64[s] but the parameter is float32"),
    "int64": (as_dtype(numpy.int64), "has dtype int64 but the parameter is float32"),
    "int32": (as_dtype(numpy.int32), "has dtype int32 but the parameter is float32"),
    "uint8": (as_dtype(numpy.uint8), "has dtype uint8 but the parameter is float32"),
    "bool": (as_dtype(bool), "has dtype bool but the parameter is float32"),
    "float64": (as_dtype(numpy.float64), "has dtype float64 but the parameter is float32"),
    "float16": (as_dtype(numpy.float16), "has dtype float16 but the parameter is float32"),
    "structured": (as_dtype([("a", "<f4")]), "has dtype [('a', '<f4')] but the parameter is float32"),
    "object": (
        as_dtype(object),
        "(dtype object: loading it would unpickle Python objects); checkpoints hold",
    ),
}


@pytest.mark.parametrize("case", list(BAD_DTYPES))
def test_a_weight_of_another_dtype_is_refused_naming_found_and_expected(tmp_path, case):
    array, message = BAD_DTYPES[case]
    path = rewrite(tmp_path, edit_arrays=lambda arrays: arrays.__setitem__(f"model/{FIRST_WEIGHT}", array))
    text = refused(path, checkpoint.load_model)
    assert message in text
    assert FIRST_WEIGHT in text


def test_an_optimizer_moment_of_another_dtype_is_refused(tmp_path):
    path = rewrite(tmp_path, edit_arrays=lambda a: a.__setitem__("optimizer/m.0", as_dtype(numpy.int64)))
    assert "optimizer array 'm.0' has dtype int64 but the parameters are float32" in refused(path)


def vq_model():
    return models.build("vqvae", x_dim=4, z_dim=2, hidden=(3,), codebook_size=4, ema=True)


def test_integer_buffers_keep_loading_in_any_integer_width(tmp_path):
    """The VQ-VAE's dead-code counters (int64) and the optimiser's step count are integers by design; an
    int32 copy (the default width on some platforms) loads, and the values come back."""

    def narrow(arrays):
        arrays["model/buffers.steps_unused"] = numpy.array([0, 3, 1, 2], dtype=numpy.int32)
        arrays["optimizer/steps"] = numpy.asarray(7, dtype=numpy.int32)

    path = rewrite(tmp_path, edit_arrays=narrow, model=vq_model())
    model, _ = checkpoint.load_model(str(path), expected_model="vqvae")
    assert model.steps_unused.tolist() == [0, 3, 1, 2] and model.steps_unused.dtype == numpy.int64
    assert int(checkpoint.read_checkpoint(str(path))[2]["steps"]) == 7


@pytest.mark.parametrize(
    "member, array, message",
    [
        (
            "model/buffers.steps_unused",
            numpy.zeros(4),
            "'buffers.steps_unused' has dtype float64 but the model's",
        ),
        (
            "model/buffers.codebook_initialised",
            numpy.asarray(1),
            "has dtype int64 but the model's buffer is bool",
        ),
        (
            "model/buffers.ema_count",
            numpy.ones(7),
            "'buffers.ema_count' has shape (7,) in the state but the model's",
        ),
        ("optimizer/steps", numpy.asarray(2.0), "optimizer array 'steps' must be a single integer"),
        ("optimizer/steps", numpy.asarray(-1), "optimizer array 'steps' is -1; expected a count from 0 to"),
    ],
    ids=["counter float", "flag int", "buffer shape", "steps float", "steps negative"],
)
def test_buffers_and_counters_of_the_wrong_kind_are_refused(tmp_path, member, array, message):
    """Before, a buffer of the wrong shape was loaded as it was and broke training later."""
    path = rewrite(tmp_path, edit_arrays=lambda arrays: arrays.__setitem__(member, array), model=vq_model())
    assert message in refused(path)


# ---------------------------------------------------------------------------------------------------------
# 4. Same model name, other dimensions


def test_a_checkpoint_of_other_dimensions_names_the_array_and_both_shapes(tmp_path):
    """A run of latent size 2 given a checkpoint of latent size 5 (same model name): today's loader would
    rebuild the 5-dimensional model and go on silently. With the run's config as expected_config (a
    ModelConfig or the dict of config.json), the first array that differs and the config field are named."""
    path = save_good(tmp_path, small_vae(z_dim=5))
    wanted = small_vae(z_dim=2).config
    for expected in (wanted, wanted.to_dict()):
        message = refused(path, checkpoint.load_model, expected_model="vae", expected_config=expected)
        assert (
            "does not fit the expected 'vae' model: 'encoder.net.layers.1.weight' has shape (3, 10) in the "
            "state but the parameter has shape (3, 4)" in message
        )
        assert message.endswith("its config differs in z_dim 5 (expected 2)")
    model, _ = checkpoint.load_model(str(path), expected_config=small_vae(z_dim=5).config)
    assert model.config.z_dim == 5


def test_a_config_differing_only_in_settings_is_refused_naming_the_fields(tmp_path):
    path = save_good(tmp_path, small_vae(seed=3))
    message = refused(path, checkpoint.load_model, expected_config=small_vae(seed=0).config)
    assert message.endswith(
        "does not fit the expected 'vae' model: its config differs in seed 3 (expected 0)"
    )


def test_a_header_whose_config_disagrees_with_its_arrays_names_the_array(tmp_path):
    """The header says z_dim 3 over arrays of z_dim 2: the first array of the rebuilt model that differs."""
    path = rewrite(tmp_path, lambda meta: meta["config"].__setitem__("z_dim", 3))
    message = refused(path, checkpoint.load_model)
    assert (
        "'encoder.net.layers.1.weight' has shape (3, 4) in the state but the parameter has shape (3, 6)"
        in message
    )


def test_optimizer_state_of_other_dimensions_is_refused_by_read_checkpoint(tmp_path):
    """resume reads the optimiser state with read_checkpoint; a moment shaped for another model is named."""
    path = rewrite(tmp_path, edit_arrays=lambda a: a.__setitem__("optimizer/m.0", numpy.zeros((5, 3), "f4")))
    message = refused(path)
    assert (
        f"optimizer array 'm.0' has shape (5, 3) but parameter 0 ('{FIRST_WEIGHT}') has shape (4, 3)"
        in message
    )


# ---------------------------------------------------------------------------------------------------------
# 5. Saving never writes NaN or infinity


@pytest.mark.parametrize("where", ["model", "optimizer"])
def test_save_refuses_non_finite_state_and_keeps_the_previous_file(tmp_path, where):
    model, optimizer = trained(small_vae())
    path = tmp_path / "last.npz"
    checkpoint.save_checkpoint(str(path), model, optimizer, epoch=1)
    before = path.read_bytes()
    if where == "model":
        model.decoder.layers[0].weight.data[0, 0] = numpy.nan
        message = "not written: model array 'decoder.layers.0.weight' holds 1 NaN value"
    else:
        optimizer.v[1][...] = numpy.inf
        message = "not written: optimizer array 'v.1' holds 3 infinite values"
    with pytest.raises(checkpoint.NonFiniteStateError) as error:
        checkpoint.save_checkpoint(str(path), model, optimizer, epoch=2)
    assert str(error.value).startswith(f"checkpoint {path}: ") and message in str(error.value)
    assert isinstance(error.value, CheckpointError)
    assert path.read_bytes() == before and os.listdir(tmp_path) == ["last.npz"]


# ---------------------------------------------------------------------------------------------------------
# The checks refuse nothing real


def every_model():
    for name, cls in sorted(models.MODELS.items()):
        fields = {"x_dim": 6, "z_dim": 2, "hidden": (5,)}
        if name == "linear":
            fields.update(hidden=(), likelihood="gaussian")
        if name == "hvae":
            fields = {"x_dim": 6, "z_dims": (3, 2), "hidden": (5,)}
        if name == "diffusion":
            fields.update(z_dim=None, steps=10)
        yield cls(cls.config_class(**fields))
    yield vq_model()


@pytest.mark.parametrize("dtype", ["float32", "float64"])
def test_every_models_real_checkpoint_still_loads(tmp_path, dtype):
    """A checkpoint of each model (with optimiser moments, the VQ-VAE's integer and bool buffers, a float64
    config) loads whole, and load_model with its own config as expected_config accepts it."""
    for model in every_model():
        model = type(model)(type(model.config).from_dict({**model.config.to_dict(), "dtype": dtype}))
        optimizer = tv.optim.Adam(model.parameters())
        path = str(tmp_path / f"{model.name}.npz")
        checkpoint.save_checkpoint(path, model, optimizer, epoch=0)
        loaded, _ = checkpoint.load_model(path, expected_model=model.name, expected_config=model.config)
        for key, value in model.state_dict().items():
            numpy.testing.assert_array_equal(loaded.state_dict()[key], value, err_msg=f"{model.name} {key}")
        assert checkpoint.read_checkpoint(path)[2].keys() == optimizer.state_dict().keys()
