"""Nothing is lost: a training process killed while it saves (SIGKILL) or interrupted (Ctrl-C) leaves a
checkpoint that loads and resumes; a diverging run stops with the place and keeps its last checkpoint; the
encoders' log-variance guard keeps extreme inputs finite; and fuzzed files given to the checkpoint loader
end in a correct load or a CheckpointError, never another exception.

The process tests run ``python -m tinyvae train`` on the 2-D ring with the NumPy backend (the fastest to
start), one minibatch per epoch, so checkpoints are written several times a second.
"""

import io
import json
import os
import signal
import subprocess
import sys
import tempfile
import time
import zipfile

import numpy
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from hypothesis.extra import numpy as hnp
from processes import wait_for

import tinyvae as tv
from tinyvae import checkpoint, cli, models
from tinyvae.checkpoint import CheckpointError

TRAIN = ["--data", "ring", "--limit", "128", "--batch-size", "128", "--no-progress", "--no-plots"]


def start_training(out, epochs=100_000, extra=()):
    """A `tinyvae train` process writing the run directory ``out`` (output captured)."""
    env = dict(os.environ, TINYVAE_BACKEND="numpy", PYTHONUNBUFFERED="1")
    command = [sys.executable, "-m", "tinyvae", "train", *TRAIN, "--epochs", str(epochs), "--out", str(out)]
    return subprocess.Popen(
        [*command, *extra], env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True
    )


def temporaries(out):
    return [name for name in os.listdir(out) if name.startswith(checkpoint.TEMPORARY_PREFIX)]


def resume_in_process(out, epochs):
    """Continue the run in ``out`` with the CLI's --resume up to ``epochs``; returns the exit status."""
    try:
        return cli.main(["train", *TRAIN, "--epochs", str(epochs), "--out", str(out), "--resume"])
    except SystemExit as stop:
        return stop.code


def test_sigkill_while_saving_never_loses_the_last_checkpoint(tmp_path):
    """Killed with SIGKILL at seeded random moments, half of them the instant a temporary file shows the
    process is mid-save: last.npz always loads (read_checkpoint and load_model) and holds a finished epoch
    with its history and optimiser state; ``--resume`` continues from it, and removes any ``.tmp-*`` file a
    killed write left behind (such files are never opened as checkpoints: loaders use fixed names)."""
    rng = numpy.random.default_rng(6)
    killed_mid_save = 0
    for trial in range(6):
        out = tmp_path / f"run{trial}"
        process = start_training(out)
        try:
            wait_for(lambda: (out / "last.npz").is_file(), process)  # noqa: B023
            if trial % 2 == 0:  # the moment a temporary file shows a save under way
                wait_for(lambda: bool(temporaries(out)), process, pause=0)  # noqa: B023
            else:  # anywhere in the epoch loop
                time.sleep(rng.uniform(0, 0.3))
        finally:
            process.send_signal(signal.SIGKILL)
            process.communicate(timeout=60)
        assert process.returncode == -signal.SIGKILL
        killed_mid_save += bool(temporaries(out))  # a temporary left behind: the kill interrupted a write
        meta, state, optimizer_state = checkpoint.read_checkpoint(str(out / "last.npz"))
        model, _ = checkpoint.load_model(str(out / "last.npz"), expected_model="vae")
        assert meta["epoch"] >= 1 and len(meta["history"]) == meta["epoch"] and optimizer_state
        assert all(numpy.isfinite(p.numpy()).all() for p in model.parameters())
        # A leftover temporary may be half written, or complete but not yet renamed: either way only its
        # name says what it is, and no loader opens it (they open last.npz / best.npz by name).
        assert all(name.endswith((".npz", ".jsonl", ".csv", ".json")) for name in temporaries(out))
        if trial < 2 or temporaries(out):
            assert resume_in_process(out, meta["epoch"] + 1) == 0
            assert checkpoint.read_checkpoint(str(out / "last.npz"))[0]["epoch"] == meta["epoch"] + 1
            assert temporaries(out) == []
    print(f"kills that interrupted a write: {killed_mid_save} of 6")
    assert killed_mid_save >= 1  # the kills did land inside saves


def test_ctrl_c_exits_cleanly_and_the_run_resumes(tmp_path):
    """SIGINT during training: exit status 130, no traceback, a message with the command that resumes; the
    last checkpoint loads, no temporary file is left, and --resume continues from it."""
    out = tmp_path / "run"
    process = start_training(out)
    wait_for(lambda: (out / "last.npz").is_file(), process)
    time.sleep(0.2)
    process.send_signal(signal.SIGINT)
    stdout, stderr = process.communicate(timeout=60)
    assert process.returncode == 130, stderr
    assert "Traceback" not in stderr
    assert f"continue with: tinyvae train --out {out} --resume" in stdout
    assert temporaries(out) == []
    meta, _, _ = checkpoint.read_checkpoint(str(out / "last.npz"))
    assert resume_in_process(out, meta["epoch"] + 1) == 0
    rows = (out / "metrics.jsonl").read_text().splitlines()
    assert [json.loads(row)["epoch"] for row in rows] == list(range(1, meta["epoch"] + 2))


def test_a_run_diverging_later_exits_non_zero_and_keeps_the_last_finite_epoch(tmp_path):
    """One finished epoch, then --resume with --lr 1e6 (one step per epoch): the step moves every weight by
    ~1e6 and epoch 2's test loss is NaN. Epoch 2 is never saved: the command exits with status 1, names
    epoch 2 and what is not finite, and cites last.npz, which still holds epoch 1 with finite weights and
    optimiser moments (issue 10: a divergent epoch must not become "the last good checkpoint")."""
    out = tmp_path / "run"
    assert cli.main(["train", *TRAIN, "--epochs", "1", "--out", str(out)]) == 0
    before = (out / "last.npz").read_bytes()
    process = start_training(out, epochs=5, extra=["--resume", "--lr", "1e6"])
    stdout, stderr = process.communicate(timeout=120)
    assert process.returncode == 1, stdout + stderr
    assert "training diverged in epoch 2: " in stderr and "; epoch 2 was not saved" in stderr
    assert f"the last good (finite) checkpoint is {out / 'last.npz'} (epoch 1)" in stderr
    assert (out / "last.npz").read_bytes() == before
    meta, state, moments = checkpoint.read_checkpoint(str(out / "last.npz"))
    assert meta["epoch"] == 1
    assert all(numpy.isfinite(a).all() for a in [*state.values(), *moments.values()])
    assert [json.loads(row)["epoch"] for row in (out / "metrics.jsonl").read_text().splitlines()] == [1]


def test_a_run_diverging_in_its_first_epoch_says_nothing_was_kept_and_leaves_no_directory(tmp_path):
    """--lr 1e6 from the start: epoch 1's test loss is NaN, so no checkpoint is ever written. The message
    says so instead of citing a last.npz that does not exist, the status is 1, and the folder the run made
    is gone, so the same command (with a sane --lr) can simply be run again."""
    out = tmp_path / "run"
    process = start_training(out, epochs=5, extra=["--lr", "1e6"])
    stdout, stderr = process.communicate(timeout=120)
    assert process.returncode == 1, stdout + stderr
    assert "training diverged in epoch 1: " in stderr
    assert "no checkpoint was saved before it diverged, so none is kept" in stderr
    assert "last.npz" not in stderr
    assert not out.exists()
    assert cli.main(["train", *TRAIN, "--epochs", "1", "--out", str(out)]) == 0


# ---------------------------------------------------------------------------------------------------------
# The log-variance guard


@pytest.mark.parametrize("name", ["vae", "iwae", "cvae", "hvae", "mixture", "flow"])
@pytest.mark.parametrize("logvar", [-1e4, 1e4])
def test_extreme_logvar_stays_finite(name, logvar):
    """With the encoder's log σ² outputs pushed to ±1e4 (exp would overflow past ±88), the loss, the ELBO
    and every gradient stay finite: the encoders pass log σ² through the soft clamp to (−30, 20)."""
    extra = {"cvae": {"n_classes": 3}, "hvae": {"z_dims": (2, 1)}}.get(name, {"z_dim": 2})
    model = models.build(name, x_dim=6, hidden=(5,), **extra)
    for module_name, parameter in model.named_parameters():
        if module_name.endswith("bias") and parameter.shape[0] > 2:  # every encoder's output layer
            parameter.data[...] = logvar
    x = numpy.random.default_rng(0).uniform(size=(4, 6)).astype(numpy.float32)
    y = numpy.arange(4) % 3 if name == "cvae" else None
    with numpy.errstate(over="raise", invalid="raise", divide="raise"):  # underflow to 0 is harmless
        result = model.loss(x, numpy.random.default_rng(1), y=y)
    result.loss.backward()
    assert numpy.isfinite(result.loss.item()) and numpy.isfinite(result.elbo).all()
    for module_name, parameter in model.named_parameters():
        assert parameter.grad is None or numpy.isfinite(parameter.grad).all(), module_name


def test_soft_clamp_is_the_identity_inside_bounded_outside_and_its_gradient_checks():
    """soft_clamp maps every float into [lo, hi] (open in exact arithmetic, the ends reached by rounding),
    increasingly, is the identity to 1e-6 on [lo + 15, hi − 15], reaches its ends for |x| up to 1e30
    (no cancellation, which would give 0 there), and passes gradcheck on both sides of each end."""
    F = tv.functional
    x = numpy.array([-1e30, -1e4, -40.0, -30.0, -15.0, 0.0, 1.5, 5.0, 20.0, 1e4, 1e30])
    y = F.soft_clamp(tv.Tensor(x), -30.0, 20.0).numpy()
    assert ((y >= -30) & (y <= 20)).all() and (numpy.diff(y) >= 0).all()
    inside = (x >= -15) & (x <= 5)
    numpy.testing.assert_allclose(y[inside], x[inside], atol=1e-6)
    numpy.testing.assert_allclose([y[0], y[-1]], [-30.0, 20.0])
    for point in (-33.0, -29.0, 0.3, 19.0, 22.0):
        t = tv.Tensor(numpy.array([point, point / 2]), requires_grad=True)
        assert tv.gradcheck(lambda v: F.soft_clamp(v, -30.0, 20.0), [t], name="soft_clamp")
    with pytest.raises(ValueError, match="soft_clamp: need lo < hi"):
        F.soft_clamp(tv.Tensor(x), 1.0, 1.0)


# ---------------------------------------------------------------------------------------------------------
# Fuzzing the checkpoint loader

FUZZ = settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])


def good_checkpoint_bytes():
    """A real checkpoint of a small VAE, with optimiser state, as bytes."""
    model = models.build("vae", x_dim=4, z_dim=2, hidden=(3,))
    optimizer = tv.optim.Adam(model.parameters())
    with tempfile.TemporaryDirectory() as folder:
        path = os.path.join(folder, "good.npz")
        checkpoint.save_checkpoint(path, model, optimizer, epoch=1)
        with open(path, "rb") as file:
            return file.read()


GOOD = good_checkpoint_bytes()
GOOD_META = json.loads(numpy.load(io.BytesIO(GOOD))["meta.json"].tobytes())
GOOD_ARRAYS = {name: array for name, array in numpy.load(io.BytesIO(GOOD)).items() if name != "meta.json"}


def outcome_of(payload):
    """Give the bytes to load_model; return "loaded" or "refused", failing on any other exception."""
    with tempfile.TemporaryDirectory() as folder:
        path = os.path.join(folder, "fuzz.npz")
        with open(path, "wb") as file:
            file.write(payload)
        try:
            model, meta = checkpoint.load_model(path)
        except CheckpointError as error:
            assert str(error).startswith(f"checkpoint {path}: ") and len(str(error)) > len(path) + 20
            return "refused"
    assert isinstance(meta, dict) and model.name in models.MODELS
    return "loaded"


def npz_bytes(arrays):
    buffer = io.BytesIO()
    numpy.savez(buffer, **arrays)
    return buffer.getvalue()


json_values = st.recursive(
    st.none() | st.booleans() | st.integers(-(10**12), 10**12) | st.floats() | st.text(max_size=8),
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=8), inner, max_size=4),
    max_leaves=12,
)
# Headers near a real one: each field kept, dropped or replaced by a random JSON value; the config likewise.
near_config = st.fixed_dictionaries(
    {}, optional={k: st.just(v) | json_values for k, v in GOOD_META["config"].items()}
)
near_meta = st.fixed_dictionaries(
    {},
    optional={
        **{k: st.just(v) | json_values for k, v in GOOD_META.items() if k != "config"},
        "config": near_config | json_values,
        "model": st.sampled_from(sorted(models.MODELS)) | json_values,
    },
)
headers = st.one_of(
    st.just(json.dumps(GOOD_META).encode()),
    json_values.map(lambda v: json.dumps(v).encode()),
    near_meta.map(lambda v: json.dumps(v).encode()),
    st.binary(max_size=64),
    st.just(b"[" * 100_000),  # nesting deeper than the JSON parser's recursion limit
)
small_arrays = hnp.arrays(
    dtype=st.sampled_from([numpy.float32, numpy.float64, numpy.int64, numpy.uint8, numpy.bool_]),
    shape=hnp.array_shapes(min_dims=0, max_dims=3, max_side=4),
)
array_names = st.sampled_from(sorted(GOOD_ARRAYS)) | st.text(min_size=1, max_size=12).map(
    lambda s: "model/" + s
)


@FUZZ
@given(st.binary(max_size=2048))
def test_fuzz_random_bytes_are_refused(payload):
    """Arbitrary bytes (an empty file, text, a zip header...) are refused with a CheckpointError."""
    assert outcome_of(payload) == "refused"


@FUZZ
@given(
    header=st.none() | headers,
    arrays=st.dictionaries(array_names, small_arrays, max_size=6),
    keep_real_weights=st.booleans(),
)
def test_fuzz_npz_files_load_or_raise_checkpoint_error(header, arrays, keep_real_weights):
    """npz files built from random arrays under real and random names, with a random, near-real or missing
    meta.json header: load_model loads them or raises CheckpointError with a message, nothing else."""
    content = dict(GOOD_ARRAYS) if keep_real_weights else {}
    content.update(arrays)
    if header is not None:
        content["meta.json"] = numpy.frombuffer(header, dtype=numpy.uint8)
    outcome_of(npz_bytes(content))


@FUZZ
@given(st.data())
def test_fuzz_damaged_checkpoints_load_or_raise_checkpoint_error(data):
    """A real checkpoint truncated anywhere, or with bytes overwritten anywhere, loads (when the damage
    missed everything that matters) or raises CheckpointError; the undamaged file loads."""
    payload = bytearray(GOOD)
    if data.draw(st.booleans(), label="truncate"):
        payload = payload[: data.draw(st.integers(0, len(GOOD) - 1), label="length")]
    else:
        for _ in range(data.draw(st.integers(1, 8), label="writes")):
            payload[data.draw(st.integers(0, len(GOOD) - 1))] = data.draw(st.integers(0, 255))
    outcome_of(bytes(payload))


def test_fuzz_targets_accept_the_good_checkpoint_and_refuse_a_pickle(tmp_path):
    """The fuzzing oracle can tell both ways: the real checkpoint loads, and an object array is refused
    (allow_pickle=False) without being unpickled."""
    assert outcome_of(GOOD) == "loaded"
    evil = npz_bytes({**GOOD_ARRAYS, "meta.json": numpy.array([GOOD_META], dtype=object)})
    assert outcome_of(evil) == "refused"
    with zipfile.ZipFile(io.BytesIO(GOOD)) as archive:
        assert "meta.json.npy" in archive.namelist()
