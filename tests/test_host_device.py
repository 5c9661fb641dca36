"""Host/device discipline, checked on the CPU (issue 19).

On a GPU, tensor data lives in CuPy arrays and CuPy refuses every implicit crossing between the GPU and main
memory: ``numpy.asarray(cupy_array)`` and an op mixing a CuPy and a NumPy array raise TypeError. Code that
breaks the rule passes every NumPy test and crashes on the first GPU run. ``tests/strict_device.py`` is a
stand-in for CuPy with the same rules (its arrays wrap NumPy arrays, so it runs here), and
``tinyvae.backend.simulated_device`` makes the library treat its arrays as device arrays. Under it this
file runs what a user runs: every model's loss, backward pass and Adam step, sampling, reconstruction,
interpolation, evaluation, ``tinyvae train`` with its figures, the other commands, checkpoints written and
read back, the code prior, the demo and two examples. A crossing the library makes anywhere fails the test,
also one it catches and survives (the stand-in records every refusal).

The first tests check the stand-in itself, so that it cannot quietly become permissive and let everything
below pass.
"""

from __future__ import annotations

import contextlib
import importlib.util
import io
import json
import pathlib

import numpy
import pytest
import strict_device
from strict_device import DEVICE, DeviceArray, ImplicitTransferError
from tinyvae.kernels._routing import pick_version
from training import tiny_model

import tinyvae as tv
from tinyvae import checkpoint, cli, demo, evaluate, models, train

EXAMPLES = pathlib.Path(__file__).resolve().parent.parent / "examples"


@pytest.fixture
def device():
    """The test runs on the simulated device; it fails if any implicit crossing was refused on the way,
    even one that the library caught and carried on after."""
    strict_device.REFUSALS.clear()
    with tv.backend.simulated_device(DEVICE, DeviceArray):
        yield DEVICE
    refused, strict_device.REFUSALS[:] = list(strict_device.REFUSALS), []
    assert not refused, f"implicit host/device crossings were refused (and caught): {refused}"


@pytest.fixture
def numpy_backend():
    """The NumPy backend for the block: the simulated device runs the kernels' NumPy versions, so a
    float-for-float comparison with a host run needs the host run on them too (numba's differ in the last
    bits)."""
    previous = tv.backend.current()
    tv.backend.use("numpy")
    yield
    tv.backend.use(previous)


# ---------------------------------------------------------------------------------------------------------
# The stand-in is as strict as CuPy


def refused(name, attempt):
    """Fail unless ``attempt()`` raises the stand-in's refusal; ``name`` says which attempt got through."""
    try:
        attempt()
    except ImplicitTransferError:
        return
    pytest.fail(f"{name} was allowed")


def test_the_stand_in_refuses_implicit_conversion_to_numpy():
    d = DEVICE.arange(6.0).reshape(2, 3)
    host = numpy.zeros((2, 3))
    conversions = {
        "numpy.asarray": lambda: numpy.asarray(d),
        "numpy.asarray with a dtype": lambda: numpy.asarray(d, dtype=numpy.float32),
        "numpy.array of device rows": lambda: numpy.array([d[0], d[1]]),
        "host[:] = device": lambda: host.__setitem__(slice(None), d),
        "host[0] = device row": lambda: host.__setitem__(0, d[0]),
    }
    for name, conversion in conversions.items():
        refused(name, conversion)
    assert not isinstance(d, numpy.ndarray)  # a subclass would convert silently
    strict_device.REFUSALS.clear()


def test_the_stand_in_refuses_to_mix_host_and_device_arrays_in_one_operation():
    d, host = DEVICE.ones(3), numpy.ones(3)
    mixes = {
        "device + host": lambda: d + host,
        "host + device": lambda: host + d,
        "host += device": lambda: host.__iadd__(d),
        "device += host": lambda: d.__iadd__(host),
        "device * 0-d host array": lambda: d * numpy.array(2.0),  # refused here even if CuPy took it
        "xp.concatenate": lambda: DEVICE.concatenate([d, host]),
        "xp.exp(host)": lambda: DEVICE.exp(host),
        "numpy.concatenate": lambda: numpy.concatenate([d, host]),
        "numpy.where": lambda: numpy.where(host > 0, d, 0.0),
        "device[1:] = host": lambda: d.__setitem__(slice(1, None), host[1:]),
    }
    for name, mix in mixes.items():
        refused(name, mix)
    strict_device.REFUSALS.clear()


def test_the_stand_in_allows_what_cupy_allows():
    """Scalars mix in; .get(), xp.asarray(host), float/int/bool of one element and host index arrays are
    explicit; NumPy functions on device arrays stay on the device; results equal NumPy's."""
    host = numpy.arange(6.0).reshape(2, 3)
    d = DEVICE.asarray(host)
    host[0, 0] = 99.0  # xp.asarray copied: the device array does not see it
    assert float(d[0, 0]) == 0.0
    back = d.get()
    assert type(back) is numpy.ndarray
    back[0, 0] = 42.0  # .get() copied too
    assert float(d[0, 0]) == 0.0
    for result in (d * 2.0, d + numpy.float32(1), numpy.exp(d), d.sum(), d.T @ d, d[numpy.array([1, 0])]):
        assert isinstance(result, DeviceArray)
    assert isinstance(numpy.concatenate([d, d]), DeviceArray) and isinstance(d.max(axis=0), DeviceArray)
    assert float(d.sum()) == 15.0 and int(d[1, 2]) == 5 and bool(d[1, 2] > 4) and d.sum().item() == 15.0
    with pytest.raises(TypeError):
        float(d)  # six elements: as NumPy, only a single value converts
    numpy.testing.assert_array_equal(DEVICE.asnumpy(DEVICE.exp(d) @ d.T), numpy.exp(d.get()) @ d.get().T)
    counts = DEVICE.zeros(3)
    DEVICE.add.at(counts, numpy.array([0, 0, 2]), DEVICE.ones(3))  # host indices are copied, as in CuPy
    assert counts.get().tolist() == [2.0, 0.0, 1.0]
    with pytest.raises(AttributeError):
        DEVICE.errstate  # noqa: B018  (CuPy has no error state)


def test_a_refusal_that_code_catches_is_still_recorded():
    """A fallback (``except TypeError``) would hide a crossing from the test that made it; the record
    does not, and the ``device`` fixture fails any test that leaves one."""
    strict_device.REFUSALS.clear()
    with contextlib.suppress(TypeError):
        numpy.asarray(DEVICE.ones(2))
    assert len(strict_device.REFUSALS) == 1
    strict_device.REFUSALS.clear()


def test_the_library_sees_stand_in_arrays_as_device_arrays_only_inside_the_simulation(device):
    d, host = DEVICE.ones((2, 2), dtype=numpy.float32), numpy.ones((2, 2), dtype=numpy.float32)
    assert tv.backend.array_module(d) is DEVICE and tv.backend.array_module(host) is numpy
    assert tv.backend.default_array_module() is DEVICE
    assert isinstance(tv.Tensor([1.0, 2.0]).data, DeviceArray)  # new tensors are made on the device
    assert isinstance(tv.Tensor(host).data, DeviceArray)  # NumPy data is copied over
    assert isinstance(tv.backend.to_device(host), DeviceArray)
    assert type(tv.backend.to_host(d)) is numpy.ndarray
    numpy.testing.assert_array_equal(tv.backend.to_host(d), host)
    versions = {"numpy": "reference", "numba": "compiled", "cupy": "gpu"}
    assert pick_version(versions, "test", [d]) == "reference"  # the NumPy version runs on it through xp
    with pytest.raises(RuntimeError, match="nest"), tv.backend.simulated_device(DEVICE, DeviceArray):
        pass


def test_outside_the_simulation_stand_in_arrays_are_nothing_special():
    assert tv.backend.array_module(DEVICE.ones(2)) is numpy
    assert tv.backend.default_array_module() is numpy
    assert tv.backend.simulated_array_module() is None


def test_the_engine_names_the_op_that_mixes_host_and_device_tensors():
    """A tensor made before the simulation started (on the host) beside one made inside it: refused with
    the engine's own message, which says which op and how to fix it, before the arrays meet."""
    host_tensor = tv.Tensor(numpy.ones(3, dtype=numpy.float32))
    with tv.backend.simulated_device(DEVICE, DeviceArray):
        device_tensor = tv.Tensor(numpy.ones(3, dtype=numpy.float32))
        with pytest.raises(TypeError, match="add: the inputs mix NumPy and CuPy arrays"):
            host_tensor + device_tensor  # noqa: B018


def test_a_host_conversion_in_library_code_fails_under_the_simulation(device):
    """The check can fail: the mistake issue 19 found in models/base.py (numpy.asarray of a latent mean)
    is refused here, as CuPy refuses it."""
    model = models.build("vae", x_dim=6, z_dim=2, hidden=(4,))
    means = model.latent_mean(model.check_x(numpy.zeros((3, 6))))
    with pytest.raises(ImplicitTransferError):
        numpy.asarray(means)
    strict_device.REFUSALS.clear()


# ---------------------------------------------------------------------------------------------------------
# Every model: a training step, generation, evaluation and its state, on the device

X_DIM, BATCH = 16, 5  # 16 pixels: a 4×4 image, the smallest the conv networks take


def small(name, **overrides):
    """A tiny instance of model ``name`` for this file's X_DIM (tests/training.py)."""
    return tiny_model(name, X_DIM, **overrides)


VARIANTS = [(name, {}) for name in sorted(models.MODELS)] + [
    ("vae", {"analytic_kl": False, "mc_samples": 2, "free_bits": 0.1, "warmup_steps": 3}),
    ("vae", {"likelihood": "gaussian", "gaussian_logvar": None}),
    ("beta-vae", {"total_correlation": True}),
    ("flow", {"flow": "radial"}),
    ("hvae", {"analytic_kl": False}),
    ("vqvae", {"ema": False, "dead_code_window": 1}),  # codebook loss, and a dead-code restart every step
    ("diffusion", {"objective": "elbo", "steps_per_example": 2}),
    ("diffusion", {"likelihood": "gaussian", "gaussian_logvar": None}),
    *((name, {"arch": "conv"}) for name in ("vae", "beta-vae", "iwae", "cvae", "vamp", "flow", "vqvae")),
]


def batch(seed=0):
    x = (numpy.random.default_rng(seed).uniform(size=(BATCH, X_DIM)) < 0.5).astype(numpy.float32)
    return x, numpy.arange(BATCH) % 3


def on_device(*arrays):
    return all(isinstance(a, DeviceArray) for a in arrays)


def variant_id(variant):
    name, options = variant
    return ",".join([name, *(f"{key}={value}" for key, value in options.items())])


@pytest.mark.parametrize(("name", "options"), VARIANTS, ids=[variant_id(v) for v in VARIANTS])
def test_a_model_trains_generates_and_evaluates_on_the_device(name, options, device):
    """Loss, backward and Adam steps keep parameters, gradients and moments on the device; what is meant
    for the host (the loss result's numbers, samples, reconstructions, interpolations, decoded points,
    evaluation reports, state dicts) arrives as NumPy; and every state goes back onto the device."""
    model, (x, y) = small(name, **options), batch()
    labels, label = (y, 1) if model.conditional else (None, None)
    optimizer = tv.optim.Adam(model.parameters(), lr=1e-2)
    assert on_device(*(p.data for p in model.parameters()))
    for step in range(3):
        optimizer.zero_grad()
        result = model.loss(x, numpy.random.default_rng(step), y=labels)
        result.loss.backward()
        optimizer.step()
        assert numpy.isfinite(result.summary()["loss"])
        assert all(type(v) is numpy.ndarray for v in (result.elbo, *result.terms.values()) if v is not None)
    assert on_device(*(p.data for p in model.parameters()), *(p.grad for p in model.parameters()))
    assert on_device(*(array for _, array in optimizer.state_arrays()))
    model.eval()
    model.loss(x, numpy.random.default_rng(9), y=labels).summary()
    model.train()

    assert on_device(model.latent_mean(model.check_x(x), labels))  # computation stays on the device
    outputs = [
        model.reconstruct(x, y=labels),
        model.interpolate(x[0], x[1], steps=3, y=label),
        model.interpolate(x[0], x[1], steps=3, method="slerp", y=label),
        model.decode(model.latent_mean(model.check_x(x), labels), labels),
    ]
    if model.latent_kind != "deterministic":
        outputs.append(model.sample(3, numpy.random.default_rng(0), y=label))
    assert all(type(o) is numpy.ndarray and numpy.isfinite(o).all() for o in outputs)

    report = evaluate.report(model, x, k=4, rng=0, y=labels)
    json.dumps(report)  # plain numbers, on the host
    if model.has_likelihood_bound:
        estimate = evaluate.log_likelihood(model, x, k=5, chunk_size=2, rng=0, y=labels)
        assert type(estimate) is numpy.ndarray and numpy.isfinite(estimate).all()

    model_state, optimizer_state = model.state_dict(), optimizer.state_dict()
    assert all(type(v) is numpy.ndarray for v in (*model_state.values(), *optimizer_state.values()))
    model.load_state_dict(model_state)
    optimizer.load_state_dict(optimizer_state)
    assert on_device(*(p.data for p in model.parameters()), *(a for _, a in optimizer.state_arrays()))


@pytest.mark.parametrize("name", ["vae", "vqvae", "mixture", "diffusion", "hvae"])
def test_the_device_computes_the_same_floats_as_numpy(name, numpy_backend, tmp_path):
    """The code paths this issue moved onto the device (the VQ-VAE's k-means++ seeding, EMA statistics and
    usage counts, the mixture's component draws, the diffusion model's weight average and reverse chain,
    the evaluation's density blocks) give the NumPy backend's numbers exactly."""

    def run(path):
        model, (x, _) = small(name), batch()
        optimizer = tv.optim.Adam(model.parameters(), lr=1e-2)
        for step in range(3):
            optimizer.zero_grad()
            model.loss(x, numpy.random.default_rng(step)).loss.backward()
            optimizer.step()
        checkpoint.save_checkpoint(path, model, optimizer)
        outputs = {
            "samples": model.sample(4, numpy.random.default_rng(5)),
            "reloaded reconstructions": checkpoint.load_model(path)[0].reconstruct(x),
        }
        return model.state_dict(), outputs, evaluate.report(model, x, k=4, rng=0)

    host_state, host_outputs, host_report = run(tmp_path / "host.npz")
    with tv.backend.simulated_device(DEVICE, DeviceArray):
        device_state, device_outputs, device_report = run(tmp_path / "device.npz")
    assert device_state.keys() == host_state.keys()
    for key, value in host_state.items():
        numpy.testing.assert_array_equal(device_state[key], value, err_msg=key)
    for key, value in host_outputs.items():
        numpy.testing.assert_array_equal(device_outputs[key], value, err_msg=key)
    assert device_report == host_report


# ---------------------------------------------------------------------------------------------------------
# What a user runs: tinyvae train with its figures, and the other commands on its run


def quiet(function, *args):
    with contextlib.redirect_stdout(io.StringIO()):
        return function(*args)


def start_run(name, out, data="mnist5k", **options):
    config = train.RunConfig(
        model=name, data=data, epochs=2, batch_size=32, limit=64, latent_dim=2, hidden=(8,), out=str(out),
        progress=False, plots=True, model_options=options,
    )  # fmt: skip
    return train.run(config, log=lambda *_: None)


RUN_OPTIONS = {"hvae": {"z_dims": (2, 2)}, "diffusion": {"steps": 10}, "vqvae": {"codebook_size": 8}}


@pytest.mark.parametrize("name", sorted(models.MODELS))
def test_a_training_run_and_the_commands_on_it_run_on_the_device(name, device, tmp_path, monkeypatch):
    """`tinyvae train` (two epochs on 64 images, figures on) trains its model on the device; then evaluate,
    sample, reconstruct, interpolate and plot on its run, a resumed third epoch, and the checkpoint read
    back onto the device holding what the file holds."""
    built = []
    build_model = train.build_model
    monkeypatch.setattr(train, "build_model", lambda *a: built.append(build_model(*a)) or built[-1])
    out = start_run(name, tmp_path / name, **RUN_OPTIONS.get(name, {}))
    [(trained, _)] = built  # build_model returns (model, the test split it read)
    assert trained.training_steps > 0 and on_device(*(p.data for p in trained.parameters()))
    model_class = models.MODELS[name]
    drawn = {p.name for p in out.glob("*.png")}
    always = {"reconstructions.png", "latent_scatter.png", "training_curves.png"}
    assert always | set(model_class.figure_names) <= drawn
    label = ["--label", "1"] if model_class.conditional else []
    run = str(out)
    for command in (
        ["evaluate", run, "--k", "4", "--limit", "20"],
        ["sample", run, "--n", "4", *label, "--save-array", str(tmp_path / "samples.npy")],
        ["reconstruct", run, "--n", "3"],
        ["interpolate", run, "--steps", "3", "--method", "slerp"],
        ["plot", run],
    ):
        assert quiet(cli.main, command) in (None, 0), command
    assert numpy.load(tmp_path / "samples.npy").shape == (4, 784)
    assert json.loads((out / "evaluation.json").read_text())

    resumed = train.RunConfig(out=run, epochs=3, resume=True, progress=False, plots=False)
    train.run(resumed, log=lambda *_: None)
    reloaded, _ = checkpoint.load_model(out / "last.npz")
    assert on_device(*(p.data for p in reloaded.parameters()))
    _, saved, _ = checkpoint.read_checkpoint(out / "last.npz")
    for key, value in reloaded.state_dict().items():
        numpy.testing.assert_array_equal(value, saved[key], err_msg=key)


def test_the_code_prior_trains_and_samples_on_the_device(device, tmp_path):
    """The VQ-VAE's second stage: `tinyvae train-prior` fits the transformer over the run's codes, and
    `sample` and `evaluate` then use it."""
    out = start_run("vqvae", tmp_path / "vq", codebook_size=8)
    run = str(out)
    quiet(cli.main, ["train-prior", run, "--epochs", "1", "--width", "8", "--heads", "2", "--layers", "1"])
    quiet(cli.main, ["sample", run, "--n", "4", "--prior", "learned"])
    quiet(cli.main, ["evaluate", run, "--k", "4", "--limit", "20"])
    assert "prior_bits_per_code" in json.loads((out / "evaluation.json").read_text())


@pytest.mark.parametrize("name", ["vae", "cvae", "flow", "mixture", "diffusion", "hvae"])
def test_runs_on_two_dimensional_points_draw_their_figures_on_the_device(name, device, tmp_path):
    """The 2-D toy data takes the other branch of every figure (scatters, the decoded lattice, the true
    posterior against q's samples, the diffusion chain as points)."""
    out = start_run(name, tmp_path / name, data="ring", **RUN_OPTIONS.get(name, {}))
    drawn = {p.name for p in out.glob("*.png")}
    assert set(models.MODELS[name].figure_names) <= drawn
    if models.MODELS[name].posterior_description is not None:
        assert "posterior.png" in drawn


def test_the_demo_runs_on_the_device(device):
    quiet(demo.main, ["--epochs", "1"])


def load_example(name, monkeypatch):
    monkeypatch.syspath_prepend(str(EXAMPLES))  # as `python examples/x.py` does: `import _common` works
    spec = importlib.util.spec_from_file_location(f"example_{name}", EXAMPLES / f"{name}.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def run_example_quick(name, monkeypatch, tmp_path):
    module = load_example(name, monkeypatch)
    result = quiet(module.main, ["--quick", "--seed", "0", "--out", str(tmp_path / name)])
    assert result["figures"] and all(pathlib.Path(f).is_file() for f in result["figures"])


@pytest.mark.parametrize("name", ["attribute_vector", "autoencoder_baseline"])
def test_examples_run_quick_on_the_device(name, device, monkeypatch, tmp_path):
    run_example_quick(name, monkeypatch, tmp_path)


@pytest.mark.slow
@pytest.mark.parametrize("name", sorted(p.stem for p in EXAMPLES.glob("*.py") if not p.name.startswith("_")))
def test_every_example_runs_quick_on_the_device(name, device, monkeypatch, tmp_path):
    run_example_quick(name, monkeypatch, tmp_path)
