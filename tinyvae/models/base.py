"""What every model shares: its config, the decoder likelihood, the loss result, and the interface.

Every model answers the same calls, so training, evaluation and plotting treat them alike:

* ``model.loss(x, rng, y=None)`` → :class:`LossResult` with ``.loss`` (scalar Tensor to minimise),
  ``.elbo`` (per-example NumPy array, the bound being optimised, in nats) and named terms (``.recon``,
  ``.kl``, ...), each a per-example array.
* ``model.encode(x)``, ``model.decode(z)``, ``model.reconstruct(x)``, ``model.sample(n, rng, y=None)``,
  ``model.interpolate(x_a, x_b, steps, method="linear" | "slerp")``.

Inputs ``x`` are arrays (or Tensors) of shape (B, x_dim); outputs meant for looking at (reconstructions,
samples, interpolations, ``decode``) are NumPy arrays of decoder means: Bernoulli probabilities or Gaussian
means, copied to the host with :func:`tinyvae.backend.to_host` when the model runs on a GPU. What stays in
the computation (``latent_mean``, ``sample_latents``, tensor data) lives in the model's array module
(CuPy on a GPU), and its consumers copy it to the host themselves where they need NumPy.
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
from tinyvae.backend import array_module, default_array_module, to_host
from tinyvae.distributed import ShardedGenerator
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


def config_from_dict(cls, values):
    """``cls(**values)`` for a config dataclass, after refusing a non-dict, unknown fields and missing
    required ones with a ValueError naming them (the field checks are the config's own ``validate``)."""
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
        return config_from_dict(cls, values)


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
    """A loss result's per-example values on the host: they are read by progress bars and metric files."""
    if isinstance(value, Tensor):
        value = value.data
    return to_host(value)


def _as_array(value):
    """``value`` as an array: a device array (CuPy) as it is, anything else (a list, a NumPy array) through
    ``numpy.asarray``. It becomes a Tensor next, which copies a NumPy array to the device when needed."""
    return value if array_module(value) is not numpy else numpy.asarray(value)


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
    xp = array_module(a, b, t)
    norms = xp.linalg.norm(a, axis=-1) * xp.linalg.norm(b, axis=-1)
    cos = xp.clip((a * b).sum(axis=-1) / xp.maximum(norms, 1e-12), -1.0, 1.0)
    omega = xp.arccos(cos)[..., None]
    sin = xp.sin(omega)
    safe = xp.abs(sin) > 1e-6
    spherical = (xp.sin((1 - t) * omega) * a + xp.sin(t * omega) * b) / xp.where(safe, sin, 1.0)
    return xp.where(safe, spherical, (1 - t) * a + t * b)


class Model(nn.Module):
    """Base class of every model. Subclasses set ``name`` and ``config_class``, implement ``objective`` (the
    loss of one batch), ``encode``, ``decode_logits`` (the decoder's raw output for latents z),
    ``latent_mean`` (a point estimate of z for x, used by reconstruct and interpolate: an array in the
    model's array module, so on the GPU under CuPy; its readers copy it with ``to_host``), set ``self.prior``
    in ``__init__`` (see :mod:`tinyvae.models.priors`), and declare what they are with the class attributes
    below. Training, plots, evaluation and the command line read those and the hooks further down; none of
    them asks a model's name. A new model is its own file plus :func:`tinyvae.models.register`."""

    name = "model"
    config_class = ModelConfig
    # ----- what the model is -----
    conditional = False  # True for models that need a label y
    # The latent the decoder reads: "gaussian" (continuous, with a density prior: the VAE family),
    # "discrete" (codes of a codebook), "hierarchical" (the bottom of a chain of latents), or
    # "deterministic" (no prior at all: the plain autoencoder).
    latent_kind = "gaussian"
    # True when encode(x) returns the (μ, log σ²) of q(z|x) itself, so per-dimension KLs and I_q(x; z) can be
    # computed from it in closed form (tinyvae.evaluate, against an N(0, I) prior); False for flows,
    # mixtures, hierarchies and codes.
    gaussian_posterior = False
    has_likelihood_bound = False  # log_weights(x, k, rng) gives importance weights of a bound on log p(x)
    posterior_description = None  # what posterior_sample draws from, e.g. "diagonal Gaussian q(z|x)"
    needs_rng = True  # the loss draws noise, so ``loss`` requires a numpy.random.Generator
    figure_names = ()  # the files extra_figures writes into a run directory (run files: --overwrite replaces)
    prior = None  # p(z): set in __init__ by every model that has one

    def __init__(self, config):
        super().__init__()
        if not isinstance(config, self.config_class):
            raise TypeError(
                f"{type(self).__name__} needs a {self.config_class.__name__}, got {type(config).__name__}"
            )
        self.config = config
        self.dtype = numpy.dtype(config.dtype)
        self.training_steps = 0  # loss() calls in training mode: what a KL warm-up or a schedule reads

    @property
    def xp(self):
        """The array module the model computes in (CuPy on a GPU, else NumPy): that of its parameters."""
        for parameter in self.parameters():
            return parameter.xp
        return default_array_module()

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
        if isinstance(rng, numpy.random.Generator | ShardedGenerator):  # the latter: one MPI rank's view
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
            data = x.data if isinstance(x, Tensor) else _as_array(x)
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
        if not tensor.xp.isfinite(tensor.data).all():  # checked where x lives: one bool, not x, to the host
            raise ValueError(f"{self.name}: x contains NaN or infinite values")
        return tensor

    def check_y(self, y, n):
        """Integer labels of shape (n,) in [0, n_classes) for a conditional model; None otherwise."""
        if not self.conditional:
            return None
        n_classes = self.config.n_classes
        if y is None:
            raise ValueError(f"{self.name}: this model is conditional; pass labels y of shape ({n},)")
        labels = to_host(y)  # labels are few, and one_hot and the checks below read them on the host
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
        """E[x | z] as a NumPy array (probabilities or means), for latents z of shape (n, z_dim) (a NumPy
        array, or one in the model's array module as ``latent_mean`` and ``sample_latents`` give them)."""
        with no_grad():
            z = Tensor(z, dtype=self.dtype)
            return to_host(self.likelihood.mean(self.decode_logits(z, y)))

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
            z = self.latent_mean(ends, labels)  # (2, Z), where the model computes
            t = array_module(z).linspace(0.0, 1.0, steps)[:, None]  # (steps, 1)
            if method == "linear":
                path = (1 - t) * z[0] + t * z[1]
            else:
                path = slerp(z[0][None], z[1][None], t)
            labels = None if y is None else numpy.full(steps, y)
            return self.decode(path.astype(self.dtype), labels)

    # ----- the loss -----
    def loss(self, x, rng=None, y=None):
        """The training objective on one batch, a :class:`LossResult`: the entry checks, the model's
        :meth:`objective`, and in training mode one more step on the counter (after the loss, so the first
        step reads 0: a warm-up ramp starts at 0)."""
        self.check_loss_call(x, rng, rng_required=self.needs_rng)
        result = self.objective(x, rng, y)
        if self.training:
            self.training_steps += 1
        return result

    # ----- pieces each model provides -----
    def objective(self, x, rng, y=None):
        raise NotImplementedError

    def encode(self, x, y=None):
        raise NotImplementedError

    def decode_logits(self, z, y=None):
        raise NotImplementedError

    def latent_mean(self, x, y=None):
        raise NotImplementedError

    def sample_latents(self, n, rng):
        """n draws of the prior, an array (n, latent size): what ``decode`` takes."""
        if self.prior is None:
            raise TypeError(f"{self.name}: this model has no prior p(z) to sample (it is not generative)")
        return self.prior.sample(n, rng)

    def posterior_sample(self, x, n, rng, y=None):
        """n draws of q(z|x) for one example x (1, x_dim): an array (n, latent size). Models with a posterior
        sampler override this and set ``posterior_description``."""
        raise TypeError(f"{self.name}: this model has no posterior sampler q(z|x)")

    def posterior_sample_parts(self, x, n, rng, y=None):
        """(samples, parts): :meth:`posterior_sample` and, for a posterior made of parts (a mixture's
        components), which part drew each sample (ints (n,)), else None. The posterior picture colours
        the samples by part."""
        return self.posterior_sample(x, n, rng, y), None

    def elbo_terms(self, x, rng, y=None):
        """The ELBO on the examples x split into its named terms, or None for a model that does not split it:
        {name: per-example array} in nats, each term's contribution to the bound (a KL with its minus sign),
        so that the terms sum to the ELBO. ``tinyvae evaluate`` reports them (the diffusion model's
        reconstruction, prior and denoising matching; the hierarchical VAE's per-layer KLs)."""
        return None

    # ----- hooks for training, evaluation and figures (defaults: nothing extra) -----
    def start_epoch(self):
        """Called by the trainer before each training epoch (the VQ-VAE restarts its usage counts)."""

    def data_parallel_problem(self):
        """Why this model cannot be trained on several MPI ranks as one process would train it, or None.

        Data-parallel training (:mod:`tinyvae.distributed`) splits every batch into shards and needs the
        loss to be a mean over examples that do not see each other, with noise drawn per example as
        ``(…, B, Z)`` or ``(B,)``. Models that couple the examples of a batch (a minibatch estimator, a
        codebook fitted to the batch) or draw noise in another layout say so here."""
        return None

    def progress_fields(self):
        """{name: value} to show on the training progress bar besides the loss, ELBO and KL."""
        return {}

    def extra_metrics(self, x, y=None):
        """{name: number} that ``tinyvae evaluate`` reports for this kind of model (VQ perplexity, ...)."""
        return {}

    def extra_figures(self, out_dir, x, y=None, rng=None):
        """Draw this kind of model's own figures of the examples x into ``out_dir``; return their paths."""
        return []

    # ----- building from a run's settings, sizes -----
    @classmethod
    def run_defaults(cls, toy):
        """What a new run uses for the settings its command line left unset: ``hidden`` (the layer sizes)
        and any of this model's own options, for 2-D toy data (``toy``) or images. An option the run sets
        overrides its default here."""
        return {"hidden": (64, 64) if toy else (400,)}

    @classmethod
    def config_from_run(cls, fields):
        """The config for a run: ``fields`` holds the run's generic settings (x_dim, z_dim, hidden,
        likelihood, gaussian_logvar, seed, n_classes) and the model options it set (beta, k, ...); the ones
        this model's config has no field for are dropped (the run refuses options that apply to no field
        before calling this). Models whose fields derive from the generic ones override it."""
        known = {field.name for field in dataclasses.fields(cls.config_class)}
        return cls.config_class(**{k: v for k, v in fields.items() if k in known})

    @classmethod
    def size_lower_bounds(cls, config):
        """(numbers in the largest array, numbers in all arrays) that any model built from ``config`` must
        at least hold, computed from the config alone. A checkpoint loader compares them with a file before
        building the model, so a forged config cannot make it allocate more than the file could explain.
        The default claims nothing; the built-in models give real bounds."""
        return 0, 0

    @classmethod
    def estimated_training_bytes(cls, config, batch_size):
        """Roughly the memory training this config takes: float32 weights, gradients and two Adam moments,
        and the activations kept for the backward pass, from the layer sizes. An estimate to refuse
        impossible requests up front (a --hidden typed with too many zeros), not a promise."""
        hidden = list(getattr(config, "hidden", ()))
        z_dim = sum(getattr(config, "z_dims", None) or (config.z_dim,))
        encoder, decoder = [config.x_dim, *hidden, 2 * z_dim], [z_dim, *hidden, config.x_dim]
        parameters = sum(size for chain in (encoder, decoder) for size in weight_sizes(chain, bias=True))
        codes = getattr(config, "codebook_size", 0)
        parameters += codes * z_dim + getattr(config, "flow_steps", 0) * (2 * z_dim + 1)
        components = getattr(config, "components", 1)
        parameters += (components - 1) * 2 * z_dim * ((hidden or [config.x_dim])[-1] + 1)
        parameters = max(parameters, cls.size_lower_bounds(config)[1])  # a model's own structure counts too
        samples = batch_size * getattr(config, "k", 1) * components
        activations = samples * (sum(encoder) + sum(decoder) + codes)
        return 4 * (4 * parameters + 6 * activations)


def gaussian_posterior_sample(model, x, n, rng, y=None):
    """n draws z = μ + σ ε of a diagonal-Gaussian q(z|x) = N(μ, σ²) (``model.encode(x, y)`` gives μ and
    log σ²) for one example x (1, x_dim): an array (n, z_dim) in the model's dtype."""
    mu, logvar = (t.numpy()[0] for t in model.encode(x, y))  # (Z,) each
    eps = rng.standard_normal((n, mu.shape[-1]))  # (n, Z)
    return (mu + numpy.exp(0.5 * logvar) * eps).astype(model.dtype)


def weight_sizes(chain, bias=False):
    """The number of weights of each layer of an MLP whose widths are ``chain`` ([in, hidden..., out])."""
    return [(fan_in + bias) * fan_out for fan_in, fan_out in zip(chain[:-1], chain[1:], strict=True)]


def mlp_size_lower_bounds(chains, extra_arrays=(), extra_numbers=0):
    """``Model.size_lower_bounds`` for a model made of MLPs with these width ``chains`` (weights only: the
    biases and the decoder are left out, so the bound stays a lower bound) plus ``extra_arrays`` (their
    sizes) and ``extra_numbers`` held in arrays of any size. The largest array is at least the largest
    width too (its bias)."""
    arrays = [size for chain in chains for size in weight_sizes(chain)] + list(extra_arrays)
    widths = [width for chain in chains for width in chain]
    return max(arrays + widths, default=0), sum(arrays) + extra_numbers
