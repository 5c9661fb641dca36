"""The conditional VAE (Sohn et al. 2015, "Learning Structured Output Representation using Deep
Conditional Generative Models"), conditioned on a class label as in the M2 model of Kingma et al. 2014
("Semi-Supervised Learning with Deep Generative Models") with the label always observed, so without M2's
classifier q(y|x).

With the label y one-hot encoded and concatenated to each network's input:

    q(z|x, y) = N(z; μ(x, y), diag σ²(x, y)),   p(z) = N(0, I),
    p(x|z, y) = Bernoulli(σ(f(z, y))) or N(f(z, y), σ_x²)

and the conditional evidence lower bound (Sohn et al. 2015, eq. 4, with their prior network p(z|x)
replaced by the label-independent N(0, I); Kingma et al. 2014, eq. 6, less its constant log p(y))

    ELBO(x | y) = E_q(z|x,y)[log p(x|z, y)] − KL(q(z|x, y) ‖ p(z)) ≤ log p(x | y),

estimated with one reparameterised sample, the KL in closed form. Because the decoder sees y, the latent
z is free to carry what the label does not say (style, for digits), and ``sample(n, rng, y=c)`` draws new
examples of the class c. Everything else (β, KL warm-up, free bits, the Monte-Carlo KL option) is the
VAE's, see :mod:`tinyvae.models.vae`.
"""

from __future__ import annotations

import dataclasses

import numpy

import tinyvae.functional as F
from tinyvae.models.base import DecoderLikelihood, Model, check_number
from tinyvae.models.priors import StandardNormal
from tinyvae.models.registry import register
from tinyvae.models.vae import VAE, GaussianEncoder, VAEConfig, conv_side, make_decoder
from tinyvae.tensor import Tensor


@dataclasses.dataclass
class CVAEConfig(VAEConfig):
    n_classes: int = 10  # number of labels y ∈ {0, ..., n_classes − 1}; 10 for MNIST digits
    # The one-hot code enters both networks multiplied by this. At 1 the label is a weak input beside z (its
    # mean square per coordinate is 0.1 against z's 1, and the first layer expects unit-variance inputs),
    # so the encoder puts the class into z, the decoder reads it from there, and samples ignore y: at the
    # command-line defaults 38% of class-conditional samples showed their label, 92% at 5 (z's energy,
    # ~√z_dim), with a test ELBO 2.8 nats better (benchmarks/RESULTS.md, "The conditional VAE's label").
    label_scale: float = 5.0

    @classmethod
    def from_dict(cls, values):
        """As ModelConfig.from_dict; a config saved before ``label_scale`` existed trained with 1.0."""
        if isinstance(values, dict) and "label_scale" not in values:
            values = {**values, "label_scale": 1.0}
        return super().from_dict(values)

    def validate(self):
        super().validate()
        check_number(self, "label_scale", low=0)
        value = self.n_classes
        if not isinstance(value, int | numpy.integer) or isinstance(value, bool) or value < 2:
            raise ValueError(
                f"{type(self).__name__}: n_classes must be an integer >= 2 (a label with one value "
                f"conditions on nothing), got {value!r}"
            )


@register
class CVAE(VAE):
    """The VAE with the one-hot label concatenated to the encoder's input x and the decoder's input z:
    q(z|x, y), p(x|z, y), p(z) = N(0, I); the bound is Sohn et al. (2015), eq. 4 (module docstring).

    Every call that touches a network needs the labels: ``loss(x, rng, y)``, ``encode(x, y)``,
    ``decode(z, y)``, ``reconstruct(x, y)``, ``sample(n, rng, y)`` (an int for all n, or n labels),
    ``interpolate(..., y=c)`` and ``log_weights(x, k, rng, y)``; a missing, misshapen or out-of-range y
    is refused by :meth:`Model.check_y`.
    """

    name = "cvae"
    config_class = CVAEConfig
    conditional = True

    def __init__(self, config):
        # Model.__init__, not VAE.__init__: the VAE would build networks with the unconditional input
        # sizes, only for us to throw them away (and to move the weight-initialisation stream).
        Model.__init__(self, config)
        rng = numpy.random.default_rng(config.seed)
        n_in = config.x_dim + config.n_classes  # encoder input: [x, one_hot(y)]
        self.encoder = GaussianEncoder(
            n_in, config.hidden, config.z_dim, config.activation, rng, config.dtype, conv_side(config)
        )
        self.decoder = make_decoder(
            config, rng, in_dim=config.z_dim + config.n_classes
        )  # input: [z, one_hot(y)]
        self.likelihood = DecoderLikelihood(config)
        self.prior = StandardNormal(config.z_dim, config.dtype)

    # ----- the label, as the networks see it -----
    def one_hot(self, labels):
        """(n,) integer labels → (n, n_classes) one-hot rows, in the model's dtype (a constant: no grad)."""
        return numpy.eye(self.config.n_classes, dtype=self.dtype)[labels]

    def _with_label(self, t, labels):
        """[t, s · one_hot(y)] along the last axis (s = ``label_scale``); a leading sample axis of t (k, B, ·)
        is matched by repeating the one-hot rows, which are the same for every sample of an example."""
        code = self.config.label_scale * self.one_hot(labels)  # (B, C): s · one_hot(y)
        code = numpy.broadcast_to(code, (*t.shape[:-1], code.shape[-1]))  # (..., B, C)
        return F.concatenate([t, Tensor(numpy.ascontiguousarray(code))], axis=-1)

    def _posterior(self, x, labels):
        return self.encoder(self._with_label(x, labels))  # μ, log σ² of q(z|x, y): (B, Z) each

    # ----- the interface -----
    def encode(self, x, y=None):
        """(μ, log σ²) of q(z|x, y), Tensors of shape (B, z_dim)."""
        x = self.check_x(x)
        return self._posterior(x, self.check_y(y, x.shape[0]))

    def decode_logits(self, z, y=None):
        """The decoder's output f(z, y) for z of shape (..., n, z_dim) and n labels."""
        if z.ndim < 2:
            raise ValueError(f"{self.name}: z has shape {z.shape}; expected (n, {self.config.z_dim})")
        return self.decoder(self._with_label(z, self.check_y(y, z.shape[-2])))

    def latent_mean(self, x, y=None):
        mu, _ = self._posterior(x, self.check_y(y, x.shape[0]))
        return mu.data

    def posterior_parameters(self, x, labels=None):
        """(μ, log σ²) of q(z|x, y): the VAE's objective (with L samples, free bits, ...) runs on these, and
        on ``decode_logits(z, y)``; ``loss(x, rng, y)`` needs integer labels of shape (B,)."""
        return self._posterior(x, labels)

    def log_weights(self, x, k, rng, y=None):
        """log p(x, z_k | y) − log q(z_k | x, y) for k samples z_k ~ q(z|x, y): shape (k, B), a Tensor.

        Their log-mean-exp is the importance-weighted bound (Burda et al. 2016) on the conditional
        log-likelihood log p(x|y), which it approaches as k grows."""
        x = self.check_x(x)
        labels = self.check_y(y, x.shape[0])
        mu, logvar = self._posterior(x, labels)  # (B, Z)
        eps = rng.standard_normal((k, *mu.shape)).astype(self.dtype)
        z = F.reparameterize(mu, logvar, eps)  # (k, B, Z)
        log_px_given_z = self.likelihood.log_prob(self.decode_logits(z, labels), x)  # (k, B)
        log_qz = F.gaussian_log_prob(z, mu, logvar).sum(axis=-1)  # (k, B)
        return log_px_given_z + self.prior.log_prob(z) - log_qz
