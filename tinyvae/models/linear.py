"""The linear-Gaussian VAE: a model whose every quantity is known exactly, to test the others against.

Generative model (probabilistic PCA, Tipping & Bishop 1999, eq. 2 and 6; Bishop 2006, PRML Sec. 12.2):

    p(z) = N(0, I),   p(x|z) = N(x; z W + b, Ψ),   Ψ = diag(σ²)        W: (Z, X), so x = z W + b + noise

(rows of z and x as in ``F.linear``). Then x is Gaussian with

    p(x) = N(x; b, C),   C = Wᵀ W + Ψ                                  (PRML eq. 12.35 with W_PRML = Wᵀ)

and the posterior is Gaussian with a covariance that does not depend on x (PRML eq. 12.42, written for a
diagonal Ψ, which covers factor analysis too):

    p(z|x) = N(z; (x − b) Ψ⁻¹ Wᵀ Σ, Σ),   Σ = (I + W Ψ⁻¹ Wᵀ)⁻¹.

With Ψ = σ² I this is PRML's M⁻¹ Wᵀ(x − μ) and σ² M⁻¹ with M = W Wᵀ + σ² I.

The encoder is amortised but linear: q(z|x) = N(x A + c, diag exp(s)), A: (X, Z), c: (Z,), s: (Z,). It
can represent the true posterior mean exactly, and the true covariance whenever Σ is diagonal (W with
orthogonal rows and Ψ = σ² I). The ELBO is then analytic too (see :meth:`LinearGaussianVAE.exact_elbo`),
so log p(x) − ELBO = KL(q(z|x) ‖ p(z|x)) can be checked to rounding error.

Observation noise: ``gaussian_logvar`` of the config, as for every model — a fixed float gives Ψ = σ² I
(PPCA); None learns one log σ²_i per feature (Ψ diagonal: factor analysis), still exact.
"""

from __future__ import annotations

import dataclasses
import math

import numpy

import tinyvae.functional as F
from tinyvae import nn
from tinyvae.autodiff import no_grad
from tinyvae.models.base import (
    DecoderLikelihood,
    LossResult,
    Model,
    ModelConfig,
    gaussian_posterior_sample,
    mlp_size_lower_bounds,
)
from tinyvae.models.priors import StandardNormal
from tinyvae.models.registry import register
from tinyvae.tensor import host_array

LOG_2PI = math.log(2 * math.pi)


@dataclasses.dataclass
class LinearGaussianConfig(ModelConfig):
    """ModelConfig with a Gaussian likelihood and no hidden layers (the maps are linear).

    ``gaussian_logvar``: a float fixes log σ² for every feature (PPCA); None learns one per feature.
    ``hidden`` and ``activation`` are unused and kept only so every config has the same fields.
    """

    hidden: tuple = ()  # unused: encoder and decoder are single affine maps
    likelihood: str = "gaussian"  # forced: the closed forms need a Gaussian p(x|z)

    def validate(self):
        super().validate()
        name = type(self).__name__
        if self.likelihood != "gaussian":
            raise ValueError(
                f"{name}: likelihood must be 'gaussian' (the closed forms need a Gaussian p(x|z)), "
                f"got {self.likelihood!r}"
            )
        if self.hidden:
            raise ValueError(f"{name}: hidden must be () (the model is linear), got {self.hidden}")


@register
class LinearGaussianVAE(Model):
    """PPCA / factor analysis decoder with a linear diagonal-Gaussian encoder; see the module docstring.

    Parameters: ``W`` (Z, X), ``b`` (X,) of the decoder; ``A`` (X, Z), ``c`` (Z,), ``s`` (Z,) of q(z|x);
    and, with ``gaussian_logvar=None``, ``likelihood.logvar`` (X,).
    """

    name = "linear"
    gaussian_posterior = True
    has_likelihood_bound = True
    posterior_description = "diagonal Gaussian q(z|x)"
    config_class = LinearGaussianConfig

    def __init__(self, config):
        super().__init__(config)
        rng = numpy.random.default_rng(config.seed)
        Z, X = config.z_dim, config.x_dim
        dtype = config.dtype
        # W ~ N(0, 1/Z): each feature's prior variance Σ_j W_ji² is about 1, like the noise's.
        self.W = nn.Parameter((rng.standard_normal((Z, X)) / math.sqrt(Z)).astype(dtype))
        self.b = nn.Parameter(numpy.zeros(X, dtype=dtype))
        self.A = nn.Parameter((0.1 * rng.standard_normal((X, Z))).astype(dtype))
        self.c = nn.Parameter(numpy.zeros(Z, dtype=dtype))
        self.s = nn.Parameter(numpy.zeros(Z, dtype=dtype))  # log variances of q(z|x), shared by all x
        self.likelihood = DecoderLikelihood(config)
        self.prior = StandardNormal(Z, dtype)  # the closed forms below assume exactly this prior

    # ----- the interface -----
    def encode(self, x, y=None):
        """(μ, log σ²) of q(z|x) = N(x A + c, diag exp(s)), Tensors of shape (B, z_dim)."""
        x = self.check_x(x)
        mu = F.linear(x, self.A, self.c)  # (B, Z)
        return mu, F.broadcast_to(self.s, mu.shape)  # (B, Z) each

    def decode_logits(self, z, y=None):
        """The mean of p(x|z): z W + b, shape (..., x_dim) (any leading dims)."""
        return F.linear(z, self.W, self.b)

    def latent_mean(self, x, y=None):
        mu, _ = self.encode(x)
        return mu.data

    def objective(self, x, rng, y=None):
        """−ELBO with one reparameterised sample and the analytic KL (Kingma & Welling 2014, eq. 10)."""
        x = self.check_x(x)
        mu, logvar = self.encode(x)  # (B, Z)
        eps = rng.standard_normal(mu.shape).astype(self.dtype)
        z = F.reparameterize(mu, logvar, eps)  # (B, Z)
        recon = self.likelihood.log_prob(self.decode_logits(z), x)  # (B,)
        kl = self.prior.analytic_kl(mu, logvar)  # (B,)
        return LossResult(kl.mean() - recon.mean(), (recon - kl).data, recon=recon, kl=kl)

    def log_weights(self, x, k, rng, y=None):
        """log p(x, z_k) − log q(z_k|x) for k samples z_k ~ q(z|x): a Tensor of shape (k, B); their
        log-mean-exp is the bound of Burda et al. (2016, eq. 8)."""
        x = self.check_x(x)
        mu, logvar = self.encode(x)  # (B, Z)
        eps = rng.standard_normal((k, *mu.shape)).astype(self.dtype)
        z = F.reparameterize(mu, logvar, eps)  # (k, B, Z)
        log_px_given_z = self.likelihood.log_prob(self.decode_logits(z), x)  # (k, B)
        log_qz = F.gaussian_log_prob(z, mu, logvar).sum(axis=-1)  # (k, B)
        return log_px_given_z + self.prior.log_prob(z) - log_qz

    def posterior_sample(self, x, n, rng, y=None):
        """n draws z = μ + σ ε of q(z|x) for one example x (1, x_dim): an array (n, z_dim)."""
        return gaussian_posterior_sample(self, x, n, rng, y)

    @classmethod
    def config_from_run(cls, fields):
        """The model is linear with a Gaussian p(x|z) and a fixed unit noise variance (PPCA): a run's hidden
        sizes and likelihood do not apply to it."""
        linear = {"hidden": (), "likelihood": "gaussian", "gaussian_logvar": 0.0}
        return super().config_from_run({**fields, **linear})

    @classmethod
    def size_lower_bounds(cls, config):
        """The decoder's W (z_dim, x_dim) and the encoder's A (x_dim, z_dim)."""
        return mlp_size_lower_bounds([[config.x_dim, config.z_dim], [config.z_dim, config.x_dim]])

    # ----- the exact answers, in float64 NumPy -----
    def noise_variance(self):
        """The diagonal of Ψ, shape (x_dim,), float64."""
        if self.likelihood.fixed_logvar is None:
            logvar = numpy.asarray(self.likelihood.logvar.numpy(), dtype=numpy.float64)
        else:
            logvar = numpy.full(self.config.x_dim, float(self.likelihood.fixed_logvar))
        return numpy.exp(logvar)

    def marginal_covariance(self):
        """C = Wᵀ W + Ψ, shape (X, X): the covariance of x under the model (PRML eq. 12.36)."""
        W = self._float64(self.W)
        return W.T @ W + numpy.diag(self.noise_variance())

    def log_marginal(self, x):
        """Exact log p(x) = log N(x; b, Wᵀ W + Ψ) per example, shape (B,), float64 (Tipping & Bishop 1999,
        eq. 6; PRML eq. 12.35). Uses the Cholesky factor L of C: log|C| = 2 Σ log L_ii and the Mahalanobis
        term is ‖L⁻¹ (x − b)‖²."""
        d = self._data(x) - self._float64(self.b)  # (B, X)
        L = numpy.linalg.cholesky(self.marginal_covariance())  # (X, X), C = L Lᵀ
        solved = numpy.linalg.solve(L, d.T)  # (X, B): L⁻¹ (x − b)
        log_det = 2.0 * numpy.log(numpy.diag(L)).sum()
        return -0.5 * (self.config.x_dim * LOG_2PI + log_det + (solved**2).sum(axis=0))

    def true_posterior(self, x):
        """p(z|x) = N(mean, cov): mean (B, Z) and covariance (Z, Z), float64 (PRML eq. 12.42, for a
        diagonal Ψ): Σ = (I + W Ψ⁻¹ Wᵀ)⁻¹, mean = (x − b) Ψ⁻¹ Wᵀ Σ."""
        W = self._float64(self.W)  # (Z, X)
        W_over_noise = W / self.noise_variance()  # (Z, X): W Ψ⁻¹
        cov = numpy.linalg.inv(numpy.eye(self.config.z_dim) + W_over_noise @ W.T)  # (Z, Z)
        cov = 0.5 * (cov + cov.T)  # exactly symmetric
        mean = (self._data(x) - self._float64(self.b)) @ W_over_noise.T @ cov  # (B, Z)
        return mean, cov

    def exact_elbo(self, x, q_mean=None, q_cov=None):
        """The ELBO E_q[log p(x|z)] − KL(q(z|x) ‖ p(z)) in closed form, per example (B,), float64.

        By default q is the encoder's N(x A + c, diag exp(s)); pass ``q_mean`` (B, Z) and a full
        ``q_cov`` (Z, Z) to evaluate any Gaussian q instead. With z ~ N(m, S) the decoder mean z W + b
        has mean m W + b and covariance Wᵀ S W, so (Kingma & Welling 2014, eq. 10, expectation taken
        exactly)

            E_q[log p(x|z)] = −½ Σ_i [ log 2π + log ψ_i + ((x − m W − b)_i² + (Wᵀ S W)_ii) / ψ_i ]
            KL(N(m, S) ‖ N(0, I)) = ½ [ tr S + m mᵀ − Z − log|S| ].
        """
        x = self._data(x)
        if q_mean is None and q_cov is None:
            with no_grad():
                q_mean = host_array(self.latent_mean(x))
            q_cov = numpy.diag(numpy.exp(self._float64(self.s)))
        elif q_mean is None or q_cov is None:
            raise ValueError("exact_elbo: pass both q_mean and q_cov, or neither (to use the encoder)")
        q_mean = numpy.asarray(q_mean, dtype=numpy.float64)
        q_cov = numpy.asarray(q_cov, dtype=numpy.float64)
        Z = self.config.z_dim
        if q_mean.shape != (x.shape[0], Z) or q_cov.shape != (Z, Z):
            raise ValueError(
                f"exact_elbo: q_mean has shape {q_mean.shape} and q_cov {q_cov.shape}; expected "
                f"({x.shape[0]}, {Z}) and ({Z}, {Z})"
            )
        W, b, noise = self._float64(self.W), self._float64(self.b), self.noise_variance()
        residual = x - q_mean @ W - b  # (B, X)
        spread = numpy.einsum("ji,jk,ki->i", W, q_cov, W)  # (X,): diagonal of Wᵀ S W
        expected_log_lik = -0.5 * (LOG_2PI + numpy.log(noise) + (residual**2 + spread) / noise).sum(axis=1)
        _, log_det = numpy.linalg.slogdet(q_cov)
        kl = 0.5 * (numpy.trace(q_cov) + (q_mean**2).sum(axis=1) - Z - log_det)
        return expected_log_lik - kl

    def _float64(self, parameter):
        return numpy.asarray(parameter.numpy(), dtype=numpy.float64)

    def _data(self, x):
        """x as float64 (B, X), checked but not rounded to the model's dtype."""
        self.check_x(x)
        return host_array(x)
