"""The small training runs the model tests share: a synthetic dataset with known structure, and a plain
Adam loop that records the ELBO (float32, fixed seeds)."""

import numpy

import tinyvae as tv
from tinyvae import models

# What each model needs beyond the common fields to be built tiny (the smallest sizes it accepts).
TINY_FIELDS = {
    "hvae": {"z_dims": (2, 1)},
    "cvae": {"n_classes": 3},
    "diffusion": {"z_dim": None, "steps": 20},
    "vamp": {"pseudo_inputs": 3},
    "vqvae": {"codebook_size": 8},
    "linear": {"hidden": (), "likelihood": "gaussian"},
}


def tiny_model(name, x_dim, **overrides):
    """A tiny instance of model ``name`` (z = 2, one hidden layer of 4) for x of ``x_dim`` features."""
    fields = {"x_dim": x_dim, "z_dim": 2, "hidden": (4,), "seed": 0, **TINY_FIELDS.get(name, {})}
    return models.build(name, **{**fields, **overrides})


def prototype_dataset(rng, n=512, features=16, classes=4, flip=0.05):
    """n binary vectors, each one of ``classes`` random prototypes with a fraction ``flip`` of its bits
    flipped: (data (n, features) float32, labels (n,), prototypes (classes, features) bool)."""
    prototypes = rng.uniform(size=(classes, features)) < 0.5
    flips = rng.uniform(size=(n, features)) < flip
    labels = rng.integers(classes, size=n)
    return (prototypes[labels] ^ flips).astype(numpy.float32), labels, prototypes


def train(model, data, rng, steps=300, lr=1e-2, batch_size=64, labels=None, window=20):
    """Adam on random minibatches. Returns (mean ELBO over the first ``window`` steps, over the last
    ``window`` steps, the last LossResult)."""
    optimizer = tv.optim.Adam(model.parameters(), lr=lr)
    history = []
    for _ in range(steps):
        rows = rng.integers(len(data), size=batch_size)
        optimizer.zero_grad()
        result = model.loss(data[rows], rng, y=None if labels is None else labels[rows])
        result.loss.backward()
        optimizer.step()
        history.append(result.elbo.mean())
    return numpy.mean(history[:window]), numpy.mean(history[-window:]), result
