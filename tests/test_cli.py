"""The `tinyvae` command line: a short training run leaves a complete run directory, every subcommand works
on it, `--help` shows an example, and bad input ends in a clear message with exit status 2."""

import json
import math
import os
import subprocess
import sys

import matplotlib.image
import numpy
import pytest

from tinyvae import cli

PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"


def tinyvae(*args):
    """Run the CLI in-process; returns its exit status (argparse errors raise SystemExit)."""
    try:
        return cli.main([str(a) for a in args])
    except SystemExit as stop:
        return stop.code


def assert_valid_figure(path):
    """A PNG that matplotlib can read and that is not one flat colour."""
    with open(path, "rb") as file:
        assert file.read(8) == PNG_SIGNATURE, path
    pixels = matplotlib.image.imread(path)
    assert pixels.std() > 0.01, path


@pytest.fixture(scope="module")
def mnist_run(tmp_path_factory):
    """One short VAE run on the embedded MNIST (2 epochs on 512 images), shared by the tests below."""
    out = tmp_path_factory.mktemp("runs") / "vae"
    status = tinyvae("train", "--epochs", 2, "--limit", 512, "--out", out, "--no-progress", "--seed", 3)
    assert status == 0
    return out


def test_train_writes_a_complete_run_directory(mnist_run):
    """config.json (settings, model config, environment), metrics for each epoch, both checkpoints and the
    figures that apply to a VAE on images."""
    config = json.loads((mnist_run / "config.json").read_text())
    assert config["settings"]["model"] == "vae" and config["settings"]["model_config"]["z_dim"] == 20
    assert config["environment"]["backend"]["backend"] in ("numpy", "numba", "cupy")
    rows = [json.loads(line) for line in (mnist_run / "metrics.jsonl").read_text().splitlines()]
    assert [row["epoch"] for row in rows] == [1, 2] and rows[1]["test_elbo"] > rows[0]["test_elbo"]
    for name in ("last.npz", "best.npz", "metrics.csv"):
        assert (mnist_run / name).is_file()
    for name in ("reconstructions", "samples", "latent_scatter", "interpolation", "training_curves"):
        assert_valid_figure(mnist_run / f"{name}.png")


def test_evaluate_reports_the_numbers_and_writes_them(mnist_run, capsys):
    """evaluate prints and saves the k-sample NLL (below the −ELBO of training), active units,
    per-dimension KL and the mutual information."""
    assert tinyvae("evaluate", mnist_run, "--k", 20, "--limit", 50) == 0
    report = json.loads((mnist_run / "evaluation.json").read_text())
    assert report["examples"] == 50 and 0 < report["nll_k20"] < 800
    assert 0 <= report["active_units"] <= 20 and len(report["kl_per_dimension"]) == 20
    assert report["mutual_information"] >= 0
    assert "nll_k20" in capsys.readouterr().out


@pytest.mark.parametrize(
    "command, figure",
    [("sample", "samples"), ("reconstruct", "reconstructions"), ("interpolate", "interpolation")],
)
def test_generation_commands_write_their_figure(mnist_run, command, figure):
    """sample, reconstruct and interpolate each (re)write their figure in the run directory."""
    path = mnist_run / f"{figure}.png"
    path.unlink(missing_ok=True)
    assert tinyvae(command, mnist_run) == 0
    assert_valid_figure(path)


def test_refuses_to_overwrite_a_run_without_being_asked(mnist_run, capsys):
    """An existing run directory is never silently replaced: the message names --resume and --overwrite."""
    assert tinyvae("train", "--epochs", 1, "--out", mnist_run) == 2
    assert "already exists; pass --resume to continue it or --overwrite" in capsys.readouterr().err


def test_resume_continues_to_the_new_epoch_count(tmp_path):
    """--resume continues from last.npz: the metrics gain the new epochs and the earlier ones stay."""
    out = tmp_path / "ring"
    args = ["--model", "vae", "--data", "ring", "--limit", 256, "--out", out, "--no-progress", "--no-plots"]
    assert tinyvae("train", "--epochs", 1, *args) == 0
    first = (out / "metrics.jsonl").read_text().splitlines()
    assert tinyvae("train", "--epochs", 2, "--resume", *args) == 0
    lines = (out / "metrics.jsonl").read_text().splitlines()
    assert len(lines) == 2 and lines[0] == first[0]


@pytest.mark.parametrize(
    "args, message",
    [
        (["train", "--epochs", "0"], "expected a positive integer, got 0"),
        (["train", "--lr", "-1"], "expected a finite number > 0, got -1"),
        (["train", "--hidden", "400,abc"], "expected comma-separated layer sizes"),
        (["train", "--model", "gan"], "invalid choice: 'gan'"),
        (["train", "--data", "cifar"], "invalid choice: 'cifar'"),
        (["train", "--k", "5", "--epochs", "1"], "--k does not apply to --model vae"),
        (["evaluate", "/no/such/run"], "is not a tinyvae run directory"),
    ],
)
def test_bad_options_end_in_a_clear_message(args, message, capsys, tmp_path):
    """Every invalid option value is refused before any work, naming the option and the value."""
    if args[0] == "train":
        args = [*args, "--out", str(tmp_path / "run")]
    assert tinyvae(*args) == 2
    assert message in capsys.readouterr().err


def test_a_checkpoint_of_another_model_is_refused(mnist_run, tmp_path, capsys):
    """A run whose config says one model but whose checkpoint holds another is refused by name."""
    run = tmp_path / "mixed"
    run.mkdir()
    config = json.loads((mnist_run / "config.json").read_text())
    config["settings"]["model"] = "iwae"
    (run / "config.json").write_text(json.dumps(config))
    (run / "last.npz").write_bytes((mnist_run / "last.npz").read_bytes())
    assert tinyvae("sample", run) == 2
    assert "holds a 'vae' model, expected 'iwae'" in capsys.readouterr().err


def test_every_command_has_help_with_an_example():
    """`tinyvae COMMAND --help` describes the command and ends with an example."""
    for command in ("train", "evaluate", "sample", "reconstruct", "interpolate", "plot", "info", "download"):
        result = subprocess.run(
            [sys.executable, "-m", "tinyvae", command, "--help"], capture_output=True, text=True, timeout=60
        )
        assert result.returncode == 0 and "example: tinyvae" in result.stdout, command


def test_info_names_the_backend(capsys):
    """info prints the banner with the backend and the versions."""
    assert tinyvae("info") == 0
    out = capsys.readouterr().out
    assert "backend" in out and "numpy" in out


def test_toy_data_trains_every_model_for_one_epoch(tmp_path):
    """Each model trains for one epoch on the 2-D ring from the command line (conditional ones with the
    ring's mode labels) and leaves its last checkpoint."""
    for model in ("vae", "beta-vae", "iwae", "vqvae", "cvae", "hvae", "mixture", "flow", "ae", "linear"):
        out = tmp_path / model
        args = [
            "--model",
            model,
            "--data",
            "ring",
            "--limit",
            128,
            "--epochs",
            1,
            "--no-progress",
            "--no-plots",
        ]
        assert tinyvae("train", *args, "--out", out) == 0, model
        assert os.path.isfile(out / "last.npz")
        assert numpy.isfinite(json.loads((out / "metrics.jsonl").read_text())["test_loss"])


def test_same_command_and_seed_give_the_same_numbers(tmp_path):
    """Seeded end to end: two runs of the same command with the same seed write identical metrics (all but
    the wall-clock seconds), on the same backend."""
    rows = []
    for name in ("a", "b"):
        args = ["--data", "moons", "--limit", 256, "--epochs", 2, "--no-progress", "--no-plots", "--seed", 5]
        assert tinyvae("train", *args, "--out", tmp_path / name) == 0
        lines = (tmp_path / name / "metrics.jsonl").read_text().splitlines()
        rows.append([{k: v for k, v in json.loads(line).items() if k != "seconds"} for line in lines])
    assert rows[0] == rows[1]


def test_read_commands_describe_the_last_checkpoint_by_default_and_say_so(mnist_run, capsys):
    """The end-of-training figures show the last model, so evaluate/sample/... read last.npz unless told
    otherwise, and each prints which checkpoint (and epoch) its output describes."""
    assert tinyvae("evaluate", mnist_run, "--k", 5, "--limit", 20) == 0
    out = capsys.readouterr().out
    assert f"checkpoint: {mnist_run / 'last.npz'} (epoch 2)" in out
    report = json.loads((mnist_run / "evaluation.json").read_text())
    assert report["checkpoint"] == "last" and report["epoch"] == 2
    assert tinyvae("sample", mnist_run, "--checkpoint", "best") == 0
    assert f"checkpoint: {mnist_run / 'best.npz'}" in capsys.readouterr().out


def test_evaluate_reports_the_ceiling_of_the_mutual_information_estimate(mnist_run, capsys, monkeypatch):
    """I(x; z) cannot be estimated above log N from N examples: the report carries the ceiling, and the
    command notes when the estimate sits within 5% of it. With 20 examples (ceiling log 20 = 3.0 nats) this
    run measures about 1.4 nats: no note. An estimate at the ceiling (a stand-in estimator returning
    log N) gets the note; that a sharp encoder really saturates is tested in test_evaluate.py."""
    assert tinyvae("evaluate", mnist_run, "--k", 5, "--limit", 20) == 0
    report = json.loads((mnist_run / "evaluation.json").read_text())
    assert report["mutual_information_ceiling"] == pytest.approx(math.log(20))
    assert report["mutual_information"] < 0.95 * math.log(20) and not report["mutual_information_saturated"]
    assert "estimator's ceiling" not in capsys.readouterr().out
    monkeypatch.setattr("tinyvae.evaluate.mutual_information", lambda model, x, rng, y=None: math.log(len(x)))
    assert tinyvae("evaluate", mnist_run, "--k", 5, "--limit", 20) == 0
    assert json.loads((mnist_run / "evaluation.json").read_text())["mutual_information_saturated"] is True
    assert "is within 5% of its estimator's ceiling log 20 = 2.9957" in capsys.readouterr().out
