"""``shapes``: a dSprites-like image dataset with known generating factors, made in code (no download).

dSprites (Matthey et al. 2017, https://github.com/deepmind/dsprites-dataset) renders white shapes on black
from five independent factors and enumerates every combination, so a representation can be scored by how
well each latent dimension tracks one factor (:mod:`tinyvae.disentanglement`). This is a 28×28 version that
the MLP and conv VAEs take as they take MNIST (x_dim 784, grey levels in [0, 1]):

==========  ======================================================================================
factor      values (:data:`FACTOR_SIZES`)
==========  ======================================================================================
shape       3: square, ellipse, heart (dSprites' three; the index is also the dataset's label)
scale       6: 0.5 … 1.0 of :data:`RADIUS` (7 pixels), evenly spaced (dSprites: 0.5 … 1)
rotation    8: 0°, 11.25°, … 78.75° anticlockwise
x           14: the column of the shape's 15×15 box, 0 … 13 (left to right, 1 pixel apart)
y           14: the row of that box, 0 … 13 (top to bottom)
==========  ======================================================================================

3 · 6 · 8 · 14 · 14 = 28,224 images in all. Rotations span a quarter turn, not dSprites' full turn: a
square turned by 90° is the same image, so over a full turn the rotation of a square could not be read from
its picture and no latent could capture it (a known flaw of dSprites' rotation factor).

**Rendering.** Each shape is an analytic inside-test in its own frame (u, v), scaled so that it fits the
unit disc whatever the rotation: the square ``max(|u|, |v|) ≤ 0.7``, the ellipse ``u² + (v/0.6)² ≤ 1``, the
heart ``(x² + y² − 1)³ − x² y³ ≤ 0`` (Taubin's heart curve) at x = 1.4u, y = 1.4v + 0.12. A pixel's grey
level is the fraction of a 4×4 grid of points inside it that pass the test (supersampling: smooth edges,
values in [0, 1]). Position only translates the picture, so the 3 · 6 · 8 = 144 shape-scale-rotation
pictures are rendered once into 15×15 boxes (:func:`templates`) and pasted at each (x, y): the whole grid
is made in well under a second.

**Splits.** The grid is enumerated in the order of :data:`FACTOR_NAMES` (the index is
``numpy.ravel_multi_index(factors, FACTOR_SIZES)``), permuted once by a Generator seeded with
:data:`SPLIT_SEED`; the first :data:`SIZES` ["test"] (1,000) of the permutation are the test split, the
other 27,224 the train split, as dSprites trains on its whole grid — disjoint by construction, the same on
every machine. (Until 2026-11-27 the train split was the first :data:`LEGACY_TRAIN_SIZE` (9,000) of those
27,224; ``n=9_000`` gives exactly that set, and a run from then resumes on it.)

**Training defaults.** Disentanglement needs far longer training than reconstruction does, so
``tinyvae train --data shapes`` defaults to :data:`RUN_DEFAULTS` (300 epochs, 10 latents) rather than the
image datasets' 30 epochs and 20 latents.
"""

from __future__ import annotations

import numpy

SHAPE_NAMES = ("square", "ellipse", "heart")
FACTOR_NAMES = ("shape", "scale", "rotation", "x", "y")
CATEGORICAL_FACTORS = ("shape",)  # the others are ordered (ordinal): index i + 1 is more than index i
SIDE = 28  # images are SIDE × SIDE
BOX = 15  # a shape is drawn in a BOX × BOX square, pasted at one of SIDE − BOX + 1 positions per axis
RADIUS = 7.0  # pixels: the unit disc of a shape's frame at scale 1 (it fits the box whatever the rotation)
SCALES = numpy.linspace(0.5, 1.0, 6)
ROTATIONS = numpy.deg2rad(numpy.arange(8) * 11.25)  # a quarter turn in 8 steps (see the docstring)
POSITIONS = SIDE - BOX + 1  # 14 values of x and of y
FACTOR_SIZES = (len(SHAPE_NAMES), len(SCALES), len(ROTATIONS), POSITIONS, POSITIONS)
SUPERSAMPLE = 4  # a pixel's grey level is the fraction of SUPERSAMPLE² points in it inside the shape
SPLIT_SEED = 18  # permutes the grid before it is cut into test and train
SIZES = {"train": 27_224, "test": 1_000}  # the whole grid: 1,000 test images, every other one to train
LEGACY_TRAIN_SIZE = 9_000  # the train split until 2026-11-27: the first 9,000 of today's (see "Splits")
# What `tinyvae train --data shapes` uses for the settings its command line leaves unset (the other datasets
# take tinyvae.train.RUN_DEFAULTS). Ten latents for five factors, as in the dSprites studies (Higgins et al.
# 2017, Chen et al. 2018, Locatello et al. 2019). 300 epochs of 27,224 images at batch 128 are ~64,000 Adam
# steps: the β-VAE's axis-aligned code takes that long to form. At the image datasets' 30 epochs of 9,000
# images (~2,100 steps) β = 4 beat the VAE's MIG by +0.013 on average; after 300 epochs by ~+0.1
# (benchmarks/RESULTS.md, "Teaching labs").
RUN_DEFAULTS = {"epochs": 300, "latent_dim": 10}


def inside(shape, u, v):
    """Whether the points (u, v) of a shape's own frame (unit disc = the shape's reach) are inside it."""
    if shape == "square":
        return numpy.maximum(numpy.abs(u), numpy.abs(v)) <= 0.7
    if shape == "ellipse":
        return u**2 + (v / 0.6) ** 2 <= 1.0
    if shape == "heart":
        x, y = 1.4 * u, 1.4 * v + 0.12  # Taubin's heart spans x ∈ ±1.14, y ∈ [−1, 1.24]: shrink and centre
        return (x**2 + y**2 - 1.0) ** 3 - x**2 * y**3 <= 0.0
    raise ValueError(f"shapes: unknown shape {shape!r}; valid shapes are {SHAPE_NAMES}")


def templates():
    """Grey levels (3, 6, 8, BOX, BOX) float32 of every shape × scale × rotation, centred in its box."""
    # Sample points: SUPERSAMPLE² per pixel, at the centres of a regular sub-grid, in pixel units from the
    # box centre; columns run right (+u), rows run down, so v (up) is minus the row offset.
    sub = (numpy.arange(SUPERSAMPLE) + 0.5) / SUPERSAMPLE - 0.5  # (S,) offsets inside a pixel
    offsets = (numpy.arange(BOX)[:, None] + sub[None, :]).ravel() - (BOX - 1) / 2  # (BOX·S,)
    cols, rows = numpy.meshgrid(offsets, offsets)  # (BOX·S, BOX·S) each
    out = numpy.empty((*FACTOR_SIZES[:3], BOX, BOX), dtype=numpy.float32)
    for s, shape in enumerate(SHAPE_NAMES):
        for k, scale in enumerate(SCALES):
            dx, dy = cols / (RADIUS * scale), -rows / (RADIUS * scale)  # unit-disc frame, y up
            for r, angle in enumerate(ROTATIONS):
                # Turn the shape anticlockwise by angle = turn the sample points clockwise by it.
                cos, sin = numpy.cos(angle), numpy.sin(angle)
                u, v = cos * dx + sin * dy, -sin * dx + cos * dy
                hits = inside(shape, u, v).reshape(BOX, SUPERSAMPLE, BOX, SUPERSAMPLE)
                out[s, k, r] = hits.mean(axis=(1, 3))
    return out


def render(factors, boxes=None):
    """Images (N, SIDE·SIDE) float32 in [0, 1] of the factor rows ``factors`` (N, 5) int (indices into
    :data:`FACTOR_SIZES`, in the order of :data:`FACTOR_NAMES`). ``boxes``: :func:`templates`, if at hand."""
    factors = numpy.asarray(factors)
    if factors.ndim != 2 or factors.shape[1] != len(FACTOR_NAMES):
        raise ValueError(
            f"shapes.render: factors must have shape (N, {len(FACTOR_NAMES)}), got {factors.shape}"
        )
    if factors.size and ((factors < 0).any() or (factors >= numpy.array(FACTOR_SIZES)).any()):
        raise ValueError(f"shapes.render: factor indices must lie in [0, {FACTOR_SIZES}) column by column")
    boxes = templates() if boxes is None else boxes
    shape, scale, rotation, x, y = factors.T  # (N,) each
    n = len(factors)
    images = numpy.zeros((n, SIDE, SIDE), dtype=numpy.float32)
    span = numpy.arange(BOX)
    # Paste box i at rows y_i … y_i + BOX − 1 and columns x_i … x_i + BOX − 1, all N at once.
    images[
        numpy.arange(n)[:, None, None], (y[:, None] + span)[:, :, None], (x[:, None] + span)[:, None, :]
    ] = boxes[shape, scale, rotation]  # (N, BOX, BOX)
    return images.reshape(n, SIDE * SIDE)


def split_factors(split):
    """The factor rows (N, 5) int64 of ``split`` ("train" or "test"); see the module docstring."""
    if split not in SIZES:
        raise ValueError(f"shapes: unknown split {split!r}; valid splits are {tuple(SIZES)}")
    order = numpy.random.default_rng(SPLIT_SEED).permutation(int(numpy.prod(FACTOR_SIZES)))
    chosen = (
        order[: SIZES["test"]] if split == "test" else order[SIZES["test"] : SIZES["test"] + SIZES["train"]]
    )
    return numpy.stack(numpy.unravel_index(chosen, FACTOR_SIZES), axis=1).astype(numpy.int64)  # (N, 5)


def make_split(split, n=None):
    """(images (N, 784) float32 in [0, 1], factors (N, 5) int64) of ``split``; the first ``n`` if given."""
    factors = split_factors(split)
    if n is not None:
        factors = factors[:n]
    return render(factors), factors
