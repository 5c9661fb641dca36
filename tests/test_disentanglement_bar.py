"""The disentanglement lesson's claim at the command line's defaults (issue 18's bar), a slow test.

`tinyvae train --data shapes` with no other flag trains 300 epochs with 10 latents (tinyvae/shapes.py,
RUN_DEFAULTS). There the β-VAE (β = 4) must score a Mutual Information Gap at least 0.05 above the VAE's
on the test split: the claim "a heavier KL gives a more disentangled code" that examples/disentanglement.py
and the README teach. Measured on seeds 0, 1, 2: +0.092, +0.105, +0.062 (benchmarks/RESULTS.md, "Teaching
labs"); seed 0 is checked here. The two trainings run side by side, one thread each (~6 minutes on 2 cores).
"""

import json
import os
import subprocess
import sys

import pytest

from tinyvae import checkpoint, data, disentanglement

pytestmark = pytest.mark.slow

MIG_GAP_BAR = 0.05


def test_beta_vae_beats_the_vae_on_mig_at_the_cli_defaults(tmp_path):
    env = dict(os.environ)
    for variable in ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "NUMBA_NUM_THREADS"):
        env[variable] = "1"
    runs = {name: tmp_path / name for name in ("vae", "beta-vae")}
    processes = [
        subprocess.Popen(
            [sys.executable, "-m", "tinyvae", "train", "--data", "shapes", "--model", name, "--seed", "0"]
            + ["--out", str(out), "--no-plots", "--no-progress"],
            env=env,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.PIPE,
            text=True,
        )
        for name, out in runs.items()
    ]
    for process in processes:
        _, errors = process.communicate(timeout=1800)
        assert process.returncode == 0, errors

    test_set = data.load_dataset("shapes", "test", pixels="binarized-static")
    mig = {}
    for name, out in runs.items():
        settings = json.loads((out / "config.json").read_text())["settings"]
        assert settings["epochs"] == 300 and settings["model_config"]["z_dim"] == 10  # the defaults ran
        model, _ = checkpoint.load_model(str(out / "last.npz"))
        mig[name] = disentanglement.mig_of_model(model, test_set)
    assert mig["beta-vae"] - mig["vae"] >= MIG_GAP_BAR, mig
