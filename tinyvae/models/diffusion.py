"""Diffusion as a deep Markovian hierarchical VAE (Luo 2022, "Understanding Diffusion Models: A Unified
Perspective", Sec. "Variational Diffusion Models"; Ho et al. 2020, "Denoising Diffusion Probabilistic
Models"; Kingma et al. 2021, "Variational Diffusion Models").

Take the Markovian HVAE of :mod:`tinyvae.models.hvae` and change three things (Luo's three restrictions):
every latent x_1 … x_T has the data's size; the encoder is *fixed*, a Gaussian chain that adds a little
noise at each step; and its variances follow a schedule β_1 … β_T chosen so that x_T is pure noise:

    q(x_t | x_{t−1}) = N(√α_t x_{t−1}, (1 − α_t) I),   α_t = 1 − β_t,                    (Luo eq. 31)
    q(x_t | x_0)     = N(√ᾱ_t x_0, (1 − ᾱ_t) I),       ᾱ_t = Π_{s≤t} α_s,               (Luo eq. 61)

so x_t = √ᾱ_t x_0 + √(1 − ᾱ_t) ε in one step. Only the decoder is learned: the reverse chain
p(x_T) Π_t p(x_{t−1} | x_t) with p(x_T) = N(0, I) and p(x_{t−1} | x_t) = N(μ_θ(x_t, t), σ_t² I). The HVAE's
ELBO then splits into (Luo eq. 58)

    ELBO(x_0) = E_q(x_1|x_0)[log p(x_0 | x_1)]                                 reconstruction
              − KL(q(x_T | x_0) ‖ p(x_T))                                      prior matching
              − Σ_{t=2}^{T} E_q(x_t|x_0)[KL(q(x_{t−1} | x_t, x_0) ‖ p(x_{t−1} | x_t))]   denoising matching

where q(x_{t−1} | x_t, x_0) = N(μ̃_t, β̃_t I) is the forward chain run backwards with x_0 known (Luo eq. 84):

    μ̃_t = (√ᾱ_{t−1} β_t x_0 + √α_t (1 − ᾱ_{t−1}) x_t) / (1 − ᾱ_t),   β̃_t = β_t (1 − ᾱ_{t−1}) / (1 − ᾱ_t).

Every KL is between Gaussians, so it is ``F.gaussian_kl`` in closed form; nothing here needs a new op.

**The network predicts the noise.** Writing μ_θ(x_t, t) = (x_t − β_t / √(1 − ᾱ_t) · ε_θ(x_t, t)) / √α_t
(Ho et al. eq. 11) makes the denoising KL, with σ_t² = β̃_t, a weighted squared error (Luo eq. 130):

    KL_t = λ_t ‖ε − ε_θ(x_t, t)‖²,   λ_t = β_t² / (2 σ_t² α_t (1 − ᾱ_t)),   x_t = √ᾱ_t x_0 + √(1 − ᾱ_t) ε.

Ho et al. drop λ_t and train on L_simple = E_{t, ε} ‖ε − ε_θ(x_t, t)‖² (their eq. 14): the ELBO re-weighted,
with less weight on the small t whose noise is imperceptible. ``objective="simple"`` (the default) trains on
it, ``objective="elbo"`` on the bound itself; either way ``.elbo`` reports the bound.

**The estimator.** The T terms are too many to compute for every training example, so each example draws
one step t uniformly from 1 … T and the sum is estimated by T times that term (unbiased, Kingma et al.
2021 eq. 17): T · log p(x_0 | x_1) when t = 1, −T · KL_t otherwise; the prior matching term is exact.
:meth:`Diffusion.elbo_terms` computes all T terms (one sample of x_t each), for evaluation.

**The data end.** On real-valued data (the 2-D toys, ``likelihood="gaussian"``), x_0 = x and
p(x_0 | x_1) = N(μ_θ(x_1, 1), σ_1² I): the last reverse step's density, σ_1² = β_1. On binary pixels
(``likelihood="bernoulli"``) the chain runs on x_0 = 2x − 1 ∈ {−1, 1} and the last step is discretised as in
Ho et al. Sec. 3.3 with two bins split at 0: p(x = 1 | x_1) = P(N(μ, σ_1²) > 0) = Φ(μ / σ_1), here through
the logistic approximation Φ(u) ≈ sigmoid(1.702 u) (Bowling et al. 2009; at most 0.0095 off), so the
decoder is a Bernoulli with logit 1.702 μ_θ(x_1, 1) / σ_1: a proper distribution over binary images, so the
ELBO is a true bound on log p(x). (The config's ``gaussian_logvar`` does not apply: the last step's variance
is σ_1².)

**The network.** ε_θ(x_t, t) is an MLP whose every hidden layer also reads sinusoidal features of t
(Vaswani et al. 2017 Sec. 3.5, as Ho et al. embed the step): one network for all T steps.

The interface. The latent the decoder reads is x_1 (``latent_kind = "hierarchical"``, like the HVAE's z_1):
``encode(x)`` and ``latent_mean(x)`` give q(x_1 | x_0), ``decode(x_1)`` the last step's mean, and
``sample_latents(n)`` runs the learned reverse chain from x_T ~ N(0, I) down to x_1 (ancestral sampling,
Ho et al. Algorithm 2).
"""

from __future__ import annotations

import contextlib
import dataclasses
import math
import pathlib

import numpy

import tinyvae.functional as F
from tinyvae import figures, nn
from tinyvae.autodiff import no_grad
from tinyvae.backend import array_module, to_host
from tinyvae.models.base import (
    DecoderLikelihood,
    LossResult,
    Model,
    ModelConfig,
    check_choice,
    check_integer,
    check_number,
    mlp_size_lower_bounds,
)
from tinyvae.models.priors import Prior, StandardNormal
from tinyvae.models.registry import register
from tinyvae.tensor import Tensor

# Φ(u) ≈ sigmoid(1.702 u), the logistic approximation of the normal CDF (largest error 0.0095).
PROBIT_TO_LOGIT = 1.702
SCHEDULES = ("linear", "cosine")
OBJECTIVES = ("simple", "elbo")


@dataclasses.dataclass
class DiffusionConfig(ModelConfig):
    steps: int = 1000  # T, the depth of the chain (Ho et al. 2020 use 1000)
    schedule: str = "linear"  # β_t: "linear" from beta_start to beta_end (Ho et al.), or "cosine" (Nichol
    # & Dhariwal 2021, ᾱ_t = cos²((t/T + 0.008)/1.008 · π/2), which destroys information more evenly)
    beta_start: float = 1e-4  # β_1 of the linear schedule; also σ_1², the variance of the last reverse step
    beta_end: float = 0.02  # β_T of the linear schedule
    objective: str = "simple"  # "simple": ‖ε − ε_θ‖² (Ho et al. eq. 14); "elbo": the bound, weights λ_t
    # Steps t drawn for each example in one loss call (each with its own noise): more training signal per
    # pass over the data for the price of a larger batch through ε_θ.
    steps_per_example: int = 1
    # Sampling and evaluation use an exponential moving average of ε_θ's weights with this decay (Ho et al.
    # 2020 App. B use 0.9999 over 800k steps; 0.999 here, for runs of a few thousand), 0 to use the weights
    # as trained. Without it the last epoch's weights, a noisy point of Adam's walk, decide the samples.
    weight_average: float = 0.999
    time_features: int = 32  # sinusoidal features of t that every hidden layer of ε_θ reads (even)
    z_dim: int | None = None  # every latent x_t has the data's size: left None it is set to x_dim

    def __post_init__(self):
        if self.z_dim is None and isinstance(self.x_dim, int | numpy.integer):
            self.z_dim = self.x_dim
        super().__post_init__()

    def validate(self):
        super().validate()
        name = type(self).__name__
        if self.z_dim != self.x_dim:
            raise ValueError(
                f"{name}: every latent x_t of a diffusion model has the data's size, so z_dim must equal "
                f"x_dim = {self.x_dim}; got z_dim={self.z_dim!r} (leave it out to have it set)"
            )
        check_integer(self, "steps", 2, label="steps (T)")
        check_choice(self, "schedule", SCHEDULES)
        check_choice(self, "objective", OBJECTIVES)
        check_number(self, "beta_start", low=0)
        check_number(self, "beta_end", low=0)
        if not 0 < self.beta_start <= self.beta_end < 1:
            raise ValueError(
                f"{name}: the linear schedule needs 0 < beta_start <= beta_end < 1, got beta_start="
                f"{self.beta_start!r} and beta_end={self.beta_end!r}"
            )
        check_integer(self, "steps_per_example", 1)
        check_number(self, "weight_average", low=0)
        if not self.weight_average < 1:
            raise ValueError(f"{name}: weight_average must be in [0, 1), got {self.weight_average!r}")
        check_integer(self, "time_features", 2)
        if self.time_features % 2:
            raise ValueError(
                f"{name}: time_features must be even (sine and cosine pairs), got {self.time_features}"
            )


class NoiseSchedule:
    """β_t, α_t = 1 − β_t, ᾱ_t = Π_{s≤t} α_s and the reverse chain's constants, as float64 arrays indexed by t
    = 0 … T (entry 0: ᾱ_0 = 1, the clean data; β_0 is unused and set to 0)."""

    def __init__(self, steps, schedule="linear", beta_start=1e-4, beta_end=0.02):
        self.steps = T = int(steps)
        if schedule == "linear":
            betas = numpy.linspace(beta_start, beta_end, T, dtype=numpy.float64)
        else:  # cosine: ᾱ_t from Nichol & Dhariwal 2021 eq. 17, β_t = 1 − ᾱ_t / ᾱ_{t−1} capped at 0.999
            f = numpy.cos((numpy.arange(T + 1) / T + 0.008) / 1.008 * math.pi / 2) ** 2
            betas = numpy.minimum(1.0 - f[1:] / f[:-1], 0.999)
            # The last reverse step's variance: keep it a small positive number as with the linear schedule.
            betas[0] = max(betas[0], 1e-6)
        self.beta = numpy.concatenate([[0.0], betas])  # (T + 1,)
        self.alpha = 1.0 - self.beta
        self.alpha_bar = numpy.cumprod(self.alpha)  # ᾱ_0 = 1
        # q(x_{t−1} | x_t, x_0) = N(coef_x0 x_0 + coef_xt x_t, β̃_t I) (Luo eq. 84), for t ≥ 2
        previous = numpy.concatenate([[1.0], self.alpha_bar[:-1]])  # ᾱ_{t−1}
        with numpy.errstate(divide="ignore", invalid="ignore"):
            self.posterior_variance = self.beta * (1.0 - previous) / (1.0 - self.alpha_bar)
            self.coef_x0 = numpy.sqrt(previous) * self.beta / (1.0 - self.alpha_bar)
            self.coef_xt = numpy.sqrt(self.alpha) * (1.0 - previous) / (1.0 - self.alpha_bar)
        # The reverse chain's variance σ_t²: β̃_t for t ≥ 2 (the variance of the true reverse step given
        # x_0, Ho et al. Sec. 3.2), and β_1 for the last step, where β̃_1 = 0.
        self.sigma2 = numpy.where(numpy.arange(T + 1) >= 2, self.posterior_variance, self.beta)
        self.sigma2[0] = 0.0

    def elbo_weight(self, t):
        """λ_t = β_t² / (2 σ_t² α_t (1 − ᾱ_t)): KL_t = λ_t ‖ε − ε_θ‖² (module docstring), for t ≥ 2."""
        b, a, ab = self.beta[t], self.alpha[t], self.alpha_bar[t]
        return b * b / (2.0 * self.sigma2[t] * a * (1.0 - ab))


def time_features(t, count):
    """Sinusoidal features of the integer steps t (shape (B,)): [sin(t ω_k), cos(t ω_k)] for k < count / 2
    with ω_k = 10000^(−2k/count) (Vaswani et al. 2017 Sec. 3.5): nearby steps get nearby features, and the
    slow frequencies tell far-apart steps apart. An array (B, count) in float64."""
    half = count // 2
    omega = numpy.exp(-math.log(10000.0) * numpy.arange(half) / half)  # (count/2,)
    angles = numpy.asarray(t, dtype=numpy.float64)[:, None] * omega  # (B, count/2)
    return numpy.concatenate([numpy.sin(angles), numpy.cos(angles)], axis=1)


class NoisePredictor(nn.Module):
    """ε_θ(x_t, t): an MLP x_t → ε̂ whose every hidden layer reads [h, features(t)] (the step enters each
    layer, not only the first, so a narrow network still sees which step it denoises)."""

    def __init__(self, x_dim, hidden, n_features, activation, rng, dtype):
        super().__init__()
        widths = [x_dim, *hidden]
        self.hidden_layers = [
            nn.Linear(width + n_features, out, rng=rng, dtype=dtype)
            for width, out in zip(widths[:-1], widths[1:], strict=True)
        ]
        self.output = nn.Linear(widths[-1] + n_features, x_dim, rng=rng, dtype=dtype)
        self.activation = nn.ACTIVATIONS[activation]
        self.n_features = n_features

    def forward(self, x_t, t):
        features = Tensor(time_features(t, self.n_features).astype(x_t.dtype))  # (B, F)
        h = x_t
        for layer in self.hidden_layers:
            h = self.activation(layer(F.concatenate([h, features], axis=-1)))  # (B, H)
        return self.output(F.concatenate([h, features], axis=-1))  # (B, D)


class ReverseChain(Prior):
    """The diffusion model's prior over x_1: p(x_T) = N(0, I), then the learned steps p(x_{t−1} | x_t) down
    to x_1 (Ho et al. Algorithm 2). Its density over x_1 alone has no closed form (:meth:`log_prob` is
    not provided); :meth:`sample_chain` keeps the intermediate states for the chain figure."""

    def __init__(self, model):
        self.model = model  # a plain reference: the chain's parameters are the model's ε_θ
        self.top = StandardNormal(model.config.x_dim, model.config.dtype)

    @property
    def description(self):
        return f"the reverse chain from x_{self.model.config.steps} ~ N(0, I)"

    def log_prob(self, z):
        raise TypeError(
            "diffusion: log p(x_1) under the reverse chain has no closed form; the ELBO's terms are in "
            "Diffusion.elbo_terms"
        )

    def sample_chain(self, n, rng, keep=()):
        """x_1 after running the chain from x_T ~ N(0, I), and {t: x_t} for each t in ``keep`` (arrays in the
        model's array module: the chain stays on the GPU under CuPy; only the noise is drawn on the host)."""
        model, schedule = self.model, self.model.schedule
        xp = model.xp
        x = xp.asarray(self.top.sample(n, rng).astype(numpy.float64))  # (n, D)
        kept = {schedule.steps: x.copy()} if schedule.steps in keep else {}
        with no_grad(), model.averaged_weights():
            for t in range(schedule.steps, 1, -1):
                mean = model.reverse_mean(Tensor(x.astype(model.dtype)), numpy.full(n, t)).data
                noise = xp.asarray(rng.standard_normal(x.shape))
                x = mean + math.sqrt(schedule.sigma2[t]) * noise  # x_{t−1}
                if t - 1 in keep:
                    kept[t - 1] = x.copy()
        return x.astype(model.dtype), kept

    def sample(self, n, rng):
        return self.sample_chain(n, rng)[0]


@register
class Diffusion(Model):
    """A denoising diffusion model written as the Markovian HVAE with a fixed encoder (module docstring):
    ELBO = reconstruction − prior matching − Σ_{t≥2} denoising matching, every KL in closed form."""

    name = "diffusion"
    config_class = DiffusionConfig
    latent_kind = "hierarchical"
    figure_names = ("diffusion_chain.png", "denoising_terms.png")

    def data_parallel_problem(self):
        if self.config.steps_per_example > 1:
            return (
                f"with steps_per_example = {self.config.steps_per_example} it draws the (t, ε) of a batch as "
                "one (B·R, D) block, which a shard of the batch cannot reproduce; use --steps-per-example 1"
            )
        return None

    def __init__(self, config):
        super().__init__(config)
        rng = numpy.random.default_rng(config.seed)
        self.schedule = NoiseSchedule(config.steps, config.schedule, config.beta_start, config.beta_end)
        self.noise_predictor = NoisePredictor(
            config.x_dim, config.hidden, config.time_features, config.activation, rng, config.dtype
        )
        if config.likelihood == "bernoulli":  # b_i of the pixel-wise denoiser (see predict_noise)
            self.pixel_logits = nn.Parameter(numpy.zeros(config.x_dim, dtype=config.dtype))
        # The moving average of the weights (plain arrays, so the optimiser never sees them), kept where the
        # weights are: every training step updates it.
        self.average = {name: p.data.copy() for name, p in self.named_parameters()}
        self._averaged = False
        # The last step's variance σ_1² = β_1 is the Gaussian decoder's fixed variance (module docstring).
        last_step = dataclasses.replace(config, gaussian_logvar=math.log(self.schedule.sigma2[1]))
        self.likelihood = DecoderLikelihood(last_step)
        self.prior = ReverseChain(self)

    # ----- the two ends: data ↔ x_0 -----
    def to_chain(self, x):
        """x_0 for data x: 2x − 1 for Bernoulli pixels ({0, 1} → {−1, 1}), x itself for real values."""
        return 2.0 * x - 1.0 if self.config.likelihood == "bernoulli" else x

    # ----- the forward (encoder) chain, fixed -----
    def diffuse(self, x0, t, eps):
        """x_t = √ᾱ_t x_0 + √(1 − ᾱ_t) ε: a draw of q(x_t | x_0) for steps t (B,) and noise ε (B, D)."""
        ab = self.schedule.alpha_bar[t][:, None].astype(self.dtype)  # (B, 1)
        return x0 * numpy.sqrt(ab) + eps * numpy.sqrt(1.0 - ab)

    def forward_posterior(self, x0, x_t, t):
        """(μ̃_t, log β̃_t) of q(x_{t−1} | x_t, x_0), for steps t ≥ 2 (Luo eq. 84)."""
        s = self.schedule
        mean = x0 * s.coef_x0[t][:, None].astype(self.dtype) + x_t * s.coef_xt[t][:, None].astype(self.dtype)
        return mean, numpy.log(s.posterior_variance[t])[:, None].astype(self.dtype)

    # ----- the reverse (decoder) chain, learned -----
    # ----- the moving average of the weights -----
    def update_average(self):
        """avg ← d · avg + (1 − d) · θ with d = min(weight_average, (1 + k) / (10 + k)) at training step k:
        a short memory early on, when θ moves fast, then the configured one (the warm-up of TensorFlow's
        ExponentialMovingAverage with num_updates). Called by each training loss, so it sees θ after the
        previous optimiser step."""
        k = self.training_steps
        decay = min(self.config.weight_average, (1.0 + k) / (10.0 + k))
        for name, p in self.named_parameters():
            average = self.average[name]
            average *= decay
            average += (1.0 - decay) * p.data

    @contextlib.contextmanager
    def averaged_weights(self):
        """Run the block with the averaged weights in place of θ (no-op when weight_average is 0 or already
        inside); θ is put back afterwards, even on an error."""
        if self._averaged or self.config.weight_average == 0:
            yield
            return
        parameters = dict(self.named_parameters())
        trained = {name: p.data for name, p in parameters.items()}
        for name, p in parameters.items():
            p.data = p.xp.asarray(self.average[name])
        self._averaged = True
        try:
            yield
        finally:
            for name, p in parameters.items():
                p.data = trained[name]
            self._averaged = False

    def decode(self, z, y=None):
        with self.averaged_weights():
            return super().decode(z, y)

    def predict_noise(self, x_t, t):
        """ε_θ(x_t, t): the network's output, plus on binary pixels the pixel-wise Tweedie denoiser below."""
        eps_hat = self.noise_predictor(x_t, t)
        if self.config.likelihood == "bernoulli":
            eps_hat = eps_hat + self.pixelwise_noise(x_t, t)
        return eps_hat

    def pixelwise_noise(self, x_t, t):
        """The optimal ε for pixels that were independent ±1 with P(x_0,i = 1) = sigmoid(2 b_i): by Tweedie's
        formula (Luo eq. 133) the posterior mean is E[x_0,i | x_t,i] = tanh(√ᾱ_t x_t,i / (1 − ᾱ_t) + b_i), so

            ε_i = (x_t,i − √ᾱ_t tanh(√ᾱ_t x_t,i / (1 − ᾱ_t) + b_i)) / √(1 − ᾱ_t),

        a steep sawtooth in x_t,i at small t (slope 1/√(1 − ᾱ_t), 100 at t = 1) that an MLP narrower than the
        image cannot copy pixel by pixel: without it the first 50 steps alone cost ~2,000 nats of the MNIST
        bound (benchmarks/RESULTS.md, "Diffusion"). The network then learns what the pixels say about each
        other; b (one logit per pixel) is learned with it."""
        ab = self.schedule.alpha_bar[t][:, None]  # (B, 1), float64
        gain = (numpy.sqrt(ab) / (1.0 - ab)).astype(self.dtype)
        mean_x0 = F.tanh(x_t * gain + self.pixel_logits)  # (B, D): E[x_0 | x_t] pixel by pixel
        return (x_t - mean_x0 * numpy.sqrt(ab).astype(self.dtype)) * (1.0 / numpy.sqrt(1.0 - ab)).astype(
            self.dtype
        )

    def reverse_mean(self, x_t, t, eps_hat=None):
        """μ_θ(x_t, t) = (x_t − β_t / √(1 − ᾱ_t) ε_θ(x_t, t)) / √α_t (Ho et al. eq. 11), a Tensor (B, D)."""
        s = self.schedule
        if eps_hat is None:
            eps_hat = self.predict_noise(x_t, t)
        scale = (s.beta[t] / numpy.sqrt(1.0 - s.alpha_bar[t]))[:, None].astype(self.dtype)  # (B, 1)
        return (x_t - eps_hat * scale) * (1.0 / numpy.sqrt(s.alpha[t]))[:, None].astype(self.dtype)

    def decode_logits(self, z, y=None):
        """What the data end of the chain reads from x_1: the Bernoulli logits 1.702 μ_θ(x_1, 1) / σ_1, or
        the Gaussian mean μ_θ(x_1, 1) (module docstring)."""
        if z.shape[-1] != self.config.x_dim:
            raise ValueError(
                f"{self.name}: z has shape {z.shape} but the last reverse step reads x_1, of the data's "
                f"size {self.config.x_dim}"
            )
        return self.last_step_output(self.reverse_mean(z, numpy.ones(z.shape[0], dtype=numpy.int64)))

    def last_step_output(self, mean):
        """The decoder's output from the last step's mean μ_θ(x_1, 1): the Bernoulli logits 1.702 μ / σ_1
        (the two-bin discretisation, module docstring), or μ itself for real-valued data."""
        if self.config.likelihood == "bernoulli":
            return mean * (PROBIT_TO_LOGIT / math.sqrt(self.schedule.sigma2[1]))
        return mean

    # ----- the ELBO's terms at given steps -----
    def step_terms(self, x, x0, t, eps):
        """For each example i at its step t_i, with x_t drawn by ``eps``: (term, eps_hat) where term is
        log p(x | x_1) at t_i = 1 and KL(q(x_{t−1} | x_t, x_0) ‖ p(x_{t−1} | x_t)) at t_i ≥ 2, a Tensor (B,),
        and eps_hat = ε_θ(x_t, t), a Tensor (B, D)."""
        x_t = self.diffuse(x0, t, eps)
        eps_hat = self.predict_noise(x_t, t)  # (B, D)
        mean = self.reverse_mean(x_t, t, eps_hat)  # (B, D)
        first = t == 1
        terms = Tensor(numpy.zeros(len(t), dtype=self.dtype))
        if first.any():
            recon = self.likelihood.log_prob(self.last_step_output(mean[first]), x[first])  # (n_1,)
            terms = terms + _scatter(recon, first)
        later = ~first
        if later.any():
            mu_q, logvar_q = self.forward_posterior(x0[later], x_t[later], t[later])
            logvar_p = numpy.log(self.schedule.sigma2[t[later]])[:, None].astype(self.dtype)
            kl = F.gaussian_kl(mu_q, logvar_q, mean[later], logvar_p)  # (n_later,)
            terms = terms + _scatter(kl, later)
        return terms, eps_hat

    def prior_matching(self, x0):
        """KL(q(x_T | x_0) ‖ N(0, I)) in closed form, per example (B,): no parameters, near 0 when ᾱ_T ≈ 0."""
        ab = self.schedule.alpha_bar[-1]
        mu = x0 * math.sqrt(ab)
        return F.gaussian_kl(mu, mu.xp.full(mu.shape, math.log(1.0 - ab), dtype=mu.dtype))  # made where mu is

    def objective(self, x, rng, y=None):
        """One step t ~ U{1 … T} per example: the loss is L_simple = ‖ε − ε_θ‖² (or −ELBO with
        ``objective="elbo"``) and ``.elbo`` the unbiased one-step estimate of the bound (module docstring),
        with terms ``reconstruction``, ``prior_matching`` and ``denoising_matching`` (each T times its step's
        share, so that elbo = reconstruction − prior_matching − denoising_matching per example)."""
        if self.training:
            if self.config.weight_average:
                self.update_average()
            return self._objective(x, rng)
        with self.averaged_weights():  # test metrics: the weights that sample
            return self._objective(x, rng)

    def _objective(self, x, rng):
        x = self.check_x(x)
        repeats = self.config.steps_per_example
        if repeats > 1:  # example i becomes rows i·R … i·R + R − 1, each with its own step and noise
            x = Tensor(numpy.repeat(x.data, repeats, axis=0))  # (B·R, D)
        x0 = self.to_chain(x)
        n, T = x.shape[0], self.schedule.steps
        t = rng.integers(1, T + 1, size=n)  # (B·R,)
        eps = rng.standard_normal(x.shape).astype(self.dtype)  # (B·R, D)
        terms, eps_hat = self.step_terms(x, x0, t, eps)
        first = Tensor((t == 1).astype(self.dtype))
        reconstruction = terms * first * T  # (B,)
        denoising = terms * (1.0 - first) * T
        prior = self.prior_matching(x0)
        elbo = reconstruction - denoising - prior
        if self.config.objective == "elbo":
            loss = -elbo.mean()
        else:
            error = eps_hat - eps
            loss = (error * error).sum(axis=-1).mean()
        per_example = {
            name: _mean_of_repeats(value, repeats)
            for name, value in (
                ("elbo", elbo),
                ("reconstruction", reconstruction),
                ("prior_matching", prior),
                ("denoising_matching", denoising),
            )
        }
        return LossResult(loss, **per_example)

    def elbo_terms(self, x, rng, y=None):
        """The bound on the examples x, term by term, every one of the T terms computed (one sample of x_t
        each): {"reconstruction", "prior_matching", "denoising_matching"}, per-example arrays in nats of
        each term's contribution to the ELBO (the KLs with their minus sign), so the three sum to the ELBO.
        Costs T passes of ε_θ over x."""
        reconstruction, prior, denoising = self.all_step_terms(x, rng)
        return {
            "reconstruction": reconstruction,
            "prior_matching": -prior,
            "denoising_matching": -denoising.sum(axis=0),
        }

    def all_step_terms(self, x, rng):
        """(log p(x | x_1), KL(q(x_T | x_0) ‖ p(x_T)), KL_t for t = 2 … T): arrays (B,), (B,), (T − 1, B) in
        float64, each KL_t at one sample x_t ~ q(x_t | x_0)."""
        x = self.check_x(x)
        x0 = self.to_chain(x)
        n, T = x.shape[0], self.schedule.steps
        denoising = numpy.zeros((T - 1, n))
        was_training = self.training
        self.eval()
        try:
            with no_grad(), self.averaged_weights():
                for step in range(1, T + 1):
                    eps = rng.standard_normal(x.shape).astype(self.dtype)
                    terms, _ = self.step_terms(x, x0, numpy.full(n, step), eps)
                    if step == 1:
                        reconstruction = terms.numpy().astype(numpy.float64)
                    else:
                        denoising[step - 2] = terms.numpy()
                prior = self.prior_matching(x0).numpy().astype(numpy.float64)
        finally:
            self.train(was_training)
        return reconstruction, prior, denoising

    def log_joint_ratio(self, x, rng):
        """log p(x, x_{1:T}) − log q(x_{1:T} | x_0) at one sample of the whole forward chain, drawn step by
        step (x_t = √α_t x_{t−1} + √β_t ε_t): the ELBO in its first form (Luo eq. 45), whose expectation the
        decomposed terms of :meth:`elbo_terms` equal. Per example (B,), float64; T passes of ε_θ."""
        x = self.check_x(x)
        s, T = self.schedule, self.schedule.steps
        with no_grad(), self.averaged_weights():
            previous = self.to_chain(x)  # x_0
            total = numpy.zeros(x.shape[0])
            chain = []
            for t in range(1, T + 1):
                step = math.sqrt(s.alpha[t]) * previous
                current = step + math.sqrt(s.beta[t]) * rng.standard_normal(x.shape).astype(self.dtype)
                total -= F.gaussian_log_prob(current, step, math.log(s.beta[t])).sum(axis=-1).numpy()
                chain.append(current)
                previous = current
            total += self.prior.top.log_prob(chain[-1]).numpy()  # log p(x_T)
            for t in range(T, 1, -1):  # log p(x_{t−1} | x_t)
                mean = self.reverse_mean(chain[t - 1], numpy.full(x.shape[0], t))
                total += F.gaussian_log_prob(chain[t - 2], mean, math.log(s.sigma2[t])).sum(axis=-1).numpy()
            total += self.likelihood.log_prob(self.decode_logits(chain[0]), x).numpy()  # log p(x | x_1)
        return total

    # ----- the interface -----
    def encode(self, x, y=None):
        """(mean, log variance) of q(x_1 | x_0): √α_1 x_0 and log β_1 (fixed: nothing is learned here)."""
        x0 = self.to_chain(self.check_x(x))
        mean = x0 * math.sqrt(self.schedule.alpha[1])
        return mean, Tensor(numpy.full(mean.shape, math.log(self.schedule.beta[1]), dtype=self.dtype))

    def latent_mean(self, x, y=None):
        """The mean of q(x_1 | x_0), the latent the last reverse step decodes."""
        return (self.to_chain(self.check_x(x)) * math.sqrt(self.schedule.alpha[1])).data

    # ----- figures -----
    def extra_figures(self, out_dir, x, y=None, rng=None):
        """diffusion_chain.png: the reverse chain x_T → x_0 at nine steps (scatters for 2-D data, digits
        for images); denoising_terms.png: the mean KL_t of each step on (up to 200 of) the examples x."""
        rng = nn.as_generator(rng)
        out_dir = pathlib.Path(out_dir)
        return [
            chain_figure(self, rng, out_dir / "diffusion_chain.png"),
            denoising_terms_figure(self, x[:200], rng, out_dir / "denoising_terms.png"),
        ]

    # ----- saving: the parameters and their average -----
    def state_dict(self):
        """The parameters, and their moving average as ``average.<name>``."""
        state = super().state_dict()
        state.update({f"average.{name}": numpy.array(to_host(value)) for name, value in self.average.items()})
        return state

    def load_state_dict(self, state):
        state = dict(state)
        keys = [f"average.{name}" for name in self.average]
        missing = [key for key in keys if key not in state]
        if missing:
            raise KeyError(f"load_state_dict ({type(self).__name__}): missing keys {missing}")
        averages = {key: state.pop(key) for key in keys}
        super().load_state_dict(state)  # checks the parameters' names and shapes
        for name, average in self.average.items():
            value = numpy.asarray(averages[f"average.{name}"])
            if value.shape != average.shape:
                raise ValueError(
                    f"load_state_dict ({type(self).__name__}): 'average.{name}' has shape {value.shape} in "
                    f"the state but the parameter has shape {average.shape}"
                )
            average[...] = array_module(average).asarray(value)  # to the device, where the average is kept

    # ----- how a run configures it, sizes -----
    @classmethod
    def run_defaults(cls, toy):
        """On the 2-D toys a deeper ε_θ (3 × 256), 32 steps per example and the cosine schedule: with the
        VAE's (64, 64), one step and the linear schedule, 30 epochs put the samples on the ring but not on its
        8 modes (benchmarks/RESULTS.md, "Diffusion"). On images ε_θ is 2 × 512, 4 steps per example (the
        bound 253 → 235 nats at 30 epochs, for 2.6× the time) and the schedule linear: the
        cosine schedule's last steps (β_t up to 0.999, so α_t near 0) weight the noise error by 1/α_t, and
        on MNIST they alone cost thousands of nats of the bound."""
        if toy:
            return {"hidden": (256, 256, 256), "steps_per_example": 32, "schedule": "cosine"}
        return {"hidden": (512, 512), "steps_per_example": 4}

    @classmethod
    def config_from_run(cls, fields):
        """Every latent has the data's size: the run's ``z_dim`` (a VAE setting) does not apply."""
        fields = dict(fields)
        fields.pop("z_dim", None)
        return super().config_from_run(fields)

    @classmethod
    def size_lower_bounds(cls, config):
        """ε_θ's layers: [x_dim, *hidden, x_dim], each reading the time features too."""
        widths = [config.x_dim, *config.hidden, config.x_dim]
        chains = [[w + config.time_features, out] for w, out in zip(widths[:-1], widths[1:], strict=True)]
        return mlp_size_lower_bounds(chains)

    @classmethod
    def estimated_training_bytes(cls, config, batch_size):
        widths = [config.x_dim, *config.hidden, config.x_dim]
        pairs = zip(widths[:-1], widths[1:], strict=True)
        parameters = sum((w + config.time_features + 1) * out for w, out in pairs)
        activations = batch_size * config.steps_per_example * 4 * sum(widths)
        return 4 * (5 * parameters + 6 * activations)  # weights, average, gradients, two Adam moments


def _mean_of_repeats(value, repeats):
    """Per-example means of a (B·R,) Tensor whose rows i·R … i·R + R − 1 belong to example i: a (B,) array
    where the Tensor is (the loss result copies it to the host)."""
    return value.data.reshape(-1, repeats).mean(axis=1)


def _scatter(values, mask):
    """A Tensor (len(mask),) holding ``values`` (a Tensor (mask.sum(),)) where mask is True and 0 elsewhere,
    differentiable in values (written with a gather of [0, values...] so its backward is getitem's)."""
    padded = F.concatenate([Tensor(numpy.zeros(1, dtype=values.dtype)), values])  # (1 + n,)
    position = numpy.zeros(len(mask), dtype=numpy.int64)
    position[mask] = numpy.arange(1, mask.sum() + 1)
    return padded[position]


def chain_figure(model, rng, path, n=None):
    """The reverse chain at nine steps from x_T to x_0 (the decoder's mean at the end)."""
    image = math.isqrt(model.config.x_dim) ** 2 == model.config.x_dim and model.config.x_dim > 4
    n = n or (8 if image else 1000)
    T = model.config.steps
    shown = sorted({int(round(T * f)) for f in numpy.linspace(1.0, 0.0, 9)[:-1]} | {1}, reverse=True)
    x1, kept = model.prior.sample_chain(n, rng, keep=set(shown))
    final = model.decode(x1)
    states = [(f"x_{t}", to_host(kept[t])) for t in shown] + [("x_0 (mean)", final)]
    if image:
        side = math.isqrt(model.config.x_dim)
        shown_states = [model_view(model, s) if name != "x_0 (mean)" else s for name, s in states]
        canvas = figures.mosaic(
            numpy.stack(shown_states, axis=1).reshape(-1, model.config.x_dim), n, len(states), (side, side)
        )
        figure = figures.new_figure(0.6 * len(states) + 1, 0.6 * n + 1)
        ax = figure.add_subplot()
        ax.imshow(canvas, cmap="gray", vmin=0, vmax=1, interpolation="nearest")
        ax.set_xticks(
            [(i + 0.5) * side for i in range(len(states))], [name for name, _ in states], fontsize=7
        )
        ax.set_yticks([])
    else:
        cols = math.ceil(len(states) / 2)
        figure = figures.new_figure(2.2 * cols, 5.0)
        for i, (name, points) in enumerate(states):
            ax = figure.add_subplot(2, cols, i + 1)
            ax.scatter(points[:, 0], points[:, 1], s=2, alpha=0.4, color="tab:green")
            ax.set_title(name, fontsize=9)
            ax.set_aspect("equal")
            ax.set_xlim(-3.5, 3.5)
            ax.set_ylim(-3.5, 3.5)
            ax.tick_params(labelsize=6)
    figure.suptitle(f"{model.name}: ancestral sampling, x_{T} ~ N(0, I) → x_0 ({n} chains)")
    return figures.save_png(figure, path)


def model_view(model, state):
    """A chain state shown as an image in [0, 1]: (x_t + 1) / 2 clipped, for pixels mapped to ±1."""
    if model.config.likelihood == "bernoulli":
        return numpy.clip((state + 1.0) / 2.0, 0.0, 1.0)
    return numpy.clip(state, 0.0, 1.0)


def denoising_terms_figure(model, x, rng, path):
    """Mean KL_t against t on the examples x (log scale): where along the chain the bound's nats are."""
    reconstruction, prior, denoising = model.all_step_terms(x, rng)
    figure = figures.new_figure(6, 3.5)
    ax = figure.add_subplot()
    steps = numpy.arange(2, model.config.steps + 1)
    ax.plot(steps, numpy.maximum(denoising.mean(axis=1), 1e-6), color="tab:blue")
    ax.set_yscale("log")
    ax.set_xlabel("step t")
    ax.set_ylabel("mean KL_t (nats)")
    ax.set_title(
        f"{model.name}: denoising matching Σ_t KL_t = {denoising.sum(axis=0).mean():.2f} nats,\n"
        f"reconstruction {reconstruction.mean():.2f}, prior matching {prior.mean():.4f} ({len(x)} examples)"
    )
    figure.tight_layout()
    return figures.save_png(figure, path)


__all__ = ["Diffusion", "DiffusionConfig", "NoiseSchedule", "ReverseChain", "time_features"]
