"""Training runs and checkpoints: metrics and files written each epoch, exact resume, divergence stops
with a message and keeps the last good checkpoint, and checkpoints refuse anything but plain arrays."""

import json
import os
import signal
import zipfile

import numpy
import pytest

import tinyvae as tv
from tinyvae import checkpoint, train
from tinyvae.models import VAE, VQVAE, VAEConfig, VQVAEConfig


class ArrayDataset:
    """The part of tinyvae.data.Dataset that fit() uses: x, labels and a seeded minibatch iterator."""

    def __init__(self, x, labels=None):
        self.x, self.labels = x, labels

    def batches(self, batch_size, rng, shuffle=True):
        order = rng.permutation(len(self.x)) if shuffle else numpy.arange(len(self.x))
        for start in range(0, len(self.x), batch_size):
            rows = order[start : start + batch_size]
            yield self.x[rows], None if self.labels is None else self.labels[rows]


def small_problem(seed=0):
    rng = numpy.random.default_rng(seed)
    prototypes = rng.uniform(size=(3, 12)) < 0.5
    x = (prototypes[rng.integers(3, size=96)] ^ (rng.uniform(size=(96, 12)) < 0.05)).astype(numpy.float32)
    return ArrayDataset(x[:64]), ArrayDataset(x[64:])


def run(run_dir, epochs, model=None, resume_from=None):
    """Train (or resume) a small VAE in run_dir for ``epochs`` epochs in total; returns (model, history)."""
    data_train, data_test = small_problem()
    if resume_from is not None:
        model, optimizer, rng, history, done = train.resume(run_dir, lambda p: tv.optim.Adam(p, lr=1e-2))
    else:
        model = model or VAE(VAEConfig(x_dim=12, z_dim=2, hidden=(8,), seed=0))
        optimizer, rng, history, done = (
            tv.optim.Adam(model.parameters(), lr=1e-2),
            numpy.random.default_rng(1),
            [],
            0,
        )
    history = train.fit(
        model,
        data_train,
        data_test,
        epochs,
        16,
        optimizer,
        rng,
        run_dir=run_dir,
        progress=False,
        log=lambda line: None,
        start_epoch=done,
        history=history,
    )
    return model, history


def test_fit_writes_metrics_and_checkpoints_every_epoch(tmp_path):
    """After 3 epochs the run directory has one metrics row per epoch (JSONL and CSV agree), a last and a
    best checkpoint, and the best checkpoint is the epoch with the highest test ELBO."""
    _, history = run(str(tmp_path), epochs=3)
    rows = [json.loads(line) for line in (tmp_path / "metrics.jsonl").read_text().splitlines()]
    assert [r["epoch"] for r in rows] == [1, 2, 3] and rows == history
    csv_lines = (tmp_path / "metrics.csv").read_text().splitlines()
    assert len(csv_lines) == 4 and csv_lines[0].startswith("epoch,train_loss,train_elbo")
    for row in rows:
        assert {"train_loss", "train_elbo", "train_recon", "train_kl", "test_elbo", "seconds"} <= set(row)
    best_meta, _, _ = checkpoint.read_checkpoint(str(tmp_path / "best.npz"))
    assert best_meta["epoch"] == max(rows, key=lambda r: r["test_elbo"])["epoch"]
    last_meta, _, optimizer_state = checkpoint.read_checkpoint(str(tmp_path / "last.npz"))
    assert last_meta["epoch"] == 3 and int(optimizer_state["steps"]) == 3 * 4


def test_resume_is_exact(tmp_path):
    """2 epochs, then a resume for 2 more, give bit-identical parameters and metrics to 4 epochs in one go
    (same seed, same backend): the model, Adam's moments and the RNG all come back from the checkpoint."""
    straight, straight_history = run(str(tmp_path / "straight"), epochs=4)
    os.makedirs(tmp_path / "resumed")
    run(str(tmp_path / "resumed"), epochs=2)
    resumed, resumed_history = run(str(tmp_path / "resumed"), epochs=4, resume_from=True)
    for (name, a), (_, b) in zip(straight.named_parameters(), resumed.named_parameters(), strict=True):
        numpy.testing.assert_array_equal(a.data, b.data, err_msg=name)
    strip = [{k: v for k, v in row.items() if k != "seconds"} for row in straight_history]
    assert strip == [{k: v for k, v in row.items() if k != "seconds"} for row in resumed_history]


def test_resume_is_exact_for_the_vq_vae_and_its_codebook_state(tmp_path):
    """The VQ-VAE's EMA statistics and dead-code counters live outside its parameters; they travel in the
    checkpoint too, so a resumed VQ-VAE run matches the uninterrupted one."""
    make = lambda: VQVAE(VQVAEConfig(x_dim=12, z_dim=2, hidden=(8,), codebook_size=4, ema=True, seed=0))  # noqa: E731
    straight, _ = run(str(tmp_path / "a"), epochs=3, model=make())
    os.makedirs(tmp_path / "b")
    run(str(tmp_path / "b"), epochs=1, model=make())
    resumed, _ = run(str(tmp_path / "b"), epochs=3, resume_from=True)
    for key, value in straight.state_dict().items():
        numpy.testing.assert_array_equal(value, resumed.state_dict()[key], err_msg=key)


def test_divergence_stops_with_the_place_and_keeps_the_last_good_checkpoint(tmp_path):
    """When a parameter becomes NaN the next loss is NaN: fit stops with TrainingDiverged naming the epoch,
    the step and the first non-finite parameter, and last.npz still holds the last finished epoch."""
    model, _ = run(str(tmp_path), epochs=1)
    model.decoder.layers[0].weight.data[0, 0] = numpy.nan
    data_train, data_test = small_problem()
    optimizer = tv.optim.Adam(model.parameters(), lr=1e-2)
    with pytest.raises(train.TrainingDiverged, match=r"epoch 2, step 1.*'decoder.layers.0.weight'"):
        train.fit(
            model,
            data_train,
            data_test,
            2,
            16,
            optimizer,
            numpy.random.default_rng(0),
            run_dir=str(tmp_path),
            progress=False,
            log=lambda line: None,
            start_epoch=1,
        )
    meta, state, _ = checkpoint.read_checkpoint(str(tmp_path / "last.npz"))
    assert meta["epoch"] == 1 and numpy.isfinite(state["decoder.layers.0.weight"]).all()


def test_checkpoint_round_trip_rebuilds_the_model(tmp_path):
    """load_model rebuilds the saved model from its name and config and gives the same reconstructions."""
    model = VAE(VAEConfig(x_dim=12, z_dim=3, hidden=(8, 4), seed=3))
    path = str(tmp_path / "m.npz")
    checkpoint.save_checkpoint(path, model, epoch=0)
    loaded, meta = checkpoint.load_model(path)
    x = small_problem()[0].x
    numpy.testing.assert_array_equal(loaded.reconstruct(x), model.reconstruct(x))
    assert meta["config"]["hidden"] == [8, 4]
    with pytest.raises(checkpoint.CheckpointError, match="holds a 'vae' model, expected 'vqvae'"):
        checkpoint.load_model(path, expected_model="vqvae")


def test_bad_checkpoints_are_refused_with_a_reason(tmp_path):
    """Truncated files, non-checkpoints, pickled objects and other format versions each give a
    CheckpointError that says what is wrong; nothing is unpickled."""
    model = VAE(VAEConfig(x_dim=4, z_dim=2, hidden=(3,)))
    good = tmp_path / "good.npz"
    checkpoint.save_checkpoint(str(good), model)
    truncated = tmp_path / "truncated.npz"
    truncated.write_bytes(good.read_bytes()[: len(good.read_bytes()) // 2])
    with pytest.raises(checkpoint.CheckpointError, match="unreadable, truncated or not a .npz"):
        checkpoint.read_checkpoint(str(truncated))
    pickled = tmp_path / "pickled.npz"
    numpy.savez(pickled, **{"meta.json": numpy.array([{"evil": 1}], dtype=object)})
    with pytest.raises(checkpoint.CheckpointError, match="plain arrays only"):
        checkpoint.read_checkpoint(str(pickled))
    plain = tmp_path / "plain.npz"
    numpy.savez(plain, weights=numpy.zeros(3))
    with pytest.raises(checkpoint.CheckpointError, match="no 'meta.json' header"):
        checkpoint.read_checkpoint(str(plain))
    future = tmp_path / "future.npz"
    with zipfile.ZipFile(good) as source, zipfile.ZipFile(future, "w") as target:
        for item in source.namelist():
            data = source.read(item)
            if item == "meta.json.npy":
                header = json.loads(numpy.load(good)["meta.json"].tobytes())
                header["format_version"] = 99
                buffer = numpy.frombuffer(json.dumps(header).encode(), dtype=numpy.uint8)
                path = tmp_path / "meta.npy"
                numpy.save(path, buffer)
                data = path.read_bytes()
            target.writestr(item, data)
    with pytest.raises(
        checkpoint.CheckpointError, match="format version 99, but this tinyvae reads version 1"
    ):
        checkpoint.read_checkpoint(str(future))
    with pytest.raises(checkpoint.CheckpointError, match="no such file"):
        checkpoint.read_checkpoint(str(tmp_path / "missing.npz"))


class _Terminated(Exception):
    pass


def _raise_terminated(signum, frame):
    raise _Terminated


@pytest.mark.parametrize(
    "signum, handler, raised",
    [("SIGINT", signal.default_int_handler, KeyboardInterrupt), ("SIGTERM", _raise_terminated, _Terminated)],
)
def test_an_interrupt_during_saving_waits_for_the_save(signum, handler, raised):
    """A SIGINT or SIGTERM that arrives while an epoch's files are written is held until they are complete,
    then delivered to the handler that was in place: the block runs to its end and the exception comes
    after it. The handler is installed here, so the test does not depend on what the test process
    inherited (a suite started in the background of a shell inherits SIGINT ignored)."""
    signum = getattr(signal, signum)
    previous = signal.signal(signum, handler)
    try:
        finished = []
        with pytest.raises(raised):
            with train.interrupts_deferred():
                os.kill(os.getpid(), signum)
                finished.append("the save went on")
        assert finished == ["the save went on"]
        assert signal.getsignal(signum) is handler
    finally:
        signal.signal(signum, previous)
