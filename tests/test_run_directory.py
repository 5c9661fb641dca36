"""A user's files are never deleted or mixed (issue 10): what --overwrite may remove, one writer per run
directory, refused starts that leave nothing behind, --resume that refuses to change what a run is,
config.json checked field by field, signals and full disks that end in a message, and numbers too large for
memory refused before anything is written.

Training runs use the 2-D ring, one minibatch per epoch and the NumPy backend (the fastest to start), so
each takes well under a second.
"""

import errno
import json
import os
import re
import resource
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
from processes import wait_for

from tinyvae import checkpoint, cli, rundir, train

TRAIN = ["--data", "ring", "--limit", "128", "--batch-size", "128", "--no-progress", "--no-plots"]
ENV = dict(os.environ, TINYVAE_BACKEND="numpy", PYTHONUNBUFFERED="1")


def tinyvae(*args):
    """``tinyvae ARGS`` in this process: (exit status, stdout, stderr) via capsys in the callers."""
    try:
        return cli.main([str(a) for a in args])
    except SystemExit as stop:
        return stop.code


def train_run(out, *extra, epochs=1):
    return tinyvae("train", *TRAIN, "--epochs", epochs, "--out", out, *extra)


def start_training(out, *extra, epochs=100_000, preexec_fn=None):
    command = [sys.executable, "-m", "tinyvae", "train", *TRAIN, "--epochs", str(epochs), "--out", str(out)]
    return subprocess.Popen(
        [*command, *extra],
        env=ENV,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        preexec_fn=preexec_fn,
    )


def snapshot(folder):
    """{relative path: bytes} of every file under ``folder``."""
    folder = Path(folder)
    return {str(p.relative_to(folder)): p.read_bytes() for p in sorted(folder.rglob("*")) if p.is_file()}


@pytest.fixture(scope="module")
def finished_run(tmp_path_factory):
    """A one-epoch ring VAE run (read-only for the tests: copy it to change it)."""
    out = tmp_path_factory.mktemp("runs") / "vae"
    assert train_run(out) == 0
    return out


def copy_run(run, destination):
    destination.mkdir()
    for name, data in snapshot(run).items():
        (destination / name).write_bytes(data)
    return destination


# ---------------------------------------------------------------------------------------------------------
# --overwrite removes only what a run writes


def test_overwrite_refuses_a_folder_whose_config_json_tinyvae_did_not_write(tmp_path, capsys):
    """The issue's repro: a thesis folder with a config.json of `{}` is not a run; --overwrite refuses,
    exit 2, and every file is still there."""
    folder = tmp_path / "p"
    (folder / "src").mkdir(parents=True)
    (folder / "config.json").write_text("{}")
    (folder / "src" / "t.tex").write_text("thesis")
    before = snapshot(folder)
    assert train_run(folder, "--overwrite") == 2
    err = capsys.readouterr().err
    assert (
        "--overwrite refused:" in err and "was not written by tinyvae" in err and "nothing was deleted" in err
    )
    assert snapshot(folder) == before


def test_overwrite_refuses_a_real_run_that_holds_foreign_files_and_lists_them(finished_run, tmp_path, capsys):
    """A genuine run with a user's notes and a sub-folder inside: refused, both named, nothing deleted."""
    run = copy_run(finished_run, tmp_path / "run")
    (run / "notes.txt").write_text("mine")
    (run / "analysis").mkdir()
    (run / "analysis" / "plot.py").write_text("mine too")
    before = snapshot(run)
    assert train_run(run, "--overwrite") == 2
    err = capsys.readouterr().err
    assert "holds files a tinyvae run does not write, which would be lost: analysis/, notes.txt" in err
    assert snapshot(run) == before


def test_overwrite_replaces_a_run_holding_only_run_files(finished_run, tmp_path):
    """Every file of the old run is replaced: a figure the new run does not draw (--no-plots) is gone, the
    config is the new run's, and the folder itself stays."""
    run = copy_run(finished_run, tmp_path / "run")
    (run / "samples.png").write_bytes(b"old figure")
    assert train_run(run, "--overwrite", "--seed", "7") == 0
    assert not (run / "samples.png").exists()
    assert json.loads((run / "config.json").read_text())["settings"]["seed"] == 7
    assert rundir.foreign_entries(run) == []


def test_every_figure_the_code_writes_is_a_run_file():
    """--overwrite removes figures by name, so a figure added to plots.py or cli.py without being listed in
    rundir.FIGURE_NAMES would make --overwrite refuse the runs that have it: this test names it first."""
    source = Path(cli.__file__).parent
    written = set()
    for module in ("plots.py", "cli.py"):
        written |= set(re.findall(r'"([a-z_]+\.png)"', (source / module).read_text()))
    assert written and written <= set(rundir.FIGURE_NAMES)


def test_a_symlinked_out_is_refused_and_its_target_untouched(finished_run, tmp_path, capsys):
    target = copy_run(finished_run, tmp_path / "real")
    link = tmp_path / "link"
    link.symlink_to(target)
    before = snapshot(target)
    assert train_run(link, "--overwrite") == 2
    assert f"--out {link} is a symbolic link (to {target})" in capsys.readouterr().err
    assert snapshot(target) == before


@pytest.mark.parametrize(
    "make, message",
    [
        (lambda tmp: (tmp / "file").write_text("x") and tmp / "file", "is an existing file"),
        (
            lambda tmp: (tmp / "file").write_text("x") and tmp / "file" / "run",
            "which is a file, not a folder",
        ),
    ],
    ids=["existing file", "under a file"],
)
def test_an_out_that_cannot_be_a_folder_is_refused(tmp_path, capsys, make, message):
    out = make(tmp_path)
    assert train_run(out) == 2
    assert message in capsys.readouterr().err
    assert (tmp_path / "file").read_text() == "x"


def test_an_unwritable_parent_or_read_only_run_is_refused_before_training(
    finished_run, tmp_path, capsys, monkeypatch
):
    """Permissions are simulated (the tests may run as root, for whom every folder is writable): a parent
    or a run directory the user cannot write is refused up front; a resume never trains an epoch first."""
    run = copy_run(finished_run, tmp_path / "run")
    before = snapshot(run)
    denied = {str(tmp_path / "locked"), str(run)}
    (tmp_path / "locked").mkdir()
    real_access = os.access
    monkeypatch.setattr(rundir.os, "access", lambda p, mode: str(p) not in denied and real_access(p, mode))
    assert train_run(tmp_path / "locked" / "new") == 2
    assert f"its parent folder {tmp_path / 'locked'} is not writable by this user" in capsys.readouterr().err
    assert train_run(run, "--resume", epochs=3) == 2
    assert f"the run directory {run} is not writable by this user" in capsys.readouterr().err
    assert snapshot(run) == before
    assert not (tmp_path / "locked" / "new").exists()


# ---------------------------------------------------------------------------------------------------------
# One writer per run directory


def test_the_lock_refuses_a_second_holder_and_names_the_first(tmp_path):
    first = rundir.RunLock(str(tmp_path), "tinyvae train --out first").acquire()
    with pytest.raises(
        rundir.RunDirError, match=rf"in use by process {os.getpid()} \(tinyvae train --out first\)"
    ):
        rundir.RunLock(str(tmp_path), "tinyvae train --resume").acquire()
    first.release()
    rundir.RunLock(str(tmp_path), "again").acquire().release()  # released: free again


def test_a_running_trainer_excludes_other_writers_but_not_readers_and_dies_without_a_stale_lock(
    tmp_path, capsys
):
    """While one `train` runs, a second `train` into the same folder (new, --resume, --overwrite) is refused
    with the first one's pid; `evaluate` runs alongside. After the first is SIGKILLed its lock is gone with
    it (the OS drops flock locks), and --resume continues the run."""
    out = tmp_path / "run"
    process = start_training(out)
    try:
        wait_for(lambda: (out / "best.npz").is_file(), process)
        capsys.readouterr()
        for extra in ([], ["--resume"], ["--overwrite"]):
            assert train_run(out, *extra) == 2
            err = capsys.readouterr().err
            assert f"run directory {out} " in err
            assert re.search(rf"(in use by process {process.pid} |already exists)", err), err
        assert train_run(out, "--resume") == 2  # the lock, not the folder check, refuses a resume
        assert f"in use by process {process.pid} (tinyvae train" in capsys.readouterr().err
        assert tinyvae("evaluate", out, "--k", 5, "--limit", 20) == 0
    finally:
        process.kill()
        process.communicate()
    meta, _, _ = checkpoint.read_checkpoint(str(out / "last.npz"))
    assert train_run(out, "--resume", epochs=meta["epoch"] + 1) == 0


def test_two_trainers_started_together_never_mix_one_run(tmp_path):
    """Two `train --out same` processes at once: one trains, the other is refused (exit 2), and the run's
    config.json and checkpoints come from the same process (the same seed)."""
    out = tmp_path / "run"
    processes = [start_training(out, "--seed", str(seed), epochs=3) for seed in (1, 2)]
    results = [p.communicate(timeout=120) + (p.returncode,) for p in processes]
    statuses = sorted(status for _, _, status in results)
    assert statuses == [0, 2], results
    winner = [seed for seed, (_, _, status) in zip((1, 2), results, strict=True) if status == 0][0]
    config = json.loads((out / "config.json").read_text())
    meta, _, _ = checkpoint.read_checkpoint(str(out / "last.npz"))
    assert config["settings"]["seed"] == winner and meta["epoch"] == 3


# ---------------------------------------------------------------------------------------------------------
# A refused start leaves nothing behind


@pytest.mark.parametrize(
    "extra, message",
    [
        (["--data", "mnist", "--data-dir", "{tmp}/nowhere"], "could not find"),
        (["--hidden", "1000000000"], "GiB, more than the"),
        (["--latent-dim", "1000000000000"], "GiB, more than the"),
        (["--model", "vqvae", "--codebook-size", "1000000000000"], "GiB, more than the"),
        (["--model", "iwae", "--k", "1000000000000"], "GiB, more than the"),
        (["--model", "mixture", "--components", "1000000000000"], "GiB, more than the"),
        (["--model", "flow", "--flow-steps", "1000000000000"], "flow_steps must be an integer from 0 to 1,"),
        (["--model", "flow", "--flow-steps", "100000000"], "flow_steps must be an integer from 0 to 1,"),
        (["--model", "hvae", "--latent-dim", "1000000"], "GiB, more than the"),
        (["--limit", "1000000000000"], "GiB, more than the"),
        (["--limit", "100000000"], "at most 10,000,000"),
        (["--seed", "-1"], "argument --seed: expected a seed in 0 .. 2\\*\\*63 - 1, got -1"),
        (["--resume", "--overwrite"], "--resume and --overwrite contradict each other"),
    ],
    ids=[
        "no data",
        "hidden",
        "latent",
        "codebook",
        "k",
        "components",
        "flow steps",
        "flow steps 1e8",
        "hvae latent",
        "limit",
        "toy limit",
        "seed",
        "both",
    ],  # fmt: skip
)
def test_a_refused_start_writes_nothing(tmp_path, capsys, extra, message):
    """Each is refused with exit 2 in well under a second (no allocation, no hang) and no folder is made."""
    out = tmp_path / "new"
    started = time.monotonic()
    status = tinyvae("train", *TRAIN, "--out", out, *[a.format(tmp=tmp_path) for a in extra])
    assert status == 2
    assert re.search(message, capsys.readouterr().err)
    assert time.monotonic() - started < 5
    assert not out.exists()


@pytest.mark.parametrize(
    "args, message",
    [
        (["sample", "{run}", "--n", "1000000000"], "argument --n: expected at most 10,000"),
        (["reconstruct", "{run}", "--n", "1000000000"], "argument --n: expected at most 10,000"),
        (
            ["interpolate", "{run}", "--steps", "1000000000"],
            "argument --steps: expected at most 1,000 points",
        ),
        (["evaluate", "{run}", "--k", "1000000000000"], "argument --k: expected at most 100,000"),
    ],
    ids=["sample", "reconstruct", "interpolate", "evaluate"],
)
def test_counts_too_large_for_a_figure_or_a_lifetime_are_refused(finished_run, capsys, args, message):
    before = snapshot(finished_run)
    assert tinyvae(*[a.format(run=finished_run) for a in args]) == 2
    assert message in capsys.readouterr().err
    assert snapshot(finished_run) == before


def test_ctrl_c_in_the_first_epoch_clears_the_new_run_and_promises_no_checkpoint(tmp_path):
    """Interrupted before any epoch finished (mnist5k with batches of 1: a long first epoch), the new
    folder is removed, the message does not cite a last.npz, and the same command then simply runs."""
    out = tmp_path / "run"
    command = [
        sys.executable,
        "-m",
        "tinyvae",
        "train",
        "--batch-size",
        "1",
        "--no-progress",
        "--out",
        str(out),
    ]
    process = subprocess.Popen(command, env=ENV, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    wait_for(lambda: (out / "config.json").is_file(), process)
    time.sleep(0.3)
    process.send_signal(signal.SIGINT)
    stdout, stderr = process.communicate(timeout=60)
    assert process.returncode == 130, stdout + stderr
    assert "interrupted before the first epoch finished: nothing was saved" in stdout
    assert "last.npz" not in stdout + stderr and "Traceback" not in stderr
    assert not out.exists()
    assert train_run(out) == 0


def test_ctrl_c_works_even_when_the_trainer_inherited_sigint_ignored(tmp_path):
    """A job started in the background of a shell inherits SIGINT ignored; tinyvae installs its handler
    itself, so the interrupt still ends training cleanly (exit 130) and the run resumes."""
    out = tmp_path / "run"
    process = start_training(out, preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_IGN))
    wait_for(lambda: (out / "last.npz").is_file(), process)
    process.send_signal(signal.SIGINT)
    stdout, stderr = process.communicate(timeout=60)
    assert process.returncode == 130, stderr
    assert f"continue with: tinyvae train --out {out} --resume" in stdout


def test_sigterm_is_handled_like_ctrl_c(tmp_path):
    """SIGTERM (a scheduler stopping the job): exit 143 with a message, no traceback, no temporary left,
    and the run resumes from its last finished epoch."""
    out = tmp_path / "run"
    process = start_training(out)
    wait_for(lambda: (out / "last.npz").is_file(), process)
    time.sleep(0.2)
    process.send_signal(signal.SIGTERM)
    stdout, stderr = process.communicate(timeout=60)
    assert process.returncode == 143, stderr
    assert "terminated (SIGTERM); the last finished epoch is saved in" in stdout and "Traceback" not in stderr
    assert not [n for n in os.listdir(out) if n.startswith(checkpoint.TEMPORARY_PREFIX)]
    meta, _, _ = checkpoint.read_checkpoint(str(out / "last.npz"))
    assert train_run(out, "--resume", epochs=meta["epoch"] + 1) == 0


@pytest.mark.parametrize("command", ["evaluate", "figures"])
def test_ctrl_c_during_evaluate_or_the_figures_exits_130_without_a_traceback(
    finished_run, tmp_path, capsys, monkeypatch, command
):
    def interrupted(*args, **kwargs):
        raise KeyboardInterrupt

    if command == "evaluate":
        monkeypatch.setattr("tinyvae.evaluate.active_units", interrupted)
        status = tinyvae("evaluate", finished_run, "--k", 5, "--limit", 10)
    else:
        monkeypatch.setattr("tinyvae.plots.plot_run", interrupted)
        status = tinyvae("train", *TRAIN[:-1], "--epochs", 1, "--out", tmp_path / "run")
    assert status == 130
    captured = capsys.readouterr()
    assert "interrupted" in captured.out + captured.err and "Traceback" not in captured.err
    if command == "figures":
        assert "training had finished" in captured.out and "the figures are incomplete" in captured.out
    if command == "figures":  # the checkpoint is whole and the lock was released
        assert train_run(tmp_path / "run", "--resume", epochs=2) == 0


# ---------------------------------------------------------------------------------------------------------
# A full disk


def test_a_full_disk_at_the_first_save_is_a_message_and_leaves_nothing(tmp_path):
    """`ulimit -f` small enough for config.json but not for a checkpoint: the write fails with EFBIG
    (Python ignores SIGXFSZ), the command says so with exit 1, and the run that saved nothing is removed."""
    out = tmp_path / "run"

    def small_files():
        resource.setrlimit(resource.RLIMIT_FSIZE, (8192, 8192))

    process = start_training(out, epochs=2, preexec_fn=small_files)
    stdout, stderr = process.communicate(timeout=120)
    assert process.returncode == 1, stdout + stderr
    assert f"error: could not write to {out}: File too large" in stderr
    assert "no checkpoint was saved, so none is kept" in stderr and "Traceback" not in stderr
    assert not out.exists()


def test_metrics_never_run_ahead_of_the_last_checkpoint_when_a_save_fails(tmp_path, capsys, monkeypatch):
    """The third checkpoint write (epoch 2's last.npz, after epoch 1's last and best) fails like a full
    disk: exit 1 naming the last complete checkpoint, and metrics.jsonl lists no epoch beyond it."""
    calls = []
    real_save = train.save_checkpoint

    def failing_save(path, *args, **kwargs):
        calls.append(path)
        if len(calls) == 3:
            raise OSError(errno.ENOSPC, "No space left on device")
        return real_save(path, *args, **kwargs)

    monkeypatch.setattr(train, "save_checkpoint", failing_save)
    out = tmp_path / "run"
    assert train_run(out, epochs=4) == 1
    err = capsys.readouterr().err
    assert f"could not write to {out}: No space left on device" in err
    assert f"the last complete checkpoint is {out / 'last.npz'} (epoch 1)" in err
    epochs = [json.loads(row)["epoch"] for row in (out / "metrics.jsonl").read_text().splitlines()]
    assert epochs == [1]


# ---------------------------------------------------------------------------------------------------------
# --resume continues the recorded run


def test_resume_refuses_flags_that_change_the_run_and_names_each(finished_run, tmp_path, capsys):
    run = copy_run(finished_run, tmp_path / "run")
    before = snapshot(run)
    status = tinyvae(
        "train", *TRAIN, "--out", run, "--resume", "--model", "iwae", "--latent-dim", "5", "--hidden", "8,8"
    )
    assert status == 2
    err = capsys.readouterr().err
    assert "--model iwae (recorded: vae)" in err and "--latent-dim 5 (recorded: 2)" in err
    assert (
        "--hidden 8,8 (recorded: [64, 64])" in err and "only --epochs, --lr, --batch-size may change" in err
    )
    assert snapshot(run) == before


def test_resume_applies_and_records_a_new_lr_batch_size_and_epochs(finished_run, tmp_path):
    run = copy_run(finished_run, tmp_path / "run")
    assert json.loads((run / "config.json").read_text())["settings"]["batch_size"] == 128
    assert (
        tinyvae(
            "train",
            "--data",
            "ring",
            "--limit",
            128,
            "--no-progress",
            "--no-plots",
            "--batch-size",
            64,
            "--lr",
            "0.01",
            "--epochs",
            2,
            "--out",
            run,
            "--resume",
        )
        == 0
    )
    config = json.loads((run / "config.json").read_text())
    assert config["format"] == rundir.RUN_FORMAT
    assert config["settings"]["lr"] == 0.01 and config["settings"]["batch_size"] == 64
    assert config["settings"]["epochs"] == 2
    assert config["resumes"] == [
        {"after_epoch": 1, "changed": {"epochs": [1, 2], "batch_size": [128, 64], "lr": [0.001, 0.01]}}
    ]
    _, _, moments = checkpoint.read_checkpoint(str(run / "last.npz"))
    assert int(moments["steps"]) == 1 + 2  # epoch 2 ran 128 / 64 = 2 steps


# ---------------------------------------------------------------------------------------------------------
# config.json, checked field by field


def _edits():
    yield "not json", lambda c: "{not json"
    yield "not an object", lambda c: "[1, 2]"
    yield "huge integer", lambda c: '{"settings": ' + "9" * 5000 + "}"
    for field in ("model", "data", "epochs", "lr", "seed", "pixels", "limit", "model_config"):
        yield (
            f"{field} missing",
            lambda c, f=field: {**c, "settings": {k: v for k, v in c["settings"].items() if k != f}},
        )
    bad = {"model": "gan", "epochs": "3", "lr": -1, "seed": -1, "limit": 0, "pixels": 5, "data_dir": 3,
           "model_config": [], "data": None, "batch_size": True}  # fmt: skip
    for field, value in bad.items():
        yield f"{field} = {value!r}", lambda c, f=field, v=value: {**c, "settings": {**c["settings"], f: v}}
    yield "no marker", lambda c: {k: v for k, v in c.items() if k not in ("format", "environment")}


EDITS = dict(_edits())


@pytest.mark.parametrize("case", list(EDITS))
@pytest.mark.parametrize("command", ["evaluate", "resume"])
def test_a_damaged_config_json_is_a_message_naming_the_field(finished_run, tmp_path, capsys, case, command):
    run = copy_run(finished_run, tmp_path / "run")
    config = json.loads((run / "config.json").read_text())
    edited = EDITS[case](config)
    (run / "config.json").write_text(edited if isinstance(edited, str) else json.dumps(edited))
    before = snapshot(run)
    if command == "evaluate":
        status = tinyvae("evaluate", run, "--k", 5, "--limit", 10)
    else:
        status = train_run(run, "--resume", epochs=2)
    err = capsys.readouterr().err
    assert status == 2, err
    field = case.split()[0]
    expected = {
        "not": "cannot be read as JSON" if case == "not json" else "must hold a JSON object",
        "huge": "cannot be read as JSON",
        "no": "was not written by tinyvae",
    }.get(field, f"settings.{field} ")
    assert expected in err and "Traceback" not in err
    assert snapshot(run) == before


def test_a_run_made_before_the_marker_and_batch_size_were_recorded_still_works(finished_run, tmp_path):
    """Runs of tinyvae 0.1.0 before issue 10 have no "format" field and no settings.batch_size: they are
    recognised by their environment.tinyvae version, resume with the batch size they trained with (128),
    and --overwrite may replace them."""
    run = copy_run(finished_run, tmp_path / "run")
    config = json.loads((run / "config.json").read_text())
    del config["format"], config["format_version"], config["settings"]["batch_size"]
    (run / "config.json").write_text(json.dumps(config))
    assert rundir.read_settings(str(run))["batch_size"] == 128
    assert train_run(run, "--resume", epochs=2) == 0
    assert train_run(run, "--overwrite") == 0


# ---------------------------------------------------------------------------------------------------------
# The backend named in the environment


@pytest.mark.parametrize("value", ["garbage", "cupy"])
def test_an_unusable_backend_is_a_message(tmp_path, value):
    env = dict(ENV, TINYVAE_BACKEND=value, CUDA_VISIBLE_DEVICES="")
    for command in (["info"], ["train", *TRAIN, "--out", str(tmp_path / "run")]):
        result = subprocess.run(
            [sys.executable, "-m", "tinyvae", *command], env=env, capture_output=True, text=True, timeout=60
        )
        assert result.returncode == 2, result.stderr
        assert f"tinyvae: error: TINYVAE_BACKEND={value}: " in result.stderr
        assert "Traceback" not in result.stderr
    assert not (tmp_path / "run").exists()


# ---------------------------------------------------------------------------------------------------------
# A checkpoint of the same model but other dimensions


@pytest.mark.parametrize("command", ["evaluate", "sample", "reconstruct", "interpolate", "plot", "resume"])
def test_a_checkpoint_of_other_dimensions_is_refused_by_every_command(
    finished_run, tmp_path, capsys, command
):
    """best.npz and last.npz of a 5-dimensional VAE copied into a 2-dimensional run: every command that
    loads them says which array does not fit and how the configs differ, instead of using the wrong model."""
    other = tmp_path / "other"
    assert train_run(other, "--latent-dim", "5") == 0
    run = copy_run(finished_run, tmp_path / "run")
    for name in ("best.npz", "last.npz"):
        (run / name).write_bytes((other / name).read_bytes())
    before = snapshot(run)
    capsys.readouterr()
    status = train_run(run, "--resume", epochs=2) if command == "resume" else tinyvae(command, run)
    err = capsys.readouterr().err
    assert status == 2, err
    assert "does not fit the expected 'vae' model" in err and "z_dim 5 (expected 2)" in err
    assert snapshot(run) == before


# ---------------------------------------------------------------------------------------------------------
# Cases an adversarial review found (each failed before its fix)


def test_a_symbolic_link_at_the_lock_is_refused_and_its_target_untouched(tmp_path, capsys):
    precious = tmp_path / "precious.txt"
    precious.write_text("mine")
    run = tmp_path / "run"
    run.mkdir()
    (run / rundir.LOCK_NAME).symlink_to(precious)
    assert train_run(run) == 2
    assert f"{run / rundir.LOCK_NAME} is a symbolic link" in capsys.readouterr().err
    assert precious.read_text() == "mine"


def test_figures_replace_a_symbolic_link_instead_of_writing_through_it(finished_run, tmp_path):
    precious = tmp_path / "precious.txt"
    precious.write_text("mine")
    run = copy_run(finished_run, tmp_path / "run")
    (run / "samples.png").symlink_to(precious)
    assert tinyvae("sample", run) == 0
    assert precious.read_text() == "mine"
    assert not (run / "samples.png").is_symlink() and (run / "samples.png").read_bytes()[:4] == b"\x89PNG"


def test_a_failed_figure_write_is_a_message_and_keeps_the_old_figure(
    finished_run, tmp_path, capsys, monkeypatch
):
    """A full disk while writing samples.png: exit 1 with the errno's words, the previous figure whole."""
    run = copy_run(finished_run, tmp_path / "run")
    assert tinyvae("sample", run) == 0
    before = (run / "samples.png").read_bytes()

    def full_disk(path, data):
        raise OSError(errno.ENOSPC, "No space left on device", path)

    monkeypatch.setattr("tinyvae.figures.atomic_write_bytes", full_disk)
    capsys.readouterr()
    assert tinyvae("sample", run, "--seed", "3") == 1
    err = capsys.readouterr().err
    assert "tinyvae sample: error: could not write or read" in err and "No space left on device" in err
    assert "Traceback" not in err and (run / "samples.png").read_bytes() == before


def test_overwrite_keeps_the_old_run_until_the_new_one_has_a_checkpoint(finished_run, tmp_path, capsys):
    """A new run that diverges in its first epoch gives the old run back, byte for byte."""
    run = copy_run(finished_run, tmp_path / "run")
    before = snapshot(run)
    assert train_run(run, "--overwrite", "--lr", "1e6") == 1
    assert "no checkpoint was saved before it diverged" in capsys.readouterr().err
    assert snapshot(run) == before
    assert (
        train_run(run, "--overwrite", "--seed", "4") == 0
    )  # a good one replaces it, and nothing is left aside
    assert not (run / rundir.REPLACED_NAME).exists()
    assert json.loads((run / "config.json").read_text())["settings"]["seed"] == 4


def test_overwrite_that_cannot_move_a_file_leaves_the_old_run_whole(
    finished_run, tmp_path, capsys, monkeypatch
):
    """A file the system will not let go (an immutable file, say): refused, and every file is back."""
    run = copy_run(finished_run, tmp_path / "run")
    before = snapshot(run)
    real_rename = os.rename

    def stuck(source, target):
        if str(source).endswith("best.npz"):
            raise PermissionError(errno.EPERM, "Operation not permitted", str(source))
        real_rename(source, target)

    monkeypatch.setattr(rundir.os, "rename", stuck)
    assert train_run(run, "--overwrite") == 2
    err = capsys.readouterr().err
    assert "cannot move" in err and "best.npz aside (Operation not permitted)" in err
    assert "the old run is left as it was" in err
    assert snapshot(run) == before


def test_only_the_trainers_own_temporaries_are_cleaned(finished_run, tmp_path):
    """A resume removes a killed save's `.tmp-XXXXXXXXlast.npz`, but neither evaluate's in-flight temporary
    nor a user's own `.tmp-notes.txt`."""
    run = copy_run(finished_run, tmp_path / "run")
    (run / ".tmp-abcd1234last.npz").write_bytes(b"half a checkpoint")
    (run / ".tmp-abcd1234evaluation.json").write_text("{")
    (run / ".tmp-notes.txt").write_text("mine")
    assert train_run(run, "--resume", epochs=2) == 0
    assert not (run / ".tmp-abcd1234last.npz").exists()
    assert (run / ".tmp-abcd1234evaluation.json").exists() and (run / ".tmp-notes.txt").read_text() == "mine"


def test_a_refused_run_removes_the_folders_it_made(tmp_path):
    out = tmp_path / "deep" / "x" / "y"
    assert train_run(out, "--lr", "1e6") == 1
    assert not (tmp_path / "deep").exists()


def test_a_failed_resume_leaves_config_json_as_it_was(finished_run, tmp_path):
    run = copy_run(finished_run, tmp_path / "run")
    before = (run / "config.json").read_bytes()
    assert train_run(run, "--resume", "--lr", "1e6", epochs=3) == 1
    assert (run / "config.json").read_bytes() == before
    assert train_run(run, "--resume", epochs=2) == 0  # and a plain resume then trains with the recorded lr


def test_resume_refuses_fewer_epochs_than_done(finished_run, tmp_path, capsys):
    run = copy_run(finished_run, tmp_path / "run")
    assert train_run(run, "--resume", epochs=2) == 0
    before = snapshot(run)
    assert train_run(run, "--resume", epochs=1) == 2
    assert "--epochs 1: the run in" in capsys.readouterr().err
    assert snapshot(run) == before


def test_resume_checks_model_options_against_the_recorded_model(tmp_path, capsys):
    out = tmp_path / "iwae"
    assert train_run(out, "--model", "iwae", "--k", "3") == 0
    assert train_run(out, "--resume", "--k", "3", epochs=2) == 0  # the recorded value: no conflict
    assert train_run(out, "--resume", "--k", "4", epochs=3) == 2
    assert "--k 4 (recorded: 3)" in capsys.readouterr().err
    vae = tmp_path / "vae"
    assert train_run(vae) == 0
    assert train_run(vae, "--resume", "--k", "4", epochs=2) == 2
    assert "--k does not apply to --model vae" in capsys.readouterr().err


def test_a_diverging_vq_vae_is_a_divergence_not_a_traceback(tmp_path, capsys):
    """The codebook search refuses a NaN codebook with a ValueError; with the weights non-finite that is the
    run diverging: exit 1, the parameter named."""
    assert train_run(tmp_path / "vq", "--model", "vqvae", "--lr", "1e300", epochs=3) == 1
    err = capsys.readouterr().err
    assert "training diverged" in err and "Traceback" not in err


@pytest.mark.parametrize(
    "payload, message",
    [
        ("[" * 100_000 + "]" * 100_000, "it is nested too deeply"),
        ('{"format": "tinyvae-run", "format_version": 99, "settings": {}}', "run format version 99"),
    ],
    ids=["deep json", "future format"],
)
def test_config_json_that_python_cannot_or_should_not_read(finished_run, tmp_path, capsys, payload, message):
    run = copy_run(finished_run, tmp_path / "run")
    (run / "config.json").write_text(payload)
    assert tinyvae("evaluate", run, "--k", 5, "--limit", 10) == 2
    assert message in capsys.readouterr().err


@pytest.mark.parametrize("out", ["", "{link}/", "{link}/."], ids=["empty", "link slash", "link dot"])
def test_an_empty_out_or_a_link_spelled_as_a_folder_is_refused(finished_run, tmp_path, capsys, out):
    target = copy_run(finished_run, tmp_path / "real")
    (tmp_path / "link").symlink_to(target)
    before = snapshot(target)
    assert train_run(out.format(link=tmp_path / "link"), "--overwrite") == 2
    assert re.search("empty path|is a symbolic link", capsys.readouterr().err)
    assert snapshot(target) == before


def test_sighup_is_handled_like_sigterm(tmp_path):
    out = tmp_path / "run"
    process = start_training(out)
    wait_for(lambda: (out / "last.npz").is_file(), process)
    process.send_signal(signal.SIGHUP)
    stdout, stderr = process.communicate(timeout=60)
    assert process.returncode == 143, stderr
    assert "terminated (SIGHUP); the last finished epoch is saved in" in stdout


def test_data_dir_on_a_toy_and_a_checkpoint_that_is_a_folder_are_named(finished_run, tmp_path, capsys):
    assert train_run(tmp_path / "new", "--data-dir", str(tmp_path)) == 2
    assert "--data-dir applies to mnist and fashion-mnist, not to --data ring" in capsys.readouterr().err
    run = copy_run(finished_run, tmp_path / "run")
    (run / "best.npz").unlink()
    (run / "best.npz").mkdir()
    assert tinyvae("sample", run, "--checkpoint", "best") == 2
    assert "best.npz: not a regular file" in capsys.readouterr().err


def test_config_json_edits_found_by_the_review_are_messages(finished_run, tmp_path, capsys):
    """A toy run's limit edited to 10**12 (evaluate would generate a trillion points) and a 'resumes' that
    is not a list (a resume with a changed --lr appends to it): one-line errors, nothing changed."""
    run = copy_run(finished_run, tmp_path / "run")
    config = json.loads((run / "config.json").read_text())
    config["settings"]["limit"] = 10**12
    (run / "config.json").write_text(json.dumps(config))
    assert tinyvae("evaluate", run, "--k", 5) == 2
    assert "at most 10,000,000" in capsys.readouterr().err
    config["settings"]["limit"] = 128
    config["resumes"] = "x"
    (run / "config.json").write_text(json.dumps(config))
    before = snapshot(run)
    assert train_run(run, "--resume", "--lr", "0.002", epochs=2) == 2
    assert "'resumes' must be a list of changes, found str" in capsys.readouterr().err
    assert snapshot(run) == before


# ---------------------------------------------------------------------------------------------------------
# --resume continues on the training data the run was trained on


def _edit_settings(run, **changes):
    """Rewrite the run's config.json with settings changed (None: the key removed, as in older runs)."""
    path = run / "config.json"
    payload = json.loads(path.read_text())
    for key, value in changes.items():
        if value is None:
            payload["settings"].pop(key, None)
        else:
            payload["settings"][key] = value
    path.write_text(json.dumps(payload))


def test_a_run_records_how_many_training_examples_it_used(finished_run):
    settings = json.loads((finished_run / "config.json").read_text())["settings"]
    assert settings["train_examples"] == 128  # --limit 128 of the ring's 10,000 points


def test_resume_refuses_a_training_split_of_another_size_and_changes_nothing(finished_run, tmp_path, capsys):
    """A run whose recorded count differs from what its data gives now (files replaced, or a tinyvae that
    cuts the split differently) is not continued on the other data; the run directory is left as it was."""
    run = copy_run(finished_run, tmp_path / "run")
    _edit_settings(run, train_examples=100)
    before = snapshot(run)
    assert train_run(run, "--resume", epochs=2) != 0
    error = capsys.readouterr().err
    assert "trained on 100 examples of ring, but its training split now gives 128" in error, error
    assert snapshot(run) == before


def test_an_older_run_without_the_count_still_resumes(finished_run, tmp_path):
    run = copy_run(finished_run, tmp_path / "run")
    _edit_settings(run, train_examples=None)
    assert train_run(run, "--resume", epochs=2) == 0
    assert [row.split(",")[0] for row in (run / "metrics.csv").read_text().splitlines()[1:]] == ["1", "2"]


def test_an_older_shapes_run_resumes_on_the_9000_images_it_trained_on(tmp_path, capsys):
    """Until 2026-11-27 the shapes' train split was 9,000 images, today's first 9,000; a run from then (no
    recorded count, no --limit below 9,000) continues on those, not on the whole grid."""
    run = tmp_path / "shapes"
    flags = ["--data", "shapes", "--limit", "9500", "--no-progress", "--no-plots", "--out", run]
    assert tinyvae("train", *flags, "--epochs", "1", "--hidden", "8", "--latent-dim", "2") == 0
    assert "9500 train / 1000 test examples" in capsys.readouterr().out
    _edit_settings(run, train_examples=None)
    assert tinyvae("train", *flags, "--epochs", "2", "--resume") == 0
    assert "9000 train / 1000 test examples" in capsys.readouterr().out
