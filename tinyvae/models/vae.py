"""The variational autoencoder (Kingma & Welling 2014, "Auto-Encoding Variational Bayes").

    q(z|x) = N(z; μ(x), diag σ²(x)),   p(z) = N(0, I),   p(x|z) = Bernoulli(σ(f(z))) or N(f(z), σ_x²)

trained by maximising the evidence lower bound (their eq. 10, with the analytic KL of Appendix B)

    ELBO(x) = E_q[log p(x|z)] − KL(q(z|x) ‖ p(z)) ≤ log p(x),

the expectation estimated with one reparameterised sample z = μ + σ ε, ε ~ N(0, I) (their Sec. 2.4).
The same class carries the options users reach for against posterior collapse: a KL weight ``beta``
(Higgins et al. 2017), a linear KL warm-up (Bowman et al. 2016; Sønderby et al. 2016) and free bits
(Kingma et al. 2016, eq. 15).
"""

from __future__ import annotations

import dataclasses

import numpy

import tinyvae.functional as F
from tinyvae import nn
from tinyvae.models.base import (
    DecoderLikelihood,
    LossResult,
    Model,
    ModelConfig,
    check_choice,
    check_flag,
    check_integer,
    check_number,
    gaussian_posterior_sample,
    mlp_size_lower_bounds,
)
from tinyvae.models.networks import (
    ARCHITECTURES,
    ConvDecoder,
    ConvEncoder,
    check_conv_arch,
    conv_size_lower_bounds,
    image_side,
)
from tinyvae.models.priors import StandardNormal
from tinyvae.models.registry import register


@dataclasses.dataclass
class VAEConfig(ModelConfig):
    beta: float = 1.0  # weight on the KL term; 1 gives the ELBO itself
    warmup_steps: int = 0  # KL warm-up: the weight rises linearly from 0 to beta over this many steps
    free_bits: float = 0.0  # per-dimension KL floor in nats (0 = off): KL_j below it is not penalised
    analytic_kl: bool = True  # False: estimate the KL from the sample, log q(z|x) − log p(z)
    # L, reparameterised samples per example in the Monte-Carlo estimate of E_q[log p(x|z)] (Kingma & Welling
    # 2014, eq. 10: the average over L samples; L = 1 in their experiments, and the default here).
    mc_samples: int = 1
    # The networks: "mlp" (the hidden sizes above) or "conv" (tinyvae.models.networks: two stride-2
    # convolutions and their transposes, for square one-channel images; hidden does not apply).
    arch: str = "mlp"

    def validate(self):
        super().validate()
        check_choice(self, "arch", ARCHITECTURES)
        check_conv_arch(self)
        check_integer(self, "mc_samples", 1, label="mc_samples (samples per example, L)")
        check_number(self, "beta", low=0)  # a finite number: beta=inf would make every loss inf or NaN
        check_integer(self, "warmup_steps", 0)
        check_number(self, "free_bits", low=0)
        check_flag(self, "analytic_kl")


class GaussianEncoder(nn.Module):
    """x → (μ, log σ²) of a diagonal Gaussian q(z|x): an MLP with one output layer of 2·z_dim units.

    The log σ² half passes through ``F.clamp_logvar``, a smooth clamp to (−30, 20) that is the identity
    inside (within 2e−8 on [−12, 2]): the sample's σ = exp(logvar / 2), the KL's σ² and the log-density's
    1/σ² overflow float32 once |logvar| passes 88, which one bad update can cause (a huge learning rate);
    the clamp keeps them finite without a kink that would zero the gradient (the choice and its range are
    explained at ``tinyvae.ops.gaussian.LOGVAR_RANGE``).

    With ``side`` given the network is :class:`tinyvae.models.networks.ConvEncoder` for side × side images
    (the first side² inputs; any after them, a label, join before its Linear layer) instead of the MLP.
    """

    def __init__(self, in_dim, hidden, z_dim, activation, rng, dtype, side=None):
        super().__init__()
        self.z_dim = z_dim
        if side is None:
            self.net = nn.MLP([in_dim, *hidden, 2 * z_dim], activation=activation, rng=rng, dtype=dtype)
        else:
            self.net = ConvEncoder(side, 2 * z_dim, rng, dtype, extra=in_dim - side * side)

    def forward(self, x):
        stats = self.net(x)  # (B, 2Z)
        return stats[..., : self.z_dim], F.clamp_logvar(stats[..., self.z_dim :])  # μ, log σ²: (B, Z) each


def conv_side(config):
    """The image side the conv networks take for a config with ``arch="conv"``, else None (the MLP)."""
    return image_side(config.x_dim) if getattr(config, "arch", "mlp") == "conv" else None


def make_decoder(config, rng, in_dim=None):
    """The network z → decoder output (logits or means): the MLP mirroring the encoder's hidden sizes, or
    with ``arch="conv"`` the transposed-convolution decoder of :mod:`tinyvae.models.networks`."""
    if conv_side(config) is not None:
        return ConvDecoder(in_dim or config.z_dim, conv_side(config), rng, config.dtype)
    sizes = [in_dim or config.z_dim, *reversed(config.hidden), config.x_dim]
    return nn.MLP(sizes, activation=config.activation, rng=rng, dtype=config.dtype)


@register
class VAE(Model):
    """Diagonal-Gaussian encoder, N(0, I) prior, Bernoulli or Gaussian decoder; see the module docstring.

    The prior is ``self.prior`` (:class:`~tinyvae.models.priors.StandardNormal`): a subclass that sets
    another one (a learned or mixture prior, say) keeps every loss and bound of this class, with the KL
    estimated by Monte Carlo where the new prior has no closed form."""

    name = "vae"
    config_class = VAEConfig
    gaussian_posterior = True
    has_likelihood_bound = True
    posterior_description = "diagonal Gaussian q(z|x)"

    def __init__(self, config):
        super().__init__(config)
        rng = numpy.random.default_rng(config.seed)
        self.encoder = GaussianEncoder(
            config.x_dim, config.hidden, config.z_dim, config.activation, rng, config.dtype, conv_side(config)
        )
        self.decoder = make_decoder(config, rng)
        self.likelihood = DecoderLikelihood(config)
        self.prior = StandardNormal(config.z_dim, config.dtype)

    def encode(self, x, y=None):
        """(μ, log σ²) of q(z|x), Tensors of shape (B, z_dim)."""
        return self.encoder(self.check_x(x))

    def decode_logits(self, z, y=None):
        return self.decoder(z)

    def latent_mean(self, x, y=None):
        mu, _ = self.encoder(x)
        return mu.data

    def kl_weight(self):
        """β, ramped linearly from 0 over the first ``warmup_steps`` training steps."""
        if self.config.warmup_steps == 0:
            return self.config.beta
        return self.config.beta * min(1.0, self.training_steps / self.config.warmup_steps)

    def objective(self, x, rng, y=None):
        """−(E_q[log p(x|z)] − β·KL), the expectation estimated by the mean over ``mc_samples`` = L
        reparameterised samples (one by default); ``.elbo`` is the unweighted bound per example. The
        conditional VAE shares this, through :meth:`posterior_parameters` and ``decode_logits``."""
        x = self.check_x(x)
        labels = self.check_y(y, x.shape[0])  # None for an unconditional model
        mu, logvar = self.posterior_parameters(x, labels)  # (B, Z) each
        samples = self.config.mc_samples
        shape = mu.shape if samples == 1 else (samples, *mu.shape)  # L = 1 draws exactly as it always did
        z = F.reparameterize(mu, logvar, rng.standard_normal(shape).astype(self.dtype))  # ([L,] B, Z)
        recon = self.likelihood.log_prob(self.decode_logits(z, labels), x)  # ([L,] B) log p(x|z)
        kl = self.prior.analytic_kl(mu, logvar) if self.config.analytic_kl else None  # (B,)
        if kl is None:  # sampled estimate, log q(z|x) − log p(z): unbiased, noisier
            kl = F.gaussian_log_prob(z, mu, logvar).sum(axis=-1) - self.prior.log_prob(z)  # ([L,] B)
            kl = kl if samples == 1 else kl.mean(axis=0)
        recon = recon if samples == 1 else recon.mean(axis=0)  # (B,): the average over the L samples
        penalty = self._free_bits_kl(mu, logvar) if self.config.free_bits > 0 else kl.mean()
        loss = self.kl_weight() * penalty - recon.mean()
        return LossResult(loss, (recon - kl).data, recon=recon, kl=kl)

    def posterior_parameters(self, x, labels=None):
        """(μ, log σ²) of q(z|x), Tensors (B, Z), for a checked x."""
        return self.encoder(x)

    def _free_bits_kl(self, mu, logvar):
        """Σ_j max(λ, KL_j) with KL_j the batch-mean KL of latent dimension j (Kingma et al. 2016, eq. 15):
        dimensions already below λ nats get no push towards the prior. max(a, λ) = λ + relu(a − λ)."""
        per_dim = F.gaussian_kl(mu[..., None], logvar[..., None]).mean(axis=0)  # (Z,): KL of each dimension
        floor = self.config.free_bits
        return (F.relu(per_dim - floor) + floor).sum()

    def log_weights(self, x, k, rng, y=None):
        """log p(x, z_k) − log q(z_k|x) for k samples z_k ~ q(z|x): shape (k, B), a Tensor.

        Their log-mean-exp is the importance-weighted bound of Burda et al. (2016); with large k it
        approaches log p(x) (used by ``tinyvae.evaluate.log_likelihood``)."""
        x = self.check_x(x)
        mu, logvar = self.encoder(x)  # (B, Z)
        eps = rng.standard_normal((k, *mu.shape)).astype(self.dtype)
        z = F.reparameterize(mu, logvar, eps)  # (k, B, Z)
        log_px_given_z = self.likelihood.log_prob(self.decoder(z), x)  # (k, B)
        log_qz = F.gaussian_log_prob(z, mu, logvar).sum(axis=-1)  # (k, B)
        return log_px_given_z + self.prior.log_prob(z) - log_qz

    def posterior_sample(self, x, n, rng, y=None):
        """n draws z = μ + σ ε of q(z|x) for one example x (1, x_dim): an array (n, z_dim)."""
        return gaussian_posterior_sample(self, x, n, rng, y)

    @classmethod
    def size_lower_bounds(cls, config):
        """The encoder's weights x_dim → hidden → z_dim (a lower bound: its output is 2·z_dim wide), or the
        conv encoder's."""
        if conv_side(config) is not None:
            return conv_size_lower_bounds(conv_side(config), config.z_dim)
        return mlp_size_lower_bounds([[config.x_dim, *config.hidden, config.z_dim]])
