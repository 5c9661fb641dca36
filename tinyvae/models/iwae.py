"""The importance-weighted autoencoder (Burda, Grosse & Salakhutdinov 2016, "Importance Weighted
Autoencoders").

The same networks as the VAE, trained on a tighter bound. With K samples z_1..z_K ~ q(z|x) and weights
w_k = p(x, z_k) / q(z_k|x), their eq. 8 is

    L_K(x) = E[ log (1/K) Σ_k w_k ] = E[ logsumexp_k(log w_k) − log K ] ≤ log p(x).

L_1 is the VAE's ELBO, L_K ≤ L_{K+1} (their Theorem 1), and L_K → log p(x) as K → ∞ when the weights
are bounded. The gradient (their eq. 13-14) weighs each sample's log w_k gradient by its normalised
weight w̃_k = w_k / Σ_j w_j, which is exactly what the backward of ``F.logsumexp`` computes (a softmax).
"""

from __future__ import annotations

import dataclasses
import math

import numpy

import tinyvae.functional as F
from tinyvae.backend import array_module
from tinyvae.models.base import LossResult, check_integer
from tinyvae.models.registry import register
from tinyvae.models.vae import VAE, VAEConfig


@dataclasses.dataclass
class IWAEConfig(VAEConfig):
    """VAEConfig plus K, the number of importance samples in the bound (Burda et al. 2016, eq. 8)."""

    k: int = 5  # importance samples per example (K in Burda et al. 2016); 1 gives the VAE's ELBO
    # The VAE's beta, warmup_steps and free_bits weight a separate KL term, which the IWAE bound does not
    # have, so they must keep their defaults; analytic_kl is ignored (log q(z|x) enters through log w_k).

    def validate(self):
        super().validate()
        name = type(self).__name__
        check_integer(self, "k", 1, label="k (importance samples per example)")
        for field, neutral in (("beta", 1.0), ("warmup_steps", 0), ("free_bits", 0.0), ("mc_samples", 1)):
            if getattr(self, field) != neutral:
                raise ValueError(
                    f"{name}: {field} must be {neutral!r} for the IWAE, got {getattr(self, field)!r}: the "
                    "importance-weighted bound has no separate KL term to weight, and k sets its samples"
                )


@register
class IWAE(VAE):
    """A VAE trained on the K-sample importance-weighted bound L_K (Burda et al. 2016, eq. 8).

    ``loss(x, rng).elbo`` is the per-example estimate of L_K; two diagnostics come with it:

    * ``.elbo_k1``: the mean over the K samples of log w_k, an unbiased estimate of the ordinary ELBO
      (L_1) computed from the same samples, so ``elbo - elbo_k1`` ≥ 0 shows what the K samples buy
      (Jensen's inequality makes it non-negative sample by sample).
    * ``.ess``: the effective sample size (Σ_k w_k)² / Σ_k w_k², between 1 (one sample carries all the
      weight) and K (equal weights, q(z|x) = p(z|x)); computed in log space.
    """

    name = "iwae"
    config_class = IWAEConfig

    def objective(self, x, rng, y=None):
        """−(1/B) Σ_b L_K(x_b), with L_K = logsumexp_k(log w_k) − log K (Burda et al. 2016, eq. 8)."""
        k = self.config.k
        log_w = self.log_weights(x, k, rng)  # (K, B): log p(x, z_k) − log q(z_k|x)
        bound = F.logsumexp(log_w, axis=0) - math.log(k)  # (B,)
        loss = -bound.mean()
        weights = log_w.data.astype(numpy.float64)  # (K, B), where the model computes (a GPU under CuPy)
        # ESS = exp(2 logsumexp(log w) − logsumexp(2 log w)), the ratio computed without leaving log space.
        ess = log_w.xp.exp(2 * _logsumexp(weights) - _logsumexp(2 * weights))  # (B,)
        return LossResult(loss, bound.data, elbo_k1=weights.mean(axis=0), ess=ess)


def _logsumexp(a):
    """log Σ_k exp(a_k) over axis 0, on the array itself (diagnostics only: no gradient needed)."""
    xp = array_module(a)
    shift = a.max(axis=0)
    return shift + xp.log(xp.exp(a - shift).sum(axis=0))
