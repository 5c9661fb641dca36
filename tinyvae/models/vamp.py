"""The VAE with a VampPrior (Tomczak & Welling 2018, "VAE with a VampPrior").

The prior is the aggregate posterior of K learned pseudo-inputs u_1 … u_K, a mixture of the encoder's own
Gaussians (their eq. 9):

    p(z) = (1/K) Σ_k q(z | u_k),      log p(z) = logsumexp_k log N(z; μ(u_k), σ²(u_k)) − log K,

so the prior moves towards where the encoder puts the data (a standard-normal prior is the special case of
one pseudo-input mapped to μ = 0, σ = 1). It has no closed-form KL against q(z|x), so the KL term of the ELBO
is the one-sample Monte-Carlo estimate log q(z|x) − log p(z) (their eq. 16); everything else is the VAE's.
The pseudo-inputs live in pixel space: u_k = sigmoid(w_k) for free parameters w_k, so each stays a valid
image in [0, 1] (the paper clips them with a hard tanh), and the encoder's gradient trains them.

Cost: every loss call encodes the K pseudo-inputs once (a batch of K more rows through the encoder) and
evaluates a (B, K) table of Gaussian log-densities.
"""

from __future__ import annotations

import dataclasses
import math
import pathlib

import numpy

import tinyvae.functional as F
from tinyvae import figures, nn
from tinyvae.models.base import check_integer
from tinyvae.models.priors import Prior
from tinyvae.models.registry import register
from tinyvae.models.vae import VAE, VAEConfig

LOG_2PI = math.log(2 * math.pi)


@dataclasses.dataclass
class VampConfig(VAEConfig):
    pseudo_inputs: int = 500  # K, the learned pseudo-inputs u_k (500 on MNIST in Tomczak & Welling 2018)

    def validate(self):
        super().validate()
        check_integer(self, "pseudo_inputs", 1, label="pseudo_inputs (K)")
        if self.free_bits != 0:
            raise ValueError(
                f"{type(self).__name__}: free_bits must be 0 with the VampPrior, got {self.free_bits!r}: its "
                "per-dimension floor is defined against N(0, 1)"
            )


class VampPrior(nn.Module, Prior):
    """p(z) = (1/K) Σ_k q(z | u_k) with learned pseudo-inputs u_k = sigmoid(w_k) (module docstring).

    ``encode`` is the model's encoder, x → (μ, log σ²), held as a plain function so that its weights stay the
    model's own (a second reference as a sub-module would hand them to the optimiser twice)."""

    def __init__(self, encode, count, x_dim, rng, dtype):
        super().__init__()
        self.encode = encode
        # w ~ N(−1, 0.3²): sigmoid(w) ≈ 0.27 ± 0.06, faint grey images that training then shapes.
        self.pseudo_logits = nn.Parameter((rng.normal(-1.0, 0.3, size=(count, x_dim))).astype(dtype))

    @property
    def description(self):
        return f"VampPrior, a mixture of q(z|u_k) over {self.pseudo_logits.shape[0]} pseudo-inputs"

    def pseudo_inputs(self):
        """u_k = sigmoid(w_k), a Tensor (K, x_dim) in [0, 1]."""
        return F.sigmoid(self.pseudo_logits)

    def components(self):
        """(μ_k, log σ²_k) = encode(u_k): Tensors (K, Z) each."""
        return self.encode(self.pseudo_inputs())

    def log_prob(self, z):
        """log p(z) = logsumexp_k log N(z; μ_k, σ²_k) − log K, a Tensor of shape z.shape[:-1]; differentiable
        in z, the pseudo-inputs and the encoder.

        Each component's log-density, −½ Σ_j [log 2π + log σ²_kj + (z_j − μ_kj)² / σ²_kj], is expanded as
        c_k − ½ (z ⊙ z) · (1/σ²_k) + z · (μ_k / σ²_k), two matrix products: memory (…, K), never (…, K, Z)
        (an evaluation with 500 samples × 100 examples × K = 500 × Z = 20 would need 2 GB the direct way)."""
        mu, logvar = self.components()  # (K, Z) each
        inv_var = F.exp(-logvar)  # (K, Z)
        constant = -0.5 * (
            mu.shape[1] * LOG_2PI + logvar.sum(axis=-1) + (mu * mu * inv_var).sum(axis=-1)
        )  # (K,)
        quadratic = (z * z) @ inv_var.T  # (…, K)
        cross = z @ (mu * inv_var).T  # (…, K)
        log_components = constant - 0.5 * quadratic + cross  # (…, K): log N(z; μ_k, σ²_k)
        return F.logsumexp(log_components, axis=-1) - math.log(mu.shape[0])  # (…,)

    def sample(self, n, rng):
        """n draws: a pseudo-input k uniformly, then z ~ q(z | u_k). An array (n, Z)."""
        mu, logvar = (t.numpy() for t in self.components())  # (K, Z) each
        k = rng.integers(len(mu), size=n)  # (n,)
        eps = rng.standard_normal((n, mu.shape[1]))
        return (mu[k] + numpy.exp(0.5 * logvar[k]) * eps).astype(mu.dtype)


@register
class VampVAE(VAE):
    """The VAE of :mod:`tinyvae.models.vae` with the VampPrior (see the module docstring); its extra figure
    is the pseudo-inputs, ``pseudo_inputs.png``."""

    name = "vamp"
    config_class = VampConfig
    gaussian_posterior = False  # the per-dimension KL against N(0, I) of tinyvae.evaluate does not apply
    figure_names = ("pseudo_inputs.png",)

    def __init__(self, config):
        super().__init__(config)
        rng = numpy.random.default_rng(config.seed + 2)  # the VAE's own weights are drawn as the VAE's are
        # The encoder's call, not the encoder: a method is not a sub-module, so its weights are listed once.
        self.prior = VampPrior(self.encoder.__call__, config.pseudo_inputs, config.x_dim, rng, config.dtype)

    def extra_figures(self, out_dir, x, y=None, rng=None):
        """pseudo_inputs.png: the first 64 pseudo-inputs u_k, as images when x_dim is a square."""
        side = math.isqrt(self.config.x_dim)
        if side * side != self.config.x_dim:
            return []
        images = self.prior.pseudo_inputs().numpy()[:64]
        cols = 8
        rows = math.ceil(len(images) / cols)
        canvas = figures.mosaic(images, rows, cols, (side, side))
        figure = figures.new_figure(0.5 * cols + 1, 0.5 * rows + 1)
        ax = figure.add_subplot()
        ax.imshow(canvas, cmap="gray", vmin=0, vmax=1, interpolation="nearest")
        ax.set_axis_off()
        ax.set_title(f"{self.name}: the first {len(images)} of {self.config.pseudo_inputs} pseudo-inputs u_k")
        return [figures.save_png(figure, pathlib.Path(out_dir) / "pseudo_inputs.png")]


__all__ = ["VampConfig", "VampPrior", "VampVAE"]
