"""A VAE whose approximate posterior is a mixture of diagonal Gaussians.

    q(z|x) = Σ_k π_k(x) N(z; μ_k(x), diag σ_k²(x)),   p(z) = N(0, I),   k = 1 … K,

with the weights from a log-softmax head, log π = log_softmax(a(x)). A mixture has no closed-form KL to
N(0, I), so the KL is estimated by Monte Carlo, with the mixture density computed in log space:

    log q(z|x) = logsumexp_k [ log π_k + log N(z; μ_k, σ_k²) ].

The estimator (stratified over the components)
----------------------------------------------
Write the bound with the mixture expectation spelled out, E_q[f(z)] = Σ_k π_k E_{N_k}[f(z)]:

    ELBO(x) = Σ_k π_k(x) E_{ε_k ~ N(0, I)}[ f(μ_k + σ_k ε_k) ],   f(z) = log p(x|z) + log p(z) − log q(z|x),

and estimate it with one reparameterised draw from *every* component,

    ELBO_hat(x) = Σ_k π_k f(z_k),   z_k = μ_k + σ_k ε_k   (one ε_k per component, independent).

Why it is unbiased, gradient included: the component index is not sampled but summed out exactly, so the
only randomness is ε = (ε_1 … ε_K), whose law does not depend on the parameters φ. Hence
E_ε[ELBO_hat] = ELBO, and, since ELBO_hat is differentiable in φ for every ε, ∇_φ E_ε[ELBO_hat] =
E_ε[∇_φ ELBO_hat]: the pathwise gradient that backpropagation computes is unbiased for all of π, μ and σ.
In particular ∂ELBO_hat/∂π_k = f(z_k) is an unbiased estimate of E_{N_k}[f], which is exactly ∂ELBO/∂π_k;
no score-function (REINFORCE) term is needed, as it would be if k were drawn from π. This is the
stratified estimator for mixture posteriors used by Roeder et al. (2017, "Sticking the Landing", in their
extension to mixture approximations) and Morningstar et al. (2021, "Automatic Differentiation Variational
Inference with Mixtures", the stratified ELBO, their SIWAE bound with one sample per component); we keep
the full gradient of log q (no "sticking the landing" stop-gradient). It costs K decoder passes per example.

The reported terms are recon = Σ_k π_k log p(x|z_k) and kl = Σ_k π_k [log q(z_k|x) − log p(z_k)], so that
ELBO_hat = recon − kl.
"""

from __future__ import annotations

import dataclasses

import numpy

import tinyvae.functional as F
from tinyvae import nn
from tinyvae.models.base import DecoderLikelihood, LossResult, Model, mlp_size_lower_bounds
from tinyvae.models.priors import StandardNormal
from tinyvae.models.registry import register
from tinyvae.models.vae import VAEConfig, make_decoder


@dataclasses.dataclass
class MixtureVAEConfig(VAEConfig):
    """The VAE's settings plus K = ``components``, the size of the mixture q(z|x) = Σ_k π_k N(μ_k, σ_k²)."""

    components: int = 4  # K, the number of Gaussians in q(z|x); 1 gives the Gaussian VAE with a sampled KL
    # analytic_kl is ignored (a mixture's KL has no closed form); free_bits must stay 0, since the sampled
    # KL of a mixture does not split into per-dimension terms. beta and warmup_steps work as in the VAE.

    def validate(self):
        super().validate()
        name = type(self).__name__
        if self.arch != "mlp":
            raise ValueError(f"{name}: arch must be 'mlp' (the mixture encoder is an MLP), got {self.arch!r}")
        if self.mc_samples != 1:
            raise ValueError(
                f"{name}: mc_samples must be 1, got {self.mc_samples!r}: one sample per component already"
            )
        k = self.components
        if not isinstance(k, int | numpy.integer) or isinstance(k, bool) or k < 1:
            raise ValueError(f"{name}: components must be an integer >= 1, got {k!r}")
        if self.free_bits != 0:
            raise ValueError(
                f"{name}: free_bits must be 0 for the mixture posterior, got {self.free_bits!r}: its sampled "
                "KL has no per-dimension terms to floor"
            )


class MixtureEncoder(nn.Module):
    """x → (log π, μ, log σ²) of a K-component diagonal-Gaussian mixture: one MLP whose K + 2KZ outputs are
    laid out as [mixture logits (K) | μ_1 … μ_K (KZ) | log σ²_1 … log σ²_K (KZ)]."""

    def __init__(self, in_dim, hidden, z_dim, components, activation, rng, dtype):
        super().__init__()
        self.z_dim, self.components = z_dim, components
        sizes = [in_dim, *hidden, components * (1 + 2 * z_dim)]
        self.net = nn.MLP(sizes, activation=activation, rng=rng, dtype=dtype)

    def forward(self, x):
        k, z = self.components, self.z_dim
        stats = self.net(x)  # (B, K + 2KZ)
        lead = stats.shape[:-1]
        log_pi = F.log_softmax(stats[..., :k], axis=-1)  # (B, K): normalised log-weights
        mu = stats[..., k : k + k * z].reshape(*lead, k, z)  # (B, K, Z)
        logvar = F.clamp_logvar(stats[..., k + k * z :]).reshape(*lead, k, z)  # (B, K, Z), kept finite
        return log_pi, mu, logvar


def mixture_log_prob(z, log_pi, mu, logvar):
    """log q(z|x) = logsumexp_k [log π_k + Σ_d log N(z_d; μ_kd, σ²_kd)] for z of shape (S, B, Z) and a
    mixture per example (log_pi (B, K), mu and logvar (B, K, Z)): shape (S, B)."""
    per_component = F.gaussian_log_prob(z[..., None, :], mu, logvar).sum(axis=-1)  # (S, B, K)
    return F.logsumexp(per_component + log_pi, axis=-1)  # (S, B)


@register
class MixtureVAE(Model):
    """VAE with a mixture-of-Gaussians posterior and the stratified Monte-Carlo bound of the module
    docstring (Roeder et al. 2017; Morningstar et al. 2021).

    ``encode(x)`` returns (log π (B, K), μ (B, K, Z), log σ² (B, K, Z)); ``latent_mean`` is the mixture
    mean Σ_k π_k μ_k. ``loss(x, rng).elbo`` is the per-example stratified estimate with terms ``.recon``
    and ``.kl`` (both π-weighted sums over the components).
    """

    name = "mixture"
    config_class = MixtureVAEConfig
    has_likelihood_bound = True
    posterior_description = "mixture-of-Gaussians q(z|x)"

    def __init__(self, config):
        super().__init__(config)
        rng = numpy.random.default_rng(config.seed)
        self.encoder = MixtureEncoder(
            config.x_dim, config.hidden, config.z_dim, config.components, config.activation, rng, config.dtype
        )
        self.decoder = make_decoder(config, rng)
        self.likelihood = DecoderLikelihood(config)
        self.prior = StandardNormal(config.z_dim, config.dtype)

    def encode(self, x, y=None):
        """(log π, μ, log σ²) of q(z|x): Tensors of shapes (B, K), (B, K, Z), (B, K, Z)."""
        return self.encoder(self.check_x(x))

    def decode_logits(self, z, y=None):
        return self.decoder(z)

    def latent_mean(self, x, y=None):
        """The mixture mean E_q[z] = Σ_k π_k μ_k, an array (B, Z)."""
        log_pi, mu, _ = self.encoder(x)
        return (log_pi.xp.exp(log_pi.data)[..., None] * mu.data).sum(axis=-2)

    def kl_weight(self):
        """β, ramped linearly from 0 over the first ``warmup_steps`` training steps (as in the VAE)."""
        if self.config.warmup_steps == 0:
            return self.config.beta
        return self.config.beta * min(1.0, self.training_steps / self.config.warmup_steps)

    def objective(self, x, rng, y=None):
        """−(recon − β·kl), both π-weighted over one reparameterised sample per component (stratified)."""
        x = self.check_x(x)
        log_pi, mu, logvar = self.encoder(x)  # (B, K), (B, K, Z), (B, K, Z)
        mu_kb, logvar_kb = mu.transpose(1, 0, 2), logvar.transpose(1, 0, 2)  # (K, B, Z): components lead
        eps = rng.standard_normal(mu_kb.shape).astype(self.dtype)  # (K, B, Z): one draw per component
        z = F.reparameterize(mu_kb, logvar_kb, eps)  # (K, B, Z)  z_k ~ N(μ_k, σ_k²)
        recon_k = self.likelihood.log_prob(self.decoder(z), x)  # (K, B)  log p(x|z_k)
        kl_k = mixture_log_prob(z, log_pi, mu, logvar) - self.prior.log_prob(z)  # (K, B)
        pi = F.exp(log_pi).transpose(1, 0)  # (K, B)
        recon = (pi * recon_k).sum(axis=0)  # (B,)  Σ_k π_k log p(x|z_k)
        kl = (pi * kl_k).sum(axis=0)  # (B,)  Σ_k π_k [log q(z_k|x) − log p(z_k)]
        loss = self.kl_weight() * kl.mean() - recon.mean()
        return LossResult(loss, (recon - kl).data, recon=recon, kl=kl)

    def log_weights(self, x, k, rng, y=None):
        """log p(x, z_s) − log q(z_s|x) for k samples z_s ~ q(z|x): shape (k, B), a Tensor.

        Each sample picks its component from π (by inverse CDF on a uniform), then z = μ_c + σ_c ε; the
        weight uses the full mixture density q. Their log-mean-exp is the importance-weighted bound of
        Burda et al. (2016), for ``tinyvae.evaluate.log_likelihood``. This is an evaluation tool: the
        sampled component index carries no gradient, so do not train π on these weights (``loss`` sums the
        components out instead)."""
        x = self.check_x(x)
        log_pi, mu, logvar = self.encoder(x)  # (B, K), (B, K, Z), (B, K, Z)
        batch, xp = x.shape[0], x.xp  # the component choice runs where the model computes
        cdf = xp.cumsum(xp.exp(log_pi.data.astype(numpy.float64)), axis=-1)  # (B, K)
        uniform = xp.asarray(rng.uniform(size=(k, batch, 1)))  # (k, B, 1), drawn on the host
        component = xp.minimum((uniform > cdf).sum(axis=-1), self.config.components - 1)  # (k, B)
        rows = xp.broadcast_to(xp.arange(batch), component.shape)  # (k, B)
        eps = rng.standard_normal((k, batch, self.config.z_dim)).astype(self.dtype)  # (k, B, Z)
        z = F.reparameterize(mu[rows, component], logvar[rows, component], eps)  # (k, B, Z)
        log_px_given_z = self.likelihood.log_prob(self.decoder(z), x)  # (k, B)
        return log_px_given_z + self.prior.log_prob(z) - mixture_log_prob(z, log_pi, mu, logvar)

    def posterior_sample(self, x, n, rng, y=None):
        """n draws of q(z|x) for one example x (1, x_dim): a component c ~ Cat(π), then z = μ_c + σ_c ε.
        An array (n, z_dim)."""
        return self.posterior_sample_parts(x, n, rng, y)[0]

    def posterior_sample_parts(self, x, n, rng, y=None):
        """The draws of :meth:`posterior_sample` and the component c that drew each (ints (n,))."""
        log_pi, mu, logvar = (t.numpy()[0] for t in self.encode(x))  # (K,), (K, Z), (K, Z)
        pi = numpy.exp(log_pi - log_pi.max())
        component = rng.choice(len(pi), size=n, p=pi / pi.sum())  # (n,)
        eps = rng.standard_normal((n, mu.shape[-1]))  # (n, Z)
        return (mu[component] + numpy.exp(0.5 * logvar[component]) * eps).astype(self.dtype), component

    @classmethod
    def size_lower_bounds(cls, config):
        """The encoder's weights x_dim → hidden → components·z_dim (it outputs more: π and log σ² too)."""
        return mlp_size_lower_bounds([[config.x_dim, *config.hidden, config.components * config.z_dim]])
