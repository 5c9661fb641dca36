"""`tinyvae train-prior`, and what `sample` and `evaluate` do with its file (issue 13, part 3): the prior is
fitted to a VQ run's codes under the run's writer lock and saved as a run file; `sample` draws codes from it
(or uniformly) and can save its samples as an array; `evaluate` reports bits per code under both priors; a
damaged, forged or stale prior file is a one-line error, never a traceback.

The VQ run is tiny (256 images, 1 epoch, L = 4 codes of K = 8) and so is its prior (one layer of width 16),
so the whole file takes a few seconds."""

import io
import json
import math
import os
import shutil
import subprocess
import sys
import zipfile

import numpy
import pytest

from tinyvae import backend, cli, rundir
from tinyvae.models import code_prior
from tinyvae.models.code_prior import CodePriorConfig, TransformerCodePrior, load_prior, save_prior

VQ = ["--model", "vqvae", "--latent-vectors", 4, "--codebook-size", 8, "--latent-dim", 4, "--hidden", 64]
TRAIN = ["--limit", 256, "--epochs", 1, "--no-progress", "--no-plots", *VQ]
PRIOR = ["--epochs", 2, "--width", 16, "--heads", 2, "--layers", 1]


def tinyvae(*args):
    try:
        return cli.main([str(a) for a in args])
    except SystemExit as stop:
        return stop.code


@pytest.fixture(scope="module")
def vq_run(tmp_path_factory):
    """A tiny VQ-VAE run with its code prior (read-only: copy it to change it)."""
    out = tmp_path_factory.mktemp("runs") / "vq"
    assert tinyvae("train", *TRAIN, "--out", out) == 0
    assert tinyvae("train-prior", out, *PRIOR) == 0
    return out


@pytest.fixture(scope="module")
def vae_run(tmp_path_factory):
    out = tmp_path_factory.mktemp("runs") / "vae"
    assert tinyvae("train", "--data", "ring", "--limit", 128, "--epochs", 1, "--no-plots", "--out", out) == 0
    return out


def copy_of(run, tmp_path, name="run"):
    return shutil.copytree(run, tmp_path / name)


# ---------------------------------------------------------------- train-prior


def test_train_prior_fits_the_runs_codes_and_saves_a_run_file(vq_run, tmp_path, capsys):
    """Per-epoch train and held-out bits per code next to log2 K, and a file recording the checkpoint (name,
    epoch, SHA-256) it was fitted to and the test bits per code; a run file, so nothing in the run is
    foreign. Refitting replaces it."""
    run = copy_of(vq_run, tmp_path)
    assert tinyvae("train-prior", run, *PRIOR, "--seed", 1) == 0
    out = capsys.readouterr().out
    assert "epoch 2/2: train " in out and "held-out " in out and "(log2 K = 3.000)" in out
    assert "4 codes out of K = 8" in out and "256 training sequences" in out
    prior, meta = load_prior(str(run / rundir.PRIOR_NAME), codebook_size=8, length=4)
    assert (prior.config.width, prior.config.heads, prior.config.layers, prior.config.seed) == (16, 2, 1, 1)
    assert meta["checkpoint"] == "last" and meta["checkpoint_epoch"] == 1
    assert meta["checkpoint_sha256"] == cli._sha256(run / "last.npz")
    assert 0 < meta["test_bits_per_code"] < 10 and meta["uniform_bits_per_code"] == 3.0
    assert len(meta["history"]) == 2 and f"test {meta['test_bits_per_code']:.3f} bits per code" in out
    assert rundir.is_run_file(rundir.PRIOR_NAME) and rundir.foreign_entries(run) == []


def test_train_prior_refuses_a_run_without_codes(vae_run, capsys):
    assert tinyvae("train-prior", vae_run, *PRIOR) == 2
    err = capsys.readouterr().err
    assert "holds a 'vae' model, which has no codes; only VQ runs (--model vqvae)" in err
    assert not (vae_run / rundir.PRIOR_NAME).exists()


def test_train_prior_is_refused_while_another_process_writes_the_run(vq_run, tmp_path, capsys):
    """The run's writer lock (held here as `train` holds it): train-prior is refused naming the holder, and
    the prior file is left as it was. A prior fitted while the run trains would fit codes the next epoch
    changes, so the two never run together."""
    run = copy_of(vq_run, tmp_path)
    before = (run / rundir.PRIOR_NAME).read_bytes()
    lock = rundir.RunLock(str(run), "tinyvae train --resume").acquire()
    try:
        assert tinyvae("train-prior", run, *PRIOR, "--seed", 3) == 2
    finally:
        lock.release()
    assert f"in use by process {os.getpid()} (tinyvae train --resume)" in capsys.readouterr().err
    assert (run / rundir.PRIOR_NAME).read_bytes() == before


def test_train_prior_has_help_with_an_example():
    result = subprocess.run(
        [sys.executable, "-m", "tinyvae", "train-prior", "--help"], capture_output=True, text=True, timeout=60
    )
    assert result.returncode == 0 and "example: tinyvae train-prior" in result.stdout
    for flag in ("--epochs", "--batch-size", "--lr", "--seed", "--width", "--heads", "--layers"):
        assert flag in result.stdout


def test_blas_threads_sets_and_restores_the_count():
    library = backend.openblas_thread_control()
    if library is None:
        pytest.skip("the loaded BLAS is not an OpenBLAS that can be asked")
    get, _ = library
    before = get()
    with code_prior.blas_threads(1):
        assert get() == 1
    assert get() == before


# ---------------------------------------------------------------- sample


def test_sample_draws_codes_from_the_learned_prior_by_default_or_uniformly(vq_run, tmp_path, capsys):
    run = copy_of(vq_run, tmp_path)
    arrays = {}
    for choice in ([], ["--prior", "learned"], ["--prior", "uniform"]):
        name = "-".join(choice) or "default"
        assert tinyvae("sample", run, "--n", 16, *choice, "--save-array", tmp_path / f"{name}.npy") == 0
        out = capsys.readouterr().out
        expected = "codes drawn uniformly" if "uniform" in choice else "a transformer over the codes"
        assert expected in out, out
        arrays[name] = numpy.load(tmp_path / f"{name}.npy")
    numpy.testing.assert_array_equal(arrays["default"], arrays["--prior-learned"])
    assert not numpy.array_equal(arrays["--prior-learned"], arrays["--prior-uniform"])


def test_sample_without_a_prior_file(vq_run, tmp_path, capsys):
    """No code_prior.npz: uniform codes with a note by default; --prior learned is an error that says how
    to make the file."""
    run = copy_of(vq_run, tmp_path)
    (run / rundir.PRIOR_NAME).unlink()
    assert tinyvae("sample", run) == 0
    assert "note: no code prior in" in capsys.readouterr().out
    assert tinyvae("sample", run, "--prior", "learned") == 2
    assert f"does not exist; fit the prior first with `tinyvae train-prior {run}`" in capsys.readouterr().err


def test_prior_applies_to_vq_runs_only(vae_run, capsys):
    assert tinyvae("sample", vae_run, "--prior", "uniform") == 2
    assert "--prior applies to VQ runs (--model vqvae)" in capsys.readouterr().err


@pytest.mark.parametrize("which", ["vae", "vq"])
def test_save_array_writes_the_samples_as_float32(vae_run, vq_run, tmp_path, which):
    """(n, x_dim) float32, the same draws as the figure (a VAE on the 2-D ring: x_dim 2; the VQ run: 784)."""
    run, x_dim = (vae_run, 2) if which == "vae" else (vq_run, 784)
    run = copy_of(run, tmp_path)
    path = tmp_path / "samples.npy"
    assert tinyvae("sample", run, "--n", 12, "--save-array", path) == 0
    samples = numpy.load(path)
    assert samples.shape == (12, x_dim) and samples.dtype == numpy.float32 and numpy.isfinite(samples).all()
    assert rundir.foreign_entries(run) == []  # nothing but the figure was written into the run


def test_save_array_never_replaces_a_run_file_and_an_existing_file_only_with_force(vq_run, tmp_path, capsys):
    run = copy_of(vq_run, tmp_path)
    last = (run / "last.npz").read_bytes()
    for extra in ([], ["--force"]):
        assert tinyvae("sample", run, "--save-array", run / "last.npz", *extra) == 2
        assert "would replace last.npz, a file of the run directory" in capsys.readouterr().err
    assert (run / "last.npz").read_bytes() == last
    mine = tmp_path / "mine.npy"
    mine.write_bytes(b"my data")
    assert tinyvae("sample", run, "--save-array", mine) == 2
    assert "already exists; pass --force to replace it" in capsys.readouterr().err
    assert mine.read_bytes() == b"my data"
    assert tinyvae("sample", run, "--n", 4, "--save-array", mine, "--force") == 0
    assert numpy.load(mine).shape == (4, 784)
    assert tinyvae("sample", run, "--save-array", tmp_path) == 2
    assert "is a folder" in capsys.readouterr().err
    assert tinyvae("sample", run, "--save-array", tmp_path / "no" / "such.npy") == 2
    assert "does not exist" in capsys.readouterr().err


# ---------------------------------------------------------------- evaluate


def test_evaluate_reports_bits_per_code_under_both_priors(vq_run, tmp_path):
    run = copy_of(vq_run, tmp_path)
    assert tinyvae("evaluate", run, "--k", 5, "--limit", 50) == 0
    report = json.loads((run / "evaluation.json").read_text())
    assert report["uniform_bits_per_code"] == pytest.approx(math.log2(8))
    prior, _ = load_prior(str(run / rundir.PRIOR_NAME))
    from tinyvae import checkpoint, data

    model, _ = checkpoint.load_model(str(run / "last.npz"))
    x = data.load_dataset("mnist5k", "test", pixels="binarized-static").x[:50]
    expected = prior.bits_per_code(numpy.asarray(model.encode(x)[1]))
    assert report["prior_bits_per_code"] == pytest.approx(expected, rel=1e-6)


def test_a_prior_fitted_to_another_checkpoint_is_not_used_silently(vq_run, tmp_path, capsys):
    """After one more epoch of training, the saved prior describes codes the model no longer makes: sample
    falls back to uniform codes with a note (an error with --prior learned), and evaluate leaves
    prior_bits_per_code out with a note."""
    run = copy_of(vq_run, tmp_path)
    assert tinyvae("train", *TRAIN[:2], "--epochs", 2, *TRAIN[4:], "--out", run, "--resume") == 0
    capsys.readouterr()
    assert tinyvae("sample", run) == 0
    out = capsys.readouterr().out
    assert "was fitted to the codes of last.npz at epoch 1, not to this last.npz (epoch 2)" in out
    assert "codes drawn uniformly" in out
    assert tinyvae("sample", run, "--prior", "learned") == 2
    assert f"fit it again with `tinyvae train-prior {run} --checkpoint last`" in capsys.readouterr().err
    assert tinyvae("evaluate", run, "--k", 5, "--limit", 20) == 0
    assert "note: no prior_bits_per_code" in capsys.readouterr().out
    assert "prior_bits_per_code" not in json.loads((run / "evaluation.json").read_text())


# ---------------------------------------------------------------- --overwrite


def test_overwrite_removes_the_prior_but_refuses_a_foreign_file(vq_run, tmp_path, capsys):
    run = copy_of(vq_run, tmp_path)
    assert tinyvae("train", *TRAIN, "--out", run, "--overwrite") == 0
    assert not (run / rundir.PRIOR_NAME).exists()
    other = copy_of(vq_run, tmp_path, "other")
    (other / "code_prior.npz.bak").write_bytes(b"mine")
    assert tinyvae("train", *TRAIN, "--out", other, "--overwrite") == 2
    assert "would be lost: code_prior.npz.bak" in capsys.readouterr().err
    assert (other / rundir.PRIOR_NAME).is_file() and (other / "code_prior.npz.bak").read_bytes() == b"mine"


# ---------------------------------------------------------------- a damaged or forged prior file


def rewrite(path, meta=None, arrays=None):
    """Rewrite the prior file at ``path`` with its header updated by ``meta`` and arrays replaced by
    ``arrays`` (None as a value removes one)."""
    with numpy.load(path) as stored:
        members = {key: stored[key] for key in stored.files}
    header = json.loads(members["meta.json"].tobytes())
    header.update(meta or {})
    members["meta.json"] = numpy.frombuffer(json.dumps(header).encode(), dtype=numpy.uint8)
    for key, value in (arrays or {}).items():
        if value is None:
            members.pop(key)
        else:
            members[key] = value
    buffer = io.BytesIO()
    numpy.savez(buffer, **members)
    path.write_bytes(buffer.getvalue())


def _truncate(path):
    path.write_bytes(path.read_bytes()[:1000])


def _not_a_zip(path):
    path.write_bytes(b"not a zip file at all")


def _wider_config(path):
    config = json.loads(numpy.load(path)["meta.json"].tobytes())["config"]
    rewrite(path, meta={"config": {**config, "width": 10**9, "heads": 1, "mlp_hidden": 1}})


def _transposed(path):
    head = numpy.load(path)["prior/head.weight"]
    rewrite(path, arrays={"prior/head.weight": numpy.ascontiguousarray(head.T)})


def _missing(path):
    rewrite(path, arrays={"prior/head.bias": None, "prior/extra": numpy.zeros(8, numpy.float32)})


def _not_finite(path):
    head = numpy.load(path)["prior/head.bias"].copy()
    head[0] = numpy.nan
    rewrite(path, arrays={"prior/head.bias": head})


def _other_codebook(path):
    prior = TransformerCodePrior(CodePriorConfig(codebook_size=16, length=4, width=16, heads=2, layers=1))
    meta = json.loads(numpy.load(path)["meta.json"].tobytes())
    save_prior(
        str(path), prior, **{k: v for k, v in meta.items() if k not in ("format", "format_version", "config")}
    )


def _bomb(path):
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w", zipfile.ZIP_DEFLATED) as archive:
        with archive.open("meta.json.npy", "w") as member:
            header = io.BytesIO()
            numpy.lib.format.write_array_header_1_0(
                header, {"descr": "|u1", "fortran_order": False, "shape": (200_000_000,)}
            )
            member.write(header.getvalue())
            for _ in range(200):
                member.write(bytes(1_000_000))
    path.write_bytes(buffer.getvalue())


HOSTILE = {
    "truncated": (_truncate, "unreadable, truncated or not a .npz file"),
    "not a zip": (_not_a_zip, "unreadable, truncated or not a .npz file"),
    "config wider than the weights": (_wider_config, "parameters but the file holds"),
    "an array of the wrong shape": (_transposed, "'prior/head.weight' is declared shape (8, 16)"),
    "a missing and an unexpected array": (_missing, "missing arrays ['prior/head.bias'], unexpected arrays"),
    "NaN weights": (_not_finite, "'head.bias' holds non-finite values"),
    "another codebook": (
        _other_codebook,
        "fitted to codes with K = 16, L = 4, but this run's VQ-VAE has K = 8",
    ),
    "compression bomb": (_bomb, "compression bomb"),
}


@pytest.mark.parametrize("case", list(HOSTILE))
@pytest.mark.parametrize("command", ["sample", "evaluate"])
def test_a_damaged_or_forged_prior_file_is_a_one_line_error_naming_it(
    vq_run, tmp_path, capsys, case, command
):
    run = copy_of(vq_run, tmp_path)
    damage, message = HOSTILE[case]
    path = run / rundir.PRIOR_NAME
    damage(path)
    extra = ["--k", 5, "--limit", 20] if command == "evaluate" else []
    assert tinyvae(command, run, *extra) == 2
    err = capsys.readouterr().err
    assert f"tinyvae: error: code prior {path}: " in err and message in err, err
    assert "Traceback" not in err and len(err.strip().splitlines()) == 1
