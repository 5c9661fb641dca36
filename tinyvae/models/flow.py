"""A VAE whose posterior is a Gaussian pushed through a normalizing flow (Rezende & Mohamed 2015,
"Variational Inference with Normalizing Flows").

    z_0 ~ q_0(z|x) = N(μ(x), diag σ²(x)),   z_K = f_K ∘ … ∘ f_1(z_0),   p(z) = N(0, I),

with planar (their eq. 10) or radial (eq. 14) layers from :mod:`tinyvae.flows`. By the change of variables
(eq. 13) log q_K(z_K|x) = log q_0(z_0|x) − Σ_k log|det ∂f_k/∂z_{k−1}|, and the bound (their eq. 15) is

    ELBO(x) = E_{q_0}[ log p(x|z_K) + log p(z_K) − log q_0(z_0|x) + Σ_k log|det ∂f_k/∂z_{k−1}| ],

estimated with one reparameterised sample z_0 = μ + σ ε. There is no closed-form KL, so the KL term is the
single-sample estimate log q_K(z_K|x) − log p(z_K), the VAE's ``analytic_kl=False`` estimator moved to z_K.
The flow parameters are global (shared across examples; see :mod:`tinyvae.flows`).
"""

from __future__ import annotations

import dataclasses

import numpy

import tinyvae.functional as F
from tinyvae.flows import FLOWS, FlowSequence
from tinyvae.models.base import LossResult, check_choice, mlp_size_lower_bounds
from tinyvae.models.registry import register
from tinyvae.models.vae import VAE, VAEConfig
from tinyvae.tensor import Tensor

# Each flow layer is a Python object that every step passes through in turn: 1,000 is far beyond the 80
# layers of Rezende & Mohamed (2015) and still builds in a second; 10**8 would build for minutes.
MAX_STEPS = 1_000


@dataclasses.dataclass
class FlowVAEConfig(VAEConfig):
    """The VAE's settings plus the flow: K = ``flow_steps`` layers of kind ``flow`` (Rezende & Mohamed 2015,
    eq. 10 for planar, eq. 14 for radial)."""

    flow_steps: int = 4  # K, the number of flow layers; 0 gives the Gaussian VAE with a sampled KL
    flow: str = "planar"  # "planar" (eq. 10) or "radial" (eq. 14)
    # analytic_kl is ignored (the flow's KL has no closed form); free_bits must stay 0, since the sampled
    # KL of a flow does not split into per-dimension terms. beta and warmup_steps work as in the VAE.

    def validate(self):
        super().validate()
        name = type(self).__name__
        if self.mc_samples != 1:
            raise ValueError(
                f"{name}: mc_samples must be 1, got {self.mc_samples!r}: the flow's loss draws one sample"
            )
        steps = self.flow_steps
        if (
            not isinstance(steps, int | numpy.integer)
            or isinstance(steps, bool)
            or not 0 <= steps <= MAX_STEPS
        ):
            raise ValueError(f"{name}: flow_steps must be an integer from 0 to {MAX_STEPS:,}, got {steps!r}")
        check_choice(self, "flow", FLOWS)
        if self.free_bits != 0:
            raise ValueError(
                f"{name}: free_bits must be 0 for the flow posterior, got {self.free_bits!r}: its sampled "
                "KL has no per-dimension terms to floor"
            )


@register
class FlowVAE(VAE):
    """VAE with a flow posterior q_K (Rezende & Mohamed 2015, eq. 13 and 15); see the module docstring.

    The encoder and decoder are built exactly as the VAE's, from the same seed and in the same order, so a
    FlowVAE and a VAE with the same config fields share their network weights; the flow layers are then
    initialised from a generator seeded with ``seed + 1``. ``loss(x, rng).elbo`` is the per-example bound,
    with terms ``.recon`` (log p(x|z_K)), ``.kl`` (log q_K(z_K|x) − log p(z_K)) and ``.log_det``
    (Σ_k log|det J_k|, what the flow adds over the Gaussian).
    """

    name = "flow"
    gaussian_posterior = False  # encode gives the base density q_0; the posterior is q_K, after the flow
    posterior_description = "normalizing-flow q(z|x)"
    config_class = FlowVAEConfig

    def __init__(self, config):
        super().__init__(config)
        flow_rng = numpy.random.default_rng(config.seed + 1)
        self.flows = FlowSequence(
            config.flow, config.flow_steps, config.z_dim, rng=flow_rng, dtype=config.dtype
        )

    def latent_mean(self, x, y=None):
        """f_K ∘ … ∘ f_1(μ(x)): the base mean pushed through the flow, a point estimate of z_K (the image of
        q_0's mode, which is not in general the mean of q_K)."""
        mu, _ = self.encoder(x)
        z, _ = self.flows(mu)
        return z.data

    def _posterior_sample(self, x, eps):
        """z_K and log q_K(z_K|x) for base noise eps of shape (..., B, Z)."""
        mu, logvar = self.encoder(x)  # (B, Z) each
        z0 = F.reparameterize(mu, logvar, eps)  # (..., B, Z)
        log_q0 = F.gaussian_log_prob(z0, mu, logvar).sum(axis=-1)  # (..., B)
        z_k, log_det = self.flows(z0)  # (..., B, Z), (..., B)
        return z_k, log_q0 - log_det, log_det  # eq. 13: log q_K(z_K) = log q_0(z_0) − Σ log|det J_k|

    def objective(self, x, rng, y=None):
        """−(E[log p(x|z_K)] − β·(log q_K(z_K|x) − log p(z_K))), one sample (eq. 15)."""
        x = self.check_x(x)
        eps = rng.standard_normal((x.shape[0], self.config.z_dim)).astype(self.dtype)  # (B, Z)
        z_k, log_qk, log_det = self._posterior_sample(x, eps)
        recon = self.likelihood.log_prob(self.decoder(z_k), x)  # (B,)
        kl = log_qk - self.prior.log_prob(z_k)  # (B,) single-sample KL(q_K ‖ p) estimate
        loss = self.kl_weight() * kl.mean() - recon.mean()
        return LossResult(loss, (recon - kl).data, recon=recon, kl=kl, log_det=log_det)

    def log_weights(self, x, k, rng, y=None):
        """log p(x, z_K) − log q_K(z_K|x) for k samples z_K ~ q_K(z|x): shape (k, B), a Tensor (their
        log-mean-exp is the importance-weighted bound of Burda et al. 2016)."""
        x = self.check_x(x)
        eps = rng.standard_normal((k, x.shape[0], self.config.z_dim)).astype(self.dtype)  # (k, B, Z)
        z_k, log_qk, _ = self._posterior_sample(x, eps)  # (k, B, Z), (k, B)
        log_px_given_z = self.likelihood.log_prob(self.decoder(z_k), x)  # (k, B)
        return log_px_given_z + self.prior.log_prob(z_k) - log_qk

    def posterior_sample(self, x, n, rng, y=None):
        """n draws of q_K(z|x) for one example x (1, x_dim): base samples z_0 = μ + σ ε pushed through the
        flow, z_K = f_K ∘ … ∘ f_1(z_0). An array (n, z_dim)."""
        z0 = super().posterior_sample(x, n, rng, y)  # (n, Z) from q_0
        z_k, _ = self.flows(Tensor(z0))
        return z_k.numpy()

    @classmethod
    def size_lower_bounds(cls, config):
        """The encoder's weights, plus at least z_dim numbers per flow step."""
        return mlp_size_lower_bounds(
            [[config.x_dim, *config.hidden, config.z_dim]], extra_numbers=config.flow_steps * config.z_dim
        )
