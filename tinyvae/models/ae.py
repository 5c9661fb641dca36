"""The plain autoencoder: the deterministic baseline that shows what the "variational" adds.

    z = f(x),   x̂ = g(z),   loss = −log p(x | g(f(x)))   (binary cross-entropy or, for a Gaussian with
                                                          fixed variance, half the squared error + const)

Nothing makes the codes z fill any particular region, so decoding z ~ N(0, I) (what :meth:`sample` does,
for comparison with the VAE: ``model.prior`` is the N(0, I) a VAE would have, which the autoencoder never
trained towards) mostly lands where no training example was encoded: the AE reconstructs
well but is not a generative model. It defines no p(x), so its ``LossResult.elbo`` is None.
"""

from __future__ import annotations

import dataclasses

import numpy

from tinyvae import nn
from tinyvae.models.base import DecoderLikelihood, LossResult, Model, ModelConfig, mlp_size_lower_bounds
from tinyvae.models.priors import StandardNormal
from tinyvae.models.registry import register
from tinyvae.models.vae import make_decoder


@dataclasses.dataclass
class AEConfig(ModelConfig):
    """The shared fields only; ``likelihood="gaussian"`` with the default fixed log-variance 0 is MSE."""


@register
class AE(Model):
    """Deterministic encoder and decoder MLPs trained on reconstruction alone."""

    name = "ae"
    config_class = AEConfig
    latent_kind = "deterministic"
    needs_rng = False

    def __init__(self, config):
        super().__init__(config)
        rng = numpy.random.default_rng(config.seed)
        self.encoder = nn.MLP(
            [config.x_dim, *config.hidden, config.z_dim],
            activation=config.activation,
            rng=rng,
            dtype=config.dtype,
        )
        self.decoder = make_decoder(config, rng)
        self.likelihood = DecoderLikelihood(config)
        self.prior = StandardNormal(config.z_dim, config.dtype)

    def encode(self, x, y=None):
        """The code z = f(x), a Tensor (B, z_dim)."""
        return self.encoder(self.check_x(x))

    def decode_logits(self, z, y=None):
        return self.decoder(z)

    def latent_mean(self, x, y=None):
        return self.encoder(x).data

    def objective(self, x, rng=None, y=None):
        """−log p(x | g(f(x))) averaged over the batch; ``rng`` is unused (nothing is sampled)."""
        x = self.check_x(x)
        recon = self.likelihood.log_prob(self.decoder(self.encoder(x)), x)  # (B,)
        return LossResult(-recon.mean(), None, recon=recon)

    @classmethod
    def size_lower_bounds(cls, config):
        """The encoder's weights x_dim → hidden → z_dim."""
        return mlp_size_lower_bounds([[config.x_dim, *config.hidden, config.z_dim]])
