"""The VQ-VAE (van den Oord et al. 2017, "Neural Discrete Representation Learning").

An encoder maps x to L vectors z_e(x) ∈ R^D; each is replaced by its nearest code of a learned codebook
{e_1, ..., e_K} (their eq. 1–2); the decoder sees only the codes z_q(x):

    k*_l = argmin_k ‖z_e,l(x) − e_k‖²,   z_q,l = e_{k*_l},   p(x | z_q) = Bernoulli or Gaussian (decoder).

The argmin has no useful derivative, so the gradient of the reconstruction term is copied from z_q to z_e
unchanged (the straight-through estimator, ``F.vector_quantize``). Their eq. 3 trains all three parts:

    L = −log p(x | z_q(x)) + ‖sg[z_e(x)] − e‖² + β ‖z_e(x) − sg[e]‖²,

the second term ("codebook") moving only the codes towards the encoder outputs assigned to them, the third
("commitment", β = 0.25 by default) moving only the encoder towards its codes. Here the squared norms sum
over the D numbers of a vector and over the L vectors of an example; the loss averages over the batch.

Options, each documented where it is implemented:

* EMA codebook (their Appendix A.1): the codebook term is dropped from the loss and the codes become
  exponential moving averages of the encoder outputs assigned to them (:meth:`VQVAE.update_codebook`, which
  ``loss`` calls once per call in training mode; the codebook is then not a trainable parameter).
* Dead-code restart: a code chosen by no vector for ``dead_code_window`` consecutive training calls is moved
  onto a random encoder output of the current batch (:meth:`VQVAE.restart_dead_codes`).
* k-means++ initialisation (Arthur & Vassilvitskii 2007) of the codebook from the encoder outputs of the first
  training batch (:func:`kmeans_plus_plus`).

The bound. With a one-hot posterior q(z = k* | x) = 1 and the uniform prior p(z = k) = 1/K of the paper,
KL(q ‖ p) = log K per latent vector (Sec. 3.1), so ``.elbo`` = log p(x | z_q) − L log K. The prior is the
untrained one: the paper fits an autoregressive prior over the codes afterwards (PixelCNN / WaveNet), and
:meth:`VQVAE.sample_latents` draws codes uniformly, which is what this model's bound assumes. The model has
no continuous density, so it provides no ``log_weights`` (importance-sampled log-likelihoods do not apply).
"""

from __future__ import annotations

import dataclasses
import math
import pathlib

import numpy

import tinyvae.functional as F
from tinyvae import figures, nn
from tinyvae.autodiff import no_grad
from tinyvae.backend import array_module, to_host
from tinyvae.models.base import (
    DecoderLikelihood,
    LossResult,
    Model,
    ModelConfig,
    _as_array,
    check_choice,
    check_flag,
    check_number,
    mlp_size_lower_bounds,
)
from tinyvae.models.networks import (
    ARCHITECTURES,
    CodeGridDecoder,
    CodeGridEncoder,
    check_conv_arch,
    conv_size_lower_bounds,
    image_side,
)
from tinyvae.models.priors import UniformCodes
from tinyvae.models.registry import register
from tinyvae.models.vae import make_decoder
from tinyvae.tensor import Tensor


def _is_int(value):
    return isinstance(value, int | numpy.integer) and not isinstance(value, bool)


@dataclasses.dataclass
class VQVAEConfig(ModelConfig):
    codebook_size: int = 64  # K, the number of codes
    code_dim: int | None = None  # D, the size of one code; None means z_dim
    # L, the vectors per example: the encoder outputs L·D numbers. None: 1 for the MLP, and for arch "conv"
    # the (side/4)² positions of the encoder's spatial grid (49 for MNIST), the only value it allows.
    latent_vectors: int | None = None
    commitment: float = 0.25  # β of eq. 3, the weight of ‖z_e − sg[e]‖²
    # True: the codebook follows the encoder by moving averages (their Appendix A.1) instead of its loss term.
    # The default: with the loss term, Adam moves a code at most ~lr per step, the encoder outruns it, and at
    # the command-line defaults the codebook term grew 3.5 → 144 and the loss 194 → 354 over epochs 5-12
    # (benchmarks/RESULTS.md, "VQ-VAE at the defaults"); with EMA the loss falls and stays flat for 30 epochs.
    ema: bool = True
    ema_decay: float = 0.99  # γ of the moving averages, in (0, 1)
    ema_epsilon: float = 1e-5  # ε of the Laplace smoothing of the counts, > 0
    dead_code_restart: bool = True  # re-seed codes that no vector chose for dead_code_window training calls
    dead_code_window: int = 100  # training loss calls a code may go unchosen before it is restarted
    kmeans_init: bool = True  # k-means++ seeding of the codebook from the first training batch

    # The networks: "mlp" (the hidden sizes) or "conv" (a spatial grid of codes, tinyvae.models.networks).
    arch: str = "mlp"

    def __post_init__(self):
        if self.code_dim is None:
            self.code_dim = self.z_dim
        if self.latent_vectors is None:
            side = image_side(self.x_dim) if self.arch == "conv" and _is_int(self.x_dim) else None
            self.latent_vectors = (side // 4) ** 2 if side else 1
        super().__post_init__()

    def validate(self):
        super().validate()
        name = type(self).__name__
        check_choice(self, "arch", ARCHITECTURES)
        check_conv_arch(self)
        for field, low in (
            ("codebook_size", 2),
            ("code_dim", 1),
            ("latent_vectors", 1),
            ("dead_code_window", 1),
        ):
            value = getattr(self, field)
            if not isinstance(value, int | numpy.integer) or isinstance(value, bool) or value < low:
                raise ValueError(f"{name}: {field} must be an integer >= {low}, got {value!r}")
        grid = (image_side(self.x_dim) // 4) ** 2 if self.arch == "conv" else None
        if grid is not None and self.latent_vectors != grid:
            raise ValueError(
                f"{name}: with arch 'conv' the latent vectors are the encoder's {grid} grid positions, so "
                f"latent_vectors must be {grid} (or left out), got {self.latent_vectors!r}"
            )
        check_number(self, "commitment", low=0)
        check_number(self, "ema_decay")
        if not 0 < self.ema_decay < 1:
            raise ValueError(f"{name}: ema_decay must lie strictly between 0 and 1, got {self.ema_decay!r}")
        check_number(self, "ema_epsilon")
        if not self.ema_epsilon > 0:
            raise ValueError(f"{name}: ema_epsilon must be > 0, got {self.ema_epsilon!r}")
        for field in ("ema", "dead_code_restart", "kmeans_init"):
            check_flag(self, field)


# ----------------------------------------------------------------------------------------------------------
# The codebook helpers, free functions so that tests (and readers) can check them on hand-made numbers.
# ----------------------------------------------------------------------------------------------------------


def laplace_smoothed_counts(counts, epsilon):
    """Ñ_k = (N_k + ε) / (n + K ε) · n with n = Σ_k N_k (van den Oord et al. 2017, Appendix A.1).

    Adds ε to every count, then rescales so the total n is unchanged: no code's count is ever zero, so the
    EMA code M_k / Ñ_k stays finite for a code that has not been chosen for a long time."""
    xp = array_module(counts)
    counts = xp.asarray(counts, dtype=xp.float64)
    total = counts.sum()
    return (counts + epsilon) / (total + len(counts) * epsilon) * total


def usage_stats(counts):
    """``{"perplexity", "codes_used", "counts"}`` from how often each code was chosen.

    perplexity = exp(H(p̄)) with p̄_k = counts_k / Σ counts (0 log 0 = 0): K when every code is used equally,
    1 when one code takes everything; NaN when nothing was counted yet. Computed on the host (K numbers):
    these are metrics for the progress bar, the evaluation report and the usage figure."""
    counts = numpy.asarray(to_host(counts), dtype=numpy.int64)
    total = counts.sum()
    if total == 0:
        return {"perplexity": float("nan"), "codes_used": 0, "counts": counts}
    p = counts[counts > 0] / total
    entropy = float(-(p * numpy.log(p)).sum())
    return {"perplexity": math.exp(entropy), "codes_used": int((counts > 0).sum()), "counts": counts}


def kmeans_plus_plus(points, k, rng):
    """k rows of ``points`` (N, D) chosen by k-means++ seeding (Arthur & Vassilvitskii 2007, Sec. 2.2).

    The first uniformly; each next one with probability proportional to its squared distance to the nearest
    row already chosen, so the seeds spread over the data. Once every point coincides with a chosen one (fewer
    distinct points than k), the rest are drawn uniformly: duplicates, which dead-code restart later moves.

    The distances are computed where ``points`` live (on the GPU for CuPy arrays); only the probabilities of
    each draw go to the host, because ``rng`` is a NumPy Generator (N numbers per seed, once per training).
    """
    xp = array_module(points)
    points = xp.asarray(points)
    n = points.shape[0]
    data = points.astype(xp.float64)
    chosen = [int(rng.integers(n))]
    sq_dist = ((data - data[chosen[0]]) ** 2).sum(axis=1)  # (N,) to the nearest chosen seed
    for _ in range(1, k):
        total = float(sq_dist.sum())
        i = int(rng.choice(n, p=to_host(sq_dist / total))) if total > 0 else int(rng.integers(n))
        chosen.append(i)
        sq_dist = xp.minimum(sq_dist, ((data - data[i]) ** 2).sum(axis=1))
    return points[chosen].copy()  # (k, D), in the input dtype


@register
class VQVAE(Model):
    """Encoder MLP → L vectors z_e → nearest codes z_q → decoder MLP; see the module docstring.

    State besides the weights: the codebook (a parameter, or with ``ema`` a tensor moved by
    :meth:`update_codebook`), the EMA counts and sums, how long each code has gone unchosen, whether the
    k-means++ initialisation has run, and the usage counts of :meth:`usage`. :meth:`state_dict` saves all
    of it but the usage counts.
    """

    name = "vqvae"
    config_class = VQVAEConfig
    latent_kind = "discrete"
    figure_names = ("codebook_usage.png",)
    needs_rng = False  # the loss samples nothing; rng only seeds k-means++ and dead-code restarts

    def __init__(self, config):
        super().__init__(config)
        rng = numpy.random.default_rng(config.seed)
        c = config
        self.num_codes, self.code_dim, self.num_vectors = c.codebook_size, c.code_dim, c.latent_vectors
        latent_size = c.latent_vectors * c.code_dim  # L·D numbers per example
        if c.arch == "conv":
            self.encoder = CodeGridEncoder(image_side(c.x_dim), c.code_dim, rng, c.dtype)
        else:
            self.encoder = nn.MLP(
                [c.x_dim, *c.hidden, latent_size], activation=c.activation, rng=rng, dtype=c.dtype
            )
        # A small uniform start (±1/K); with kmeans_init the first training batch replaces it.
        codes = rng.uniform(-1.0 / c.codebook_size, 1.0 / c.codebook_size, (c.codebook_size, c.code_dim))
        codes = codes.astype(c.dtype)  # (K, D)
        # With EMA the codebook has no gradient and no optimiser may touch it, so it is not a parameter.
        self.codebook = Tensor(codes) if c.ema else nn.Parameter(codes)
        if c.arch == "conv":
            self.decoder = CodeGridDecoder(image_side(c.x_dim), c.code_dim, rng, c.dtype)
        else:
            self.decoder = make_decoder(c, rng, in_dim=latent_size)
        self.likelihood = DecoderLikelihood(c)
        # EMA statistics: every code starts as if it had been assigned one vector, itself (N_k = 1,
        # M_k = e_k), so the first update averages the old code with its new members (no division by 0).
        # They and the counters below live beside the codebook (on the GPU under CuPy), since every
        # training step updates them from the batch's indices.
        xp = self.codebook.xp
        self.ema_count = xp.ones(c.codebook_size)  # (K,) N_k, float64
        self.ema_sum = self.codebook.data.astype(xp.float64)  # (K, D) M_k
        # (K,) training calls since each code was last chosen; drives dead-code restart
        self.steps_unused = xp.zeros(c.codebook_size, dtype=xp.int64)
        self.codebook_initialised = not c.kmeans_init
        self.prior = UniformCodes(lambda: self.codebook.data, c.latent_vectors)
        self.reset_usage()

    # ----- the pieces of the loss -----
    def check_latents(self, z):
        """z of shape (n, L·D) or (n, L, D) as a Tensor of shape (n, L, D), or a clear error."""
        data = z.data if isinstance(z, Tensor) else _as_array(z)
        L, D = self.num_vectors, self.code_dim
        flat_ok = data.ndim == 2 and data.shape[1] == L * D
        if not flat_ok and not (data.ndim == 3 and data.shape[1:] == (L, D)):
            raise ValueError(
                f"{self.name}: z has shape {data.shape} but the decoder expects (n, {L * D}) or "
                f"(n, {L}, {D}) (latent_vectors L = {L}, code_dim D = {D})"
            )
        z = z if isinstance(z, Tensor) else Tensor(data.astype(self.dtype, copy=False))
        return z.reshape(data.shape[0], L, D)

    def encode_continuous(self, x):
        """z_e(x): the encoder's output as L vectors, a Tensor of shape (B, L, D)."""
        return self.encoder(x).reshape(x.shape[0], self.num_vectors, self.code_dim)

    def quantize(self, z_e):
        """(z_q, indices): nearest codes with the straight-through gradient (``F.vector_quantize``)."""
        return F.vector_quantize(z_e, self.codebook)  # (B, L, D), (B, L)

    def loss_terms(self, x, rng=None):
        """The three terms of eq. 3 as per-example Tensors (B,), plus z_e and the indices.

        Returns a dict ``{"recon", "codebook", "commitment", "z_e", "indices"}``: ``recon`` = log p(x | z_q),
        ``codebook`` = ‖sg[z_e] − e‖² and ``commitment`` = ‖z_e − sg[e]‖², each summed over the L vectors.
        In training mode with ``kmeans_init`` the first call seeds the codebook from this batch first (the
        only use of ``rng`` here)."""
        x = self.check_x(x)
        z_e = self.encode_continuous(x)  # (B, L, D)
        if self.training and not self.codebook_initialised:
            self.initialise_codebook(z_e.data.reshape(-1, self.code_dim), nn.as_generator(rng))
        z_q, indices = self.quantize(z_e)  # (B, L, D), (B, L)
        decoded = self.decoder(z_q.reshape(x.shape[0], self.num_vectors * self.code_dim))  # (B, x_dim)
        chosen = self.codebook[indices]  # (B, L, D): e_{k*}, differentiable in the codebook
        return {
            "recon": self.likelihood.log_prob(decoded, x),  # (B,)
            "codebook": ((z_e.detach() - chosen) ** 2).sum(axis=-1).sum(axis=-1),  # (B,) moves the codes
            "commitment": ((z_e - chosen.detach()) ** 2).sum(axis=-1).sum(axis=-1),  # (B,) moves the encoder
            "z_e": z_e,
            "indices": indices,
        }

    def objective(self, x, rng=None, y=None):
        """−log p(x|z_q) + ‖sg[z_e] − e‖² + β‖z_e − sg[e]‖², batch mean (eq. 3); ``.elbo`` = recon − L log K.

        With ``ema`` the codebook term is reported but left out of the loss. In training mode this call
        also updates the codebook state after computing the loss, in this order: k-means++ seeding (first
        call only, before the quantisation), the EMA update (:meth:`update_codebook`), then dead-code restart
        (:meth:`restart_dead_codes`, with ``rng``). The usage counts of :meth:`usage` grow in both modes.
        ``rng``: a Generator, an int seed or None (fresh entropy); it is used in training mode only."""
        terms = self.loss_terms(x, rng)
        recon, codebook_term, commitment = terms["recon"], terms["codebook"], terms["commitment"]
        loss = self.config.commitment * commitment.mean() - recon.mean()
        if not self.config.ema:
            loss = loss + codebook_term.mean()
        indices = terms["indices"]
        self._usage_counts += array_module(indices).bincount(indices.ravel(), minlength=self.num_codes)
        if self.training:
            flat_z_e = terms["z_e"].data.reshape(-1, self.code_dim)  # (B·L, D)
            if self.config.ema:
                self.update_codebook(flat_z_e, indices)
            self._track_unused(indices)
            if self.config.dead_code_restart:
                self.restart_dead_codes(flat_z_e, nn.as_generator(rng))
        elbo = recon.data - self.num_vectors * math.log(self.num_codes)  # KL = log K per latent vector
        return LossResult(loss, elbo, recon=recon, codebook=codebook_term, commitment=commitment)

    # ----- the codebook's own updates -----
    def initialise_codebook(self, z_e, rng):
        """Seed the codes with k-means++ on the encoder outputs ``z_e`` (N, D) of one batch."""
        codes = kmeans_plus_plus(z_e, self.num_codes, rng)  # (K, D)
        self.codebook.data[...] = codes
        self.ema_count[:] = 1.0
        self.ema_sum[...] = codes
        self.codebook_initialised = True

    def update_codebook(self, z_e, indices):
        """One EMA step of the codebook (van den Oord et al. 2017, Appendix A.1, eqs. 6–8).

        With n_k the number of vectors of ``z_e`` (..., D) assigned to code k (``indices`` (...)) and m_k
        their sum:  N_k ← γ N_k + (1 − γ) n_k,   M_k ← γ M_k + (1 − γ) m_k,   e_k ← M_k / Ñ_k,
        with Ñ_k the Laplace-smoothed counts (:func:`laplace_smoothed_counts`). ``loss`` calls this once
        per training call when ``config.ema`` is set; calling it yourself as well would count a batch twice.
        """
        xp = self.codebook.xp  # the statistics live beside the codebook; NumPy inputs are copied there
        z_e = xp.asarray(z_e, dtype=xp.float64).reshape(-1, self.code_dim)  # (N, D)
        indices = xp.asarray(indices).reshape(-1)  # (N,)
        if len(indices) != len(z_e):
            raise ValueError(
                f"{self.name}.update_codebook: {len(z_e)} vectors but {len(indices)} indices; "
                "one index per vector"
            )
        gamma = self.config.ema_decay
        counts = xp.bincount(indices, minlength=self.num_codes)  # (K,) n_k
        sums = xp.zeros((self.num_codes, self.code_dim))  # (K, D) m_k
        xp.add.at(sums, indices, z_e)
        self.ema_count = gamma * self.ema_count + (1 - gamma) * counts
        self.ema_sum = gamma * self.ema_sum + (1 - gamma) * sums
        smoothed = laplace_smoothed_counts(self.ema_count, self.config.ema_epsilon)  # (K,)
        self.codebook.data[...] = self.ema_sum / smoothed[:, None]

    def _track_unused(self, indices):
        """steps_unused_k = training calls since code k was last chosen (0 if chosen in this one)."""
        self.steps_unused += 1
        self.steps_unused[array_module(indices).unique(indices)] = 0

    def restart_dead_codes(self, z_e, rng):
        """Move every code unchosen for ``dead_code_window`` training calls onto an encoder output of ``z_e``.

        The rule: the dead codes get distinct rows of ``z_e`` (N, D) drawn uniformly (with replacement only
        if there are more dead codes than rows); their unused counters restart at 0 and, with EMA, their
        statistics restart as N_k = 1, M_k = e_k. Codes in use are not touched. Returns the restarted indices.
        Without this, a code that starts far from the data is never chosen, never gets a gradient from the
        codebook term (nor an EMA update) and stays dead for good."""
        xp = self.codebook.xp
        dead = xp.flatnonzero(self.steps_unused >= self.config.dead_code_window)
        if len(dead) == 0:
            return dead
        rows = rng.choice(len(z_e), size=len(dead), replace=len(dead) > len(z_e))  # host ints, as CuPy takes
        new_codes = xp.asarray(z_e)[rows]  # (n_dead, D)
        self.codebook.data[dead] = new_codes
        self.ema_count[dead] = 1.0
        self.ema_sum[dead] = new_codes
        self.steps_unused[dead] = 0
        return dead

    # ----- codebook usage -----
    def reset_usage(self):
        """Start counting code usage afresh (call at the start of an epoch)."""
        xp = self.codebook.xp  # counted where the indices are, so a training step copies nothing to the host
        self._usage_counts = xp.zeros(self.num_codes, dtype=xp.int64)

    def usage(self):
        """Code usage counted over every ``loss`` call since :meth:`reset_usage`: see :func:`usage_stats`."""
        return usage_stats(self._usage_counts)

    def codebook_usage(self, x):
        """Code usage of the examples x alone (accumulated counts stay as they are): :func:`usage_stats`."""
        _, indices = self.encode(x)
        return usage_stats(array_module(indices).bincount(indices.ravel(), minlength=self.num_codes))

    # ----- the shared interface -----
    def encode(self, x, y=None):
        """(z_q, indices): the codes of x as an array (B, L, D) and their indices (B, L), both in the model's
        array module (copy them with :func:`tinyvae.backend.to_host` to read them as NumPy arrays)."""
        with no_grad():
            z_q, indices = self.quantize(self.encode_continuous(self.check_x(x)))
            return z_q.data, indices

    def decode_logits(self, z, y=None):
        """The decoder's output for latents z of shape (n, L·D) or (n, L, D) (codes or any other points)."""
        z = self.check_latents(z)  # (n, L, D)
        return self.decoder(z.reshape(z.shape[0], self.num_vectors * self.code_dim))

    def latent_mean(self, x, y=None):
        """z_q(x) flattened to (B, L·D): the model's one latent point for x (it is deterministic)."""
        z_q, _ = self.encode(x)
        return z_q.reshape(z_q.shape[0], -1)

    # ``sample`` draws codes from ``self.prior``, uniform over the codebook: the untrained prior of the
    # bound. Good samples need the autoregressive prior over indices that the paper fits after training.

    # ----- what this model adds to training, evaluation and the figures -----
    def start_epoch(self):
        """Usage is counted per epoch (the progress bar's "codes" field)."""
        self.reset_usage()

    def data_parallel_problem(self):
        return (
            "its codebook is fitted to the batch it sees (k-means++ seeding on the first batch, dead codes "
            "restarted from batch vectors, EMA counts and sums of the batch), so ranks with different "
            "shards would grow different codebooks"
        )

    def progress_fields(self):
        return {"codes": int(self.usage()["codes_used"])}

    def extra_metrics(self, x, y=None):
        """Codebook perplexity and the number of codes used by the examples x (see :func:`usage_stats`)."""
        usage = self.codebook_usage(x)
        return {"perplexity": float(usage["perplexity"]), "codes_used": int(usage["codes_used"])}

    def extra_figures(self, out_dir, x, y=None, rng=None):
        """codebook_usage.png: how often the examples x choose each code (:func:`codebook_usage_figure`)."""
        return [codebook_usage_figure(self, x, pathlib.Path(out_dir) / "codebook_usage.png")]

    @classmethod
    def size_lower_bounds(cls, config):
        """The encoder's weights x_dim → hidden → L·D (or the conv grid encoder's) and the codebook (K, D)."""
        if config.arch == "conv":
            largest, total = conv_size_lower_bounds(image_side(config.x_dim), 0)
            codebook = config.codebook_size * config.code_dim
            return max(largest, codebook), total + codebook
        chain = [config.x_dim, *config.hidden, config.latent_vectors * config.code_dim]
        return mlp_size_lower_bounds([chain], extra_arrays=[config.codebook_size * config.code_dim])

    # ----- saving: the codebook state that is not a parameter -----
    BUFFERS = ("ema_count", "ema_sum", "steps_unused", "codebook_initialised")

    def state_dict(self):
        """The parameters plus the codebook state (``buffers.*``, and ``codebook`` itself with EMA)."""
        state = super().state_dict()
        if self.config.ema:
            state["codebook"] = self.codebook.numpy().copy()
        for name in self.BUFFERS:
            state["buffers." + name] = numpy.array(to_host(getattr(self, name)), copy=True)
        return state

    def load_state_dict(self, state):
        state = dict(state)
        extra = ["buffers." + name for name in self.BUFFERS] + (["codebook"] if self.config.ema else [])
        missing = [key for key in extra if key not in state]
        if missing:
            raise KeyError(f"load_state_dict ({type(self).__name__}): missing keys {missing}")
        values = {key: state.pop(key) for key in extra}
        super().load_state_dict(state)
        xp = self.codebook.xp  # a state is NumPy arrays (from a checkpoint): copied to where the model lives
        if self.config.ema:
            self.codebook.data[...] = xp.asarray(values["codebook"], dtype=self.codebook.dtype)
        self.ema_count = xp.array(values["buffers.ema_count"], dtype=xp.float64)
        self.ema_sum = xp.array(values["buffers.ema_sum"], dtype=xp.float64)
        self.steps_unused = xp.array(values["buffers.steps_unused"], dtype=xp.int64)
        self.codebook_initialised = bool(values["buffers.codebook_initialised"])


def codebook_usage_figure(model, x, path):
    """How many latent vectors of ``x`` chose each code of a vector-quantised ``model``, with the perplexity
    exp(H) and the number of codes used in the title (``tinyvae.plots.codebook_usage_hist`` is this)."""
    if model.latent_kind != "discrete":
        raise TypeError(
            f"codebook_usage: model {model.name!r} has no codebook (latent_kind {model.latent_kind!r}); "
            "it applies to vector-quantised models (vqvae)"
        )
    usage = model.codebook_usage(x)
    counts = numpy.asarray(usage["counts"])
    figure = figures.new_figure(max(6.0, 0.08 * len(counts) + 3), 3.8)
    ax = figure.add_subplot()
    ax.bar(numpy.arange(len(counts)), counts, width=1.0, color="tab:blue", edgecolor="none")
    ax.set_xlabel("code index k")
    ax.set_ylabel("vectors assigned to code k")
    ax.set_xlim(-0.5, len(counts) - 0.5)
    ax.set_title(
        f"{model.name}: codebook usage, perplexity {usage['perplexity']:.1f} of {len(counts)}, "
        f"{usage['codes_used']} codes used"
    )
    figure.tight_layout()
    return figures.save_png(figure, path)
