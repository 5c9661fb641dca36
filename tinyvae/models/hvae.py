"""The Markovian hierarchical VAE (Luo 2022, "Understanding Diffusion Models: A Unified Perspective",
eqs. 6–8; the bottom-up hierarchical VAE of Sønderby et al. 2016, Sec. 2, before their ladder).

T ≥ 2 stochastic layers z_1 (next to x) … z_T (the top), each a Markov chain in both directions:

    generative  p(x, z_{1:T}) = p(z_T) p(x|z_1) Π_{t=2}^{T} p(z_{t−1}|z_t)            (Luo eq. 6)
    inference   q(z_{1:T}|x)  = q(z_1|x) Π_{t=2}^{T} q(z_t|z_{t−1})                   (Luo eq. 7)

with p(z_T) = N(0, I) and every other factor a diagonal Gaussian whose mean and log-variance come from an
MLP of the variable it conditions on. The bound is (Luo eq. 8)

    ELBO(x) = E_q[ log p(x|z_1) + Σ_{t=1}^{T−1} log p(z_t|z_{t+1}) + log p(z_T)
                   − Σ_{t=1}^{T} log q(z_t|z_{t−1}) ]
            = E_q[log p(x|z_1)] − Σ_{t=1}^{T} KL_t,     z_0 = x,

    KL_t = E_q[ log q(z_t|z_{t−1}) − log p(z_t|z_{t+1}) ]   (t < T),
    KL_T = E_q[ KL(q(z_T|z_{T−1}) ‖ N(0, I)) ].

**The estimator.** One reparameterised sample of the whole chain, drawn bottom-up (z_1 from x, then z_2
from z_1, ...). For the top layer the prior N(0, I) does not depend on anything sampled, so given the
sampled parent z_{T−1} the inner expectation over z_T is the closed-form Gaussian KL: its estimate is
unbiased (the tower rule) and has less variance than a sample (Rao-Blackwellisation). For a lower layer
t < T no closed form exists: its prior p(z_t|z_{t+1}) is evaluated at z_{t+1}, which was itself drawn
from q(z_{t+1}|z_t) *after* z_t, so the two Gaussians condition on different, dependent variables and z_t
cannot be integrated out with z_{t+1} held fixed. We use the single-sample log q(z_t|z_{t−1}) −
log p(z_t|z_{t+1}) at the joint sample: since that sample comes from q(z_{1:T}|x), its expectation is KL_t
exactly, so the estimate (and the ELBO, a sum of such terms) is unbiased, and so is its reparameterised
gradient. Only the top layer's KL_T is a true KL divergence, so ≥ 0; a lower layer's sampled term, and
even its expectation KL_t, can be negative for an example. Either way recon − Σ_t kl_t is the ELBO.

``encode(x)`` and ``latent_mean(x)`` give the bottom layer, q(z_1|x): z_1 is what the decoder reads, so
``reconstruct``, ``interpolate`` and attribute vectors (all of which call ``decode`` on a latent) work in
z_1-space. ``sample_latents`` walks the prior chain top-down, z_T ~ N(0, I), z_{t−1} ~ p(z_{t−1}|z_t),
and returns z_1: drawing z_1 from N(0, I) instead would ignore every layer above it.
"""

from __future__ import annotations

import dataclasses

import numpy

import tinyvae.functional as F
from tinyvae.autodiff import no_grad
from tinyvae.models.base import (
    DecoderLikelihood,
    LossResult,
    Model,
    ModelConfig,
    check_flag,
    mlp_size_lower_bounds,
)
from tinyvae.models.priors import MarkovChain
from tinyvae.models.registry import register
from tinyvae.models.vae import GaussianEncoder, make_decoder


@dataclasses.dataclass
class HVAEConfig(ModelConfig):
    # Latent sizes bottom first: z_dims[0] is z_1 (read by the decoder), z_dims[-1] the top z_T.
    z_dims: tuple = (20, 10)
    # z_1's size, which is what decode() takes; left as None it is set from z_dims[0] (must agree if given).
    z_dim: int | None = None
    # The top layer's KL against N(0, I) in closed form given its sampled parent; False: the single-sample
    # estimate, like the lower layers (then log_weights with k = 1 equals the ELBO on the same noise).
    analytic_kl: bool = True

    def __post_init__(self):
        if isinstance(self.z_dims, list | tuple):
            self.z_dims = tuple(self.z_dims)
            if self.z_dim is None and self.z_dims:
                self.z_dim = self.z_dims[0]
        super().__post_init__()

    def validate(self):
        name = type(self).__name__
        dims = self.z_dims
        if (
            not isinstance(dims, tuple)
            or len(dims) < 2
            or not all(
                isinstance(d, int | numpy.integer) and not isinstance(d, bool) and d >= 1 for d in dims
            )
        ):
            raise ValueError(
                f"{name}: z_dims must be a tuple of at least 2 positive integers (the sizes of z_1 … z_T, "
                f"bottom first), got {dims!r}"
            )
        super().validate()
        check_flag(self, "analytic_kl")
        if self.z_dim != dims[0]:
            raise ValueError(
                f"{name}: z_dim is the size of z_1, the layer the decoder reads, so it must equal "
                f"z_dims[0] = {dims[0]}; got z_dim={self.z_dim!r} (leave it out to have it set)"
            )


@register
class HVAE(Model):
    """Markovian hierarchical VAE: p(z_T) Π p(z_{t−1}|z_t) p(x|z_1) and q(z_1|x) Π q(z_t|z_{t−1}) (Luo
    2022, eqs. 6–7), trained on the ELBO of eq. 8 with per-layer KLs ``kl_1`` … ``kl_T`` (module docstring:
    single-sample for t < T, closed form for the top).

    Networks: ``inference[t−1]`` maps z_{t−1} (x for t = 1) to (μ, log σ²) of q(z_t|·); ``priors[t−1]``
    maps z_{t+1} to (μ, log σ²) of p(z_t|z_{t+1}) for t < T; ``decoder`` maps z_1 to logits or means. Every
    MLP has the config's ``hidden`` sizes.
    """

    name = "hvae"
    config_class = HVAEConfig
    latent_kind = "hierarchical"
    has_likelihood_bound = True

    def __init__(self, config):
        super().__init__(config)
        rng = numpy.random.default_rng(config.seed)
        dims = config.z_dims
        parents = (config.x_dim, *dims[:-1])  # what q(z_t|·) conditions on: x, z_1, ..., z_{T−1}
        self.inference = [
            GaussianEncoder(parent, config.hidden, z, config.activation, rng, config.dtype)
            for parent, z in zip(parents, dims, strict=True)
        ]
        self.priors = [  # p(z_t|z_{t+1}) for t = 1 … T−1
            GaussianEncoder(above, config.hidden, z, config.activation, rng, config.dtype)
            for z, above in zip(dims[:-1], dims[1:], strict=True)
        ]
        self.decoder = make_decoder(config, rng, in_dim=dims[0])
        self.likelihood = DecoderLikelihood(config)
        self.prior = MarkovChain(self.priors, dims[-1], config.dtype)  # p(z_T) Π p(z_t|z_{t+1})

    @property
    def n_layers(self):
        return len(self.config.z_dims)

    # ----- the two chains -----
    def _infer(self, x, rng, k=None):
        """One bottom-up pass: [(z_t, μ_t, log σ²_t) for t = 1 … T] with z_t ~ q(z_t|z_{t−1}).

        The noise is drawn layer by layer from the bottom, with shape (B, Z_t), or (k, B, Z_t) for k
        samples per example (the same stream: k = 1 gives the same numbers as no k)."""
        layers, parent = [], x
        for t, q in enumerate(self.inference):
            mu, logvar = q(parent)  # (B, Z_t), or (k, B, Z_t) above the bottom when k is given
            shape = (k, *mu.shape) if k is not None and t == 0 else mu.shape
            eps = rng.standard_normal(shape).astype(self.dtype)
            z = F.reparameterize(mu, logvar, eps)  # (B, Z_t) or (k, B, Z_t)
            layers.append((z, mu, logvar))
            parent = z
        return layers

    def _log_joint_terms(self, x, layers):
        """log p(x|z_1), and for t = 1 … T−1 the pair (log q(z_t|z_{t−1}), log p(z_t|z_{t+1})) at the sample,
        each summed over the latent dimensions."""
        recon = self.likelihood.log_prob(self.decoder(layers[0][0]), x)  # (…, B)
        pairs = []
        for t in range(self.n_layers - 1):
            z, mu, logvar = layers[t]
            mu_p, logvar_p = self.priors[t](layers[t + 1][0])  # p(z_t|z_{t+1}): (…, B, Z_t) each
            log_q = F.gaussian_log_prob(z, mu, logvar).sum(axis=-1)  # (…, B)
            log_p = F.gaussian_log_prob(z, mu_p, logvar_p).sum(axis=-1)  # (…, B)
            pairs.append((log_q, log_p))
        return recon, pairs

    # ----- the interface -----
    def objective(self, x, rng, y=None):
        """−mean ELBO (Luo eq. 8), one sample of the chain; terms ``recon`` and ``kl_1`` … ``kl_T`` with
        ELBO = recon − Σ_t kl_t per example (see the module docstring for the estimator)."""
        x = self.check_x(x)
        layers = self._infer(x, rng)
        recon, pairs = self._log_joint_terms(x, layers)
        kls = [log_q - log_p for log_q, log_p in pairs]  # KL_t for t < T, single-sample
        z_top, mu_top, logvar_top = layers[-1]
        top = self.prior.top  # p(z_T)
        kl_top = top.analytic_kl(mu_top, logvar_top) if self.config.analytic_kl else None  # closed form
        if kl_top is None:
            kl_top = F.gaussian_log_prob(z_top, mu_top, logvar_top).sum(axis=-1) - top.log_prob(z_top)
        kls.append(kl_top)
        elbo = recon
        for kl in kls:
            elbo = elbo - kl  # (B,)
        terms = {f"kl_{t}": kl for t, kl in enumerate(kls, start=1)}
        return LossResult(-elbo.mean(), elbo.data, recon=recon, **terms)

    def encode(self, x, y=None):
        """(μ, log σ²) of the bottom layer's q(z_1|x), Tensors of shape (B, z_dims[0]): z_1 is the latent
        the decoder reads. The upper layers are reached by sampling, see ``log_weights`` / ``loss``."""
        return self.inference[0](self.check_x(x))

    def latent_mean(self, x, y=None):
        """The mean of q(z_1|x): the point estimate that reconstruct and interpolate decode."""
        mu, _ = self.inference[0](x)
        return mu.data

    def decode_logits(self, z, y=None):
        """The decoder's output for the bottom latent z_1, of shape (..., z_dims[0])."""
        if z.shape[-1] != self.config.z_dims[0]:
            raise ValueError(
                f"{self.name}: z has shape {z.shape} but the decoder reads z_1, of size z_dims[0] = "
                f"{self.config.z_dims[0]} (sample_latents gives z_1 from the prior chain)"
            )
        return self.decoder(z)

    def log_weights(self, x, k, rng, y=None):
        """log p(x, z_{1:T}) − log q(z_{1:T}|x) for k bottom-up samples of the chain: shape (k, B), a Tensor.

        Their log-mean-exp is the importance-weighted bound on log p(x) (Burda et al. 2016); with k = 1
        and ``analytic_kl=False`` it is the loss's ELBO on the same noise."""
        x = self.check_x(x)
        layers = self._infer(x, rng, k=k)
        recon, pairs = self._log_joint_terms(x, layers)
        z_top, mu_top, logvar_top = layers[-1]
        weight = (
            recon
            + self.prior.top.log_prob(z_top)
            - F.gaussian_log_prob(z_top, mu_top, logvar_top).sum(axis=-1)
        )
        for log_q, log_p in pairs:
            weight = weight + log_p - log_q  # (k, B)
        return weight

    # ----- what this model adds to evaluation, and how a run configures it -----
    def _evaluated_loss(self, x, rng):
        was_training = self.training
        self.eval()
        try:
            with no_grad():
                return self.loss(x, rng)
        finally:
            self.train(was_training)

    def extra_metrics(self, x, y=None):
        """The mean KL of each layer, ``kl_1`` … ``kl_T`` in nats, on x (one sample of the chain, a fixed
        seed): where the hierarchy puts its information, and which layers collapsed to the prior."""
        terms = self._evaluated_loss(x, numpy.random.default_rng(0)).terms.items()
        return {name: float(numpy.mean(value)) for name, value in terms if name.startswith("kl_")}

    def elbo_terms(self, x, rng, y=None):
        """{"reconstruction": E_q log p(x|z_1), "kl_1": −KL_1, …, "kl_T": −KL_T} per example (Luo eq. 8, one
        sample of the chain): the terms of the bound with their signs, summing to the loss's ELBO."""
        result = self._evaluated_loss(x, rng)
        kls = {name: -value for name, value in result.terms.items() if name.startswith("kl_")}
        return {"reconstruction": result.terms["recon"], **kls}

    @classmethod
    def config_from_run(cls, fields):
        """``z_dim`` of a run sets the bottom layer; the layer above gets half as many (at least 1) unless
        the run gives ``z_dims`` itself."""
        fields = dict(fields)
        if fields.get("z_dims") is None:
            z_dim = fields.get("z_dim") or 20
            fields["z_dims"] = (z_dim, max(1, z_dim // 2))
        fields.pop("z_dim", None)
        return super().config_from_run(fields)

    @classmethod
    def size_lower_bounds(cls, config):
        """An inference MLP per layer (x or z_{t−1} → z_t) and a prior MLP per conditional (z_{t+1} → z_t)."""
        dims, hidden = config.z_dims, list(config.hidden)
        chains = [[p, *hidden, z] for p, z in zip([config.x_dim, *dims[:-1]], dims, strict=True)]
        chains += [[above, *hidden, z] for z, above in zip(dims[:-1], dims[1:], strict=True)]
        return mlp_size_lower_bounds(chains)
