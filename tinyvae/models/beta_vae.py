"""β-VAE (Higgins et al. 2017, "β-VAE: Learning Basic Visual Concepts with a Constrained Variational
Framework", eq. 4): the VAE objective with the KL weighted by β,

    L(x) = E_q[log p(x|z)] − β · KL(q(z|x) ‖ p(z)).

β > 1 presses the posterior towards the factorised prior, trading reconstruction for latents that tend
to vary one factor at a time; β < 1 loosens it. ``.elbo`` still reports the true bound (β = 1). The
model is :class:`~tinyvae.models.vae.VAE` with a different default β; warm-up and free bits apply too.

**β-TC-VAE** (``total_correlation=True``; Chen et al. 2018, "Isolating Sources of Disentanglement in
Variational Autoencoders", eq. 2 and Sec. 4.1). Averaged over the data n ~ p(n), the KL splits in three,

    E_n KL(q(z|n) ‖ p(z)) = I_q(z; n)                       index-code mutual information
                          + KL(q(z) ‖ Π_d q(z_d))           total correlation (TC)
                          + Σ_d KL(q(z_d) ‖ p(z_d))         dimension-wise KL,

with q(z) = E_n q(z|n) the aggregate posterior. Only the TC says that the latents depend on each other,
so β-TC-VAE weights it alone by β and the other two by 1. q(z) is a sum over the whole dataset; the
minibatch-weighted sampling estimator (their Sec. 4.1) replaces it with the M examples of the batch,
for a sample z_i ~ q(z|n_i):

    log q(z_i) ≈ log Σ_j q(z_i | n_j) − log(N M),      log q(z_{i,d}) ≈ log Σ_j q(z_{i,d} | n_j) − log(N M),

N being the dataset size (``dataset_size``). Then, per example, MI = log q(z_i|n_i) − log q(z_i),
TC = log q(z_i) − Σ_d log q(z_{i,d}), dimension-wise KL = Σ_d log q(z_{i,d}) − log p(z_i): the three sum to
log q(z_i|n_i) − log p(z_i), the one-sample estimate of the KL, exactly (so with β = 1 the loss is the
negative ELBO estimated with a sampled KL, unbiased). The estimator of each term is biased (log of a
minibatch sum) and N only shifts MI, TC and the dimension-wise KL by constants (+log N, +(D − 1) log N,
−D log N) that cancel in their sum and never reach a gradient.
"""

from __future__ import annotations

import dataclasses
import math

import tinyvae.functional as F
from tinyvae import shapes
from tinyvae.models.base import LossResult, check_flag, check_integer
from tinyvae.models.registry import register
from tinyvae.models.vae import VAE, VAEConfig


@dataclasses.dataclass
class BetaVAEConfig(VAEConfig):
    beta: float = 4.0  # Higgins et al. report β = 4 for their 2-D shapes experiments
    # β-TC-VAE (Chen et al. 2018): β weights only the total correlation of q(z); the index-code MI and the
    # dimension-wise KL keep weight 1. Estimated by minibatch-weighted sampling (see the module docstring).
    total_correlation: bool = False
    # N in that estimator: the training set's size (the shapes' train split by default). It shifts the
    # reported MI, TC and dimension-wise KL by constants only; the loss's gradient does not depend on it.
    dataset_size: int = shapes.SIZES["train"]

    def validate(self):
        super().validate()
        check_flag(self, "total_correlation")
        check_integer(self, "dataset_size", 1)
        if self.total_correlation and (self.free_bits > 0 or self.mc_samples != 1):
            raise ValueError(
                f"{type(self).__name__}: total_correlation=True estimates the KL's three parts from one "
                f"sample per example; it does not combine with free_bits={self.free_bits!r} or "
                f"mc_samples={self.mc_samples!r} (use free_bits=0, mc_samples=1)"
            )


@register
class BetaVAE(VAE):
    name = "beta-vae"
    config_class = BetaVAEConfig

    def data_parallel_problem(self):
        if self.config.total_correlation:
            return (
                "the total-correlation term is estimated from the whole minibatch (minibatch-weighted "
                "sampling pairs every example with every other), so a shard's estimate is not the batch's"
            )
        return None

    def objective(self, x, rng, y=None):
        """The β-VAE loss, or with ``total_correlation`` the β-TC-VAE loss
        −E_q[log p(x|z)] + MI + β·TC + dimension-wise KL, batch means; ``.elbo`` is the bound with the
        sampled KL, and the terms ``mi``, ``tc``, ``dim_kl`` (their sum is ``kl``) are reported."""
        if not self.config.total_correlation:
            return super().objective(x, rng, y)
        x = self.check_x(x)
        mu, logvar = self.posterior_parameters(x)  # (M, Z) each
        z = F.reparameterize(mu, logvar, rng.standard_normal(mu.shape).astype(self.dtype))  # (M, Z)
        recon = self.likelihood.log_prob(self.decode_logits(z), x)  # (M,)
        mi, tc, dim_kl = self.kl_parts(z, mu, logvar)  # (M,) each
        loss = (mi + self.kl_weight() * tc + dim_kl).mean() - recon.mean()
        kl = mi + tc + dim_kl  # = log q(z|x) − log p(z), the sampled KL
        return LossResult(loss, (recon - kl).data, recon=recon, kl=kl, mi=mi, tc=tc, dim_kl=dim_kl)

    def kl_parts(self, z, mu, logvar):
        """(MI, TC, dimension-wise KL) per example, Tensors (M,), by minibatch-weighted sampling (Chen et
        al. 2018, Sec. 4.1) from samples z (M, Z) of q(z|x) = N(μ, σ²) of the batch."""
        m, d = mu.shape
        log_norm = math.log(self.config.dataset_size * m)  # log(N M)
        # log q(z_{i,d} | n_j) for every sample i and every example j of the batch: (M, M, Z)
        pairs = F.gaussian_log_prob(z.reshape(m, 1, d), mu.reshape(1, m, d), logvar.reshape(1, m, d))
        log_qz = F.logsumexp(pairs.sum(axis=-1), axis=1) - log_norm  # (M,) log q(z_i)
        log_qz_dims = (F.logsumexp(pairs, axis=1) - log_norm).sum(axis=-1)  # (M,) Σ_d log q(z_{i,d})
        log_qz_given_x = F.gaussian_log_prob(z, mu, logvar).sum(axis=-1)  # (M,) log q(z_i | n_i)
        log_pz = self.prior.log_prob(z)  # (M,)
        return log_qz_given_x - log_qz, log_qz - log_qz_dims, log_qz_dims - log_pz
