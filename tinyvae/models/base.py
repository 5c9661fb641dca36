"""What every model shares: its config, the decoder likelihood, the loss result, and the interface.

Every model answers the same calls, so training, evaluation and plotting treat them alike:

* ``model.loss(x, rng, y=None)`` → :class:`LossResult` with ``.loss`` (scalar Tensor to minimise),
  ``.elbo`` (per-example NumPy array, the bound being optimised, in nats) and named terms (``.recon``,
  ``.kl``, ...), each a per-example array.
* ``model.encode(x)``, ``model.decode(z)``, ``model.reconstruct(x)``, ``model.sample(n, rng, y=None)``,
  ``model.interpolate(x_a, x_b, steps, method="linear" | "slerp")``.

Inputs ``x`` are arrays (or Tensors) of shape (B, x_dim); outputs meant for looking at (reconstructions,
samples, interpolations) are NumPy arrays of decoder means: Bernoulli probabilities or Gaussian means.
"""

from __future__ import annotations

import dataclasses
import math
import numbers
from collections.abc import Mapping

import numpy

import tinyvae.functional as F
from tinyvae import nn
from tinyvae.autodiff import no_grad
from tinyvae.tensor import Tensor

LIKELIHOODS = ("bernoulli", "gaussian")


# ---------------------------------------------------------------------------------------------------------
# Config checks, shared by every model's config. Each names the config, the field, the value received and
# what was expected; every mistake is a ValueError (a checkpoint loader catches exactly that).


def _a(value):
    """``an int``, ``a str``: the type of a value, for a message."""
    name = type(value).__name__
    return f"{'an' if name[0] in 'aeiou' else 'a'} {name}"


def _is_integer(value):
    return isinstance(value, int | numpy.integer) and not isinstance(value, bool | numpy.bool_)


def check_integer(config, field, low, label=None):
    """``config.<field>`` an integer (not a bool, not a float such as 8.0) and ``>= low``."""
    value = getattr(config, field)
    if not _is_integer(value) or value < low:
        expected = "a positive integer" if low == 1 and label is None else f"an integer >= {low}"
        raise ValueError(f"{type(config).__name__}: {label or field} must be {expected}, got {value!r}")


def check_number(config, field, low=None, allow_none=False):
    """``config.<field>`` a real number (not a bool or a string), ``>= low`` when given, and finite;
    None too if ``allow_none``. NaN fails the range test, so it reads "must be >= 0, got nan"."""
    value = getattr(config, field)
    name = type(config).__name__
    if value is None and allow_none:
        return
    if not isinstance(value, numbers.Real) or isinstance(value, bool | numpy.bool_):
        expected = "a number" + (" or None" if allow_none else "")
        raise ValueError(f"{name}: {field} must be {expected}, got {value!r} ({_a(value)})")
    if low is not None and not value >= low:
        raise ValueError(f"{name}: {field} must be >= {low:g}, got {value!r}")
    try:
        finite = math.isfinite(value)
    except OverflowError:  # an int beyond float range (JSON can hold one)
        finite = False
    if not finite:
        raise ValueError(f"{name}: {field} must be finite, got {value!r}")


def check_flag(config, field):
    """``config.<field>`` True or False (a string such as "False" would be truthy)."""
    value = getattr(config, field)
    if not isinstance(value, bool | numpy.bool_):
        raise ValueError(
            f"{type(config).__name__}: {field} must be True or False, got {value!r} ({_a(value)})"
        )


def check_choice(config, field, choices):
    """``config.<field>`` one of the names in ``choices``."""
    value = getattr(config, field)
    if not isinstance(value, str) or value not in choices:
        shown = tuple(choices) if isinstance(choices, tuple) else sorted(choices)
        raise ValueError(f"{type(config).__name__}: {field} must be one of {shown}, got {value!r}")


def check_sizes(config, field, example="(400,) or (512, 256)"):
    """``config.<field>`` a tuple of positive integer layer sizes (a list is accepted and made a tuple by
    ``__post_init__``). An int is refused rather than read as one layer: ``hidden=8`` is as likely a typo
    for ``z_dim=8`` as a wish for ``(8,)``, so the message shows how to write the latter."""
    value = getattr(config, field)
    name = type(config).__name__
    if not isinstance(value, tuple):
        hint = f"; write {field}=({value},) for one layer of {value} units" if _is_integer(value) else ""
        raise ValueError(
            f"{name}: {field} must be a tuple of layer sizes such as {example}, got {value!r} "
            f"({_a(value)}){hint}"
        )
    for size in value:
        if not _is_integer(size):
            raise ValueError(f"{name}: {field} sizes must be integers, got {value!r}: {size!r} is {_a(size)}")
    if any(size < 1 for size in value):
        raise ValueError(f"{name}: {field} sizes must be positive, got {value}")


@dataclasses.dataclass
class ModelConfig:
    """The settings a model is built from; saved with checkpoints so a model can be rebuilt from disk."""

    x_dim: int  # features per example, e.g. 784 for 28x28 images
    z_dim: int = 20  # latent dimensions
    hidden: tuple = (400,)  # encoder hidden layer sizes; the decoder mirrors them
    likelihood: str = "bernoulli"  # decoder p(x|z): "bernoulli" (outputs logits) or "gaussian"
    # Gaussian decoder only: a fixed log-variance shared by all pixels, or None to learn one per pixel.
    gaussian_logvar: float | None = 0.0
    activation: str = "relu"  # hidden-layer nonlinearity, a name from tinyvae.nn.ACTIVATIONS
    seed: int = 0  # seeds the weight initialisation
    dtype: str = "float32"  # "float32" to train, "float64" for gradient checks

    def __post_init__(self):
        if isinstance(self.hidden, list):  # as saved in a checkpoint's JSON
            self.hidden = tuple(self.hidden)
        self.validate()
        self.hidden = tuple(int(h) for h in self.hidden)  # NumPy integers become plain ints (JSON-able)

    def validate(self):
        """Refuse every field that a model could not be built from (ValueError naming field and value)."""
        for field in ("x_dim", "z_dim"):
            check_integer(self, field, 1)
        check_sizes(self, "hidden")
        check_choice(self, "likelihood", LIKELIHOODS)
        check_number(self, "gaussian_logvar", allow_none=True)
        check_choice(self, "activation", nn.ACTIVATIONS)
        check_integer(self, "seed", 0)
        check_choice(self, "dtype", ("float32", "float64"))

    def to_dict(self):
        """Plain JSON-able values (tuples become lists)."""
        return {k: list(v) if isinstance(v, tuple) else v for k, v in dataclasses.asdict(self).items()}

    @classmethod
    def from_dict(cls, values):
        """The config from a dict of its fields (as ``to_dict`` writes it); unknown or missing fields and
        bad values are refused with a ValueError naming them."""
        if not isinstance(values, Mapping):
            raise ValueError(f"{cls.__name__}.from_dict: values must be a dict of fields, got {_a(values)}")
        known = {f.name for f in dataclasses.fields(cls)}
        unknown = sorted(set(values) - known)
        if unknown:
            raise ValueError(f"{cls.__name__}: unknown fields {unknown}; known fields are {sorted(known)}")
        required = [
            f.name
            for f in dataclasses.fields(cls)
            if f.default is dataclasses.MISSING and f.default_factory is dataclasses.MISSING
        ]
        missing = [name for name in required if name not in values]
        if missing:
            raise ValueError(f"{cls.__name__}.from_dict: missing required fields {missing}")
        return cls(**values)


class LossResult:
    """The outcome of ``model.loss``: ``.loss`` (scalar Tensor), ``.elbo`` and named per-example terms.

    ``.elbo`` is None for a model that defines no density (the plain autoencoder). ``.terms`` lists the
    names of the terms, so a progress bar or a CSV writer can show them all.
    """

    def __init__(self, loss, elbo, **terms):
        self.loss = loss
        self.elbo = None if elbo is None else _as_numpy(elbo)
        self.terms = {name: _as_numpy(value) for name, value in terms.items()}
        for name, value in self.terms.items():
            setattr(self, name, value)

    def summary(self):
        """{name: batch mean} of the loss, the ELBO and every term, as floats."""
        values = {"loss": float(self.loss.item())}
        if self.elbo is not None:
            values["elbo"] = float(self.elbo.mean())
        values.update({name: float(numpy.mean(v)) for name, v in self.terms.items()})
        return values


def _as_numpy(value):
    if isinstance(value, Tensor):
        value = value.data
    return value.get() if hasattr(value, "get") else numpy.asarray(value)


class DecoderLikelihood(nn.Module):
    """p(x | decoder output), the same for every model: Bernoulli on logits or Gaussian on means.

    For a Gaussian with ``gaussian_logvar=None`` the per-pixel log-variance is a parameter of this module.
    """

    def __init__(self, config):
        super().__init__()
        self.kind = config.likelihood
        self.fixed_logvar = config.gaussian_logvar
        if self.kind == "gaussian" and self.fixed_logvar is None:
            self.logvar = nn.Parameter(numpy.zeros(config.x_dim, dtype=config.dtype))

    def log_prob(self, decoded, x):
        """log p(x | z) summed over the features: shape (...,) from decoded of shape (..., x_dim)."""
        if self.kind == "bernoulli":
            return F.bernoulli_log_prob(decoded, x).sum(axis=-1)
        logvar = self.logvar if self.fixed_logvar is None else float(self.fixed_logvar)
        return F.gaussian_log_prob(x, decoded, logvar).sum(axis=-1)

    def mean(self, decoded):
        """E[x | z] as an array: probabilities for Bernoulli, the means for Gaussian."""
        data = decoded.data if isinstance(decoded, Tensor) else decoded
        if self.kind == "bernoulli":
            return F.sigmoid(Tensor(data)).data
        return data


def slerp(a, b, t):
    """Spherical interpolation between rows of a and b at fraction t (White 2016, "Sampling Generative
    Networks"): it keeps the norm that a Gaussian latent typically has, where a straight line between
    two typical points passes through the low-norm, atypical middle. Falls back to a line when a ∥ b."""
    norms = numpy.linalg.norm(a, axis=-1) * numpy.linalg.norm(b, axis=-1)
    cos = numpy.clip((a * b).sum(axis=-1) / numpy.maximum(norms, 1e-12), -1.0, 1.0)
    omega = numpy.arccos(cos)[..., None]
    sin = numpy.sin(omega)
    safe = numpy.abs(sin) > 1e-6
    spherical = (numpy.sin((1 - t) * omega) * a + numpy.sin(t * omega) * b) / numpy.where(safe, sin, 1.0)
    return numpy.where(safe, spherical, (1 - t) * a + t * b)


class Model(nn.Module):
    """Base class of every model. Subclasses set ``name`` and ``config_class`` and implement ``loss``,
    ``encode``, ``decode_logits`` (the decoder's raw output for latents z), ``latent_mean`` (a point
    estimate of z for x, used by reconstruct and interpolate) and ``sample_latents``."""

    name = "model"
    config_class = ModelConfig
    conditional = False  # True for models that need a label y
    # True when encode(x) returns the (μ, log σ²) of q(z|x) itself against an N(0, I) prior, so per-dimension
    # KLs and I_q(x; z) can be computed from it (tinyvae.evaluate); False for flows, mixtures, hierarchies.
    gaussian_posterior = False

    def __init__(self, config):
        super().__init__()
        if not isinstance(config, self.config_class):
            raise TypeError(
                f"{type(self).__name__} needs a {self.config_class.__name__}, got {type(config).__name__}"
            )
        self.config = config
        self.dtype = numpy.dtype(config.dtype)

    # ----- input checks shared by every model -----
    def check_loss_call(self, x, rng, rng_required=True):
        """The checks every ``loss`` makes on entry, before :meth:`check_x` reads x: x given and not an empty
        batch (the loss is a batch mean: 0/0), and ``rng`` a ``numpy.random.Generator`` when the loss
        samples (``rng_required``), else a Generator, an int seed or None. A few attribute reads: no pass
        over the data."""
        if x is None:
            raise TypeError(
                f"{self.name}.loss: x is None; expected an array of shape (batch, {self.config.x_dim})"
            )
        shape = getattr(x, "shape", None)
        if shape is not None and len(shape) == 2 and shape[0] == 0:
            raise ValueError(
                f"{self.name}.loss: x has 0 examples (shape {tuple(shape)}); the loss averages over the "
                "batch, so it needs at least one example"
            )
        if isinstance(rng, numpy.random.Generator):
            return
        if rng_required:
            got = "None" if rng is None else f"{rng!r} ({_a(rng)})"
            raise TypeError(
                f"{self.name}.loss: rng must be a numpy.random.Generator, since the loss draws its noise "
                f"from it; got {got}. Pass numpy.random.default_rng(seed)"
            )
        if rng is not None and not _is_integer(rng):
            raise TypeError(
                f"{self.name}.loss: rng must be a numpy.random.Generator, an int seed or None, got {_a(rng)}"
            )

    def check_x(self, x):
        """``x`` as a Tensor of shape (B, x_dim) in the model's dtype, or a clear error."""
        if x is None:
            raise TypeError(
                f"{self.name}: x is None; expected an array of shape (batch, {self.config.x_dim})"
            )
        try:
            data = x.data if isinstance(x, Tensor) else numpy.asarray(x)
        except ValueError as error:  # a ragged nested list
            raise ValueError(
                f"{self.name}: x is not an array of shape (batch, {self.config.x_dim}) ({error})"
            ) from None
        if data.ndim != 2 or data.shape[1] != self.config.x_dim:
            raise ValueError(
                f"{self.name}: x has shape {data.shape} but the model expects (batch, {self.config.x_dim})"
            )
        if data.dtype.kind not in "fiub":
            raise TypeError(f"{self.name}: x has dtype {data.dtype}; expected a numeric array")
        tensor = Tensor(data.astype(self.dtype, copy=False))
        if not numpy.isfinite(tensor.numpy()).all():
            raise ValueError(f"{self.name}: x contains NaN or infinite values")
        return tensor

    def check_y(self, y, n):
        """Integer labels of shape (n,) in [0, n_classes) for a conditional model; None otherwise."""
        if not self.conditional:
            return None
        n_classes = self.config.n_classes
        if y is None:
            raise ValueError(f"{self.name}: this model is conditional; pass labels y of shape ({n},)")
        labels = numpy.asarray(y)
        if labels.shape != (n,) or labels.dtype.kind not in "iu":
            raise ValueError(
                f"{self.name}: y must be integer labels of shape ({n},), got shape {labels.shape} "
                f"and dtype {labels.dtype}"
            )
        if n and (labels.min() < 0 or labels.max() >= n_classes):
            raise ValueError(
                f"{self.name}: labels must lie in [0, {n_classes}), got values from {labels.min()} "
                f"to {labels.max()}"
            )
        return labels

    # ----- the shared interface built on the subclass's pieces -----
    def decode(self, z, y=None):
        """E[x | z] as an array (probabilities or means), for latents z of shape (n, z_dim)."""
        with no_grad():
            z = Tensor(numpy.asarray(z, dtype=self.dtype))
            return self.likelihood.mean(self.decode_logits(z, y))

    def reconstruct(self, x, y=None):
        """Decode the latent point estimate of x: E[x | z = latent_mean(x)]."""
        with no_grad():
            x = self.check_x(x)
            y = self.check_y(y, x.shape[0])
            return self.decode(self.latent_mean(x, y), y)

    def sample(self, n, rng, y=None):
        """n new examples: z from the prior, then E[x | z] (decoder means, which show more than noise)."""
        if not isinstance(n, int | numpy.integer) or n < 1:
            raise ValueError(f"{self.name}: n must be a positive integer, got {n!r}")
        y = self.check_y(y if y is None or numpy.ndim(y) else numpy.full(n, y), n)
        with no_grad():
            return self.decode(self.sample_latents(n, rng), y)

    def interpolate(self, x_a, x_b, steps=8, method="linear", y=None):
        """Decoded points along the path between the latents of x_a and x_b (each (x_dim,) or (1, x_dim)).

        ``method="linear"`` walks the straight line; ``"slerp"`` the great circle (see :func:`slerp`).
        Returns an array (steps, x_dim), the first row decoding x_a's latent and the last x_b's.
        """
        if method not in ("linear", "slerp"):
            raise ValueError(f"{self.name}: method must be 'linear' or 'slerp', got {method!r}")
        if not isinstance(steps, int) or steps < 2:
            raise ValueError(f"{self.name}: steps must be an integer >= 2, got {steps!r}")
        with no_grad():
            ends = self.check_x(numpy.concatenate([numpy.reshape(x_a, (1, -1)), numpy.reshape(x_b, (1, -1))]))
            labels = None if y is None else self.check_y(numpy.full(2, y), 2)
            z = numpy.asarray(self.latent_mean(ends, labels))
            t = numpy.linspace(0.0, 1.0, steps)[:, None]  # (steps, 1)
            if method == "linear":
                path = (1 - t) * z[0] + t * z[1]
            else:
                path = slerp(z[0][None], z[1][None], t)
            labels = None if y is None else numpy.full(steps, y)
            return self.decode(path.astype(self.dtype), labels)

    # ----- pieces each model provides -----
    def loss(self, x, rng, y=None):
        raise NotImplementedError

    def encode(self, x, y=None):
        raise NotImplementedError

    def decode_logits(self, z, y=None):
        raise NotImplementedError

    def latent_mean(self, x, y=None):
        raise NotImplementedError

    def sample_latents(self, n, rng):
        """Prior samples (n, z_dim); the standard normal unless a model says otherwise."""
        return rng.standard_normal((n, self.config.z_dim)).astype(self.dtype)


def standard_normal_log_prob(z):
    """log N(z; 0, I) summed over the last axis, as a Tensor."""
    return F.gaussian_log_prob(z, 0.0, 0.0).sum(axis=-1)
