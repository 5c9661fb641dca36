"""β-VAE (Higgins et al. 2017, "β-VAE: Learning Basic Visual Concepts with a Constrained Variational
Framework", eq. 4): the VAE objective with the KL weighted by β,

    L(x) = E_q[log p(x|z)] − β · KL(q(z|x) ‖ p(z)).

β > 1 presses the posterior towards the factorised prior, trading reconstruction for latents that tend
to vary one factor at a time; β < 1 loosens it. ``.elbo`` still reports the true bound (β = 1). The
model is :class:`~tinyvae.models.vae.VAE` with a different default β; warm-up and free bits apply too.
"""

from __future__ import annotations

import dataclasses

from tinyvae.models.registry import register
from tinyvae.models.vae import VAE, VAEConfig


@dataclasses.dataclass
class BetaVAEConfig(VAEConfig):
    beta: float = 4.0  # Higgins et al. report β = 4 for their 2-D shapes experiments


@register
class BetaVAE(VAE):
    name = "beta-vae"
    config_class = BetaVAEConfig
