"""Lessons judged by what they teach, at the command line's defaults (issue 12). These need real training,
so they are slow tests (`python -m pytest -m slow`, a minute or two each on 2 cores); the full-run figures
are recorded in benchmarks/RESULTS.md."""

import json

import numpy
import pytest

from tinyvae import checkpoint, data, evaluate, train

pytestmark = pytest.mark.slow


def metrics(out):
    return [json.loads(line) for line in (out / "metrics.jsonl").read_text().splitlines()]


def test_the_vq_vae_at_the_defaults_trains_steadily_and_uses_its_codebook(tmp_path):
    """`tinyvae train --model vqvae`, 30 epochs: after the first three (k-means++ seeding, the codebook
    settling) the training loss never rises by more than 5% over three epochs, the codebook/commitment term
    levels off instead of growing without bound, and the test images use at least half of the K = 64 codes
    (perplexity ≥ 32). Before the EMA default the loss rose 194 → 354 over epochs 5-12."""
    out = train.run(train.RunConfig(model="vqvae", epochs=30, out=tmp_path / "vq", plots=False), log=print)
    rows = metrics(out)
    losses = [row["train_loss"] for row in rows]
    for epoch in range(3, len(losses) - 3):
        assert losses[epoch + 3] <= 1.05 * losses[epoch], (epoch + 1, losses)
    commitment = [row["train_commitment"] for row in rows]
    assert max(commitment[-10:]) <= 1.25 * commitment[19], commitment  # levelling off, not running away
    model, _ = checkpoint.load_model(str(out / "last.npz"))
    test = data.load_dataset("mnist5k", "test", pixels="binarized-static")
    usage = evaluate.codebook_usage(model, test.x)
    assert usage["perplexity"] >= 32, usage["perplexity"]
    assert numpy.isfinite(rows[-1]["test_elbo"])
