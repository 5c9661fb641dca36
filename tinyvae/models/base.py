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

import numpy

import tinyvae.functional as F
from tinyvae import nn
from tinyvae.autodiff import no_grad
from tinyvae.tensor import Tensor

LIKELIHOODS = ("bernoulli", "gaussian")


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
        self.hidden = tuple(int(h) for h in self.hidden)
        self.validate()

    def validate(self):
        name = type(self).__name__
        for field in ("x_dim", "z_dim"):
            value = getattr(self, field)
            if not isinstance(value, int | numpy.integer) or isinstance(value, bool) or value < 1:
                raise ValueError(f"{name}: {field} must be a positive integer, got {value!r}")
        if any(h < 1 for h in self.hidden):
            raise ValueError(f"{name}: hidden sizes must be positive, got {self.hidden}")
        if self.likelihood not in LIKELIHOODS:
            raise ValueError(f"{name}: likelihood must be one of {LIKELIHOODS}, got {self.likelihood!r}")
        if self.activation not in nn.ACTIVATIONS:
            raise ValueError(
                f"{name}: activation must be one of {sorted(nn.ACTIVATIONS)}, got {self.activation!r}"
            )
        if self.dtype not in ("float32", "float64"):
            raise ValueError(f"{name}: dtype must be 'float32' or 'float64', got {self.dtype!r}")

    def to_dict(self):
        """Plain JSON-able values (tuples become lists)."""
        return {k: list(v) if isinstance(v, tuple) else v for k, v in dataclasses.asdict(self).items()}

    @classmethod
    def from_dict(cls, values):
        known = {f.name for f in dataclasses.fields(cls)}
        unknown = sorted(set(values) - known)
        if unknown:
            raise ValueError(f"{cls.__name__}: unknown fields {unknown}; known fields are {sorted(known)}")
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
    def check_x(self, x):
        """``x`` as a Tensor of shape (B, x_dim) in the model's dtype, or a clear error."""
        data = x.data if isinstance(x, Tensor) else numpy.asarray(x)
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
